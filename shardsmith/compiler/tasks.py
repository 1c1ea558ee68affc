"""What runs on a worker, per partition: one function per kind of task. Each takes plain,
serialisable arguments (the plan, a partition, the fitted states) and returns host data."""

from __future__ import annotations

import time
from dataclasses import replace

from shardsmith.backends import get_backend
from shardsmith.backends.base import SPLIT_COL, TaskContext
from shardsmith.compiler.ir import Fused, Step
from shardsmith.compiler.planner import Collect


def run_program(be, program, frame, states: dict, ctx, on_collect=None, timings=None):
    """Apply a program's items in order; ``on_collect(item, frame)`` at each Collect."""
    for item in program:
        t0 = time.perf_counter()
        if isinstance(item, Collect):
            on_collect(item, frame)
        elif isinstance(item, Fused):
            frame = be.lowerings.require(item, item.key)(be, item, frame, states, ctx)
        elif isinstance(item, Step):
            fn = be.lowerings.require(item.op, item.key)
            frame = fn(be, item, frame, states.get(item.key, {}), ctx)
        if timings is not None:
            key = item.step.key if isinstance(item, Collect) else item.key
            timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0
    return frame


def fit_task(backend: str, plan, part, stage: int, states: dict) -> dict:
    """Partial statistics of fit pass ``stage`` over one partition: {step key: [partial per stat]}."""
    be = get_backend(backend)
    ctx = TaskContext(part.index, plan.files)
    source = replace(plan.graph.source, columns=plan.fit_columns[stage])
    frame, _ = be.read(part, source, plan.graph.split)
    fit_on = plan.graph.split.fit_on
    split_index = plan.graph.split.names.index(fit_on) if fit_on is not None else None
    out: dict = {}

    def collect(item, frame):
        if split_index is not None:  # only the columns these statistics read, then the fit rows
            needed = list(dict.fromkeys(st.col for st in item.stats))
            ids = be.split_ids(frame)
            frame = be.filter_mask(be.select(frame, needed), ids == split_index)
        out[item.step.key] = [be.partial(st, frame[st.col]) for st in item.stats]

    run_program(be, plan.fit_programs[stage], frame, states, ctx, collect)
    return out


def merge_partials(stats: dict, a: dict, b: dict) -> dict:
    """Merge two fit partials ({step key: [partial per stat]}) stat by stat (exact merges)."""
    return {key: [st.merge([pa, pb]) for st, pa, pb in zip(stats[key], a[key], b[key])] for key in stats}


def transform_task(backend: str, plan, part, states: dict) -> dict:
    """One partition through the whole graph, cut by split; with its row accounting and the
    partial summary statistics of every output column."""
    be = get_backend(backend)
    ctx = TaskContext(part.index, plan.files)
    timings: dict = {}
    t0 = time.perf_counter()
    frame, n_read = be.read(part, plan.graph.source, plan.graph.split)
    timings["read"] = time.perf_counter() - t0
    after_read = be.num_rows(frame)
    frame = run_program(be, plan.transform, frame, states, ctx, timings=timings)
    schema = plan.output_schema
    split_ids = be.split_ids(frame)
    splits, split_rows = {}, {}
    for i, name in enumerate(plan.graph.split.names):
        sub = be.conform(be.filter_mask(frame, split_ids == i), schema)
        splits[name] = sub
        split_rows[name] = be.num_rows(sub)
    quarantined = ctx.quarantined_rows
    meta = {
        "partition": part.index,
        "rows_read": n_read,
        "filtered": n_read - after_read + (after_read - be.num_rows(frame) - quarantined),
        "quarantined": quarantined,
        "split_rows": split_rows,
        "timings": timings,
    }
    quarantine = None
    if ctx.quarantined:
        import pyarrow as pa

        quarantine = pa.concat_tables(ctx.quarantined)
    return {"splits": splits, "quarantine": quarantine, "meta": meta}


def result_meta(result: dict) -> dict:
    return result["meta"]


def pick_stream(result: dict, stream: str):
    """One split's rows (or the quarantine's) of a partition result."""
    return result["quarantine"] if stream == "quarantine" else result["splits"][stream]


def write_shard_task(backend: str, pieces: list, stream: str, path: str, sink, schema) -> dict:
    """Concatenate the pieces (frame, start, stop) of one shard and write it in every output
    format; returns what the manifest records of each file, and the shard's summary."""
    from shardsmith.shards.summary import shard_summary
    from shardsmith.shards.writers import write_shard

    if stream == "quarantine":  # quarantined rows are host Arrow tables whatever the backend
        import pyarrow as pa

        table = pa.concat_tables([frame.slice(start, stop - start) for frame, start, stop in pieces])
        return {"files": write_shard(table, path, sink, None), "summary": None}
    be = get_backend(backend)
    # The schema gives the exact Arrow types to write (the GPU backend's columns map to several).
    table = be.to_arrow(be.concat([be.slice(frame, start, stop) for frame, start, stop in pieces]), schema)
    return {"files": write_shard(table, path, sink, schema), "summary": shard_summary(table, schema)}


__all__ = ["fit_task", "transform_task", "write_shard_task", "result_meta", "SPLIT_COL"]
