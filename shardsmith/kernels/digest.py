"""Content digests: a dataset's identity by its values, not by the bytes of its files.

This module is the specification; both engines compute it (the CPU engine from Arrow arrays,
``backends/arrow.py``; the GPU engine on the device, ``backends/gpu/digest.py``), and the tests
check each against a naive byte-by-byte reference. Two shards with the same values in the same
rows have the same digests, whatever writer produced their files (pyarrow, cuDF, any Parquet
encoding or compression) and however the compile was partitioned. A file's sha256 (in the
manifest too) still checks its integrity; the content digest says what it holds.

What is hashed, for a column of ``n`` rows of which ``k`` are null, as little-endian bytes:

* ``VALUES``: for fixed-width dtypes, the ``n`` values in the dtype's own width: integers as
  their two's complement, floats as their IEEE-754 bits with every NaN replaced by the canonical
  quiet NaN of its width (float16 ``0x7E00``, float32 ``0x7FC00000``, float64
  ``0x7FF8000000000000``; ``-0.0`` stays ``-0.0``, a value of its own), booleans as one byte 0 or
  1, dates as int32 days, timestamps as int64 in their unit. A null's slot is all zero bytes.
  For ``string`` and ``binary``: the ``n`` byte lengths as uint64 (a null: 0).
* ``BYTES`` (string and binary only): the rows' bytes (UTF-8 for strings) one after another.
* ``VALIDITY`` (only when ``k > 0``): ``n`` bytes, 1 for a value and 0 for a null.

Each section is cut into blocks of :data:`BLOCK` bytes (the last one shorter, an empty section
none) and each block is hashed with XXH64, seed 0 (the hash of ``kernels/xxhash64.py``; blocks
let a GPU hash a column with thousands of threads). Then, with ``u64`` an 8-byte little-endian
integer:

* column digest: XXH64 of ``b"shardsmith-column-1\\0" + token + b"\\0" + u64(n) + u64(k)`` followed,
  for each section present, by ``u64(its byte length)`` and the ``u64`` of each block's hash.
  ``token`` is the column's dtype name as the manifest's schema gives it (``int32``,
  ``float32``, ``string``, ``date``, ...), with the unit for timestamps (``timestamp[us]``).
* shard digest: XXH64 of ``b"shardsmith-shard-1\\0"`` followed, for each column in schema order,
  by its UTF-8 name, ``b"\\0"`` and ``u64(column digest)``.
* dataset digest: XXH64 of ``b"shardsmith-dataset-1\\0"`` followed, for each split in order, by
  its name, ``b"\\0"``, ``u64(shard count)`` and the ``u64`` of each shard digest. Quarantine
  shards have digests of their own but are not part of the dataset's (they name input paths).

A digest is written as 16 lowercase hex digits. It identifies content against accidents (a
different value, row, order, dtype or column name changes it, except with probability 2**-64);
it is not a cryptographic commitment.

>>> hex_digest(column_digest("int32", 3, 0, [(12, [block_hash(b"\\x01\\x00\\x00\\x00" * 3)])]))
'57ac3c5552b87bb1'
"""

from __future__ import annotations

import struct

import numpy as np
import xxhash

SPEC = "shardsmith-content-1"
BLOCK = 1 << 16  # bytes per hashed block of a section
CANONICAL_NAN = {2: 0x7E00, 4: 0x7FC00000, 8: 0x7FF8000000000000}
_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_COLUMN, _SHARD, _DATASET = b"shardsmith-column-1\0", b"shardsmith-shard-1\0", b"shardsmith-dataset-1\0"


def token(dtype: str, unit: str | None = None) -> str:
    """The dtype token of a column: the dtype name, and a timestamp's unit."""
    return f"timestamp[{unit}]" if dtype == "timestamp" else dtype


# --- sections: array code that NumPy and CuPy run alike --------------------------------------------
def fixed_sections(values, valid, xp=np) -> list:
    """The VALUES (and VALIDITY) sections of a fixed-width column as uint8 arrays. ``values``:
    the column's values in its own dtype (booleans as bool or uint8 0/1); ``valid``: a bool array,
    or None when the column has no null."""
    v = values
    if v.dtype.kind == "b":
        v = v.view(np.uint8)
    if v.dtype.kind == "f":
        bits = v.view(_UINT[v.dtype.itemsize])
        nan = xp.isnan(v)
        v = xp.where(nan, bits.dtype.type(CANONICAL_NAN[v.dtype.itemsize]), bits) if bool(nan.any()) else bits
    if valid is not None:
        v = xp.where(valid, v, v.dtype.type(0))
    out = [xp.ascontiguousarray(v).view(np.uint8)]
    if valid is not None:
        out.append(valid.astype(np.uint8))
    return out


def bool_values(values):
    """Booleans held as bytes (cuDF's BOOL8: any non-zero byte is true) as canonical 0 / 1 bytes."""
    return (values != 0).astype(np.uint8)


def string_sections(offsets, data, valid, xp=np) -> list:
    """The VALUES, BYTES (and VALIDITY) sections of a string or binary column: ``offsets`` (n + 1,
    absolute positions in ``data``), every null of length 0 (callers fill nulls with empty strings
    first), ``valid`` as for :func:`fixed_sections`."""
    lengths = xp.diff(offsets).astype(np.uint64)
    n = len(offsets) - 1
    start, stop = (int(offsets[0]), int(offsets[-1])) if n else (0, 0)
    out = [lengths.view(np.uint8), data[start:stop]]
    if valid is not None:
        out.append(valid.astype(np.uint8))
    return out


def block_count(nbytes: int) -> int:
    return -(-nbytes // BLOCK)


# --- hashing on the host ----------------------------------------------------------------------------
def block_hash(data) -> int:
    """XXH64 (seed 0) of one block: any buffer of bytes."""
    return xxhash.xxh64_intdigest(data)


def host_blocks(section: np.ndarray) -> list[int]:
    """The block hashes of one section held in host memory (a uint8 array)."""
    mv = memoryview(np.ascontiguousarray(section)).cast("B")
    return [xxhash.xxh64_intdigest(mv[i : i + BLOCK]) for i in range(0, len(mv), BLOCK)]


def column_digest(tok: str, rows: int, nulls: int, sections: list[tuple[int, list[int]]]) -> int:
    """The column digest from its token, row and null counts, and (byte length, block hashes) of
    each section present, in order (VALUES, BYTES for strings, VALIDITY when ``nulls``)."""
    h = xxhash.xxh64(_COLUMN + tok.encode() + b"\0" + struct.pack("<QQ", rows, nulls))
    for nbytes, blocks in sections:
        if len(blocks) != block_count(nbytes):
            raise ValueError(f"a section of {nbytes} bytes has {block_count(nbytes)} blocks, not {len(blocks)}")
        h.update(struct.pack("<Q", nbytes))
        h.update(np.asarray(blocks, dtype="<u8").tobytes())
    return h.intdigest()


def take_blocks(lengths: list[int], hashes) -> list[tuple[int, list[int]]]:
    """(byte length, block hashes) of each section of ``lengths``, taking the hashes in order from
    the iterator ``hashes`` (the hashes of many sections' blocks, computed together)."""
    return [(n, [next(hashes) for _ in range(block_count(n))]) for n in lengths]


def host_column_digest(tok: str, rows: int, nulls: int, sections: list) -> int:
    """The column digest of host sections (uint8 NumPy arrays)."""
    return column_digest(tok, rows, nulls, [(len(s), host_blocks(s)) for s in sections])


def shard_digest(columns: dict[str, int]) -> int:
    """The shard digest from its columns' digests, in schema order."""
    h = xxhash.xxh64(_SHARD)
    for name, d in columns.items():
        h.update(name.encode() + b"\0" + struct.pack("<Q", d))
    return h.intdigest()


def dataset_digest(splits: dict[str, list[int]]) -> int:
    """The dataset digest from each split's shard digests, in split and shard order."""
    h = xxhash.xxh64(_DATASET)
    for name, shards in splits.items():
        h.update(name.encode() + b"\0" + struct.pack("<Q", len(shards)))
        h.update(np.asarray(shards, dtype="<u8").tobytes())
    return h.intdigest()


def hex_digest(d: int) -> str:
    return f"{d:016x}"


def from_hex(text: str) -> int:
    return int(text, 16)
