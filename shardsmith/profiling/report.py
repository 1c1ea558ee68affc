"""``shardsmith report``: one self-contained HTML page per run (plots embedded) and a short terminal
summary; ``--compare`` ranks the runs of a sweep by cost and wall time. How a stage's bound is
decided is :data:`BOUNDS` (printed at the foot of every page)."""

from __future__ import annotations

import base64
import html
import os
import re

from shardsmith.errors import InputError, ShardsmithError
from shardsmith.profiling.profile import read_profile

REPORT = "report.html"
COMPARE = "compare.html"
BOUNDS = ("How a stage's bound is decided: spill when a worker it ran on spilled to disk, or sat above 85% of "
          "its memory limit, while it ran; compute when its CPU time (GPU time on the GPU engine) was at least "
          "60% (50%) of its wall time; I/O for a read or write stage below that; waiting for any other stage "
          "below that (other processes, transfers, locks); startup for starting and stopping the cluster. "
          "CPU time counts the helper threads a stage starts (e.g. Parquet decoding) where a worker runs one "
          "task at a time.")


# --- numbers in words ------------------------------------------------------------------------------
def human_bytes(n) -> str:
    if n is None:
        return "-"
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def human_count(n) -> str:
    if n is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.3g}" if isinstance(n, float) else f"{n}"


def human_seconds(s) -> str:
    if s is None:
        return "-"
    if s >= 3600:
        return f"{s / 3600:.2f} h"
    if s >= 120:
        return f"{s / 60:.1f} min"
    return f"{s:.3g} s"


def money(value, currency: str) -> str:
    if value is None:
        return "-"
    digits = 2 if abs(value) >= 1 else 4 if abs(value) >= 0.01 else 6
    return f"{value:,.{digits}f} {currency}"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr)?\s*$", re.IGNORECASE)


def parse_duration(text: str, key: str = "--deadline") -> float:
    """``"90"`` / ``"90s"`` -> 90.0, ``"10m"`` -> 600.0, ``"1.5h"`` -> 5400.0."""
    m = _DURATION.match(str(text))
    if not m:
        raise ShardsmithError(f"expected a duration like 90s, 10m or 1.5h, got {text!r}", key)
    unit = (m.group(2) or "s").lower()
    return float(m.group(1)) * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}[unit]


# --- one run ---------------------------------------------------------------------------------------
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
    return lines


def _memory_line(profile: dict) -> str:
    peak = max(profile["workers"], key=lambda w: w["peak_rss_bytes"])
    limit = f" of {human_bytes(peak['memory_limit_bytes'])}" if peak.get("memory_limit_bytes") else ""
    spilled = sum(w.get("spilled_bytes") or 0 for w in profile["workers"])
    gpu = [w["peak_gpu_bytes"] for w in profile["workers"] if w.get("peak_gpu_bytes")]
    gpu_text = f"; peak GPU memory {human_bytes(max(gpu))}" if gpu else ""
    return (f"peak memory: {peak['label']} {human_bytes(peak['peak_rss_bytes'])} resident{limit}; "
            f"spilled: {human_bytes(spilled) if spilled else 'nothing'}{gpu_text}")


def report_command(path: str, price: float | None, out: str | None, write_html: bool) -> int:
    profile = read_profile(path)
    if price is not None:
        from shardsmith.profiling.cost import reprice

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


def _plots():
    try:
        from shardsmith.profiling import plots
    except ImportError as exc:  # pragma: no cover - the message is the point
        raise ShardsmithError(f"the HTML report needs matplotlib ({exc}); pip install 'shardsmith[report]'",
                              "shardsmith report") from None
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
            _cards(profile), _slowest_html(profile), *figures[:2], _stage_table(profile), *figures[2:],
            _worker_table(profile), _cost_html(profile), _machine_html(profile),
            f"<footer><p>{e(BOUNDS)}</p></footer>"]
    return PAGE.format(title=e(f"shardsmith profile: {profile['name']}"), css=CSS, body="\n".join(body), js=JS)


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


# --- a sweep ---------------------------------------------------------------------------------------
def load_runs(root: str, price: float | None = None) -> list[dict]:
    """Every job of a multirun directory: its varying overrides, wall time, cost and bottleneck."""
    from shardsmith.profiling.cost import reprice
    from shardsmith.profiling.profile import find_profiles

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
            from omegaconf import OmegaConf

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
              _basis_text(r, basis), human_count(r["rows_per_s"]), human_bytes(r["peak_rss"]), r["slowest"],
              _status(r, deadline_s, chosen)] for r in runs]
    widths = [max(len(row[i]) for row in [head, *table]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [head, *table]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(verdict(runs, chosen, deadline_s))
    return lines


def _basis_text(r: dict, basis: str) -> str:
    if r[basis] is None:
        return "-"
    return money(r["cost"], r["currency"]) if basis == "cost" else f"{r['node_hours']:.4g}"


def _status(r: dict, deadline_s, chosen) -> str:
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
    return (f"cheapest setting{within}: {chosen['label']} ({_basis_text(chosen, basis)} {basis_label.split(' (')[0]}"
            f", {human_seconds(chosen['wall_s'])})")


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
                    from shardsmith.profiling.cost import reprice

                    p["cost"] = reprice(p, price)
                _write(os.path.join(os.path.dirname(r["path"]), REPORT), render_html(p))
        target = out or os.path.join(root, COMPARE)
        _write(target, render_compare(runs, chosen, deadline_s, root, os.path.dirname(os.path.abspath(target))))
        print(f"report: {target}")
    return 0 if chosen is not None else 1


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
             _basis_text(r, basis), human_count(r["rows_per_s"]), human_bytes(r["peak_rss"]), r["slowest"],
             _status(r, deadline_s, chosen)]) + cell + "</tr>")
    table = ("<table class=compare><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) +
             "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    body = [f"<h1>Sweep: {html.escape(root)}</h1>",
            f"<p class=verdict>{html.escape(verdict(runs, chosen, deadline_s))}</p>",
            table, fig, why]
    return PAGE.format(title="shardsmith sweep comparison", css=CSS, body="\n".join(body), js=JS)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{css}</style></head>
<body>
{body}
<script>{js}</script>
</body></html>
"""

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px auto;max-width:1180px;
color:#1d2430;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e3e6ea;padding-bottom:4px}
.sub{color:#5b6573;margin:0 0 16px}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:10px}
.cards div{background:#f4f6f9;border-radius:6px;padding:10px 12px} .cards b{display:block;font-size:18px}
.cards span{color:#5b6573;font-size:12px}
figure{margin:0} figure h2{margin-top:28px} img.plot{max-width:100%;height:auto;display:block}
figcaption,.note{color:#5b6573;font-size:12px}
table{border-collapse:collapse;font-size:12px;margin:6px 0;width:100%}
th,td{border-bottom:1px solid #e3e6ea;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f4f6f9;position:sticky;top:0} table.kv{width:auto} table.kv td:first-child{color:#5b6573}
tr.chosen td{background:#fff3cd;font-weight:600}
.bound{padding:1px 6px;border-radius:8px;color:#fff;font-size:12px}
.bound.compute{background:#4c72b0}.bound.IO{background:#dd8452}.bound.spill{background:#c44e52}
.bound.waiting{background:#8c8c8c}.bound.startup{background:#937860}
.verdict{font-size:16px;font-weight:600} footer{margin-top:32px;color:#5b6573;font-size:12px}
"""

# Marks how many plots the browser decoded (a screenshot test reads it from the DOM).
JS = """
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img.plot'), ok = 0;
  imgs.forEach(function (i) { if (i.complete && i.naturalWidth > 0) ok++; });
  document.body.setAttribute('data-plots', imgs.length);
  document.body.setAttribute('data-plots-rendered', ok);
});
"""
