"""Content digests (kernels/digest.py) of a shard on the device, before it is written.

Every column's sections are built with CuPy where the spec needs a canonical form (nulls zeroed,
NaNs canonical, booleans as 0 / 1, the validity bytes); a column without nulls or NaNs is hashed
in place, straight from cuDF's buffers. Then one kernel launch hashes every block of every
section, a thread per block (``ss_xxh64_spans`` in cuda/xxhash64.cu), and only the block hashes,
8 bytes per 64 KiB, come back to the host, where they are combined as on the CPU.
"""

from __future__ import annotations

import cupy as cp
import numpy as np

from shardsmith.backends.gpu import columns as C
from shardsmith.backends.gpu import transfer
from shardsmith.kernels import digest as D
from shardsmith.kernels import gpu

_UNITS = {C.T.TIMESTAMP_SECONDS: "s", C.T.TIMESTAMP_MILLISECONDS: "ms", C.T.TIMESTAMP_MICROSECONDS: "us",
          C.T.TIMESTAMP_NANOSECONDS: "ns"}


def frame_digests(frame, schema) -> dict[str, int]:
    """The content digest of each output column of ``frame`` (conformed to ``schema``)."""
    columns = [(c.name, *column_sections(frame[c.name], c.dtype)) for c in schema.columns]
    sections = [s for _, _, _, _, secs in columns for s in secs]
    hashes = iter(section_blocks(sections))
    return {name: D.column_digest(tok, n, k, D.take_blocks([int(s.nbytes) for s in secs], hashes))
            for name, tok, n, k, secs in columns}


def column_sections(series, dtype: str):
    """(token, rows, nulls, sections) of one column, the sections as device uint8 arrays."""
    n, k = len(series), int(series.null_count)
    valid = C.validity(series) if k else None
    tid = C.plc_column(series).type().id()
    tok = D.token(dtype, _UNITS.get(tid))
    if C.kind(series) == "string":
        if k:  # the spec gives a null no bytes; cuDF may leave some under it
            series = series.fillna("")
        offsets, chars = C.string_buffers(series)
        return tok, n, k, D.string_sections(offsets, chars, valid, cp)
    values = C.values(series)
    if C.kind(series) == "bool":
        values = D.bool_values(values)
    return tok, n, k, D.fixed_sections(values, valid, cp)


def section_blocks(sections: list) -> list[int]:
    """The block hashes of device sections, in order: one launch over all their blocks."""
    ptrs, lens = [], []
    for s in sections:
        nbytes = int(s.nbytes)
        starts = np.arange(0, nbytes, D.BLOCK, dtype=np.int64)
        ptrs.append(np.uint64(int(s.data.ptr) if nbytes else 0) + starts.astype(np.uint64))
        lens.append(np.minimum(D.BLOCK, nbytes - starts))
    n = sum(len(p) for p in ptrs)
    if n == 0:
        return []
    out = cp.empty(n, dtype=np.uint64)
    dev_ptrs = transfer.to_device(np.concatenate(ptrs))
    dev_lens = transfer.to_device(np.concatenate(lens).astype(np.int64))
    gpu.launch(gpu.hash_source(), "ss_xxh64_spans", n, (dev_ptrs, dev_lens, out, np.int64(n)))
    return [int(h) for h in cp.asnumpy(out)]
