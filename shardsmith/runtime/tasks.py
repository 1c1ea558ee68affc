"""What runs on a worker, per partition: one function per kind of task. Each takes plain,
serialisable arguments (the plan, a partition, the fitted states) and returns host data.

Every task takes an optional ``prof`` (profiling options); when given, the task records a span per
stage (profiling/spans.py) and returns them under PROFILE_KEY."""

from __future__ import annotations

from dataclasses import replace

import pyarrow as pa

from shardsmith.backends import get_backend
from shardsmith.backends.arrow import table_digests
from shardsmith.backends.base import TaskContext, unassigned_error
from shardsmith.compiler.planner import Collect
from shardsmith.ir import SPLIT_COL, Fused, Step
from shardsmith.kernels import digest
from shardsmith.profiling.spans import PROFILE_KEY, recorder
from shardsmith.runtime.quality import check_stage, drop_quarantined
from shardsmith.runtime.stages import stage_key, stage_kind
from shardsmith.shards.summary import shard_summary
from shardsmith.shards.writers import WRITERS, write_bytes, write_shard


def run_program(be, program, frame, states: dict, ctx, on_collect=None, rec=None, dropped=None):
    """Apply a program's items in order; ``on_collect(item, frame)`` at each Collect. ``rec``
    (profiling/spans.py) records a span per item; ``dropped`` (a dict), when given, counts the rows
    each step removed other than into quarantine (filters, inner joins), by step key."""
    for item in program:
        span = rec.start(stage_key(item), stage_kind(item), frame) if rec is not None else None
        before, quarantined = be.num_rows(frame), ctx.quarantined_rows
        if isinstance(item, Collect):
            on_collect(item, frame)
        elif isinstance(item, Fused):
            frame = be.lowerings.require(item, item.key)(be, item, frame, states, ctx)
        elif isinstance(item, Step):
            fn = be.lowerings.require(item.op, item.key)
            frame = fn(be, item, frame, states.get(item.key, {}), ctx)
        if dropped is not None and not isinstance(item, Collect):
            n = before - be.num_rows(frame) - (ctx.quarantined_rows - quarantined)
            if n:
                dropped[item.key] = dropped.get(item.key, 0) + n
        if rec is not None:
            rec.stop(span, frame)
    return frame


def read_task(backend: str, plan, part, prof: dict | None = None) -> dict:
    """One partition decoded (every source column, filtered, its split assigned) and the plan's
    read prefix applied (the elementwise steps that open the first fit pass), kept on the worker
    for every pass when the plan reads the input once: {"frame", "rows_read", "spans"}. The first
    fit pass's task hands the read's spans on to the driver."""
    be = get_backend(backend, plan.cpu_kernels)
    rec = recorder(be, "fit0", part.index, prof)
    ctx = TaskContext(part.index, plan.files, float_mode=plan.float_mode)
    with be.exclusive():
        span = rec.start("read", "read")
        frame, n_read = be.read(part, plan.graph.source, plan.graph.split, ctx)
        rec.stop(span, frame, rows_in=n_read)
        frame = run_program(be, plan.read_prefix, frame, {}, ctx, rec=rec)
    return {"frame": frame, "rows_read": n_read, "quarantined": ctx.quarantined,
            "spans": rec.finish() if rec.enabled else None}


def _read(be, ctx, rec, plan, part, kept: dict | None, columns=None):
    """The partition's frame and its rows before filters: the kept one (a copy that the task may
    change without changing it, and the rows its read quarantined, into ``ctx``), or read now
    (``columns``: a narrower projection)."""
    if kept is not None:
        ctx.quarantined.extend(kept["quarantined"])
        return be.reuse(kept["frame"]), kept["rows_read"]
    span = rec.start("read", "read")
    source = plan.graph.source if columns is None else replace(plan.graph.source, columns=columns)
    frame, n_read = be.read(part, source, plan.graph.split, ctx)
    rec.stop(span, frame, rows_in=n_read)
    return frame, n_read


def fit_task(backend: str, plan, part, stage: int, states: dict, prof: dict | None = None,
             kept: dict | None = None) -> dict:
    """Partial statistics of fit pass ``stage`` over one partition: {step key: [partial per stat]}
    (and the task's spans, as a list, under PROFILE_KEY when ``prof`` options are given). ``kept``:
    the partition as :func:`read_task` decoded it, instead of reading it."""
    be = get_backend(backend, plan.cpu_kernels)
    ctx = TaskContext(part.index, plan.files, float_mode=plan.float_mode)
    rec = recorder(be, f"fit{stage}", part.index, prof)
    with be.exclusive():
        out = _fit(be, ctx, rec, plan, part, stage, states, kept)
    if stage == 0 and kept is not None and kept["spans"] is not None:
        out[PROFILE_KEY] = [kept["spans"], *out.get(PROFILE_KEY, [])]
    return out


def _fit(be, ctx, rec, plan, part, stage: int, states: dict, kept: dict | None) -> dict:
    frame, _ = _read(be, ctx, rec, plan, part, kept, plan.fit_columns[stage])
    frame = drop_quarantined(be, frame, plan.graph.checks_at("input"))
    fit_on = plan.graph.split.fit_on
    split_index = plan.graph.split.names.index(fit_on) if fit_on is not None else None
    out: dict = {}

    def collect(item, frame):
        ids = be.split_ids(frame) if split_index is not None else None
        parts = {}
        columns = [st for st in item.stats if not st.frame_stat]
        if columns:
            sub = frame
            if ids is not None:  # only the columns these statistics read, then the fit rows
                needed = list(dict.fromkeys(st.col for st in columns))
                sub = be.filter_mask(be.select(frame, needed), ids == split_index)
            parts.update({i: be.partial(st, sub[st.col]) for i, st in enumerate(item.stats) if not st.frame_stat})
        for i, st in enumerate(item.stats):
            if st.frame_stat:  # a frame of the columns it reads (of every row, or of the fit rows)
                sub = be.select(frame, list(st.inputs()))
                if ids is not None and not st.all_rows:
                    sub = be.filter_mask(sub, ids == split_index)
                parts[i] = be.partial(st, sub, ctx.files)
        out[item.step.key] = [parts[i] for i in range(len(item.stats))]

    program = plan.fit_programs[stage] if kept is None else plan.fit_after_read[stage]
    run_program(be, program, frame, states, ctx, collect, rec=rec)
    if rec.enabled:
        out[PROFILE_KEY] = [rec.finish()]
    return out


GROUP_KEY = "__group__"  # in a merged partial of one of several trees: which (no step key looks like it)


def merge_partials(stats: dict, a: dict, b: dict, backend: str = "cpu", stage: int = 0,
                   prof: dict | None = None, group: tuple[int, int] = (0, 1)) -> dict:
    """Merge two fit partials ({step key: [partial per stat]}) stat by stat (exact merges); the
    tasks' profiles, if any, travel along, with this merge's own span. ``group`` ``(g, n)``:
    merge only the statistics at positions ``i % n == g`` (None at the others), so that ``n``
    merge trees share the work of one (runtime/fitting.py)."""
    g, n = group
    rec = recorder(get_backend(backend), f"fit{stage}", None, prof)
    span = rec.start("merge", "merge")
    out = {key: [st.merge([pa, pb]) if i % n == g else None
                 for i, (st, pa, pb) in enumerate(zip(stats[key], a[key], b[key]))] for key in stats}
    rec.stop(span)
    # A task's spans travel with tree 0; every tree carries the spans of its own merges.
    carried = [s for x in (a, b) if g == 0 or x.get(GROUP_KEY) == g for s in x.get(PROFILE_KEY, [])]
    if rec.enabled or carried:
        out[PROFILE_KEY] = carried + ([rec.finish()] if rec.enabled else [])
    if n > 1:
        out[GROUP_KEY] = g
    return out


def transform_task(backend: str, plan, part, states: dict, prof: dict | None = None,
                   spill: dict | None = None, kept: dict | None = None) -> dict:
    """One partition through the whole graph, cut by split; with its row accounting and its
    expectations' partials (and its spans when ``prof`` is given). ``spill``: where checks that
    need distinct values write them (runtime/quality.py); ``kept``: the partition as
    :func:`read_task` decoded it."""
    be = get_backend(backend, plan.cpu_kernels)
    ctx = TaskContext(part.index, plan.files, float_mode=plan.float_mode)
    rec = recorder(be, "transform", part.index, prof)
    with be.exclusive():
        return _transform(be, ctx, rec, plan, part, states, spill and {**spill, "partition": part.index}, kept)


def _transform(be, ctx, rec, plan, part, states: dict, spill, kept: dict | None) -> dict:
    frame, n_read = _read(be, ctx, rec, plan, part, kept)
    if kept is not None and plan.executor.value == "inprocess":
        # The transform is the kept read's last use: holding it no longer lets each column the
        # program replaces (the demo's 26 categorified inputs, 23 of them int64, by int32 ids)
        # be freed as it goes, not at the task's end (a cluster's worker keeps its copy: it may
        # run the task again).
        kept["frame"] = None
    after_read = be.num_rows(frame)
    pushed = n_read - after_read - ctx.quarantined_rows  # rows that did not parse went to quarantine, not here
    dropped = {pushed_key(plan.graph.source): pushed} if pushed > 0 else {}
    # A kept read carries no elementwise prefix when the graph has input checks (planner.read_prefix).
    frame, checked = check_stage(be, frame, plan.graph.checks_at("input"), ctx, spill)
    program = plan.transform if kept is None else plan.transform_after_read
    frame = run_program(be, program, frame, states, ctx, rec=rec, dropped=dropped)
    frame, checked_out = check_stage(be, frame, plan.graph.checks_at("output"), ctx, spill)
    span = rec.start("split", "split", frame)
    schema = plan.output_schema
    split_ids = be.split_ids(frame)
    if plan.graph.split.default is None and plan.graph.split.by != "hash" and bool((split_ids < 0).any()):
        raise unassigned_error(be, frame, plan.graph.split, split_ids, plan.files)
    output = be.conform(frame, schema)  # once, then each split's rows: the hidden columns are not copied
    splits, split_rows = {}, {}
    for i, name in enumerate(plan.graph.split.names):
        sub = be.filter_mask(output, split_ids == i)
        splits[name] = sub
        split_rows[name] = be.num_rows(sub)
    rec.stop(span, rows=sum(split_rows.values()), nbytes=_total_bytes(be, splits.values()))
    quarantined = ctx.quarantined_rows
    meta = {
        "partition": part.index,
        "rows_read": n_read,
        "filtered": n_read - after_read + (after_read - be.num_rows(frame) - quarantined),
        "quarantined": quarantined,
        "split_rows": split_rows,
        "filtered_by": dropped,
    }
    if checked or checked_out:
        meta["quality"] = {**checked, **checked_out}
    if rec.enabled:
        meta["profile"] = rec.finish()
    quarantine = None
    if ctx.quarantined:
        quarantine = pa.concat_tables(ctx.quarantined)
    return {"splits": splits, "quarantine": quarantine, "meta": meta}


def pushed_key(source) -> str:
    """How the row accounting names the filters pushed into the reader: their steps' keys."""
    return "+".join(source.filter_keys) or "source filter"


def _total_bytes(be, frames) -> int | None:
    nbytes = getattr(be, "nbytes", None)
    return sum(nbytes(f) for f in frames) if nbytes else None


def result_meta(result: dict) -> dict:
    return result["meta"]


def pick_stream(result: dict, stream: str):
    """One split's rows (or the quarantine's) of a partition result."""
    return result["quarantine"] if stream == "quarantine" else result["splits"][stream]


def write_shard_task(backend: str, pieces: list, stream: str, path: str, sink, schema,
                     prof: dict | None = None, writer: str = "arrow") -> dict:
    """Concatenate the pieces (frame, start, stop) of one shard and write it in every output
    format; returns what the manifest records of each file, the shard's summary and content
    digests (kernels/digest.py), and (when ``prof`` is given) the task's span under PROFILE_KEY.
    ``writer`` writes the Parquet files: ``arrow`` (pyarrow, from host memory) or ``cudf`` (the
    GPU engine's, from device memory)."""
    be = get_backend(backend)
    rec = recorder(be, "write", None, prof)
    rows = sum(stop - start for _, start, stop in pieces)
    span = rec.start("quarantine" if stream == "quarantine" else "shards", "write", rows=rows)
    if stream == "quarantine":  # quarantined rows are host Arrow tables whatever the backend
        table = pa.concat_tables([frame.slice(start, stop - start) for frame, start, stop in pieces])
        out = {"files": write_shard(table, path, sink, None), "summary": None,
               "content": content_record(table_digests(table))}
        nbytes_in = table.get_total_buffer_size()
    else:
        frame = be.concat([be.slice(frame, start, stop) for frame, start, stop in pieces])
        out = _write_output(be, frame, path, sink, schema, writer)
        nbytes_in = _total_bytes(be, [frame])
    if rec.enabled:
        rec.stop(span, rows=rows, nbytes=sum(v["bytes"] for v in out["files"].values()), bytes_in=nbytes_in,
                 stream=stream)
        out[PROFILE_KEY] = rec.finish()
    return out


def _write_output(be, frame, path: str, sink, schema, writer: str) -> dict:
    """One shard of a split: its content digests, its summary and its encoded form made where the
    rows are (on the device for the GPU engine, holding it as a transform does), then its files
    written on the host while the device serves other tasks."""
    formats = list(sink.formats)
    cudf_parquet = writer == "cudf" and "parquet" in formats
    if cudf_parquet:
        formats.remove("parquet")
    with be.exclusive():
        content = content_record(be.content_digests(frame, schema))
        summary = shard_summary(schema, lambda c: frame[c].null_count, lambda c: be.finite_values(frame[c]), be.xp,
                                rows=len(frame))
        encoded = be.parquet_bytes(frame, sink, schema) if cudf_parquet else None
        # The schema gives the exact Arrow types to write (the GPU backend's columns map to several).
        table = be.to_arrow(frame, schema) if formats else None
    files = {}
    if encoded is not None:
        final = path + WRITERS["parquet"][0]
        written = write_bytes(final, encoded, getattr(sink, "storage_options", None))
        files["parquet"] = {"path": final, "rows": be.num_rows(frame), "writer": "cudf", **written}
    if table is not None:
        files.update(write_shard(table, path, sink, schema, formats))
    return {"files": files, "summary": summary, "content": content}


def content_record(columns: dict[str, int]) -> dict:
    """What the manifest records of a shard's content: its digest and its columns' (hex)."""
    return {"digest": digest.hex_digest(digest.shard_digest(columns)),
            "columns": {name: digest.hex_digest(d) for name, d in columns.items()}}


__all__ = ["read_task", "fit_task", "transform_task", "write_shard_task", "result_meta", "SPLIT_COL"]
