"""What runs on a worker, per partition: one function per kind of task. Each takes plain,
serialisable arguments (the plan, a partition, the fitted states) and returns host data."""

from __future__ import annotations

import time

from shardsmith.backends import get_backend
from shardsmith.backends.base import SPLIT_COL, TaskContext
from shardsmith.compiler.ir import Fused, Step
from shardsmith.compiler.planner import Collect
from shardsmith.ops import stats as S
from shardsmith.profiling.spans import PROFILE_KEY, recorder
from shardsmith.profiling.stages import stage_key, stage_kind


def run_program(be, program, frame, states: dict, ctx, on_collect=None, timings=None, rec=None):
    """Apply a program's items in order; ``on_collect(item, frame)`` at each Collect. ``rec``
    (profiling/spans.py) records a span per item."""
    for item in program:
        t0 = time.perf_counter()
        span = rec.start(stage_key(item), stage_kind(item), frame) if rec is not None else None
        if isinstance(item, Collect):
            on_collect(item, frame)
        elif isinstance(item, Fused):
            frame = be.lowerings.require(item, item.key)(be, item, frame, states, ctx)
        elif isinstance(item, Step):
            fn = be.lowerings.require(item.op, item.key)
            frame = fn(be, item, frame, states.get(item.key, {}), ctx)
        if rec is not None:
            rec.stop(span, frame)
        if timings is not None:
            key = item.step.key if isinstance(item, Collect) else item.key
            timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0
    return frame


def fit_task(backend: str, plan, part, stage: int, states: dict, prof: dict | None = None) -> dict:
    """Partial statistics of fit pass ``stage`` over one partition: {step key: [partial per stat]}
    (and the task's spans under PROFILE_KEY when ``prof`` options are given)."""
    be = get_backend(backend)
    ctx = TaskContext(part.index, plan.files)
    rec = recorder(be, f"fit{stage}", part.index, prof)
    span = rec.start("read", "read")
    frame, n_read = be.read(part, plan.graph.source, plan.graph.split)
    rec.stop(span, frame, rows_in=n_read)
    fit_on = plan.graph.split.fit_on
    split_index = plan.graph.split.names.index(fit_on) if fit_on is not None else None
    out: dict = {}

    def collect(item, frame):
        if split_index is not None:
            frame = be.filter_mask(frame, be.split_ids(frame) == split_index)
        out[item.step.key] = [be.partial(st, frame[st.col]) for st in item.stats]

    run_program(be, plan.fit_programs[stage], frame, states, ctx, collect, rec=rec)
    if rec.enabled:
        out[PROFILE_KEY] = rec.finish()
    return out


def transform_task(backend: str, plan, part, states: dict, prof: dict | None = None) -> dict:
    """One partition through the whole graph, cut by split; with its row accounting and the
    partial summary statistics of every output column (and its spans when ``prof`` is given)."""
    be = get_backend(backend)
    ctx = TaskContext(part.index, plan.files)
    rec = recorder(be, "transform", part.index, prof)
    timings: dict = {}
    t0 = time.perf_counter()
    span = rec.start("read", "read")
    frame, n_read = be.read(part, plan.graph.source, plan.graph.split)
    rec.stop(span, frame, rows_in=n_read)
    timings["read"] = time.perf_counter() - t0
    after_read = be.num_rows(frame)
    frame = run_program(be, plan.transform, frame, states, ctx, timings=timings, rec=rec)
    span = rec.start("split", "split", frame)
    schema = plan.output_schema
    split_ids = be.split_ids(frame)
    splits, split_rows, summaries = {}, {}, {}
    for i, name in enumerate(plan.graph.split.names):
        sub = be.conform(be.filter_mask(frame, split_ids == i), schema)
        splits[name] = sub
        split_rows[name] = be.num_rows(sub)
        summaries[name] = summary_partials(be, sub, schema)
    rec.stop(span, rows=sum(split_rows.values()), nbytes=_total_bytes(be, splits.values()))
    quarantined = ctx.quarantined_rows
    meta = {
        "partition": part.index,
        "rows_read": n_read,
        "filtered": n_read - after_read + (after_read - be.num_rows(frame) - quarantined),
        "quarantined": quarantined,
        "split_rows": split_rows,
        "summaries": summaries,
        "timings": timings,
    }
    if rec.enabled:
        meta["profile"] = rec.finish()
    quarantine = None
    if ctx.quarantined:
        import pyarrow as pa

        quarantine = pa.concat_tables(ctx.quarantined)
    return {"splits": splits, "quarantine": quarantine, "meta": meta}


def _total_bytes(be, frames) -> int | None:
    nbytes = getattr(be, "nbytes", None)
    return sum(nbytes(f) for f in frames) if nbytes else None


def result_meta(result: dict) -> dict:
    return result["meta"]


SUMMARY_ROLES_WITH_MOMENTS = ("continuous", "label", "weight", "other")


def summary_partials(be, frame, schema) -> dict:
    """Per output column: null count and min/max, plus exact moments for non-categorical numbers."""
    from shardsmith.compiler.ir import is_numeric

    out = {}
    for col in schema.columns:
        column = frame[col.name]
        entry = {"nulls": int(column.null_count)}
        if is_numeric(col.dtype):
            x = be.finite_values(column)
            entry["minmax"] = S.minmax_partial(x, be.xp)
            if col.role in SUMMARY_ROLES_WITH_MOMENTS:
                entry["moments"] = S.moments_partial(x, be.xp)
        out[col.name] = entry
    return out


def write_shard_task(backend: str, pieces: list, stream: str, path: str, sink, schema,
                     prof: dict | None = None) -> dict:
    """Concatenate the pieces (partition result, start, stop) of one shard and write it in every
    output format; returns what the manifest records of each file (and, when ``prof`` is given,
    the task's span under PROFILE_KEY)."""
    from shardsmith.shards.writers import write_shard

    be = get_backend(backend)
    rec = recorder(be, "write", None, prof)
    rows = sum(stop - start for _, start, stop in pieces)
    span = rec.start("quarantine" if stream == "quarantine" else "shards", "write", rows=rows)
    frames = []
    for result, start, stop in pieces:
        frame = result["quarantine"] if stream == "quarantine" else result["splits"][stream]
        frames.append(be.slice(frame, start, stop))
    table = be.to_arrow(be.concat(frames))
    out = write_shard(table, path, sink, schema if stream != "quarantine" else None)
    if rec.enabled:
        rec.stop(span, rows=table.num_rows, nbytes=sum(v["bytes"] for v in out.values()),
                 bytes_in=table.get_total_buffer_size(), stream=stream)
        out[PROFILE_KEY] = rec.finish()
    return out


__all__ = ["fit_task", "transform_task", "write_shard_task", "result_meta", "SPLIT_COL"]
