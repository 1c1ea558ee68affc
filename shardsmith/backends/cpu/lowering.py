"""CPU lowerings: one function per op family, registered in the backend's table."""

from __future__ import annotations

import functools
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shardsmith.backends.arrow import cast_each
from shardsmith.backends.base import lowerings_table, row_positions, target_encode_columns
from shardsmith.backends.cpu import compiled
from shardsmith.backends.cpu.arrays import from_float, is_numpy_friendly, numeric_values, one_array
from shardsmith.backends.cpu.expr import derive_column, filter_mask
from shardsmith.errors import ShardsmithError
from shardsmith.ir import FILE_COL, ROW_COL, Fused
from shardsmith.ir.dtypes import ARROW_TYPES, is_float
from shardsmith.kernels import xxhash64 as xx
from shardsmith.kernels.lookup import FIRST_ID, NULL_ID, OOV_ID
from shardsmith.kernels.rounding import missing_inf, round_to
from shardsmith.ops.categorical import Categorify, HashBucket, HashedCross
from shardsmith.ops.derive import Derive
from shardsmith.ops.joins import KEY, Join, canonical_key
from shardsmith.ops.keyed import GroupbyFeatures, TargetEncode
from shardsmith.ops.lag import Lag
from shardsmith.ops.numeric import Cast
from shardsmith.ops.rows import Drop, Filter, Rename

LOWERINGS = lowerings_table("cpu")
BLOCK_ROWS = 8192  # rows per block of a fused group: (rows x columns) float64 stays in the L2 cache


@LOWERINGS.register(Fused)
def run_fused(be, node: Fused, frame: pa.Table, states: dict, ctx) -> pa.Table:
    """Each column group as one compiled loop (engine.cpu_kernels, backends/cpu/compiled.py), or
    where that cannot run, the NumPy reference: the same bits either way."""
    new = {}
    each = functools.partial(each_column, ctx, frame)
    for group in node.groups:
        out = compiled.fused_group(be.kernels, node, group, frame, states, each) if be.kernels != "numpy" else None
        new.update(out if out is not None else _fused_numpy(node, group, frame, states))
    return _set_columns(frame, new)


def _fused_numpy(node: Fused, group, frame: pa.Table, states: dict) -> dict:
    """The group in one blocked pass: every op of the chain on a cache-sized block of rows and
    columns, then the next block; one read of the inputs, one write of the outputs. Columns of
    whole numbers in a small range take the chain's results from a table (``fused_by_table``)."""
    srcs = [numeric_values(frame[c]) for c in group.srcs]
    outs = fused_by_table(node, group, srcs, frame.num_rows, states)
    if outs is None:
        outs = fused_values(node, group, srcs, frame.num_rows, states)
    return {out: from_float(outs[i], group.chains[0].dtypes[-1]) for i, out in enumerate(group.outs)}


TABLE_MIN_ROWS = 4096  # below this, a table of the values' range saves too little
TABLE_MAX_VALUES = 1 << 16  # and no wider range than this (nor than a quarter of the rows)


def fused_by_table(node: Fused, group, srcs: list, n: int, states: dict) -> np.ndarray | None:
    """``fused_values`` of columns whose values are all whole numbers of int32 in a range of at
    most TABLE_MAX_VALUES (counts and codes stored as floats, integer columns), or None. A chain
    is a pure function of its input value: it runs once over the range's values (and NaN, for the
    missing ones) and each row takes its value's result, the same bits as running it on the row.
    Columns holding -0.0 or an infinity (whose results differ from 0.0's and from NaN's) and
    columns of fractions, or of wider ranges, run the chain on every row. On the demo's 13 float
    columns (250,000 rows a partition) the group costs a third of the NumPy chain (21 against 62
    ms): NumPy's temporaries bound it, so each column's are let go before the next column's."""
    if n < TABLE_MIN_ROWS or not srcs:
        return None
    limit = min(TABLE_MAX_VALUES, n // 4)
    spans = []
    with np.errstate(invalid="ignore", over="ignore"):  # NaN rows cast to int32 (then float16) are junk
        for x in srcs:  # checked one column at a time: a column's temporaries go before the next's
            lo, hi = float(np.fmin.reduce(x)), float(np.fmax.reduce(x))  # NaN ignored; all missing: NaN
            if not (math.isfinite(lo) and math.isfinite(hi)) or hi - lo >= limit or max(-lo, hi) >= 2.0**31:
                return None
            if np.count_nonzero(x.astype(np.int32).astype(x.dtype) != x) != np.count_nonzero(np.isnan(x)):
                return None  # a fraction
            bits = x.view(f"u{x.itemsize}")  # float16, float32 or float64 (integers come as float64)
            if np.count_nonzero(bits == bits.dtype.type(1 << (8 * x.itemsize - 1))):
                return None  # -0.0
            spans.append((lo, int(hi - lo) + 1))
        width = max(m for _, m in spans) + 1  # the last slot: NaN, the missing values' result
        table = np.full((len(srcs), width), np.nan)
        for i, (lo, m) in enumerate(spans):
            table[i, :m] = lo + np.arange(m, dtype=np.float64)
        results = fused_values(node, group, table, width, states)
        outs = np.empty((len(srcs), n), dtype=results.dtype)
        for i, (x, (lo, _)) in enumerate(zip(srcs, spans)):
            pos = x.astype(np.int32)  # NaN rows: anything, replaced next
            pos -= np.int32(lo)
            np.copyto(pos, width - 1, where=np.isnan(x))
            np.take(results[i], pos, out=outs[i])
    return outs


def fused_values(node: Fused, group, srcs, n: int, states: dict, plan: tuple | None = None) -> np.ndarray:
    """The NumPy reference of a group on its source columns (arrays that read as float64, NaN for
    missing; or one (columns, rows) array of them): a (columns, rows) array of the results, float32
    for a float32 chain, NaN for missing. The serving row path (backends/cpu/rows.py) calls it on
    arrays of a few rows, with the group's ``fused_plan`` made once."""
    ops, params, dtypes, rounding = plan if plan is not None else fused_plan(node, group, states)
    float_src = is_float(group.src_dtype)  # integers hold no infinity
    # A float32 result is exactly representable once rounded: stored as float32 straight away.
    outs = np.empty((len(srcs), n), dtype=np.float32 if dtypes[-1] == "float32" else np.float64)
    block = np.empty((min(BLOCK_ROWS, n), len(srcs)), dtype=np.float64, order="F")  # columns contiguous
    for start in range(0, n, BLOCK_ROWS):
        rows = min(BLOCK_ROWS, n - start)
        x = block[:rows]
        if isinstance(srcs, np.ndarray):  # (columns, rows): one copy
            x[:] = srcs[:, start : start + rows].T
        else:
            for i, src in enumerate(srcs):
                x[:, i] = src[start : start + rows]
        if float_src:
            missing_inf(x)  # infinities are missing to every elementwise op (ops/numeric.py)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # those results are missing
            for op, p, dt in zip(ops, params, rounding):
                x = op.apply(x, p, np)
                if dt is not None:
                    x = round_to(x, dt)
        outs[:, start : start + rows] = x.T
    return outs


def fused_plan(node: Fused, group, states: dict) -> tuple:
    """A group's chain: its ops, their parameters over the group's columns, the dtypes and the
    rounding after each op (None where the op cannot leave the dtype's values)."""
    ops = [node.steps[pos].op for pos, _ in group.chains[0].stages]
    params = [_group_params(node, group, j, op, states) for j, op in enumerate(ops)]
    dtypes = group.chains[0].dtypes
    # Rounding is idempotent: skip it after an op that cannot leave the dtype's values.
    rounding = [None if op.keeps_values(d_in, dt, p) else dt
                for op, p, d_in, dt in zip(ops, params, (group.src_dtype, *dtypes), dtypes)]
    return ops, params, dtypes, rounding


def _group_params(node: Fused, group, j: int, op, states: dict) -> dict:
    """Stage ``j``'s parameters for every column of the group, as arrays over the columns. Each
    column asks its own step: one group can join columns of different steps (two clips with
    different bounds share a kernel), so chain 0's op would give the wrong bounds."""
    per_col = []
    for c in group.chains:
        step = node.steps[c.stages[j][0]]
        per_col.append(step.op.params(states.get(step.key, {}), c.stages[j][1]))
    return {k: (np.array([p[k] for p in per_col]) if k != "boundaries" else [p[k] for p in per_col])
            for k in per_col[0]}


@LOWERINGS.register(Filter)
def run_filter(be, step, frame, state, ctx):
    return frame.filter(pa.array(filter_mask(frame, step.op.predicate)))


@LOWERINGS.register(Derive)
def run_derive(be, step, frame, state, ctx):
    op = step.op
    return _set_columns(frame, {op.out: derive_column(frame, op.node, step.schema[op.out].dtype)})


@LOWERINGS.register(Join)
def run_join(be, step, frame, state, ctx):
    op = step.op
    side = state["table"]
    keys = [canonical_key(frame[c]) for c in op.left_keys()]
    j = match_rows(keys, [side[f"{KEY}{i}"] for i in range(len(keys))])
    matched = j >= 0
    frame = _set_columns(frame, {op.prefix + c: take_rows(side[c], j, matched) for c in op.cols})
    return frame.filter(pa.array(matched)) if op.how == "inner" and not matched.all() else frame


def match_rows(left: list, right: list) -> np.ndarray:
    """For each row of the ``left`` key columns, the row of the ``right`` ones with equal keys
    (which are unique), or -1. Keys are in canonical form (ops/joins.canonical_key); a null
    matches nothing. One key: Arrow's hash lookup (index_in); several: an Arrow hash join."""
    if len(left) == 1:
        right_keys = one_array(right[0])
        return pc.index_in(left[0], value_set=right_keys).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    n = len(left[0])
    names = [f"k{i}" for i in range(len(left))]
    lt = pa.table({**dict(zip(names, left)), "__i": pa.array(np.arange(n, dtype=np.int64))})
    rt = pa.table({**dict(zip(names, right)), "__j": pa.array(np.arange(len(right[0]), dtype=np.int64))})
    joined = lt.join(rt, keys=names, join_type="inner", use_threads=False)
    out = np.full(n, -1, dtype=np.int64)
    out[joined["__i"].to_numpy()] = joined["__j"].to_numpy()  # scattered back: the input order
    return out


def take_rows(column, j: np.ndarray, matched: np.ndarray) -> pa.Array:
    """``column[j]`` per row, null where ``matched`` is false."""
    column = one_array(column)
    if len(column) == 0:
        return pa.nulls(len(j), column.type)
    return column.take(pa.array(np.where(matched, j, 0), mask=~matched if not matched.all() else None))


@LOWERINGS.register(TargetEncode)
def run_target_encode(be, step, frame, state, ctx):
    def lookup(col, table):
        j = match_rows([canonical_key(frame[col])], [table[f"{KEY}0"]])
        return j, lambda name: table[name].to_numpy()

    values = target_encode_columns(be, step.op, frame, state, ctx.files, lookup)
    return _set_columns(frame, {o: pa.array(v.astype(ARROW_TYPES[step.schema[o].dtype].to_pandas_dtype()))
                                for o, v in values.items()})


@LOWERINGS.register(GroupbyFeatures)
def run_groupby_features(be, step, frame, state, ctx):
    op = step.op
    table = state["table"]
    j = match_rows([canonical_key(frame[k]) for k in op.keys], [table[f"{KEY}{i}"] for i in range(len(op.keys))])
    matched = j >= 0
    return _set_columns(frame, {o: take_rows(table[o], j, matched).cast(ARROW_TYPES[step.schema[o].dtype])
                                for o in op.outputs()})


@LOWERINGS.register(Lag)
def run_lag(be, step, frame, state, ctx):
    table = state["table"]
    j = row_positions(np, table["__at"].to_numpy(), frame[FILE_COL].to_numpy(), frame[ROW_COL].to_numpy())
    matched = j >= 0
    return _set_columns(frame, {o: take_rows(table[o], j, matched) for o in step.op.outputs()})


@LOWERINGS.register(Rename)
def run_rename(be, step, frame, state, ctx):
    m = step.op.mapping
    return frame.rename_columns([m.get(n, n) for n in frame.column_names])


@LOWERINGS.register(Drop)
def run_drop(be, step, frame, state, ctx):
    return frame.drop_columns([c for c in step.op.cols if c in frame.column_names])


@LOWERINGS.register(Categorify)
def run_categorify(be, step, frame, state, ctx):
    new = {}
    pairs = step.op.pairs()
    if be.kernels != "numpy":
        compiled_ids = each_column(ctx, frame, [c for c, _ in pairs],
                                   lambda c: compiled.categorify_ids(be.kernels, frame[c], state[c]["vocab"]))
    else:
        compiled_ids = [None] * len(pairs)
    for (c, o), ids in zip(pairs, compiled_ids):
        vocab = state[c]["vocab"]
        if ids is not None:
            new[o] = pa.array(ids, type=pa.int32())
            continue
        col = one_array(frame[c])
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        if vocab.num_rows == 0:
            ids = np.full(len(col), OOV_ID, dtype=np.int32)
        else:
            ids = _positions(col, state[c]["vocab"]).astype(np.int32) + FIRST_ID
            ids[ids == FIRST_ID - 1] = OOV_ID
        if col.null_count:
            ids[np.asarray(col.is_null())] = NULL_ID
        new[o] = pa.array(ids, type=pa.int32())
    return _set_columns(frame, new)


COLUMN_POOL_ROWS = 4096  # rows: below this, handing a column to another thread costs more than it saves


def each_column(ctx, frame, cols: list, fn) -> list:
    """``fn(c)`` for each column: on the context's column pool (TaskContext.column_pool) when the
    frame is big enough to repay the hand-off, else one after another here. The same results
    either way: each column's work reads only that column."""
    pool = getattr(ctx, "column_pool", None)  # callers without a context (tests) run in order
    if pool is not None and len(cols) > 1 and frame.num_rows >= COLUMN_POOL_ROWS:
        return list(pool.map(fn, cols))
    return [fn(c) for c in cols]


_INDEX_CACHE: dict = {}
_SORTED_CACHE: dict = {}
SMALL_LOOKUP = 256  # rows: below this, look values up by binary search in a cached sorted vocabulary


def _positions(col: pa.Array, table: pa.Table) -> np.ndarray:
    """Each value's position in the vocabulary table, -1 when absent (nulls: anything; fixed later).

    Integer columns use a pandas hash index built once per vocabulary and worker (the fitted state
    lives as long as the compile), not once per partition; other types use Arrow's index_in. A few
    rows (a served batch: shardsmith/serve.py) of integers or strings are looked up by binary search
    in a sorted copy of the vocabulary, also kept per vocabulary, where a hash lookup's per-call
    cost would dominate: the same positions, since vocabulary values are distinct."""
    if len(col) <= SMALL_LOOKUP and _sortable(col.type) and _sortable(table.schema.field("value").type):
        return _positions_sorted(col, table)
    vocab = table["value"].combine_chunks()
    if is_numpy_friendly(col.type) and is_numpy_friendly(vocab.type):
        import pandas as pd  # lazy: pandas costs half a second to import; only integer vocabularies use it

        cached = _INDEX_CACHE.get(id(table))
        if cached is None or cached[0] is not table:
            if len(_INDEX_CACHE) > 256:
                _INDEX_CACHE.clear()
            cached = _INDEX_CACHE[id(table)] = (table, pd.Index(vocab.to_numpy(zero_copy_only=False)))
        filler = False if pa.types.is_boolean(col.type) else 0  # null rows get their id afterwards
        values = col.fill_null(filler) if col.null_count else col  # fill_null copies even with no nulls
        return cached[1].get_indexer(values.to_numpy(zero_copy_only=False))
    idx = pc.index_in(col, value_set=vocab.cast(col.type) if vocab.type != col.type else vocab)
    return idx.fill_null(-1).to_numpy(zero_copy_only=False)


def _sortable(t: pa.DataType) -> bool:
    """Types whose values NumPy orders exactly and compares by equality (not floats: NaN)."""
    return is_numpy_friendly(t) or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)


def _positions_sorted(col: pa.Array, table: pa.Table) -> np.ndarray:
    cached = _SORTED_CACHE.get(id(table))
    if cached is None or cached[0] is not table:
        if len(_SORTED_CACHE) > 256:
            _SORTED_CACHE.clear()
        values = table["value"].combine_chunks().to_numpy(zero_copy_only=False)
        order = np.argsort(values, kind="stable")
        cached = _SORTED_CACHE[id(table)] = (table, values[order], order)
    _, keys, order = cached
    filler = False if pa.types.is_boolean(col.type) else 0 if is_numpy_friendly(col.type) else ""
    x = (col.fill_null(filler) if col.null_count else col).to_numpy(zero_copy_only=False)
    i = np.minimum(np.searchsorted(keys, x), len(keys) - 1)
    return np.where(keys[i] == x, order[i], -1)


@LOWERINGS.register(HashBucket)
def run_hash_bucket(be, step, frame, state, ctx):
    op = step.op
    new = {o: pa.array(xx.to_buckets(be.hash(frame[c], op.seed), op.num_buckets)) for c, o in op.pairs()}
    return _set_columns(frame, new)


@LOWERINGS.register(HashedCross)
def run_hashed_cross(be, step, frame, state, ctx):
    op = step.op
    h = be.hash(frame[op.cols[0]], op.seed)
    for c in op.cols[1:]:
        h = be.hash(frame[c], h)
    return _set_columns(frame, {op.output(): pa.array(xx.to_buckets(h, op.num_buckets))})


@LOWERINGS.register(Cast)
def run_cast(be, step, frame, state, ctx):
    op = step.op
    target = ARROW_TYPES[op.dtype]
    new, bad = {}, np.zeros(frame.num_rows, dtype=bool)
    for c, o in op.pairs():
        col = one_array(frame[c])
        try:
            new[o] = pc.cast(col, target, safe=True)
            continue
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        values, ok = cast_each(col, target)
        failed = ~ok & np.asarray(col.is_valid())
        if failed.any() and op.on_error == "fail":
            i = int(np.flatnonzero(failed)[0])
            path = ctx.files[int(frame[FILE_COL][i].as_py())]
            raise ShardsmithError(f"column '{c}': cannot cast {col[i].as_py()!r} to {op.dtype} "
                                  f"(row {int(frame[ROW_COL][i].as_py())}; set on_error: null or quarantine)",
                                  f"{step.key} in {path}")
        if failed.any() and op.on_error == "quarantine":
            ctx.quarantine(frame, failed, step.key, c, [str(v) for v in col.filter(pa.array(failed)).to_pylist()],
                           f"cannot cast to {op.dtype}")
            bad |= failed
        new[o] = values
    frame = _set_columns(frame, new)
    return frame.filter(pa.array(~bad)) if bad.any() else frame


def _set_columns(frame: pa.Table, new: dict) -> pa.Table:
    """``frame`` with the columns of ``new`` replaced in place or appended: one new table (setting
    them one by one rebuilds the table per column, which a serving call of one row notices)."""
    names = frame.column_names
    extra = [n for n in new if n not in names]
    columns = frame.columns
    columns = [new[n] if n in new else columns[i] for i, n in enumerate(names)] + [new[n] for n in extra]
    return pa.Table.from_arrays(columns, names=names + extra)
