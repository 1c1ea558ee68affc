"""Stages: their names (from the plan), the spans of each summed into one row of the profile, and
what bounded each one.

A stage is ``<phase>:<key>``: ``fit0:read``, ``fit0:graph[0]..graph[2]`` (a fused kernel),
``fit0:stats graph[3]`` (the partial statistics a fitted step needs), ``transform:graph[5]``,
``transform:split``, ``write:shards``, and the driver's own work (``driver:plan``,
``driver:fit0 merge``, ...). Stages of one flow (``fit0``, ``transform``) hand their frame on:
the rows out of one are the rows into the next.
"""

from __future__ import annotations

import collections

from shardsmith.compiler.ir import Fused, Step
from shardsmith.compiler.planner import Collect

# A stage is compute-bound when its CPU (or GPU) time is at least this share of its wall time.
COMPUTE_SHARE = 0.6
GPU_SHARE = 0.5
MEMORY_PRESSURE = 0.85  # of a worker's memory limit
IO_KINDS = ("read", "write")


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


def catalog(plan) -> list[dict]:
    """Every stage the plan can produce, in pipeline order, with its flow and description."""
    out = [_entry("driver:plan", "driver", "scan inputs, build, optimise and plan"),
           _entry("driver:cluster start", "startup", "start or connect to the cluster")]
    for k, program in enumerate(plan.fit_programs):
        out.append(_entry(f"fit{k}:read", "read", f"fit pass {k}: read partitions", f"fit{k}"))
        out.extend(_entry(f"fit{k}:{stage_key(i)}", stage_kind(i), describe(i), f"fit{k}") for i in program)
        out.append(_entry(f"fit{k}:merge", "merge", f"fit pass {k}: merge partial statistics (a tree, on the workers)"))
        out.append(_entry(f"driver:fit{k} merge", "driver", f"fit pass {k}: finalize statistics, fit state"))
    out.append(_entry("driver:save state", "driver", "write fitted state"))
    out.append(_entry("transform:read", "read", "transform: read partitions", "transform"))
    out.extend(_entry(f"transform:{stage_key(i)}", stage_kind(i), describe(i), "transform") for i in plan.transform)
    out.append(_entry("transform:split", "split", "cut by split, conform dtypes, summary statistics", "transform"))
    out.append(_entry("write:shards", "write", "write shards (all formats)", "transform"))
    out.append(_entry("write:quarantine", "write", "write quarantined rows"))
    out.append(_entry("driver:journal", "driver", "append progress to the resume journal"))
    out.append(_entry("driver:cluster stop", "startup", "stop or disconnect from the cluster"))
    out.append(_entry("driver:manifest", "driver", "merge summaries, build the manifest"))
    return out


def _entry(name, kind, label, flow=None) -> dict:
    return {"name": name, "kind": kind, "label": label, "flow": flow}


def aggregate(spans: list[dict], plan) -> list[dict]:
    """One row per stage that ran, in pipeline order (stages the plan does not know come last)."""
    by_name: dict[str, list[dict]] = collections.defaultdict(list)
    for s in spans:
        by_name[f"{s['phase']}:{s['key']}"].append(s)
    known = catalog(plan)
    rows = [dict(e, **_sums(by_name.pop(e["name"]))) for e in known if e["name"] in by_name]
    for name, group in sorted(by_name.items(), key=lambda kv: min(s["start"] for s in kv[1])):
        rows.append(dict(_entry(name, group[0]["kind"], name), **_sums(group)))
    return rows


def _total(group, field):
    values = [s.get(field) for s in group]
    return None if any(v is None for v in values) else sum(values)


def _sums(group: list[dict]) -> dict:
    wall = sum(s["wall"] for s in group)
    out = {"calls": len(group), "wall_s": wall, "max_call_s": max(s["wall"] for s in group),
           "cpu_s": sum(s["cpu"] for s in group), "gpu_s": _total(group, "gpu")}
    for f in ("rows_in", "rows_out", "bytes_in", "bytes_out"):
        out[f] = _total(group, f)
    out["rows_per_s"] = out["rows_in"] / wall if out["rows_in"] is not None and wall > 0 else None
    out["bytes_per_s"] = out["bytes_in"] / wall if out["bytes_in"] is not None and wall > 0 else None
    out["cpu_share"] = out["cpu_s"] / wall if wall > 0 else None
    return out


def classify(stage: dict, spilled: bool, pressure: bool) -> tuple[str, str]:
    """(bound, why): spill, compute (CPU or GPU), I/O, or waiting, from measured shares."""
    wall = stage["wall_s"]
    if spilled or pressure:
        why = "a worker spilled to disk while it ran" if spilled else \
            f"a worker's memory was above {MEMORY_PRESSURE:.0%} of its limit while it ran"
        return "spill", why
    if stage["kind"] == "startup":
        return "startup", "cluster start or stop: paid once per run"
    if stage.get("gpu_s") is not None and wall > 0 and stage["gpu_s"] / wall >= GPU_SHARE:
        return "compute", f"GPU busy {stage['gpu_s'] / wall:.0%} of its time"
    share = stage["cpu_share"] or 0.0
    if share >= COMPUTE_SHARE:
        return "compute", f"CPU busy {share:.0%} of its time"
    if stage["kind"] in IO_KINDS:
        return "I/O", f"CPU busy only {share:.0%} of its time: waiting on storage"
    return "waiting", f"CPU busy only {share:.0%} of its time: waiting on other processes, transfers or locks"


def overlaps(spans: list[dict], windows: dict[str, list[tuple[float, float]]]) -> bool:
    """Whether any span ran on a worker during one of that worker's flagged time windows."""
    for s in spans:
        for lo, hi in windows.get(s["worker"], ()):
            if s["start"] <= hi and s["start"] + s["wall"] >= lo:
                return True
    return False
