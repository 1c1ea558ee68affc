"""The GPU backend: cuDF DataFrames as frames, CuPy and our generated kernels for the arithmetic.

It has the CPU backend's interface (backends/cpu/__init__.py) and its exact meanings: a frame holds
the user columns plus the hidden ``__file`` / ``__row`` / ``__split`` columns, and every result is
bit-identical to the CPU engine's (floats within rounding of the math library's log1p). Frames
always keep cuDF's default RangeIndex (row operations reset it), so that no index ever reaches
the shards.

Physical forms on the device: a ``date`` column is int32 days (cuDF has no date type); ``binary``
is a cuDF string column over the same bytes; float16 is not supported by cuDF (a read that needs
one fails naming the column).
"""

from __future__ import annotations

import threading

import cudf
import cupy as cp
import numpy as np
import pyarrow as pa

from shardsmith import storage
from shardsmith.backends.base import FINITE_PARTIALS, TableBackend, assign_split
from shardsmith.backends.gpu import columns as C
from shardsmith.backends.gpu import digest, expr, impl, transfer, writer
from shardsmith.backends.gpu.lowering import LOWERINGS
from shardsmith.errors import InputError
from shardsmith.inputs.read import parquet_file, read_text
from shardsmith.inputs.rows import first_line
from shardsmith.ir import FILE_COL, ROW_COL, SPLIT_COL
from shardsmith.ir.dtypes import ARROW_TYPES
from shardsmith.kernels import gpu
from shardsmith.kernels.lookup import exact_keys
from shardsmith.ops import stats as S

_M64 = (1 << 64) - 1
_HASH_ENTRY = {C.T.INT8: "i8", C.T.INT16: "i16", C.T.INT32: "i32", C.T.INT64: "i64", C.T.UINT8: "u8",
               C.T.UINT16: "u16", C.T.UINT32: "u32", C.T.UINT64: "u64", C.T.BOOL8: "b8", C.T.FLOAT32: "f32",
               C.T.FLOAT64: "f64", C.T.TIMESTAMP_DAYS: "i32", C.T.TIMESTAMP_SECONDS: "ts_s",
               C.T.TIMESTAMP_MILLISECONDS: "ts_ms", C.T.TIMESTAMP_MICROSECONDS: "i64",
               C.T.TIMESTAMP_NANOSECONDS: "ts_ns"}  # timestamps by value: kernels/xxhash64.py


class GpuBackend(TableBackend):
    name = "gpu"
    xp = cp
    lowerings = LOWERINGS
    partials = {**FINITE_PARTIALS, S.ValueCounts: lambda be, stat, column: value_counts(column),
                S.KeyedMoments: lambda be, stat, frame, files: impl.keyed_moments(be, stat, frame, files)}

    def __init__(self):
        self._vocabularies: dict = {}  # id(vocabulary) -> (vocabulary, device form): see impl.categorify
        self._tables: dict = {}  # id(side table or per-key state) -> (table, cuDF frame): see impl.device_table
        # One partition's device work at a time per GPU. A GPU worker runs several threads so that
        # host work (shard writes) overlaps; their device work shares one stream, and each
        # device-to-host read synchronises it, so concurrent partitions convoy (seen on an H200:
        # a fit statistic took 55 s with 8 threads, 0.26 s alone).
        self._device_lock = threading.Lock()

    def exclusive(self):
        """A context in which this thread alone does device work (tasks/tasks.py takes it)."""
        return self._device_lock

    # --- reading ----------------------------------------------------------------------------------
    def read(self, part, source, split, ctx=None):
        """The partition's rows on the device with hidden columns and the split assigned; also the
        row count before the pushed-down filter (rows quarantined while reading included: into ``ctx``)."""
        columns = list(source.columns)
        dtypes = dict((c.name, c.dtype) for c in source.schema.columns)
        if any(dtypes.get(c) == "float16" for c in columns):
            bad = next(c for c in columns if dtypes.get(c) == "float16")
            raise InputError(f"column '{bad}' is float16, which cuDF (the GPU engine) cannot hold; "
                             "cast it in the data, or use engine=cpu", part.path)
        if source.format == "parquet":
            frame, rows = self._read_parquet(part, columns, source.storage_options)
            count = len(frame)
        else:  # text is parsed on the host, as on the CPU engine (same rows, same quarantine)
            got = read_text(part.path, source.format, dict(source.dtypes), columns, source.on_error,
                            source.storage_options)
            if got.quarantine is not None and ctx is not None:
                ctx.quarantined.append(got.quarantine)
            frame, rows, count = transfer.table_to_frame(got.table), cp.asarray(got.rows), got.count
        frame = _normalize(frame, {c: dtypes.get(c) for c in columns})
        n = len(frame)
        frame[FILE_COL] = C.from_device(cp.full(n, part.file_index, dtype=np.int32))
        frame[ROW_COL] = C.from_device(rows)
        dates = [c for c in columns if dtypes.get(c) == "date"]
        if source.filter is not None:
            frame = self.filter_mask(frame, expr.filter_mask(frame, source.filter, dates))
        frame[SPLIT_COL] = C.from_device(assign_split(self, frame, part.path, split, dates))
        return frame, count

    def _read_parquet(self, part, columns, storage_options=None):
        remote = {"storage_options": storage_options} if storage.is_url(part.path) else {}
        try:
            with parquet_file(part.path, storage_options) as pf:
                sizes = [pf.metadata.row_group(g).num_rows for g in part.row_groups]
            frame = cudf.read_parquet(storage.local(part.path), columns=columns, row_groups=[list(part.row_groups)],
                                      use_pandas_metadata=False, **remote)
        except (RuntimeError, OSError, ValueError, pa.ArrowException) as exc:
            raise InputError(f"cannot read row group(s) {list(part.row_groups)}: {first_line(exc)}", part.path) \
                from None
        pieces = [cp.arange(s, s + n, dtype=np.int64) for s, n in zip(part.row_starts, sizes)]
        rows = cp.concatenate(pieces) if pieces else cp.zeros(0, dtype=np.int64)
        return frame[columns].reset_index(drop=True), rows

    # --- hashing ----------------------------------------------------------------------------------
    def hash(self, series, seed) -> cp.ndarray:
        """The shardsmith hash of every value (uint64); ``seed`` an int or a per-row uint64 array."""
        n = len(series)
        out = cp.empty(n, dtype=np.uint64)
        seeds = seed if isinstance(seed, cp.ndarray) else None
        s = np.uint64(0 if seeds is not None else int(seed) & _M64)
        words, moff = C.mask_words(series)
        src = gpu.hash_source()
        if C.kind(series) == "string":
            offsets, chars = C.string_buffers(series)
            entry = "ss_hash_str32" if offsets.dtype == np.int32 else "ss_hash_str64"
            gpu.launch(src, entry, n, (offsets, chars, gpu.ptr(words), np.int64(moff), gpu.ptr(seeds), s, out,
                                       np.int64(n)))
        else:
            tid = C.plc_column(series).type().id()
            if tid not in _HASH_ENTRY:
                raise InputError(f"cannot hash a column of type {C.arrow_type(series)}", str(series.name))
            gpu.launch(src, f"ss_hash_{_HASH_ENTRY[tid]}", n, (C.values(series), gpu.ptr(words), np.int64(moff),
                                                               gpu.ptr(seeds), s, out, np.int64(n)))
        return out

    def buckets(self, h: cp.ndarray, num_buckets: int) -> cp.ndarray:
        """``h % num_buckets`` as int32 (int64 beyond 2**31 buckets), as kernels/xxhash64.to_buckets."""
        wide = num_buckets > 2**31
        out = cp.empty(len(h), dtype=np.int64 if wide else np.int32)
        gpu.launch(gpu.hash_source(), "ss_buckets_i64" if wide else "ss_buckets_i32", len(h),
                   (h, np.uint64(num_buckets), out, np.int64(len(h))))
        return out

    # --- statistics -------------------------------------------------------------------------------
    def finite_values(self, column) -> cp.ndarray:
        """The column's non-missing, finite values as float64 (booleans as 0 / 1)."""
        x = C.values(column).astype(np.float64)
        keep = cp.isfinite(x)
        words, _ = C.mask_words(column)
        if words is not None:
            keep &= C.validity(column)
        return x[keep]

    # --- frames -----------------------------------------------------------------------------------
    def reuse(self, frame):
        """A kept partition for one more pass: lowerings set columns in place (impl.set_columns),
        so a shallow copy, whose new columns leave the kept frame's untouched."""
        return frame.copy(deep=False)

    def num_rows(self, frame) -> int:
        return len(frame)

    def filter_mask(self, frame, mask):
        mask = mask if isinstance(mask, cp.ndarray) else transfer.to_device(np.asarray(mask, dtype=bool))
        return frame[C.from_device(mask.astype(bool, copy=False))].reset_index(drop=True)

    def predicate_mask(self, frame, node) -> cp.ndarray:
        """True where the predicate ``node`` is true (the CPU engine's exact meaning: gpu/expr.py)."""
        return expr.keep_mask(node, expr.CudfColumns(frame))

    def split_ids(self, frame) -> cp.ndarray:
        return C.values(frame[SPLIT_COL])

    def select(self, frame, names):
        return frame[list(names)]

    def concat(self, frames):
        frames = list(frames)
        return cudf.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def slice(self, frame, start: int, stop: int):
        return frame.iloc[start:stop].reset_index(drop=True)

    def to_arrow(self, frame, schema=None) -> pa.Table:
        """The frame on the host as an Arrow table; with ``schema`` (the planned output schema), in
        exactly the types the CPU engine writes, so that the shards are byte-identical."""
        table = frame.to_arrow(preserve_index=False).replace_schema_metadata(None)
        if schema is not None:
            fields = [pa.field(c.name, ARROW_TYPES.get(c.dtype, _plain_type(table.schema.field(c.name).type)))
                      for c in schema.columns]
            table = table.select([c.name for c in schema.columns])
            table = pa.table([_arrow_cast(table[f.name], f.type) for f in fields], schema=pa.schema(fields))
        return table.combine_chunks()

    def content_digests(self, frame, schema) -> dict[str, int]:
        """The content digest (kernels/digest.py) of every output column, computed on the device."""
        return digest.frame_digests(frame, schema)

    def parquet_bytes(self, frame, sink, schema) -> memoryview:
        """The shard as a Parquet file encoded by cuDF from device memory (output.writer: cudf)."""
        return writer.parquet_bytes(frame, sink, schema)

    def expr_columns(self, frame, dates=()):
        """The frame as the expression evaluator sees it (backends/evaluate.py)."""
        return expr.CudfColumns(frame, dates)

    def conform(self, frame, schema):
        """The output columns in the planned order and dtypes (dates stay int32 days until to_arrow)."""
        frame = frame[[c.name for c in schema.columns]]
        casts = {}
        for c in schema.columns:
            want = ARROW_TYPES.get(c.dtype)
            if want is None or c.dtype in ("string", "binary", "date"):
                continue
            have = C.arrow_type(frame[c.name])
            if have != want and not (pa.types.is_timestamp(have) and c.dtype == "timestamp"):
                casts[c.name] = np.dtype(want.to_pandas_dtype()) if c.dtype != "bool" else np.bool_
        return frame.astype(casts) if casts else frame


def _plain_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_large_string(t) or t == pa.string_view():
        return pa.string()
    return t


def _arrow_cast(col, target: pa.DataType):
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if col.type == target:
        return col
    if pa.types.is_date32(target) and pa.types.is_integer(col.type):
        return col.cast(pa.int32()).view(pa.date32())
    if pa.types.is_binary(target) and (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return col.cast(pa.string()).view(pa.binary())
    return col.cast(target)


def _normalize(frame, dtypes: dict):
    """One physical form per dtype: categoricals decoded, dates as int32 days."""
    for name in list(frame.columns):
        s = frame[name]
        if isinstance(s.dtype, cudf.CategoricalDtype):
            frame[name] = s.astype(s.dtype.categories.dtype)
        elif dtypes.get(name) == "date" and C.plc_column(s).type().id() != C.T.INT32:
            days = (C.values(s).astype(np.int64) // _unit_per_day(C.plc_column(s).type().id())).astype(np.int32)
            words, off = C.mask_words(s)
            frame[name] = C.from_values(days, None if words is None else C.validity(s))
    return frame


def _unit_per_day(tid) -> int:
    return {C.T.TIMESTAMP_SECONDS: 86400, C.T.TIMESTAMP_MILLISECONDS: 86_400_000,
            C.T.TIMESTAMP_MICROSECONDS: 86_400_000_000, C.T.TIMESTAMP_NANOSECONDS: 86_400_000_000_000,
            C.T.TIMESTAMP_DAYS: 1}[tid]


def value_counts(column):
    """The ValueCounts partial: (distinct non-null values in the Arrow type the CPU engine gives,
    their counts, the null count). Floats are told apart by their bits, as Arrow does."""

    kind = C.kind(column)
    target = C.arrow_type(column)
    series = column
    if kind in ("float", "bool"):  # count exact keys (bit patterns; bytes for booleans)
        words, _ = C.mask_words(column)
        series = C.from_values(exact_keys(C.values(column)), None if words is None else C.validity(column))
    vc = cudf.DataFrame({"v": series}).groupby("v", dropna=True, sort=False).size()
    counts = vc.to_numpy().astype(np.int64)
    keys = vc.index.to_arrow()
    if kind == "float":
        values = pa.array(keys.to_numpy(zero_copy_only=False).view(target.to_pandas_dtype()), type=target)
    elif kind == "bool":
        values = pa.array(keys.to_numpy(zero_copy_only=False) != 0, type=pa.bool_())
    else:
        values = _arrow_cast(keys, _plain_type(target))
        if pa.types.is_integer(values.type):  # as the CPU engine: NumPy values merge without Arrow's group-by
            values = values.to_numpy(zero_copy_only=False)
    return values, counts, int(column.null_count)
