"""The stages a plan produces, by name, for the profile: the key of each program item's span,
its kind, and the catalog of every stage in pipeline order (profiling/stages.py aggregates spans
by it)."""

from __future__ import annotations

import collections

from shardsmith.compiler.planner import Collect, Plan
from shardsmith.ir import Fused, Step
from shardsmith.profiling.stages import entry


def stage_key(item) -> str:
    """The key of a program item's span: the step key, or ``stats <key>`` for a Collect."""
    return f"stats {item.step.key}" if isinstance(item, Collect) else item.key


def stage_kind(item) -> str:
    if isinstance(item, Collect):
        return "stats"
    return "fused" if isinstance(item, Fused) else "op"


def describe(item) -> str:
    """What a stage does, in words, for reports."""
    if isinstance(item, Collect):
        kinds = collections.Counter(type(s).__name__ for s in item.stats)
        what = ", ".join(f"{n} x {k}" if n > 1 else k for k, n in kinds.items())
        return f"{item.step.op.op_name} statistics ({what})"
    if isinstance(item, Fused):
        names = " > ".join(s.op.op_name for s in item.steps)
        cols = sum(len(g.chains) for g in item.groups)
        return f"fused {names} ({len(item.groups)} kernel(s), {cols} column(s))"
    if isinstance(item, Step):
        pairs = list(item.op.pairs()) if hasattr(item.op, "pairs") else []
        return f"{item.op.op_name}" + (f" ({len(pairs)} column(s))" if pairs else "")
    return str(item)


def catalog(plan: Plan) -> list[dict]:
    """Every stage the plan can produce, in pipeline order, with its flow and description."""
    out = [entry("driver:plan", "driver", "scan inputs, build, optimise and plan"),
           entry("driver:read ahead", "read", "read the first partitions while the process started (before 0 s)"),
           entry("driver:cluster start", "startup", "start or connect to the cluster")]
    prefix, fits, transform = plan.programs()
    for k, program in enumerate(fits):
        read = "read partitions, kept for every pass" if plan.read_once else "read partitions"
        out.append(entry(f"fit{k}:read", "read", f"fit pass {k}: {read}", f"fit{k}"))
        out.extend(entry(f"fit{k}:{stage_key(i)}", stage_kind(i), describe(i), f"fit{k}")
                   for i in (prefix + program if k == 0 else program))
        out.append(entry(f"fit{k}:merge", "merge", f"fit pass {k}: merge partial statistics (a tree, on the workers)"))
        out.append(entry(f"driver:fit{k} merge", "driver", f"fit pass {k}: finalize statistics, fit state"))
    out.append(entry("driver:reuse state", "driver", "read reused fitted state (fit.from, the fit cache)"))
    out.append(entry("driver:save state", "driver", "write fitted state"))
    out.append(entry("driver:cache state", "driver", "store fitted state in the fit cache"))
    out.append(entry("transform:read", "read", "transform: read partitions", "transform"))
    out.extend(entry(f"transform:{stage_key(i)}", stage_kind(i), describe(i), "transform") for i in transform)
    out.append(entry("transform:split", "split", "cut by split, conform dtypes, summary statistics", "transform"))
    out.append(entry("write:shards", "write", "write shards (all formats)", "transform"))
    out.append(entry("write:quarantine", "write", "write quarantined rows"))
    out.append(entry("driver:journal", "driver", "append progress to the resume journal"))
    out.append(entry("driver:expectations", "driver", "judge expectations (merge partials, count distinct values)"))
    out.append(entry("driver:cluster stop", "startup", "stop or disconnect from the cluster"))
    out.append(entry("driver:manifest", "driver", "merge summaries, build the manifest"))
    return out


def read_bytes(plan: Plan) -> dict[int, int]:
    """Per partition: the on-disk bytes of its row groups and columns, estimated from the footer
    (the partition's share of its file's uncompressed bytes, times the file's size)."""
    src = plan.graph.source
    names = src.schema.names
    out = {}
    for part in plan.partitions:
        f = src.files[part.file_index]
        uncompressed = sum(b for _, b in f.row_groups)
        if not uncompressed:
            out[part.index] = f.bytes
            continue
        projected = sum(f.column_bytes[names.index(c)] for c in src.columns) / (sum(f.column_bytes) or 1) \
            if f.column_bytes else 1.0
        share = sum(f.row_groups[g][1] for g in part.row_groups) * projected / uncompressed
        out[part.index] = int(f.bytes * share)
    return out


def facts(plan: Plan) -> dict:
    """What the profile needs to know of a run's plan, as plain data."""
    return {"dataset": plan.graph.sink.dir, "partitions": len(plan.partitions), "catalog": catalog(plan),
            "read_bytes": read_bytes(plan)}
