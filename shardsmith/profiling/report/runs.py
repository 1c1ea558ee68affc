"""The runs of a sweep: every job of a Hydra multirun directory (its varying overrides, wall time,
cost and bottleneck, or why it has no profile), and which one was the cheapest within a deadline."""

from __future__ import annotations

import os

from omegaconf import OmegaConf

from shardsmith.errors import InputError
from shardsmith.profiling.cost import reprice
from shardsmith.profiling.document import find_profiles, read_profile
from shardsmith.profiling.report.summary import slowest
from shardsmith.profiling.report.words import human_bytes, human_count, human_seconds, money

REPORT = "report.html"


def load_runs(root: str, price: float | None = None) -> list[dict]:
    """Every job of a multirun directory: its varying overrides, wall time, cost and bottleneck."""
    if not os.path.isdir(root):
        raise InputError("no such directory (expected a Hydra multirun directory)", root)
    runs = []
    for path in find_profiles(root):
        p = read_profile(path)
        if price is not None:
            p["cost"] = reprice(p, price)
        runs.append(_run_record(p, root))
    runs += _failed_jobs(root, {os.path.dirname(r["path"]) for r in runs})
    if not runs:
        raise InputError("no runs with a profile.json under this directory (the jobs of a "
                         "'shardsmith compile -m ...' sweep write one each)", root)
    _label(runs)
    return sorted(runs, key=lambda r: (r["job"] is None, r["job"] if r["job"] is not None else 0, r["path"]))


def _run_record(p: dict, root: str) -> dict:
    hyd = p.get("hydra") or {}
    top = slowest(p, 1)[0]
    return {"path": p["_path"], "dir": os.path.relpath(os.path.dirname(p["_path"]), root), "job": hyd.get("job_num"),
            "overrides": list(hyd.get("overrides", [])), "wall_s": p["wall_s"], "cost": p["cost"]["run"],
            "node_hours": p["cost"]["node_hours"], "currency": p["cost"]["currency"], "rows_in": p["rows"]["in"],
            "rows_per_s": p["rows"]["in"] / p["wall_s"] if p["wall_s"] else None,
            "peak_rss": max(w["peak_rss_bytes"] for w in p["workers"]), "workers": p["engine"]["workers"],
            "slowest": f"{top['name']} ({top['bound']})", "status": "ok",
            "stages": [(s["name"], s["kind"], s["wall_s"]) for s in p["stages"]]}


def _failed_jobs(root: str, seen: set) -> list[dict]:
    """Job directories (they hold .hydra/) with no profile: the compile failed or measured nothing."""
    out = []
    for here, dirs, _ in os.walk(os.path.abspath(root)):
        dirs[:] = sorted(d for d in dirs if d != ".hydra" and not d.startswith("."))
        if os.path.isdir(os.path.join(here, ".hydra")) and here not in seen and \
                os.path.isfile(os.path.join(here, ".hydra", "overrides.yaml")) and not _has_profile_below(here, seen):
            overrides = [str(o) for o in OmegaConf.load(os.path.join(here, ".hydra", "overrides.yaml"))]
            name = os.path.basename(here)
            out.append({"path": os.path.join(here, "profile.json"), "dir": os.path.relpath(here, os.path.abspath(root)),
                        "job": int(name) if name.isdigit() else None, "overrides": overrides, "wall_s": None,
                        "cost": None, "node_hours": None, "currency": "", "rows_in": None, "rows_per_s": None,
                        "peak_rss": None, "workers": None, "slowest": "-", "stages": [],
                        "status": "no profile (the job failed or measured nothing)"})
    return out


def _has_profile_below(here: str, seen: set) -> bool:
    return any(s == here or s.startswith(here + os.sep) for s in seen)


def _label(runs: list[dict]) -> None:
    """A run's label: the overrides that differ between runs (all of them if none differ)."""
    values: dict[str, set] = {}
    for r in runs:
        for o in r["overrides"]:
            k, _, v = o.partition("=")
            values.setdefault(k, set()).add(v)
    varying = {k for k, v in values.items() if len(v) > 1 or any(k not in _keys(r) for r in runs)}
    for r in runs:
        chosen = [o for o in r["overrides"] if o.partition("=")[0] in varying] or r["overrides"]
        r["label"] = " ".join(chosen) or r["dir"]


def _keys(run: dict) -> set:
    return {o.partition("=")[0] for o in run["overrides"]}


def cost_basis(runs: list[dict]) -> tuple[str, str]:
    """("cost", label) when every measured run has a price, else ("node_hours", label)."""
    measured = [r for r in runs if r["status"] == "ok"]
    if measured and all(r["cost"] is not None for r in measured):
        currencies = {r["currency"] for r in measured}
        return "cost", f"cost ({'/'.join(sorted(currencies))})"
    return "node_hours", "node-hours (no price set: profiling.cost_per_hour or --cost-per-hour)"


def choose(runs: list[dict], deadline_s: float | None) -> dict | None:
    """The cheapest measured run that met the deadline (ties: the faster, then by label)."""
    basis, _ = cost_basis(runs)
    ok = [r for r in runs if r["status"] == "ok" and (deadline_s is None or r["wall_s"] <= deadline_s)]
    if not ok:
        return None
    return min(ok, key=lambda r: (r[basis], r["wall_s"], r["label"]))


def compare_lines(runs: list[dict], chosen: dict | None, deadline_s: float | None) -> list[str]:
    basis, basis_label = cost_basis(runs)
    head = ["job", "setting", "wall", basis_label.split(" (")[0], "rows/s", "peak RSS", "slowest stage", "status"]
    table = [[str(r["job"]) if r["job"] is not None else r["dir"], r["label"], human_seconds(r["wall_s"]),
              basis_text(r, basis), human_count(r["rows_per_s"]), human_bytes(r["peak_rss"]), r["slowest"],
              status_text(r, deadline_s, chosen)] for r in runs]
    widths = [max(len(row[i]) for row in [head, *table]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [head, *table]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(verdict(runs, chosen, deadline_s))
    return lines


def basis_text(r: dict, basis: str) -> str:
    if r[basis] is None:
        return "-"
    return money(r["cost"], r["currency"]) if basis == "cost" else f"{r['node_hours']:.4g}"


def status_text(r: dict, deadline_s, chosen) -> str:
    if r["status"] != "ok":
        return r["status"]
    mark = "  <- cheapest" if chosen is r else ""
    if deadline_s is None:
        return "ok" + mark
    return ("met deadline" if r["wall_s"] <= deadline_s else "missed deadline") + mark


def verdict(runs: list[dict], chosen: dict | None, deadline_s: float | None) -> str:
    basis, basis_label = cost_basis(runs)
    within = f" within the deadline of {human_seconds(deadline_s)}" if deadline_s is not None else ""
    if chosen is None:
        measured = [r for r in runs if r["status"] == "ok"]
        if not measured:
            return "no run was measured"
        fastest = min(measured, key=lambda r: r["wall_s"])
        return (f"no run finished{within}; the fastest was {fastest['label']} "
                f"({human_seconds(fastest['wall_s'])})")
    return (f"cheapest setting{within}: {chosen['label']} ({basis_text(chosen, basis)} {basis_label.split(' (')[0]}"
            f", {human_seconds(chosen['wall_s'])})")
