"""Shard writers. Every file is written under a temporary name and renamed into place once whole,
so a reader (or a resumed compile) never sees half a shard; its sha256 is taken as it is written."""

from __future__ import annotations

import hashlib
import os
import uuid

import pyarrow as pa
import pyarrow.parquet as pq


class HashingFile:
    """A write-only file that keeps a running sha256 and byte count of what passes through it."""

    def __init__(self, path: str):
        self._f = open(path, "wb")
        self.sha = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data) -> int:
        mv = memoryview(data)
        self.sha.update(mv)
        self.size += mv.nbytes
        return self._f.write(mv)

    def flush(self) -> None:
        self._f.flush()

    def tell(self) -> int:
        return self.size

    def close(self) -> None:
        if not self.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def atomic_write(final: str, write_fn) -> dict:
    """Run ``write_fn(file)`` on a temporary file beside ``final``, then rename it into place."""
    os.makedirs(os.path.dirname(final) or ".", exist_ok=True)
    tmp = f"{final}.tmp-{uuid.uuid4().hex[:12]}"
    f = HashingFile(tmp)
    try:
        write_fn(f)
        f.close()
        os.replace(tmp, final)
    except BaseException:
        f.close()
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return {"bytes": f.size, "sha256": f.sha.hexdigest()}


def write_bytes(final: str, data) -> dict:
    """Write a file whose bytes are already made (a Parquet file cuDF encoded on the device)."""
    return atomic_write(final, lambda f: f.write(data))


def write_parquet(table: pa.Table, final: str, sink, schema=None) -> dict:
    compression = None if sink.compression == "none" else sink.compression

    def write(f):
        pq.write_table(table, f, row_group_size=sink.row_group_rows, compression=compression,
                       compression_level=sink.compression_level, write_statistics=True)

    return atomic_write(final, write)


WRITERS = {"parquet": (".parquet", write_parquet)}
# What the manifest names as each file's writer ("writer" of a shard entry): Parquet written by
# pyarrow from host memory is "arrow" (the GPU engine writes "cudf" files itself); other formats
# are written by shardsmith's own code.
WRITER_NAMES = {"parquet": "arrow"}


def register_writer(fmt: str, suffix: str, fn) -> None:
    """Add an output format: ``fn(table, final_path, sink, schema=...) -> {"bytes", "sha256"}`` (and
    ``"path"`` when the writer changes the file name, e.g. adds a compression suffix). ``schema`` is the
    output schema (with column roles), or None for quarantine shards."""
    WRITERS[fmt] = (suffix, fn)


def write_shard(table: pa.Table, stem: str, sink, schema, formats=None) -> dict:
    """Write ``table`` in every output format (or those of ``formats``; quarantine shards: Parquet
    only)."""
    formats = formats if formats is not None else sink.formats if schema is not None else ("parquet",)
    out = {}
    for fmt in formats:
        suffix, fn = WRITERS[fmt]
        info = fn(table, stem + suffix, sink, schema=schema)
        out[fmt] = {"path": stem + suffix, "rows": table.num_rows, "writer": WRITER_NAMES.get(fmt, "shardsmith"),
                    **info}
    return out
