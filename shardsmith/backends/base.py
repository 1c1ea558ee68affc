"""What a backend is (the :class:`Backend` protocol), and the tables by which ops and statistics
are lowered to one: no ``isinstance`` chains. A frame is the backend's table type (pyarrow.Table
on CPU, cudf.DataFrame on GPU) holding the user columns plus the hidden columns (ir/schema.py).

Written once here for every backend: the split assignment (the row hash against the split's
thresholds), the statistics whose partials are the same array code on any array module (moments,
min/max, quantile histograms over the finite values), and the per-partition task context.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from shardsmith.backends.evaluate import evaluate, full, missing
from shardsmith.errors import InputError, PlanError
from shardsmith.inputs.rows import quarantine_table
from shardsmith.ir import FILE_COL, ROW_COL, Schema, Source, Split
from shardsmith.ir import Column as SchemaColumn
from shardsmith.ir.expr import Col, Expr
from shardsmith.kernels import exact
from shardsmith.kernels import xxhash64 as xx
from shardsmith.ops import stats as S

Frame = Any  # the backend's table type
Column = Any  # a column of a frame (pyarrow ChunkedArray, cudf Series)


class Backend(Protocol):
    """The interface every backend implements (backends/cpu, backends/gpu)."""

    name: str
    xp: Any  # the array module: numpy or cupy
    lowerings: Lowerings  # op class -> lowering
    partials: dict[type, Callable]  # statistic class -> fn(backend, stat, column) -> partial

    def exclusive(self) -> AbstractContextManager: ...  # held by a task while it uses the device
    def read(self, part, source: Source, split: Split, ctx=None) -> tuple[Frame, int]: ...  # ctx: TaskContext
    def hash(self, column: Column, seed) -> Any: ...  # the shardsmith hash (kernels/xxhash64.py)
    def finite_values(self, column: Column) -> Any: ...  # non-missing, finite: float64 (or float32 as stored)
    def reuse(self, frame: Frame) -> Frame: ...  # a kept frame as a task may change it, the kept one unchanged
    def num_rows(self, frame: Frame) -> int: ...
    def nbytes(self, frame: Frame) -> int: ...
    def filter_mask(self, frame: Frame, mask) -> Frame: ...
    def predicate_mask(self, frame: Frame, node) -> Any: ...  # true where an ir/expr.py predicate is true
    def split_ids(self, frame: Frame) -> Any: ...
    def select(self, frame: Frame, names) -> Frame: ...
    def concat(self, frames) -> Frame: ...
    def slice(self, frame: Frame, start: int, stop: int) -> Frame: ...
    def conform(self, frame: Frame, schema: Schema) -> Frame: ...  # the output columns in planned dtypes
    def partial(self, stat: S.Stat, column: Column) -> Any: ...  # by its partials table (TableBackend)
    def split_index(self, h, thresholds) -> Any: ...  # see TableBackend
    def to_arrow(self, frame: Frame, schema: Schema | None = None) -> pa.Table: ...
    def content_digests(self, frame: Frame, schema: Schema) -> dict[str, int]: ...  # kernels/digest.py
    def expr_columns(self, frame: Frame, dates=()) -> Any: ...  # the frame seen by backends/evaluate.py


# --- lowerings ------------------------------------------------------------------------------------
TABLES: dict[str, Lowerings] = {}


class Lowerings:
    """op class -> function(backend, step, frame, state, ctx) -> frame, found along the op's MRO so
    that a subclass of a lowered op (a user's variant) runs without registering again."""

    def __init__(self, backend_name: str):
        self.backend_name = backend_name
        self.table: dict[type, Callable] = {}
        self.notes: dict[type, Callable] = {}

    def register(self, *op_classes, note: Callable | None = None):
        """``note(op, schema_in) -> str | None``: what a plan should say about how this backend runs
        the op (e.g. a part that runs on the host); ``shardsmith plan`` prints it."""

        def deco(fn):
            for cls in op_classes:
                self.table[cls] = fn
                if note is not None:
                    self.notes[cls] = note
            return fn

        return deco

    def note(self, op, schema_in) -> str | None:
        for cls in type(op).__mro__:
            if cls in self.notes:
                return self.notes[cls](op, schema_in)
            if cls in self.table:
                return None
        return None

    def find(self, op) -> Callable | None:
        return lookup(self.table, type(op))

    def require(self, op, key: str) -> Callable:
        fn = self.find(op)
        if fn is None:
            raise PlanError(f"op '{op.op_name}' has no lowering for the {self.backend_name} backend", key)
        return fn


def lowerings_table(backend: str) -> Lowerings:
    """The lowering table of ``backend`` (made on first use, so that user modules may register
    into it before or after the backend itself is imported)."""
    if backend not in TABLES:
        TABLES[backend] = Lowerings(backend)
    return TABLES[backend]


def register_lowering(backend: str, *op_classes):
    """Decorator for user ops: ``@register_lowering("cpu", MyOp)`` on ``fn(be, step, frame, state, ctx)``."""
    return lowerings_table(backend).register(*op_classes)


def lookup(table: dict[type, Any], cls: type):
    """The entry of ``cls`` or of its nearest base class in ``table``; None when none has one."""
    for c in cls.__mro__:
        if c in table:
            return table[c]
    return None


# --- statistics -----------------------------------------------------------------------------------
def partial(be: Backend, stat: S.Stat, column: Column, files=()):
    """The partial of ``stat`` over ``column`` on backend ``be`` (its ``partials`` table); a frame
    statistic gets a frame of its inputs and the input files: ``fn(be, stat, frame, files)``."""
    fn = lookup(be.partials, type(stat))
    if fn is None:
        raise PlanError(f"statistic {type(stat).__name__} has no partial on the {be.name} backend", stat.col)
    return fn(be, stat, column, files) if stat.frame_stat else fn(be, stat, column)


class TableBackend:
    """A backend base class with its statistics by lookup in its ``partials`` table."""

    partials: dict[type, Callable] = {}

    def partial(self, stat: S.Stat, column: Column, files=()):
        return partial(self, stat, column, files)

    def split_index(self, h, thresholds) -> Any:
        """Each hash's split (int8): the number of ``thresholds`` <= its top 53 bits (the unit
        fraction scaled to 2**53). A backend may run the same rule compiled."""
        u = (h >> np.uint64(11)).astype(np.int64)
        return self.xp.searchsorted(self.xp.asarray(np.asarray(thresholds, dtype=np.int64)), u,
                                    side="right").astype(np.int8)


def rows_partial(be: Backend, stat: S.RowsSnapshot, frame: Frame, files) -> pa.Table | None:
    """The RowsSnapshot partial: the columns on the host, in the planned types."""
    if be.num_rows(frame) == 0:
        return None
    schema = Schema((*(SchemaColumn(c, d) for c, d in zip(stat.cols, stat.dtypes)),
                     SchemaColumn(FILE_COL, "int32"), SchemaColumn(ROW_COL, "int64")))
    return be.to_arrow(frame, schema)


# The statistics of the finite values, as array code that NumPy and CuPy run alike.
FINITE_PARTIALS: dict[type, Callable] = {
    S.Moments: lambda be, stat, col: S.moments_partial(be.finite_values(col), be.xp),
    S.MinMax: lambda be, stat, col: S.minmax_partial(be.finite_values(col), be.xp),
    S.Quantiles: lambda be, stat, col: exact.histogram(be.finite_values(col), stat.bits, be.xp),
    S.RowsSnapshot: rows_partial,
}


def fold_ids(be: Backend, frame: Frame, files, seed: int, folds: int):
    """The fold (0 .. folds - 1) of each row of ``frame``, an xp int64 array: the shardsmith hash of
    the row number under a seed from its file's name (ops/stats.py FOLD_SALT), modulo ``folds``. A
    function of the row alone, so folds do not depend on partitioning or engine."""
    file_seeds = np.array([xx.xxh64_bytes(os.path.basename(f).encode(), seed ^ S.FOLD_SALT) for f in files],
                          dtype=np.uint64)
    file_index = be.expr_columns(frame).column(FILE_COL).data
    seeds = be.xp.asarray(file_seeds)[file_index]
    h = be.hash(frame[ROW_COL], seeds)
    return (h % np.uint64(folds)).astype(np.int64)


# --- splits ---------------------------------------------------------------------------------------
UNASSIGNED = -1  # the split id of a row whose key is null (or unlisted) when split.default is unset


def assign_split(be: Backend, frame: Frame, path: str, split: Split, dates=()):
    """Split index per row (int8), by the split's mode (ir/graph.py ``Split``):

    * hash: the hash of the key (or of the row number, seeded by the file's name) as a fraction in
      [0, 1) scaled to 2**53, against the cumulative thresholds;
    * time: the number of cuts at or below the key's value (its canonical form: ints, floats,
      dates as days, timestamps as microseconds, so the stored unit does not matter);
    * column: the split whose listed values hold the key's value.

    A null (or NaN) key, or a value no split lists, gets ``split.default`` or UNASSIGNED.
    ``dates``: the columns that hold dates (the GPU engine keeps them as int32 days)."""
    xp = be.xp
    if split.by == "hash":
        if split.key is not None:
            h = be.hash(frame[split.key], split.seed)
        else:
            h = be.hash(frame[ROW_COL], xx.xxh64_bytes(os.path.basename(path).encode(), split.seed))
        return be.split_index(h, split.thresholds)
    cols = be.expr_columns(frame, dates)
    if split.by == "time":
        v = cols.column(split.key)
        cuts = xp.asarray(np.asarray(split.cuts, dtype=np.float64 if v.kind == "float" else np.int64))
        ids = xp.searchsorted(cuts, full(cols, v.data, cuts.dtype), side="right").astype(np.int8)
        unassigned = missing(v, cols)
    else:
        ids = xp.full(cols.num_rows, UNASSIGNED, dtype=np.int8)
        for i, values in enumerate(split.values):
            hit = evaluate(Expr("is_in", (Col(split.key), values)), cols)
            ids = xp.where(hit.data & (True if hit.valid is None else hit.valid), np.int8(i), ids)
        unassigned = ids == UNASSIGNED
    fill = UNASSIGNED if split.default is None else split.default
    return xp.where(unassigned, np.int8(fill), ids).astype(np.int8)


def unassigned_error(be: Backend, frame: Frame, split: Split, ids, files) -> InputError:
    """The error for the first output row that no split takes (time / column split, no default)."""
    i = int(np.flatnonzero(np.asarray(_host_array(ids)) == UNASSIGNED)[0])
    one = be.slice(frame, i, i + 1)
    row = int(np.asarray(_host(one[ROW_COL]))[0])
    path = files[int(np.asarray(_host(one[FILE_COL]))[0])]
    try:
        value = be.to_arrow(be.select(one, [split.key]))[split.key][0].as_py()
    except KeyError:  # a later step dropped the key column: say what it can have been
        what = "is null" + (" or not listed in split.values" if split.by == "column" else "")
    else:
        what = "is null" if value is None or value != value else \
            f"is {value!r}, which split.values does not list" if split.by == "column" else "is NaN"
    return InputError(f"split.key '{split.key}' {what} in row {row}; set split.default to name the split for "
                      "such rows (or filter them out)", path)


def _host_array(a):
    return a.get() if hasattr(a, "get") else a


# --- the task context -----------------------------------------------------------------------------
@dataclass
class TaskContext:
    """Per-partition bookkeeping that lowerings report into: the input file paths (to name them in
    errors) and the rows sent to quarantine, as Arrow tables of inputs/rows.QUARANTINE_COLUMNS."""

    partition: int
    files: tuple[str, ...] = ()
    quarantined: list = field(default_factory=list)
    float_mode: str = "exact"  # the generated kernels' arithmetic (engine.float_mode; kernels/codegen.py)
    # An executor on which a lowering may run its independent columns' kernels side by side (the
    # compiled ones release the GIL): serving sets it (shardsmith/serve.py); tasks have the cores'
    # other tasks instead.
    column_pool: object = None

    def quarantine(self, frame, mask, step_key: str, column: str, values: list[str], reason: str) -> None:
        """Record the rows of ``frame`` selected by the host boolean ``mask``."""
        idx = np.flatnonzero(mask)
        files = np.asarray(_host(frame[FILE_COL]))[idx]
        rows = np.asarray(_host(frame[ROW_COL]))[idx]
        self.quarantined.append(quarantine_table([self.files[int(f)] for f in files], rows, step_key, column,
                                                 values, reason))

    @property
    def quarantined_rows(self) -> int:
        return sum(t.num_rows for t in self.quarantined)


def _host(column):
    """A column's values on the host, whatever the backend's column type."""
    if hasattr(column, "to_numpy"):
        try:
            return column.to_numpy()
        except TypeError:
            pass
    if hasattr(column, "values_host"):
        return column.values_host
    return column


# --- lookups of fitted per-key and per-row state (target_encode, groupby_features, lag) ------------
def target_encode_columns(be: Backend, op, frame: Frame, state: dict, files, lookup) -> dict:
    """target_encode's output arrays (xp float64) by name; ``lookup(col, table)`` gives the rows'
    matches in a state table (-1: none) and a function from a table column's name to its xp array."""
    xp = be.xp
    folds = fold_ids(be, frame, files, op.seed, op.folds)
    ids = be.split_ids(frame)
    out = {}
    for c, o in op.pairs():
        st = state[c]
        j, array = lookup(c, st["table"])
        # Fitted on every split: every row of the dataset was fitted on; a served row (split -1) was not.
        fit_rows = ids == st["fit_split"] if st["fit_split"] >= 0 else ids >= 0
        enc_folds = xp.stack([array(f"enc_{f}") for f in range(op.folds)], axis=1)
        priors = xp.asarray(np.asarray(st["priors"], dtype=np.float64))
        out[o] = target_encoded(xp, j, folds, fit_rows, array("enc"), enc_folds, st["prior"], priors)
    return out


def target_encoded(xp, j, folds, fit_rows, enc, enc_folds, prior: float, priors):
    """target_encode's value per row (ops/keyed.py): the out-of-fold encoding of the row's fold for
    rows of the fitted split, the full one for the others; the prior(s) where the key is unseen
    (``j`` -1). ``enc`` is (keys,), ``enc_folds`` (keys, folds), all xp arrays."""
    matched = j >= 0
    if enc.shape[0] == 0:  # no key was fitted: every row gets a prior (and indexing needs a row)
        enc, enc_folds = xp.zeros(1), xp.zeros((1, enc_folds.shape[1]))
    jj = xp.where(matched, j, 0)
    in_fold = xp.where(matched, enc_folds[jj, folds], priors[folds])
    full = xp.where(matched, enc[jj], prior)
    return xp.where(fit_rows, in_fold, full)


def row_positions(xp, at, files, rows):
    """The position in ``at`` (sorted ``file << 40 | row`` keys of a per-row state: ops/lag.py) of
    each row (its file index and row number), or -1."""
    key = (files.astype(np.int64) << np.int64(40)) | rows.astype(np.int64)
    if len(at) == 0:
        return xp.full(len(key), -1, dtype=np.int64)
    j = xp.minimum(xp.searchsorted(at, key), len(at) - 1)
    return xp.where(at[j] == key, j, -1)
