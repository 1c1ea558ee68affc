"""The report's figures, drawn with matplotlib (the ``report`` extra) into SVG documents that the
report embeds as data URIs: one self-contained file, no scripts or fonts fetched from anywhere."""

from __future__ import annotations

import io

# Colours of what bounded a stage (the report's legend and its screenshot test use them).
BOUND_COLOURS = {"compute": "#4c72b0", "I/O": "#dd8452", "spill": "#c44e52", "waiting": "#8c8c8c",
                 "startup": "#937860"}
STAGE_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
                 "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5")
LINE_COLOURS = ("#1b4f8a", "#d1495b", "#2e8540", "#e08e0b", "#6a4c93", "#0f7c90", "#7a5230", "#444444")
MANY_SPANS = 3000  # draw the waterfall as an embedded bitmap beyond this many bars


def _pyplot():
    import matplotlib  # lazy: matplotlib is optional (the report extra)

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # lazy: matplotlib is optional (the report extra)

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                         "axes.spines.right": False, "svg.hashsalt": "shardsmith"})
    return plt


def to_svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    import matplotlib.pyplot as plt  # lazy: matplotlib is optional (the report extra)

    plt.close(fig)
    return buf.getvalue()


def _stage_labels(stages) -> list[str]:
    return [s["name"] if len(s["name"]) <= 42 else s["name"][:40] + "..." for s in stages]


def stage_times(profile: dict) -> str:
    """Seconds spent in each stage (summed over its calls), coloured by what bounded it."""
    plt = _pyplot()
    stages = profile["stages"]
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(stages) + 1.2))
    y = range(len(stages))
    walls = [s["wall_s"] for s in stages]
    ax.barh(y, walls, color=[BOUND_COLOURS.get(s["bound"], "#8c8c8c") for s in stages])
    ax.set_yticks(list(y), _stage_labels(stages))
    ax.invert_yaxis()
    ax.set_xlabel("seconds (summed over a stage's calls, across workers)")
    top = max(walls) if walls else 1
    for i, s in enumerate(stages):
        ax.text(s["wall_s"] + top * 0.01, i, f"{s['wall_s']:.2f} s  {s['bound']}", va="center", fontsize=8)
    ax.set_xlim(0, top * 1.3)
    _bound_legend(ax, {s["bound"] for s in stages})
    return to_svg(fig)


def _bound_legend(ax, bounds) -> None:
    from matplotlib.patches import Patch  # lazy: matplotlib is optional (the report extra)

    handles = [Patch(color=c, label=b) for b, c in BOUND_COLOURS.items() if b in bounds]
    if handles:
        ax.legend(handles=handles, loc="lower right", frameon=False, title="bounded by")


def throughput(profile: dict) -> str:
    """Rows per second and bytes per second of each stage that moves rows."""
    plt = _pyplot()
    stages = [s for s in profile["stages"] if s.get("rows_per_s")]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 0.3 * len(stages) + 1.4), sharey=True)
    y = list(range(len(stages)))
    ax1.barh(y, [s["rows_per_s"] / 1e6 for s in stages], color="#55a868")
    ax1.set_yticks(y, _stage_labels(stages))
    ax1.invert_yaxis()
    ax1.set_xlabel("million rows / s (rows in / stage seconds)")
    ax2.barh(y, [(s.get("bytes_per_s") or 0) / 1e6 for s in stages], color="#8172b3")
    ax2.set_xlabel("MB / s (bytes in; read: on disk)")
    for ax in (ax1, ax2):
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return to_svg(fig)


def _shade_sections(ax, profile) -> None:
    """The driver's timeline (plan, cluster start, fit, ...) as alternating bands, named where wide enough."""
    sections = profile.get("sections", [])
    span = max((x["start"] + x["wall"] for x in sections), default=1.0) or 1.0
    for i, sec in enumerate(sections):
        ax.axvspan(sec["start"], sec["start"] + sec["wall"], color="#000000", alpha=0.05 if i % 2 else 0.0, lw=0)
        if sec["wall"] >= 0.06 * span:
            ax.text(sec["start"], 1.0, sec["name"], transform=ax.get_xaxis_transform(), fontsize=7, va="bottom",
                    color="#555555")


def memory(profile: dict) -> str:
    """Resident memory of every process over the run (and GPU memory where measured)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 3.6))
    for i, (label, s) in enumerate(sorted(profile["samples"].items())):
        colour = LINE_COLOURS[i % len(LINE_COLOURS)]
        ax.plot(s["t"], [v / 1e6 for v in s["rss"]], color=colour, lw=1.6, label=f"{label} RSS")
        gpu = s.get("gpu_mem")
        if gpu and any(v is not None for v in gpu):
            ax.plot(s["t"], [(v or 0) / 1e6 for v in gpu], color=colour, lw=1.2, ls="--", label=f"{label} GPU")
    peak = max(w["peak_rss_bytes"] for w in profile["workers"])
    limits = {w["memory_limit_bytes"] for w in profile["workers"] if w["role"] == "worker" and w["memory_limit_bytes"]}
    for lim in limits:  # a limit far above the curves would flatten them; the worker table gives it
        if peak >= 0.25 * lim:
            ax.axhline(lim / 1e6, color="#c44e52", lw=0.8, ls=":", label="worker memory limit")
    _shade_sections(ax, profile)
    ax.set_xlabel("seconds since the compile started")
    ax.set_ylabel("MB")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=7, frameon=False, ncol=2)
    return to_svg(fig)


def utilisation(profile: dict) -> str:
    """CPU cores each process kept busy over the run (sampled)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 2.8))
    for i, (label, s) in enumerate(sorted(profile["samples"].items())):
        ax.plot(s["t"], s["cpu"], color=LINE_COLOURS[i % len(LINE_COLOURS)], lw=1.2, label=label)
    _shade_sections(ax, profile)
    ax.set_xlabel("seconds since the compile started")
    ax.set_ylabel("CPU cores busy")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=7, frameon=False, ncol=4)
    return to_svg(fig)


def waterfall(profile: dict) -> str:
    """Every stage call on every process, on one time axis: where workers waited, who was slow."""
    plt = _pyplot()
    spans, stages = profile["spans"], profile["stages"]
    rows = sorted({s[1] for s in spans}, key=lambda w: (w not in ("driver", "inprocess"), w))
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(rows) + 1.8))
    colour = {i: STAGE_PALETTE[i % len(STAGE_PALETTE)] for i in range(len(stages))}
    for r, w in enumerate(rows):
        mine = [s for s in spans if s[1] == w]
        bars = ax.broken_barh([(s[3], max(s[4] - s[3], 1e-4)) for s in mine], (r - 0.4, 0.8),
                              facecolors=[colour[s[0]] for s in mine], edgecolor="white", linewidth=0.3)
        bars.set_rasterized(len(spans) > MANY_SPANS)
    ax.set_yticks(range(len(rows)), rows)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the compile started")
    _shade_sections(ax, profile)
    from matplotlib.patches import Patch  # lazy: matplotlib is optional (the report extra)

    used = sorted({s[0] for s in spans}, key=lambda i: -stages[i]["wall_s"])[:12]
    ax.legend(handles=[Patch(color=colour[i], label=stages[i]["name"]) for i in used], fontsize=7, frameon=False,
              loc="upper center", bbox_to_anchor=(0.5, -0.35 if len(rows) < 3 else -0.15), ncol=3)
    return to_svg(fig)


def cost_vs_time(runs: list[dict], chosen: dict | None, deadline_s: float | None, cost_label: str) -> str:
    """One point per run of a sweep: wall time against cost; the chosen run ringed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    xs = [r["wall_s"] for r in runs]
    ys = [r["cost"] for r in runs]
    ax.scatter(xs, ys, s=36, color="#4c72b0", zorder=3)
    for r in runs:
        ax.annotate(r["label"], (r["wall_s"], r["cost"]), textcoords="offset points", xytext=(5, 4), fontsize=7)
    if chosen is not None:
        ax.scatter([chosen["wall_s"]], [chosen["cost"]], s=180, facecolors="none", edgecolors="#c44e52",
                   linewidths=2, zorder=4, label="cheapest within the deadline" if deadline_s else "cheapest")
    if deadline_s is not None:
        ax.axvline(deadline_s, color="#c44e52", ls="--", lw=1, label=f"deadline {deadline_s:g} s")
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel(cost_label)
    ax.set_xlim(0, max(xs + [deadline_s or 0]) * 1.2 or 1)
    ax.set_ylim(0, max(ys) * 1.15 or 1)
    ax.grid(alpha=0.3)
    if chosen is not None or deadline_s is not None:
        ax.legend(frameon=False, fontsize=8)
    return to_svg(fig)


STAGE_GROUPS = ("startup", "read", "fit", "driver", "transform", "split", "write")


def stage_group(name: str, kind: str) -> str:
    """Which part of a compile a stage belongs to, for the per-run breakdown of a sweep."""
    if kind == "startup":
        return "startup"
    if kind in ("read", "split", "write"):
        return kind
    phase = name.split(":", 1)[0]
    return "fit" if phase.startswith("fit") else "transform" if phase == "transform" else "driver"


def runs_breakdown(runs: list[dict]) -> str:
    """Per run of a sweep: its stage seconds by part of the compile, stacked, and its wall time."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(runs) + 1.6))
    left = [0.0] * len(runs)
    for g, group in enumerate(STAGE_GROUPS):
        widths = [sum(w for name, kind, w in r["stages"] if stage_group(name, kind) == group) for r in runs]
        ax.barh(range(len(runs)), widths, left=left, color=STAGE_PALETTE[g], label=group)
        left = [a + b for a, b in zip(left, widths)]
    ax.scatter([r["wall_s"] for r in runs], range(len(runs)), marker="|", s=300, color="#000000", zorder=3,
               label="wall time")
    ax.set_yticks(range(len(runs)), [r["label"] for r in runs])
    ax.invert_yaxis()
    ax.set_xlabel("seconds (stage seconds summed over workers; the black tick is the run's wall time)")
    ax.legend(frameon=False, fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.25 if len(runs) < 4
                                                                                         else -0.12))
    return to_svg(fig)


def drift_bins(column: dict) -> str:
    """A drifted column's distribution in BASE and NEW: the share of each bin, side by side."""
    plt = _pyplot()
    bins = column["bins"]
    n = len(bins["labels"])
    fig, ax = plt.subplots(figsize=(min(12, 1.2 + 0.45 * n), 3.2))
    x = range(n)
    ax.bar([i - 0.2 for i in x], bins["base"], width=0.4, color=LINE_COLOURS[0], label="BASE")
    ax.bar([i + 0.2 for i in x], bins["new"], width=0.4, color=LINE_COLOURS[1], label="NEW")
    ax.set_xticks(list(x), [lb if len(lb) <= 18 else lb[:16] + "..." for lb in bins["labels"]], rotation=45,
                  ha="right", fontsize=7)
    ax.set_ylabel("share of values")
    ax.legend(frameon=False, fontsize=8)
    return to_svg(fig)
