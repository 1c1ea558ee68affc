"""``shardsmith report``: one self-contained HTML page per run (plots embedded) and a short terminal
summary; ``--compare`` ranks the runs of a sweep by cost and wall time. How a stage's bound is
decided is :data:`BOUNDS` (printed at the foot of every page)."""

from __future__ import annotations

import os

from shardsmith.errors import InputError
from shardsmith.profiling.cost import reprice
from shardsmith.profiling.document import read_profile
from shardsmith.profiling.report.page import BOUNDS, render_compare, render_html
from shardsmith.profiling.report.runs import REPORT, choose, compare_lines, cost_basis, load_runs, verdict
from shardsmith.profiling.report.summary import slowest, summary_lines
from shardsmith.profiling.report.words import human_bytes, human_count, human_seconds, money, parse_duration

COMPARE = "compare.html"
__all__ = ["BOUNDS", "REPORT", "COMPARE", "report_command", "compare_command", "render_html", "render_compare",
           "choose", "compare_lines", "cost_basis", "load_runs", "verdict", "slowest", "summary_lines",
           "human_bytes", "human_count", "human_seconds", "money", "parse_duration"]


def report_command(path: str, price: float | None, out: str | None, write_html: bool) -> int:
    profile = read_profile(path)
    if price is not None:
        profile["cost"] = reprice(profile, price)
    for line in summary_lines(profile):
        print(line)
    if write_html:
        target = out or os.path.join(os.path.dirname(profile["_path"]), REPORT)
        _write(target, render_html(profile))
        print(f"report: {target}")
    return 0


def _write(path: str, text: str) -> None:
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot write the report: {exc.strerror}", path) from None


def compare_command(root: str, deadline: str | None, price: float | None, out: str | None, write_html: bool) -> int:
    deadline_s = parse_duration(deadline) if deadline else None
    runs = load_runs(root, price)
    chosen = choose(runs, deadline_s)
    for line in compare_lines(runs, chosen, deadline_s):
        print(line)
    if write_html:
        for r in runs:  # the table links every run's own report
            if r["status"] == "ok":
                p = read_profile(r["path"])
                if price is not None:
                    p["cost"] = reprice(p, price)
                _write(os.path.join(os.path.dirname(r["path"]), REPORT), render_html(p))
        target = out or os.path.join(root, COMPARE)
        _write(target, render_compare(runs, chosen, deadline_s, root, os.path.dirname(os.path.abspath(target))))
        print(f"report: {target}")
    return 0 if chosen is not None else 1
