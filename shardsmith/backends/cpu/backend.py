"""The CPU backend: pyarrow tables as frames, NumPy for arithmetic, pyarrow compute for strings,
hash tables and filters. The only place (with backends/gpu) that computes on data."""

from __future__ import annotations

import contextlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shardsmith.backends.arrow import one_array, table_digests
from shardsmith.backends.base import FINITE_PARTIALS, TableBackend, assign_split, fold_ids
from shardsmith.backends.cpu import arrays, compiled
from shardsmith.backends.cpu.expr import ArrowColumns, filter_mask
from shardsmith.backends.cpu.lowering import LOWERINGS
from shardsmith.inputs.read import read_parquet, read_text
from shardsmith.ir import FILE_COL, ROW_COL, SPLIT_COL
from shardsmith.ir.dtypes import ARROW_TYPES
from shardsmith.kernels import cpujit
from shardsmith.kernels import xxhash64 as xx
from shardsmith.ops import stats as S
from shardsmith.ops.joins import canonical_key


def set_threads(n: int) -> None:
    """Arrow's thread pool: the worker's own share of the cores, not the whole machine."""
    pa.set_cpu_count(n)


def value_counts(be, stat, column):
    """The ValueCounts partial: (distinct non-null values, their counts, the null count)."""
    arr = arrays.plain(column)
    present = arr.drop_null() if arr.null_count else arr
    if arrays.is_numpy_friendly(arr.type):  # a sort-free hash unique in NumPy beats Arrow's here
        values, counts = np.unique(present.to_numpy(zero_copy_only=False), return_counts=True)
        return (values, counts.astype(np.int64, copy=False), arr.null_count)
    vc = pc.value_counts(present)
    return (vc.field("values"), vc.field("counts").to_numpy().astype(np.int64), arr.null_count)


def keyed_moments(be, stat, frame, files):
    """The KeyedMoments partial (ops/stats.py): canonical keys (and folds) and float64 values."""
    groups = {f"{S.KEY}{i}": canonical_key(frame[k]) for i, k in enumerate(stat.keys)}
    if stat.folds:
        groups[S.FOLD] = fold_ids(be, frame, files, stat.seed, stat.folds)
    values = {v: arrays.float_values(frame[v]) for v in stat.values}
    return S.keyed_partial_tables(stat, groups, frame.num_rows, values)


class CpuBackend(TableBackend):
    name = "cpu"
    xp = np
    lowerings = LOWERINGS
    partials = {**FINITE_PARTIALS, S.ValueCounts: value_counts, S.KeyedMoments: keyed_moments}

    def __init__(self, cpu_kernels: str = "numpy"):
        # numpy, numba or auto (kernels/cpujit.py): where the hash and fused groups may run compiled.
        self.kernels = cpujit.mode(cpu_kernels)

    # --- reading ----------------------------------------------------------------------------------
    def read(self, part, source, split, ctx=None) -> tuple[pa.Table, int]:
        """The partition's rows with hidden columns and the split assigned; also the row count
        before the pushed-down filter (rows quarantined while reading included: into ``ctx``)."""
        if self.kernels != "numpy":
            compiled.warm()  # the split's kernels build while this partition decodes
        columns = list(source.columns)
        if source.format == "parquet":
            got = read_parquet(part.path, part.row_groups, part.row_starts, columns, source.on_error,
                               source.storage_options)
        else:
            got = read_text(part.path, source.format, dict(source.dtypes), columns, source.on_error,
                            source.storage_options)
        if got.quarantine is not None and ctx is not None:
            ctx.quarantined.append(got.quarantine)
        table = arrays.normalize_types(got.table)
        n = table.num_rows
        table = table.append_column(FILE_COL, pa.array(np.full(n, part.file_index, dtype=np.int32)))
        table = table.append_column(ROW_COL, pa.array(got.rows))
        if source.filter is not None:
            table = table.filter(pa.array(filter_mask(table, source.filter)))
        return table.append_column(SPLIT_COL, pa.array(assign_split(self, table, part.path, split))), got.count

    # --- hashing ----------------------------------------------------------------------------------
    def hash(self, column, seed) -> np.ndarray:
        """The shardsmith hash (kernels/xxhash64.py) of every value; ``seed`` scalar or per row."""
        if self.kernels != "numpy":
            h = compiled.hash_column(self.kernels, column, seed)
            if h is not None:
                return h
        arr = arrays.plain(column)
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
            h = xx.xxh64_u64(xx.int_words(arrays.int_values(arr)), seed)
        if arr.null_count:
            nulls = np.asarray(arr.is_null())
            seeds = seed[nulls] if np.ndim(seed) else seed
            h[nulls] = xx.null_hash(seeds)
        return h

    def split_index(self, h, thresholds) -> np.ndarray:
        ids = compiled.split_ids(self.kernels, h, thresholds) if self.kernels != "numpy" else None
        return ids if ids is not None else super().split_index(h, thresholds)

    def exclusive(self):
        """No device to share: tasks run side by side."""
        return contextlib.nullcontext()

    def finite_values(self, column) -> np.ndarray:
        return arrays.finite_values(column)

    # --- frames -----------------------------------------------------------------------------------
    def reuse(self, frame):
        """A kept partition for one more pass: Arrow tables are immutable, so the table itself."""
        return frame

    def num_rows(self, frame) -> int:
        return frame.num_rows

    def nbytes(self, frame) -> int:
        """Bytes of the frame's buffers (profiling: bytes in and out of a stage); O(columns)."""
        return frame.get_total_buffer_size()

    def filter_mask(self, frame, mask: np.ndarray):
        return frame.filter(pa.array(mask))

    def predicate_mask(self, frame, node) -> np.ndarray:
        """True where the predicate ``node`` (ir/expr.py) is true; false where false or missing
        (the rows ``filter`` would keep)."""
        return filter_mask(frame, node)

    def split_ids(self, frame) -> np.ndarray:
        return frame[SPLIT_COL].to_numpy()

    def select(self, frame, names):
        return frame.select(list(names))

    def concat(self, frames):
        """One table of one chunk per column at offset 0 (a shard's rows as its writer has always
        had them), copied only where a column has several chunks or starts inside its buffers."""
        frames = list(frames)
        table = pa.concat_tables(frames) if len(frames) > 1 else frames[0]
        whole = [c.num_chunks == 1 and c.chunk(0).offset == 0 for c in table.columns]
        columns = [one_array(c) if w else c.combine_chunks() for c, w in zip(table.columns, whole)]
        return pa.Table.from_arrays(columns, schema=table.schema)

    def slice(self, frame, start: int, stop: int):
        return frame.slice(start, stop - start)

    def to_arrow(self, frame, schema=None) -> pa.Table:
        """The frame as an Arrow table: already one here (``conform`` gave it the schema's types)."""
        return frame

    def content_digests(self, frame, schema) -> dict[str, int]:
        """The content digest (kernels/digest.py) of every output column, from its Arrow buffers."""
        return table_digests(frame.select([c.name for c in schema.columns]), {c.name: c.dtype for c in schema.columns})

    def expr_columns(self, frame, dates=()):
        """The frame as the expression evaluator sees it (backends/evaluate.py)."""
        return ArrowColumns(frame)

    def conform(self, frame, schema):
        """Cast the output columns to the planned dtypes (an empty partition infers nothing)."""
        fields = [pa.field(c.name, ARROW_TYPES.get(c.dtype, frame.schema.field(c.name).type)) for c in schema.columns]
        out, want = frame.select([c.name for c in schema.columns]), pa.schema(fields)
        return out if out.schema.equals(want, check_metadata=True) else out.cast(want)  # a cast per column costs
