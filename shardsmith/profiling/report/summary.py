"""The terminal summary of one run: the run in one line, its cost, the slowest stages and why,
the projection, and peak memory."""

from __future__ import annotations

from shardsmith.profiling.report.quality import quality_lines
from shardsmith.profiling.report.words import human_bytes, human_count, human_seconds, money


def slowest(profile: dict, n: int = 3) -> list[dict]:
    return sorted(profile["stages"], key=lambda s: -s["wall_s"])[:n]


def summary_lines(profile: dict) -> list[str]:
    """The terminal summary: the run in one line, its cost, the three slowest stages and why."""
    eng, rows, cost = profile["engine"], profile["rows"], profile["cost"]
    wall = profile["wall_s"]
    cur = cost["currency"]
    lines = [f"{profile['name']}: {human_seconds(wall)} wall on {eng['workers']} worker(s) ({eng['executor']}, "
             f"{eng['kind']}); {rows['in']:,} rows in, {rows['out']:,} out; {human_bytes(profile['input_bytes'])} "
             f"input ({human_bytes(profile['input_bytes'] / wall if wall else None)}/s, "
             f"{human_count(rows['in'] / wall if wall else None)} rows/s)"]
    if cost["run"] is not None:
        lines.append(f"cost: {money(cost['run'], cur)} ({money(cost['price_per_hour'], cur)}/h, {cost['billing']}); "
                     f"{money(cost['per_tb_input'], cur)} per TB of input; "
                     f"{money(cost['per_million_rows'], cur)} per million rows")
    else:
        lines.append(f"cost: {cost['node_hours']:.4g} node-hours (set profiling.cost_per_hour, or pass "
                     "--cost-per-hour, to price them)")
    total = sum(s["wall_s"] for s in profile["stages"]) or 1.0
    lines.append("slowest stages (seconds summed over their calls):")
    width = max(len(s["name"]) for s in slowest(profile))
    for i, s in enumerate(slowest(profile), 1):
        lines.append(f"  {i}. {s['name']:<{width}}  {s['wall_s']:8.2f} s  {s['wall_s'] / total:4.0%}  "
                     f"{s['bound']:<8} {s['why']}")
    proj = cost["projection"]
    if proj.get("seconds") is not None:
        price = f", {money(proj['cost'], cur)}" if proj.get("cost") is not None else ""
        lines.append(f"projection to {human_bytes(proj['target_bytes'])} of input: {human_seconds(proj['seconds'])}"
                     f"{price} (linear in input bytes; see the report for the assumptions)")
    lines.append(_memory_line(profile))
    return lines + quality_lines(profile.get("quality"))


def _memory_line(profile: dict) -> str:
    peak = max(profile["workers"], key=lambda w: w["peak_rss_bytes"])
    limit = f" of {human_bytes(peak['memory_limit_bytes'])}" if peak.get("memory_limit_bytes") else ""
    spilled = sum(w.get("spilled_bytes") or 0 for w in profile["workers"])
    gpu = [w["peak_gpu_bytes"] for w in profile["workers"] if w.get("peak_gpu_bytes")]
    gpu_text = f"; peak GPU memory {human_bytes(max(gpu))}" if gpu else ""
    return (f"peak memory: {peak['label']} {human_bytes(peak['peak_rss_bytes'])} resident{limit}; "
            f"spilled: {human_bytes(spilled) if spilled else 'nothing'}{gpu_text}")
