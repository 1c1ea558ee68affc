"""Parquet shards encoded by cuDF from device memory (``output.writer: cudf``, the GPU engine's
``auto``): the data never makes the round trip through host Arrow tables; cuDF encodes and
compresses on the device (nvCOMP), and only the finished file comes to the host, where
shards/writers.py writes it under a temporary name and renames it into place.

The file holds the planned output schema, as the CPU engine's does: dates (int32 days on the
device) are written as cuDF day timestamps, which are Parquet DATE; binary columns (cuDF strings
on the device) as plain byte arrays, not UTF-8. Row groups of ``output.row_group_rows`` rows,
statistics per row group, compression as configured (cuDF's writer has zstd, snappy and lz4 but
neither gzip nor compression levels: the config refuses those with this writer, and ``auto``
keeps pyarrow for them). The bytes differ from pyarrow's; the values do not (the manifest's
content digests say so, and ``shardsmith diff`` checks them).
"""

from __future__ import annotations

import io

from shardsmith.backends.gpu import columns as C

COMPRESSION = {"zstd": "ZSTD", "snappy": "snappy", "lz4": "LZ4", "none": None}


def parquet_bytes(frame, sink, schema) -> memoryview:
    """The Parquet file of ``frame`` (conformed to ``schema``) as cuDF writes it."""
    frame = _as_written(frame, schema)
    binary = {c.name for c in schema.columns if c.dtype == "binary"}
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False, compression=COMPRESSION[sink.compression],
                     row_group_size_rows=sink.row_group_rows, statistics="ROWGROUP",
                     output_as_binary=binary or None)
    return buf.getbuffer()


def _as_written(frame, schema):
    """The columns in schema order, each date column as a day timestamp over the same values."""
    frame = frame[[c.name for c in schema.columns]]
    for c in schema.columns:
        if c.dtype == "date":
            s = frame[c.name]
            nulls = int(s.null_count)
            mask = C.pack_bits(C.validity(s)) if nulls else None
            frame[c.name] = C.from_device(C.values(s), mask, nulls, type_id=C.T.TIMESTAMP_DAYS)
    return frame
