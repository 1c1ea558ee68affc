"""The GPU lowerings' bodies (registered in lowering.py, which must import without a GPU).

Each follows its CPU counterpart in backends/cpu/lowering.py value for value.
"""

from __future__ import annotations

import threading

import cudf
import cupy as cp
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shardsmith.backends.arrow import cast_each
from shardsmith.backends.base import fold_ids, row_positions, target_encode_columns
from shardsmith.backends.gpu import columns as C
from shardsmith.backends.gpu import expr, transfer
from shardsmith.errors import ShardsmithError
from shardsmith.ir import FILE_COL, ROW_COL
from shardsmith.ir.dtypes import ARROW_TYPES
from shardsmith.kernels import casts, codegen, exact, gpu
from shardsmith.kernels import lookup as L
from shardsmith.kernels.xxhash64 import timestamp_micros
from shardsmith.ops import stats as S
from shardsmith.ops.stats import FOLD, KEY


# --- fused elementwise chains: one generated kernel per column group -------------------------------
def fused(be, node, frame, states: dict, float_mode: str = "exact"):
    new = {}
    for group in node.groups:
        src, params, layout = codegen.group_source(node, group, states, float_mode)
        P, B, BO = codegen.pack(layout, params)
        outs = launch_fused(src, [_as_dtype(frame[c], group.src_dtype) for c in group.srcs],
                            group.chains[0].dtypes[-1], P, B, BO)
        new.update(zip(group.outs, outs))
    return set_columns(frame, new)


def _as_dtype(series, dtype: str):
    """The column in the physical dtype its kernel was generated for."""
    want = np.dtype(ARROW_TYPES[dtype].to_pandas_dtype()) if dtype != "bool" else np.dtype(np.uint8)
    have = C.values(series).dtype
    return series if have == want else series.astype(np.bool_ if dtype == "bool" else want)


def launch_fused(src, inputs: list, dst_dtype: str, P, B, BO) -> list:
    """Run a fused kernel over ``inputs`` (cuDF Series of one dtype); one new Series per input."""
    n, k = len(inputs[0]), len(inputs)
    dst_np = np.dtype(np.uint8) if dst_dtype == "bool" else np.dtype(ARROW_TYPES[dst_dtype].to_pandas_dtype())
    dsts = [cp.empty(n, dtype=dst_np) for _ in range(k)]
    masks = [cp.empty(C.mask_alloc_words(n), dtype=np.uint32) for _ in range(k)]
    src_ptrs, src_masks, moffs = [], [], []
    for s in inputs:
        words, off = C.mask_words(s)
        src_ptrs.append(int(C.values(s).data.ptr) if n else 0)
        src_masks.append(0 if words is None else int(words.data.ptr))
        moffs.append(off)
    dev = transfer.to_device
    nulls = cp.zeros(k, dtype=np.uint64)
    args = (dev(np.array(src_ptrs, dtype=np.uint64)), dev(np.array(src_masks, dtype=np.uint64)),
            dev(np.array(moffs, dtype=np.int64)), dev(np.array([d.data.ptr for d in dsts], dtype=np.uint64)),
            dev(np.array([m.data.ptr for m in masks], dtype=np.uint64)), nulls, dev(P), dev(B), dev(BO), np.int64(n))
    gpu.launch(src, src.entries[0], ((n + 31) // 32) * 32, args, grid_y=k)
    null_counts = cp.asnumpy(nulls)
    tid = C.T.BOOL8 if dst_dtype == "bool" else None
    return [C.from_device(d.view(np.bool_) if dst_dtype == "bool" else d, m, int(z), type_id=tid)
            for d, m, z in zip(dsts, masks, null_counts)]


# --- hashes ----------------------------------------------------------------------------------------
def hash_bucket(be, step, frame):
    op = step.op
    return set_columns(frame, {o: C.from_device(be.buckets(be.hash(frame[c], op.seed), op.num_buckets))
                               for c, o in op.pairs()})


def hashed_cross(be, step, frame):
    op = step.op
    h = be.hash(frame[op.cols[0]], op.seed)
    for c in op.cols[1:]:
        h = be.hash(frame[c], h)
    return set_columns(frame, {op.output(): C.from_device(be.buckets(h, op.num_buckets))})


# --- categorify ------------------------------------------------------------------------------------
_vocab_lock = threading.Lock()


def categorify(be, step, frame, state):
    new = {}
    for c, o in step.op.pairs():
        new[o] = C.from_device(categorify_ids(be, frame[c], state[c]["vocab"]))
    return set_columns(frame, new)


def categorify_ids(be, series, vocab) -> cp.ndarray:
    """int32 ids of ``series`` in ``vocab`` (the fitted vocabulary table, in id order)."""
    words, _ = C.mask_words(series)
    valid = None if words is None else C.validity(series)
    dev = device_vocabulary(be, series, vocab)
    if C.kind(series) != "string":
        return L.categorify_ids(L.exact_keys(C.values(series)), valid, dev[0], dev[1], cp)
    h = be.hash(series, 0)
    offsets, chars = C.string_buffers(series)
    n, out = len(series), cp.empty(len(series), dtype=np.int32)
    vhash, order, voffsets, vchars = dev[:4]
    entry = "ss_categorify_str32" if offsets.dtype == np.int32 else "ss_categorify_str64"
    _, moff = C.mask_words(series)
    gpu.launch(gpu.lookup_source(), entry, n, (offsets, chars, gpu.ptr(words), np.int64(moff), h, vhash, order,
                                               voffsets, vchars, np.int64(len(order)), out, np.int64(n)))
    return out


def device_vocabulary(be, series, vocab: pa.Table):
    """The vocabulary on the device, sorted for lookups; kept per worker for the next partitions
    (the state, and so the table object, is the same for every partition of a run)."""
    key = (id(vocab), C.kind(series), str(C.arrow_type(series)))
    with _vocab_lock:
        hit = be._vocabularies.get(key)
        if hit is not None and hit[0] is vocab:
            return hit[1]
    values = vocab["value"].combine_chunks()
    if C.kind(series) == "string":
        vs = transfer.array_to_series(values.cast(pa.string()) if not pa.types.is_string(values.type) else values)
        vhash = be.hash(vs, 0)
        order = cp.argsort(vhash).astype(np.int32)
        voffsets, vchars = C.string_buffers(vs)
        dev = (vhash[order], order, voffsets.astype(np.int32), vchars, vs)  # vs keeps the bytes alive
    else:
        target = C.arrow_type(series)
        if values.type != target:
            values = values.cast(target) if not pa.types.is_date32(values.type) else values.cast(pa.int32())
        keys = L.exact_keys(C.values(transfer.array_to_series(values)))
        dev = L.sorted_vocabulary(keys, cp)
    with _vocab_lock:
        if len(be._vocabularies) > 256:
            be._vocabularies.clear()
        be._vocabularies[key] = (vocab, dev)
    return dev


# --- row and column ops ----------------------------------------------------------------------------
def filter_rows(be, step, frame):
    return be.filter_mask(frame, expr.filter_mask(frame, step.op.predicate, date_columns(step.schema)))


def date_columns(schema, exclude: str | None = None) -> tuple[str, ...]:
    """The columns of ``schema`` that hold dates (int32 days on the device)."""
    return tuple(c.name for c in schema.columns if c.dtype == "date" and c.name != exclude)


def derive(be, step, frame):
    op = step.op
    dates = date_columns(step.schema, exclude=op.out) + tuple(op.date_inputs)
    return set_columns(frame, {op.out: expr.derive_series(frame, op.node, step.schema[op.out].dtype, dates)})


# --- join (and the lookups of fitted per-key state) ------------------------------------------------
def join(be, step, frame, state):
    op = step.op
    side = device_table(be, state["table"])
    keys = [device_key(frame[c]) for c in op.left_keys()]
    j = match_rows(keys, [side[f"{KEY}{i}"] for i in range(len(keys))])
    matched = j >= 0
    frame = set_columns(frame, {op.prefix + c: take_rows(side[c], j, matched) for c in op.cols})
    if op.how == "inner" and not bool(matched.all()):
        frame = be.filter_mask(frame, matched)
    return frame


_tables_lock = threading.Lock()


def device_table(be, table: pa.Table):
    """A host Arrow table (a join's side table, a fitted per-key state) on the device, kept per
    worker for the next partitions (the state object is the same for every partition of a run)."""
    with _tables_lock:
        hit = be._tables.get(id(table))
        if hit is not None and hit[0] is table:
            return hit[1]
    frame = transfer.table_to_frame(table)
    with _tables_lock:
        if len(be._tables) > 64:
            be._tables.clear()
        be._tables[id(table)] = (table, frame)
    return frame


def device_key(series):
    """A key column in its canonical form (ops/joins.canonical_key): integers and dates as int64,
    timestamps as int64 microseconds, strings and bools as they are."""
    kind = C.kind(series)
    if kind in ("string", "bool"):
        return series
    values, valid = C.values_and_validity(series)
    tid = C.plc_column(series).type().id()
    unit = expr.TIMESTAMP_UNITS.get(tid.name)
    if unit is not None:
        values = timestamp_micros(values.astype(np.int64), unit, cp)
    elif values.dtype == np.uint64:
        values = values.view(np.int64)
    return C.from_values(values.astype(np.int64), valid)


def match_rows(left: list, right: list) -> cp.ndarray:
    """For each row of the ``left`` key columns, the row of the ``right`` ones with equal keys
    (unique), or -1: a cuDF merge, whose output order is its own, scattered back by row number."""
    n, m = len(left[0]), len(right[0])
    names = [f"k{i}" for i in range(len(left))]
    lt = cudf.DataFrame({**dict(zip(names, left)), "__i": C.from_device(cp.arange(n, dtype=np.int64))})
    rt = cudf.DataFrame({**dict(zip(names, right)), "__j": C.from_device(cp.arange(m, dtype=np.int64))})
    merged = lt.merge(rt, on=names, how="inner")
    out = cp.full(n, -1, dtype=np.int64)
    out[C.values(merged["__i"])] = C.values(merged["__j"])
    return out


def take_rows(series, j, matched):
    """``series[j]`` per row, null where ``matched`` is false."""
    n = len(j)
    if len(series) == 0:
        return transfer.array_to_series(pa.nulls(n, C.arrow_type(series)))
    idx = cp.where(matched, j, 0)
    if C.kind(series) == "string":
        out = series.take(idx).reset_index(drop=True)
        return out if bool(matched.all()) else out.mask(C.from_device(~matched))
    values, valid = C.values_and_validity(series)
    keep = matched if valid is None else matched & valid[idx]
    nulls = n - int(cp.count_nonzero(keep))
    return C.from_device(values[idx], C.pack_bits(keep) if nulls else None, nulls,
                         type_id=C.plc_column(series).type().id())


# --- fitted per-key and per-row features --------------------------------------------------------------
def target_encode(be, step, frame, state, ctx):
    def lookup(col, table):
        dev = device_table(be, table)
        j = match_rows([device_key(frame[col])], [dev[f"{KEY}0"]])
        return j, lambda name: C.values(dev[name]) if len(dev) else cp.zeros(0)

    values = target_encode_columns(be, step.op, frame, state, ctx.files, lookup)
    return set_columns(frame, {o: C.from_device(v.astype(ARROW_TYPES[step.schema[o].dtype].to_pandas_dtype()))
                               for o, v in values.items()})


def groupby_features(be, step, frame, state):
    op = step.op
    dev = device_table(be, state["table"])
    j = match_rows([device_key(frame[k]) for k in op.keys], [dev[f"{KEY}{i}"] for i in range(len(op.keys))])
    matched = j >= 0
    dtypes = {o: ARROW_TYPES[step.schema[o].dtype].to_pandas_dtype() for o in op.outputs()}
    return set_columns(frame, {o: take_rows(dev[o], j, matched).astype(d) for o, d in dtypes.items()})


def lag(be, step, frame, state):
    dev = device_table(be, state["table"])
    at = C.values(dev["__at"]) if len(dev) else cp.zeros(0, dtype=np.int64)
    j = row_positions(cp, at, C.values(frame[FILE_COL]), C.values(frame[ROW_COL]))
    matched = j >= 0
    return set_columns(frame, {o: take_rows(dev[o], j, matched) for o in step.op.outputs()})


def float_values(series):
    """float64 values with NaN where null (booleans as 0 / 1)."""
    values, valid = C.values_and_validity(series)
    x = values.astype(np.float64)
    return x if valid is None else cp.where(valid, x, np.nan)


def keyed_moments(be, stat, frame, files) -> dict:
    """The KeyedMoments partial (ops/stats.py) on the device: the per-row exact decomposition
    (kernels/exact.decompose) in CuPy, the grouping in cuDF; host Arrow tables of the CPU engine's
    types come back (the merges are exact, so any grouping gives the same integers)."""
    group = stat.group_columns()
    n = len(frame)
    cols = {f"{KEY}{i}": device_key(frame[k]) for i, k in enumerate(stat.keys)}
    keep = cp.ones(n, dtype=bool)
    for series in cols.values():
        if series.null_count:
            keep &= C.validity(series)
    if stat.folds:
        cols[FOLD] = C.from_device(fold_ids(be, frame, files, stat.seed, stat.folds))
    rows = cudf.DataFrame({**cols, "__n": C.from_device(cp.ones(n, dtype=np.int64))})
    sums = []
    for i, v in enumerate(stat.values):
        x = float_values(frame[v])
        finite = cp.isfinite(x)
        rows[f"{v}#n"] = C.from_device(finite.astype(np.int64))
        rows[f"{v}#min"] = C.from_values(x, finite)
        rows[f"{v}#max"] = C.from_values(x, finite)
        take = cp.flatnonzero(finite & keep)
        parts = [(i, x[take])] + ([(len(stat.values) + i, x[take] * x[take])] if stat.squares else [])
        for ci, xs in parts:
            bins, hi, lo = exact.decompose(xs, cp)
            everywhere = cp.ones(len(take), dtype=bool)
            piece = cudf.DataFrame({name: take_rows(s, take, everywhere) for name, s in cols.items()})
            piece["__col"] = C.from_device(cp.full(len(take), ci, dtype=np.int16))
            piece["__bin"] = C.from_device(bins.astype(np.int16))
            piece["__hi"] = C.from_device(hi.astype(np.int64))
            piece["__lo"] = C.from_device(lo.astype(np.int64))
            sums.append(piece)
    rows = rows[C.from_device(keep)] if not bool(keep.all()) else rows
    out_rows = _grouped(rows, group, stat.row_aggregates())
    if sums:
        out_sums = _grouped(cudf.concat(sums, ignore_index=True), [*group, "__col", "__bin"],
                            {"__hi": "sum", "__lo": "sum"})
    else:
        out_sums = S.keyed_partial_tables(stat, {g: out_rows[g].slice(0, 0) for g in group}, 0, {})["sums"]
    return {"rows": out_rows, "sums": out_sums}


def _grouped(frame, by: list[str], aggs: dict) -> pa.Table:
    """``frame`` grouped by ``by`` with ``aggs``, as a host Arrow table in the CPU engine's types
    (strings as binary: the canonical form of a string key)."""
    table = frame.groupby(by, sort=False, dropna=True).agg(aggs).reset_index().to_arrow(preserve_index=False)
    table = table.select([*by, *aggs])
    for i, f in enumerate(table.schema):
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            table = table.set_column(i, f.name, table[f.name].cast(pa.binary()))
    return table.combine_chunks()


def rename(frame, mapping: dict):
    return frame.rename(columns={k: v for k, v in mapping.items() if k in frame.columns})


def drop(frame, cols):
    return frame.drop(columns=[c for c in cols if c in frame.columns])


# --- cast ------------------------------------------------------------------------------------------
def cast(be, step, frame, ctx):
    op = step.op
    new, bad = {}, None
    for c, o in op.pairs():
        series = frame[c]
        src = _dtype_name(series)
        if casts.is_numeric_cast(src, op.dtype):
            out, failed = _cast_numeric(series, src, op.dtype)
        else:  # strings, timestamps: Arrow on the host (declared by `shardsmith plan`)
            out, failed = _cast_on_host(series, op.dtype)
        if op.on_error != "null" and bool(failed.any()):
            if op.on_error == "fail":
                _raise_first(step, frame, ctx, c, failed, series, op.dtype)
            failed_values = series.to_arrow().filter(pa.array(cp.asnumpy(failed))).to_pylist()
            ctx.quarantine(frame, cp.asnumpy(failed), step.key, c, [str(v) for v in failed_values],
                           f"cannot cast to {op.dtype}")
            bad = failed if bad is None else (bad | failed)
        new[o] = out
    frame = set_columns(frame, new)
    return be.filter_mask(frame, ~bad) if bad is not None else frame


_NUMERIC_NAMES = {C.T.INT8: "int8", C.T.INT16: "int16", C.T.INT32: "int32", C.T.INT64: "int64", C.T.UINT8: "uint8",
                  C.T.UINT16: "uint16", C.T.UINT32: "uint32", C.T.UINT64: "uint64", C.T.FLOAT32: "float32",
                  C.T.FLOAT64: "float64", C.T.BOOL8: "bool"}


def _dtype_name(series) -> str:
    return _NUMERIC_NAMES.get(C.plc_column(series).type().id(), "other")


def _cast_numeric(series, src: str, dst: str):
    """(the cast column, with failed values null; the failed rows) on the device (kernels/casts.py)."""
    values = C.values(series)
    if src == "bool":
        values = values.view(np.bool_)
    words, _ = C.mask_words(series)
    valid = None if words is None else C.validity(series)
    out, failed = casts.cast(values, src, dst, cp)
    if valid is not None:
        failed &= valid
    keep = valid
    if bool(failed.any()):
        keep = ~failed if keep is None else (keep & ~failed)
    return C.from_values(cp.ascontiguousarray(out), keep), failed


def _cast_on_host(series, dst: str):
    """Casts that involve strings or timestamps: Arrow's own cast on the host, exactly as the
    CPU engine does it (failed values become null), then back to the device through pinned memory."""
    arr = series.to_arrow()
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    target = ARROW_TYPES[dst]
    try:
        out, ok = pc.cast(arr, target, safe=True), np.ones(len(arr), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        out, ok = cast_each(arr, target)
    failed = transfer.to_device(~ok & np.asarray(arr.is_valid(), dtype=bool))
    return transfer.array_to_series(out), failed


def _raise_first(step, frame, ctx, column: str, failed, series, dtype: str):
    i = int(cp.argmax(failed))
    value = series.iloc[i]
    value = value.item() if hasattr(value, "item") else value
    path = ctx.files[int(frame[FILE_COL].iloc[i])]
    raise ShardsmithError(f"column '{column}': cannot cast {value!r} to {dtype} "
                          f"(row {int(frame[ROW_COL].iloc[i])}; set on_error: null or quarantine)",
                          f"{step.key} in {path}")


def set_columns(frame, new: dict):
    """Replace or append columns, keeping the frame's column order otherwise (as on the CPU)."""
    for name, series in new.items():
        frame[name] = series
    return frame
