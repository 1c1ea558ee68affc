"""Put a profile together from what the driver and the workers measured (see profile.py for the
layout of the result)."""

from __future__ import annotations

import dataclasses
import os

from shardsmith.profiling import stages as st
from shardsmith.profiling.cost import cost_model
from shardsmith.profiling.document import FORMAT, MAX_SPANS, VERSION, now_iso
from shardsmith.profiling.machine import machine, versions


def assemble(prof, facts: dict, manifest: dict, wall_s: float) -> dict:
    """The profile document; ``facts`` is what the runtime tells of its plan, as plain data (the
    dataset directory, the partition count, the stage catalog, each partition's bytes on disk)."""
    spans = prof.spans
    _fill_read_bytes(spans, facts["read_bytes"])
    labels = _worker_labels(prof, spans)
    windows = _flag_windows(prof.samplers)
    stage_rows = st.aggregate(spans, facts["catalog"])
    by_stage = _spans_by_stage(spans)
    for row in stage_rows:
        mine = by_stage[row["name"]]
        row["bound"], row["why"] = st.classify(row, st.overlaps(mine, windows["spill"]),
                                               st.overlaps(mine, windows["pressure"]))
        row["share_of_task_time"] = row["wall_s"] / max(sum(r["wall_s"] for r in stage_rows), 1e-12)
    index = {row["name"]: i for i, row in enumerate(stage_rows)}
    input_bytes = sum(i["bytes"] for i in manifest["inputs"])
    fixed = sum(r["wall_s"] for r in stage_rows if r["kind"] == "startup")
    cfg = prof.cfg
    return {
        "format": FORMAT, "version": VERSION, "name": manifest["name"], "created": now_iso(),
        "started": prof.epoch0,
        "dataset": os.path.abspath(facts["dataset"]), "manifest": "manifest.json",
        "dataset_key": manifest.get("dataset_key"),
        "wall_s": wall_s,
        "engine": {"kind": prof.backend, "executor": prof.executor["name"], "workers": prof.executor["workers"],
                   "dashboard": prof.executor.get("dashboard"), "partitions": facts["partitions"],
                   "partition_bytes": cfg.engine.partition_bytes, "threads_per_worker": cfg.engine.threads_per_worker},
        "config": {"engine": _public(cfg.engine), "profiling": _public(cfg.profiling),
                   "output": {k: v for k, v in _public(cfg.output).items() if k != "dir"}},
        "rows": dict(manifest["rows"]),
        "input_bytes": input_bytes,
        "output_bytes": sum(s["bytes"] for split in manifest["splits"].values() for s in split["shards"]),
        "sections": prof.sections,
        "stages": stage_rows,
        "workers": _workers(prof, spans, labels, wall_s),
        "samples": {labels[s["id"]]: _relative_samples(s, prof.epoch0) for s in prof.samplers},
        "spans": _waterfall(spans, index, labels, prof.epoch0),
        "cost": cost_model(cfg.profiling, wall_s, fixed, input_bytes, manifest["rows"]["in"], prof.backend,
                           prof.executor["workers"]),
        "accounting": _accounting(prof, stage_rows, wall_s),
        "machine": machine(prof.backend),
        "versions": versions(manifest.get("code_version", "")),
        "quality": manifest.get("quality"),  # the expectations' results, for the report
    }


def _public(dc) -> dict:
    return dataclasses.asdict(dc)


def _fill_read_bytes(spans: list[dict], read_bytes: dict[int, int]) -> None:
    """A read span's bytes in: its partition's bytes on disk (estimated by the runtime from the footer)."""
    for s in spans:
        if s["kind"] == "read" and s.get("partition") is not None:
            s["bytes_in"] = read_bytes[s["partition"]]


def _spans_by_stage(spans: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for s in spans:
        out.setdefault(f"{s['phase']}:{s['key']}", []).append(s)
    return out


def _worker_labels(prof, spans) -> dict[str, str]:
    """``driver`` (or ``inprocess``) for this process, ``w0``, ``w1``... for workers by address."""
    labels = {}
    for s in prof.samplers:
        if s["role"] != "worker":
            labels[s["id"]] = s["role"]
    workers = sorted((s for s in prof.samplers if s["role"] == "worker"), key=lambda s: str(s["address"]))
    for i, s in enumerate(workers):
        labels[s["id"]] = f"w{i}"
    for sp in spans:  # a process that ran tasks but returned no samples (lost, or on another host)
        labels.setdefault(sp["worker"], f"w{len(labels)}")
    return labels


def _flag_windows(samplers) -> dict[str, dict]:
    """Per process, the time windows in which it spilled, or sat above the memory-pressure mark."""
    spill, pressure = {}, {}
    for s in samplers:
        t, rss, spilled = s["samples"]["t"], s["samples"]["rss"], s["samples"].get("spilled", [])
        limit = s.get("memory_limit_bytes")
        spill[s["id"]] = [(t[i - 1], t[i]) for i in range(1, len(spilled)) if spilled[i] > spilled[i - 1]]
        if limit:
            pressure[s["id"]] = [(t[i] - s["interval_s"], t[i]) for i in range(len(t))
                                 if rss[i] > st.MEMORY_PRESSURE * limit]
    return {"spill": spill, "pressure": pressure}


def _workers(prof, spans, labels, wall_s) -> list[dict]:
    busy: dict[str, float] = {}
    tasks: dict[str, set] = {}
    for s in spans:
        busy[s["worker"]] = busy.get(s["worker"], 0.0) + s["wall"]
        tasks.setdefault(s["worker"], set()).add((s["phase"], s.get("partition")))
    out = []
    for s in prof.samplers:
        b = busy.get(s["id"], 0.0)
        out.append({"label": labels[s["id"]], "role": s["role"], "id": s["id"], "address": s["address"],
                    "pid": s["pid"], "stage_calls": len(tasks.get(s["id"], ())), "busy_s": b,
                    "utilisation": b / wall_s if wall_s > 0 else None,
                    **{k: s[k] for k in ("peak_rss_bytes", "lifetime_max_rss_bytes", "peak_gpu_bytes",
                                         "memory_limit_bytes", "spilled_bytes", "dask")}})
    return sorted(out, key=lambda w: (w["role"] == "worker", w["label"]))


def _relative_samples(s: dict, epoch0: float) -> dict:
    out = {k: v for k, v in s["samples"].items() if k != "t"}
    out["t"] = [round(t - epoch0, 3) for t in s["samples"]["t"]]
    out["interval_s"] = s["interval_s"]
    return out


def _waterfall(spans, index, labels, epoch0) -> list[list]:
    """``[stage index, worker label, partition, start, end]`` per span, by start time."""
    keep = spans
    if len(spans) > MAX_SPANS:
        keep = sorted(spans, key=lambda s: -s["wall"])[:MAX_SPANS]
    rows = [[index[f"{s['phase']}:{s['key']}"], labels[s["worker"]], s.get("partition"),
             round(s["start"] - epoch0, 4), round(s["start"] - epoch0 + s["wall"], 4)] for s in keep]
    return sorted(rows, key=lambda r: r[3])


def _accounting(prof, stage_rows, wall_s) -> dict:
    stage_sum = sum(r["wall_s"] for r in stage_rows)
    sampler_cpu = sum(s.get("sampler_cpu_s", 0.0) for s in prof.samplers)
    overhead = prof.task_overhead_s + sampler_cpu
    return {
        "wall_s": wall_s, "stage_sum_s": stage_sum,
        "parallelism": stage_sum / wall_s if wall_s > 0 else None,
        "sections_sum_s": sum(x["wall"] for x in prof.sections),
        "recorder_overhead_s": prof.task_overhead_s, "sampler_cpu_s": sampler_cpu,
        # An upper bound: as if every microsecond of it were on the critical path.
        "overhead_share_bound": overhead / wall_s if wall_s > 0 else None,
        "spans_kept": min(len(prof.spans), MAX_SPANS), "spans_total": len(prof.spans),
    }
