"""Parquet shards encoded by cuDF from device memory (``output.writer: cudf``, the GPU engine's
``auto``): the data never makes the round trip through host Arrow tables; cuDF encodes and
compresses on the device (nvCOMP), and only the finished file comes to the host, where
shards/writers.py writes it under a temporary name and renames it into place.

The file holds the planned output schema, as the CPU engine's does: every column nullable (cuDF
would otherwise mark a column without nulls ``not null``, and a shard's schema would depend on its
rows: seen on an H200); binary columns (cuDF strings on the device) as plain byte arrays, not
UTF-8. Dates are not written here: cuDF has no date type (its DataFrame turns day timestamps into
second timestamps), so ``output.writer: auto`` takes pyarrow for an output with a date column
(compiler/planner.py ``parquet_writer``). Row groups of ``output.row_group_rows`` rows,
statistics per row group, compression as configured (cuDF's writer has zstd, snappy and lz4 but
neither gzip nor compression levels: the config refuses those with this writer, and ``auto``
keeps pyarrow for them). The bytes differ from pyarrow's; the values do not (the manifest's
content digests say so, and ``shardsmith diff`` checks them).
"""

from __future__ import annotations

import io

COMPRESSION = {"zstd": "ZSTD", "snappy": "snappy", "lz4": "LZ4", "none": None}


def parquet_bytes(frame, sink, schema) -> memoryview:
    """The Parquet file of ``frame`` (its columns in ``schema`` order) as cuDF writes it."""
    frame = frame[[c.name for c in schema.columns]]
    binary = {c.name for c in schema.columns if c.dtype == "binary"}
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False, compression=COMPRESSION[sink.compression],
                     row_group_size_rows=sink.row_group_rows, statistics="ROWGROUP",
                     output_as_binary=binary or None, force_nullable_schema=True)
    return buf.getbuffer()
