"""How a batch lies in memory: the columns of each dtype form one (columns, rows) block of one
buffer, unbound into 1-D tensor views; a block of the stream is kept the same way, its rows
already in shuffled order, so that a batch is a few strided copies, not a gather."""

from __future__ import annotations

import numpy as np
import torch

from shardsmith.ir import NUMERIC_DTYPES
from shardsmith.shards import order as od

ALIGN = 8
# NumPy types a tensor cannot take as they are, and what they become.
WIDEN = {"uint16": "int32", "uint32": "int64", "uint64": "int64"}
TENSOR_DTYPES = NUMERIC_DTYPES


def plain_buffer(nbytes: int) -> torch.Tensor:
    return torch.empty(nbytes, dtype=torch.uint8)


class BatchSpec:
    """How a batch lies in memory: the columns of each dtype form one (columns, rows) block of the
    batch buffer, unbound into 1-D views. A block of the stream is kept the same way, its rows
    already in shuffled order, so a batch is a few strided copies (one per dtype), not a gather."""

    def __init__(self, columns):
        self.names = [name for name, _ in columns]
        by_dtype: dict = {}
        for name, dt in columns:
            by_dtype.setdefault(dt, []).append(name)
        self.groups = sorted(by_dtype.items(), key=lambda kv: -kv[0].itemsize)
        self.torch_dtypes = {dt: _torch_dtype(dt) for dt, _ in self.groups}

    def block(self, parts: list[dict], perm) -> dict:
        """A block's columns as one (columns, rows) matrix per dtype, rows in shuffled order (NumPy
        fancy indexing: the one random access pass over the block)."""
        out = {}
        for dt, names in self.groups:
            n = sum(len(p[names[0]]) for p in parts)
            mat = np.empty((len(names), n), dtype=dt)
            for i, name in enumerate(names):
                col = parts[0][name] if len(parts) == 1 else np.concatenate([p[name] for p in parts])
                col = col.astype(dt, copy=False)
                mat[i] = col if perm is None else col[perm]
            out[dt] = mat
        return out

    def _sizes(self, n: int):
        off = 0
        for dt, names in self.groups:
            size = n * dt.itemsize * len(names)
            yield dt, names, off, size
            off += -(-size // ALIGN) * ALIGN

    def nbytes(self, n: int) -> int:
        return sum(-(-size // ALIGN) * ALIGN for _, _, _, size in self._sizes(n))

    def fill(self, raw: np.ndarray, n: int, start: int, block: dict, lo: int, hi: int) -> None:
        """Copy block rows [lo, hi) into batch rows [start, start + hi - lo) of the buffer ``raw``."""
        for dt, names, off, size in self._sizes(n):
            dest = raw[off: off + size].view(dt).reshape(len(names), n)
            dest[:, start: start + hi - lo] = block[dt][:, lo:hi]

    def pack(self, parts: list[dict], raw: np.ndarray, n: int) -> None:
        """A block's columns (its units' ``parts``, rows in stream order, not permuted) into the
        uint8 buffer ``raw`` laid out as a batch of ``n`` rows: what the device path copies over."""
        for dt, names, off, size in self._sizes(n):
            mat = raw[off: off + size].view(dt).reshape(len(names), n)
            for i, name in enumerate(names):
                at = 0
                for p in parts:
                    col = p[name]
                    mat[i, at: at + len(col)] = col  # casts as astype(dt) does (same-kind or widening)
                    at += len(col)

    def matrices(self, buf: torch.Tensor, n: int) -> dict:
        """The (columns, rows) matrix of each dtype in ``buf`` laid out for ``n`` rows, as tensor
        views (on whatever device ``buf`` is)."""
        return {dt: buf[off: off + size].view(self.torch_dtypes[dt]).view(len(names), n)
                for dt, names, off, size in self._sizes(n)}

    def views(self, buf: torch.Tensor, n: int) -> dict:
        """The batch's columns as 1-D tensor views of ``buf``, in the requested column order."""
        return self.unbind(self.matrices(buf, n))

    def unbind(self, mats: dict) -> dict:
        out = {}
        for dt, names in self.groups:
            out.update(zip(names, mats[dt].unbind(0)))
        return {name: out[name] for name in self.names}


def assemble(plan: od.EpochPlan, reader, b: int, spec: BatchSpec, alloc) -> dict:
    """Batch ``b``: its rows gathered from their block(s) (``reader.get(j)``: blocks.BlockReader) into
    one buffer, as a dict of tensor views."""
    start, stop = plan.batch_rows(b)
    n = stop - start
    buf = alloc(max(spec.nbytes(n), 1))
    raw = buf.numpy()
    for j, lo, hi, at in plan.pieces(b):
        spec.fill(raw, n, at, reader.get(j), lo, hi)
    return spec.views(buf, n)


def _torch_dtype(dt: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype=dt)).dtype
