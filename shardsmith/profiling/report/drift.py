"""The page of ``shardsmith drift``: the comparison's table and, per column that crossed a
threshold, its distribution in BASE and NEW side by side (matplotlib, optional: without it the page
says so and keeps the tables). Fed plain data: the result of shards/drift.py ``compare``."""

from __future__ import annotations

import html

from shardsmith.profiling import plots
from shardsmith.profiling.report import _write
from shardsmith.profiling.report.page import figure, page

NO_PLOTS = "Plots need matplotlib, which is not installed: pip install 'shardsmith[report]'."


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else "-" if v is None else str(v)


def render_drift(result: dict) -> str:
    e = html.escape
    b, n, rows = result["base"], result["new"], result["rows"]
    head = ["column", "role", "psi", "js", "ks", "null rate change", "oov rate change", "crossed", "notes"]
    body_rows = "".join(
        f"<tr{' class=drifted' if c['crossed'] else ''}>" + "".join(
            f"<td>{e(_fmt(v))}</td>" for v in (c["name"], c["role"], c["psi"], c["js"], c["ks"], c["null_rate"],
                                               c["oov_rate"], ", ".join(c["crossed"]), "; ".join(c["notes"])))
        + "</tr>" for c in result["columns"])
    table = ("<table class=drift><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
             + body_rows + "</tbody></table>")
    verdict = (f"{len(result['crossed'])} threshold(s) crossed" if result["drifted"] else "no threshold crossed")
    limits = ", ".join(f"{k} {v:g}" for k, v in result["thresholds"].items() if v is not None) or "none"
    body = [f"<h1>Drift: {e(n['name'])} against {e(b['name'])}</h1>",
            f"<p class=sub>BASE {e(b['path'])} &middot; NEW {e(n['path'])} &middot; split {e(result['split'])}</p>",
            f"<p class=verdict>{e(verdict)} (thresholds: {e(limits)})</p>",
            "<ul>" + "".join(f"<li>{e(c)}</li>" for c in result["crossed"]) + "</ul>",
            f"<p>rows: {rows['base']:,} &rarr; {rows['new']:,} ({rows['change']:+.2%})</p>", table,
            *_figures(result)]
    return page(e(f"shardsmith drift: {n['name']}"), body)


def write_drift_page(path: str, result: dict) -> None:
    _write(path, render_drift(result))


def _figures(result: dict) -> list[str]:
    drifted = [c for c in result["columns"] if c["crossed"] and c.get("bins")]
    if not drifted:
        return []
    try:
        plots._pyplot()
    except ImportError:
        return [f"<p class=note>{html.escape(NO_PLOTS)}</p>"]
    return [figure(plots.drift_bins(c), f"{c['name']}: {', '.join(c['crossed'])}",
                   "Share of the column's values in each bin, BASE and NEW (bins at BASE's quantiles, or one per "
                   "value).") for c in drifted]
