"""Stages: their names (a catalog the runtime gives, from its plan), the spans of each summed
into one row of the profile, and what bounded each one.

A stage is ``<phase>:<key>``: ``fit0:read``, ``fit0:graph[0]..graph[2]`` (a fused kernel),
``fit0:stats graph[3]`` (the partial statistics a fitted step needs), ``transform:graph[5]``,
``transform:split``, ``write:shards``, and the driver's own work (``driver:plan``,
``driver:fit0 merge``, ...). Stages of one flow (``fit0``, ``transform``) hand their frame on:
the rows out of one are the rows into the next.
"""

from __future__ import annotations

import collections

# A stage is compute-bound when its CPU (or GPU) time is at least this share of its wall time.
COMPUTE_SHARE = 0.6
GPU_SHARE = 0.5
MEMORY_PRESSURE = 0.85  # of a worker's memory limit
IO_KINDS = ("read", "write")


def entry(name, kind, label, flow=None) -> dict:
    """One stage of a catalog: its name, kind, a label for reports, and its flow (if any)."""
    return {"name": name, "kind": kind, "label": label, "flow": flow}


def aggregate(spans: list[dict], known: list[dict]) -> list[dict]:
    """One row per stage that ran, in the order of the catalog ``known`` (the runtime's list of
    every stage its plan can produce); stages it does not know come last."""
    by_name: dict[str, list[dict]] = collections.defaultdict(list)
    for s in spans:
        by_name[f"{s['phase']}:{s['key']}"].append(s)
    rows = [dict(e, **_sums(by_name.pop(e["name"]))) for e in known if e["name"] in by_name]
    for name, group in sorted(by_name.items(), key=lambda kv: min(s["start"] for s in kv[1])):
        rows.append(dict(entry(name, group[0]["kind"], name), **_sums(group)))
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
