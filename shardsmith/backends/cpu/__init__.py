"""The CPU backend: pyarrow tables as frames, NumPy for arithmetic, pyarrow compute for strings,
hash tables and filters. The only place (with backends/gpu) that computes on data."""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shardsmith.backends.base import FILE_COL, ROW_COL, SPLIT_COL, Lowerings
from shardsmith.backends.cpu.expr import to_arrow_expression
from shardsmith.compiler.sources import ARROW_TYPES, open_text
from shardsmith.kernels import cpujit, exact
from shardsmith.kernels import xxhash64 as xx
from shardsmith.ops import stats as S

LOWERINGS = Lowerings("cpu")


class CpuBackend:
    name = "cpu"
    xp = np
    lowerings = LOWERINGS

    def __init__(self, cpu_kernels: str = "numpy"):
        # numpy, numba or auto (kernels/cpujit.py): where the hash and fused groups may run compiled.
        self.kernels = cpujit.mode(cpu_kernels)

    # --- reading ----------------------------------------------------------------------------------
    def read(self, part, source, split) -> tuple[pa.Table, int]:
        """The partition's rows with hidden columns and the split assigned; also the row count
        before the pushed-down filter."""
        if self.kernels != "numpy":
            compiled.warm()  # the split's kernels build while this partition decodes
        columns = list(source.columns)
        if source.format == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(part.path)
            table = pf.read_row_groups(list(part.row_groups), columns=columns, use_threads=True)
            rows = np.concatenate([np.arange(s, s + pf.metadata.row_group(g).num_rows, dtype=np.int64)
                                   for g, s in zip(part.row_groups, part.row_starts)] or [np.zeros(0, np.int64)])
        else:
            table = open_text(part.path, source.format, dict(source.dtypes)).read_all().select(columns)
            rows = np.arange(table.num_rows, dtype=np.int64)
        table = _normalize_types(table)
        n = table.num_rows
        table = table.append_column(FILE_COL, pa.array(np.full(n, part.file_index, dtype=np.int32)))
        table = table.append_column(ROW_COL, pa.array(rows))
        table = table.append_column(SPLIT_COL, pa.array(self.assign_split(table, part.path, split)))
        if source.filter is not None:
            table = table.filter(to_arrow_expression(source.filter))
        return table, n

    def assign_split(self, table: pa.Table, path: str, split) -> np.ndarray:
        """Split index per row: the hash of the key (or of the row in its file) against thresholds."""
        if split.key is not None:
            h = self.hash(table[split.key], split.seed)
        else:
            file_seed = xx.xxh64_bytes(os.path.basename(path).encode(), split.seed)
            h = self.hash(table[ROW_COL], file_seed)  # int64 row numbers: the words hashed are their bits
        if self.kernels != "numpy":
            ids = compiled.split_ids(self.kernels, h, split.thresholds)
            if ids is not None:
                return ids
        u = xx.to_unit53(h)
        return np.searchsorted(np.asarray(split.thresholds, dtype=np.int64), u, side="right").astype(np.int8)

    # --- hashing ----------------------------------------------------------------------------------
    def hash(self, column, seed) -> np.ndarray:
        """The shardsmith hash (kernels/xxhash64.py) of every value; ``seed`` scalar or per row."""
        if self.kernels != "numpy":
            h = compiled.hash_column(self.kernels, column, seed)
            if h is not None:
                return h
        arr = _plain(column)
        t = arr.type
        large = pa.types.is_large_string(t) or pa.types.is_large_binary(t)
        if pa.types.is_string(t) or pa.types.is_binary(t) or large:
            odt = np.int64 if large else np.int32
            offsets = np.frombuffer(arr.buffers()[1], dtype=odt)[arr.offset : arr.offset + len(arr) + 1]
            buf = arr.buffers()[2]
            data = np.frombuffer(buf, dtype=np.uint8) if buf is not None else np.zeros(0, np.uint8)
            h = xx.xxh64_strings(offsets, data, seed)
        elif pa.types.is_floating(t):
            h = xx.xxh64_u64(xx.float_words(arr.fill_null(0).to_numpy(zero_copy_only=False)), seed)
        else:
            h = xx.xxh64_u64(xx.int_words(_int_values(arr)), seed)
        if arr.null_count:
            nulls = np.asarray(arr.is_null())
            seeds = seed[nulls] if np.ndim(seed) else seed
            h[nulls] = xx.null_hash(seeds)
        return h

    # --- statistics -------------------------------------------------------------------------------
    def partial(self, stat, column):
        if isinstance(stat, S.ValueCounts):
            arr = _plain(column)
            present = arr.drop_null() if arr.null_count else arr
            if is_numpy_friendly(arr.type):  # a sort-free hash unique in NumPy beats Arrow's here
                values, counts = np.unique(present.to_numpy(zero_copy_only=False), return_counts=True)
                return (values, counts.astype(np.int64), arr.null_count)
            vc = pc.value_counts(present)
            return (vc.field("values"), vc.field("counts").to_numpy().astype(np.int64), arr.null_count)
        x = finite_values(column)
        if isinstance(stat, S.Moments):
            return S.moments_partial(x)
        if isinstance(stat, S.MinMax):
            return S.minmax_partial(x)
        if isinstance(stat, S.Quantiles):
            return exact.histogram(x, stat.bits)
        raise NotImplementedError(f"statistic {type(stat).__name__} on the cpu backend")

    def exclusive(self):
        """No device to share: tasks run side by side."""
        return contextlib.nullcontext()

    def finite_values(self, column) -> np.ndarray:
        return finite_values(column)

    # --- frames -----------------------------------------------------------------------------------
    def num_rows(self, frame) -> int:
        return frame.num_rows

    def nbytes(self, frame) -> int:
        """Bytes of the frame's buffers (profiling: bytes in and out of a stage); O(columns)."""
        return frame.get_total_buffer_size()

    def filter_mask(self, frame, mask: np.ndarray):
        return frame.filter(pa.array(mask))

    def split_ids(self, frame) -> np.ndarray:
        return frame[SPLIT_COL].to_numpy()

    def select(self, frame, names):
        return frame.select(list(names))

    def empty_like(self, frame):
        return frame.slice(0, 0)

    def concat(self, frames):
        frames = list(frames)
        return pa.concat_tables(frames).combine_chunks() if len(frames) > 1 else frames[0].combine_chunks()

    def slice(self, frame, start: int, stop: int):
        return frame.slice(start, stop - start)

    def to_arrow(self, frame, schema=None) -> pa.Table:
        """The frame as an Arrow table: already one here (``conform`` gave it the schema's types)."""
        return frame

    def conform(self, frame, schema):
        """Cast the output columns to the planned dtypes (an empty partition infers nothing)."""
        fields = [pa.field(c.name, ARROW_TYPES.get(c.dtype, frame.schema.field(c.name).type)) for c in schema.columns]
        return frame.select([c.name for c in schema.columns]).cast(pa.schema(fields))


def is_numpy_friendly(t: pa.DataType) -> bool:
    """Integer and boolean types, whose values NumPy holds exactly and hashes fast."""
    return pa.types.is_integer(t) or pa.types.is_boolean(t)


def _normalize_types(table: pa.Table) -> pa.Table:
    """Dictionary and view columns become plain ones: one physical layout per dtype."""
    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type):
            table = table.set_column(i, f.name, table[f.name].cast(f.type.value_type))
        elif f.type == pa.string_view() or f.type == pa.large_string():
            table = table.set_column(i, f.name, table[f.name].cast(pa.string()))
    return table


def _plain(column) -> pa.Array:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return arr


def _int_values(arr: pa.Array) -> np.ndarray:
    t = arr.type
    if pa.types.is_boolean(t):
        return arr.fill_null(False).to_numpy(zero_copy_only=False).astype(np.int64)
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        arr = arr.cast(pa.int64() if pa.types.is_timestamp(t) else pa.int32())
    return arr.fill_null(0).to_numpy(zero_copy_only=False)


def float_values(column) -> np.ndarray:
    """float64 values with NaN for null (and NaN kept): the elementwise view of a column."""
    arr = _plain(column)
    if pa.types.is_boolean(arr.type):
        arr = arr.cast(pa.int8())
    if arr.null_count == 0:
        return arr.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    # Unsafe: integers beyond 2**53 round to nearest, as NumPy's astype does without nulls
    # (Arrow's safe cast refuses them).
    return arr.cast(pa.float64(), safe=False).fill_null(np.nan).to_numpy(zero_copy_only=False)


def finite_values(column) -> np.ndarray:
    x = float_values(column)
    return x[np.isfinite(x)]


def from_float(values: np.ndarray, dtype: str) -> pa.Array:
    """An Arrow array of ``dtype`` from float64 values, NaN becoming null."""
    missing = np.isnan(values)
    target = ARROW_TYPES[dtype]
    if dtype.startswith(("int", "uint")) or dtype == "bool":
        values = np.where(missing, 0, values).astype(target.to_pandas_dtype())
    else:
        values = values.astype(target.to_pandas_dtype())
    return pa.array(values, mask=missing if missing.any() else None, type=target)


from shardsmith.backends.cpu import compiled, lowering  # noqa: E402,F401  (lowering registers the CPU lowerings)
