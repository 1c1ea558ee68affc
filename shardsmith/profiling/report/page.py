"""The report's HTML: one self-contained page per run (plots embedded as SVG) and one per sweep,
filled into the template files beside this module (page.html, report.css, report.js)."""

from __future__ import annotations

import base64
import functools
import html
import os
import string
from importlib import resources

from shardsmith.errors import ShardsmithError
from shardsmith.profiling import plots
from shardsmith.profiling.report.quality import quality_html
from shardsmith.profiling.report.runs import REPORT, basis_text, cost_basis, status_text, verdict
from shardsmith.profiling.report.summary import slowest
from shardsmith.profiling.report.words import human_bytes, human_count, human_seconds, money

BOUNDS = ("How a stage's bound is decided: spill when a worker it ran on spilled to disk, or sat above 85% of "
          "its memory limit, while it ran; compute when its CPU time (GPU time on the GPU engine) was at least "
          "60% (50%) of its wall time; I/O for a read or write stage below that; waiting for any other stage "
          "below that (other processes, transfers, locks); startup for starting and stopping the cluster. "
          "CPU time counts the helper threads a stage starts (e.g. Parquet decoding) where a worker runs one "
          "task at a time.")


@functools.cache
def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def page(title: str, body: list[str]) -> str:
    """A whole page: the template with its style, script and ``body`` (HTML fragments) filled in."""
    return string.Template(_asset("page.html")).substitute(
        title=title, css=_asset("report.css"), js=_asset("report.js"), body="\n".join(body))


def _plots():
    """The plotting module, once matplotlib (an optional dependency) is known to import."""
    try:
        plots._pyplot()
    except ImportError:
        raise ShardsmithError("the HTML report needs matplotlib: pip install 'shardsmith[report]' "
                              "(or pass --no-html)", "shardsmith report") from None
    return plots


def figure(svg: str, title: str, caption: str) -> str:
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return (f'<figure><h2>{html.escape(title)}</h2>'
            f'<img class="plot" decoding="sync" alt="{html.escape(title)}" '
            f'src="data:image/svg+xml;base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>')


def render_html(profile: dict) -> str:
    plots = _plots()
    e = html.escape
    figures = [
        figure(plots.stage_times(profile), "Time per stage",
               "Seconds per stage, summed over its calls on every worker; colour: what bounded it."),
        figure(plots.throughput(profile), "Throughput per stage", "Rows and bytes into each stage per second."),
        figure(plots.memory(profile), "Memory over time",
               "Resident memory of each process, sampled; dashed: GPU memory; dotted: a worker's memory limit."),
        figure(plots.utilisation(profile), "Worker utilisation over time", "CPU cores each process kept busy."),
        figure(plots.waterfall(profile), "Waterfall of stages per worker",
               "Each bar is one call of a stage on one process; gaps are time a worker had nothing to do."),
    ]
    body = [f"<h1>{e(profile['name'])}: where the time and money went</h1>",
            f"<p class=sub>dataset {e(profile['dataset'])} &middot; profiled {e(profile['created'])} &middot; "
            f"{e(profile['engine']['kind'])} engine, {e(profile['engine']['executor'])}, "
            f"{profile['engine']['workers']} worker(s), {profile['engine']['partitions']} partition(s)</p>",
            _cards(profile), quality_html(profile.get("quality")),
            _slowest_html(profile), *figures[:2], _stage_table(profile), *figures[2:],
            _worker_table(profile), _cost_html(profile), _machine_html(profile),
            f"<footer><p>{e(BOUNDS)}</p></footer>"]
    return page(e(f"shardsmith profile: {profile['name']}"), body)


def _cards(profile: dict) -> str:
    c, wall = profile["cost"], profile["wall_s"]
    cur = c["currency"]
    items = [("wall time", human_seconds(wall)), ("rows in", f"{profile['rows']['in']:,}"),
             ("input", human_bytes(profile["input_bytes"])),
             ("rows / s", human_count(profile["rows"]["in"] / wall if wall else None)),
             ("cost", money(c["run"], cur) if c["run"] is not None else f"{c['node_hours']:.3g} node-h"),
             ("per TB of input", money(c["per_tb_input"], cur)),
             ("per million rows", money(c["per_million_rows"], cur)),
             ("peak RSS", human_bytes(max(w["peak_rss_bytes"] for w in profile["workers"])))]
    return "<div class=cards>" + "".join(f"<div><b>{html.escape(v)}</b><span>{html.escape(k)}</span></div>"
                                         for k, v in items) + "</div>"


def _slowest_html(profile: dict) -> str:
    items = "".join(f"<li><b>{html.escape(s['name'])}</b> ({html.escape(s['label'])}): {human_seconds(s['wall_s'])}, "
                    f"<span class='bound {html.escape(s['bound'].replace('/', ''))}'>{html.escape(s['bound'])}</span>"
                    f" &mdash; {html.escape(s['why'])}</li>" for s in slowest(profile))
    return f"<h2>The three slowest stages</h2><ol class=slowest>{items}</ol>"


def _table(headers: list[str], rows: list[list], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _stage_table(profile: dict) -> str:
    rows = [[s["name"], s["label"], s["calls"], f"{s['wall_s']:.3f}", f"{s['share_of_task_time']:.1%}",
             f"{s['max_call_s']:.3f}", f"{s['cpu_s']:.3f}",
             f"{s['cpu_share']:.0%}" if s["cpu_share"] is not None else "-",
             f"{s['gpu_s']:.3f}" if s.get("gpu_s") is not None else "-", human_count(s["rows_in"]),
             human_count(s["rows_out"]), human_bytes(s["bytes_in"]), human_bytes(s["bytes_out"]),
             human_count(s["rows_per_s"]), human_bytes(s["bytes_per_s"]) + "/s" if s["bytes_per_s"] else "-",
             s["bound"]] for s in profile["stages"]]
    a = profile["accounting"]
    note = (f"<p class=note>Stage seconds add up to {a['stage_sum_s']:.2f} s against {a['wall_s']:.2f} s of wall "
            f"time ({a['parallelism']:.2f} stages at a time on average). Profiling cost at most "
            f"{a['overhead_share_bound']:.2%} of the wall time (recorder {a['recorder_overhead_s']:.3f} s, "
            f"samplers {a['sampler_cpu_s']:.3f} s of CPU).</p>")
    return "<h2>Stages</h2>" + _table(
        ["stage", "what", "calls", "wall s", "share", "max call s", "CPU s", "CPU share", "GPU s", "rows in",
         "rows out", "bytes in", "bytes out", "rows/s", "bytes/s", "bound"], rows, "stages") + note


def _worker_table(profile: dict) -> str:
    rows = [[w["label"], w["role"], w.get("address") or "-", w["pid"], f"{w['busy_s']:.2f}",
             f"{w['utilisation']:.0%}" if w["utilisation"] is not None else "-", human_bytes(w["peak_rss_bytes"]),
             human_bytes(w["lifetime_max_rss_bytes"]), human_bytes(w.get("peak_gpu_bytes")),
             human_bytes(w.get("memory_limit_bytes")), human_bytes(w.get("spilled_bytes") or 0),
             f"{w.get('dask', {}).get('gather-dep.network.seconds', 0):.3f}"] for w in profile["workers"]]
    return "<h2>Workers</h2>" + _table(
        ["process", "role", "address", "pid", "busy s", "busy share", "peak RSS (sampled)", "lifetime max RSS",
         "peak GPU memory", "memory limit", "spilled", "transfer s"], rows)


def _cost_html(profile: dict) -> str:
    c = profile["cost"]
    cur, p = c["currency"], c["projection"]
    price = money(c["price_per_hour"], cur) + "/h" if c["price_per_hour"] is not None else \
        "no price set (profiling.cost_per_hour)"
    rows = [["node price", price], ["billed", c["billing"]], ["node-hours", f"{c['node_hours']:.5g}"],
            ["this run", money(c["run"], cur)], ["per TB of input", money(c["per_tb_input"], cur)],
            ["per million rows", money(c["per_million_rows"], cur)],
            [f"projected time for {human_bytes(p['target_bytes'])}", human_seconds(p.get("seconds"))],
            [f"projected cost for {human_bytes(p['target_bytes'])}", money(p.get("cost"), cur)],
            ["projected rows", human_count(p.get("target_rows"))]]
    assumptions = "".join(f"<li>{html.escape(a)}</li>" for a in p["assumptions"])
    return ("<h2>Cost and projection</h2>" + _table(["", ""], rows, "kv") +
            f"<p>The projection assumes:</p><ul>{assumptions}</ul>")


def _machine_html(profile: dict) -> str:
    m = profile["machine"]
    gpus = ", ".join(f"{g['name']} ({human_bytes(g['memory_bytes'])})" for g in m["gpus"]) or "none"
    rows = [["host", m["hostname"]], ["OS", m["os"]], ["CPU", m["cpu_model"]],
            ["cores", f"{m['physical_cores']} physical, {m['logical_cores']} logical"],
            ["memory", human_bytes(m["memory_bytes"])], ["GPUs", gpus]]
    rows += [[k, v] for k, v in profile["versions"].items()]
    return "<h2>Machine and versions</h2>" + _table(["", ""], rows, "kv")


def render_compare(runs: list[dict], chosen: dict | None, deadline_s: float | None, root: str,
                   base: str | None = None) -> str:
    """The comparison page; links to each run's report are relative to ``base`` (the page's directory)."""
    plots = _plots()
    basis, basis_label = cost_basis(runs)
    measured = [dict(r, cost=r[basis]) for r in runs if r["status"] == "ok"]
    chosen_point = next((m for m in measured if chosen is not None and m["path"] == chosen["path"]), None)
    fig = figure(plots.cost_vs_time(measured, chosen_point, deadline_s, basis_label), "Cost versus time",
                 "One point per run of the sweep; ringed: the cheapest run that met the deadline.")
    why = figure(plots.runs_breakdown(measured), "Where each run's time went",
                 "Stage seconds of each run by part of the compile; a run's own report has the details.") \
        if measured else ""
    head = ["job", "setting", "wall", basis_label, "rows/s", "peak RSS", "slowest stage", "status", "report"]
    rows = []
    for r in runs:
        link = os.path.relpath(os.path.join(os.path.dirname(r["path"]), REPORT), base or root)
        cell = f"<td><a href='{html.escape(link)}'>report</a></td>" if r["status"] == "ok" else "<td>-</td>"
        rows.append("<tr" + (" class=chosen" if r is chosen else "") + ">" + "".join(
            f"<td>{html.escape(str(v))}</td>" for v in
            [r["job"] if r["job"] is not None else r["dir"], r["label"], human_seconds(r["wall_s"]),
             basis_text(r, basis), human_count(r["rows_per_s"]), human_bytes(r["peak_rss"]), r["slowest"],
             status_text(r, deadline_s, chosen)]) + cell + "</tr>")
    table = ("<table class=compare><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) +
             "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    body = [f"<h1>Sweep: {html.escape(root)}</h1>",
            f"<p class=verdict>{html.escape(verdict(runs, chosen, deadline_s))}</p>",
            table, fig, why]
    return page("shardsmith sweep comparison", body)
