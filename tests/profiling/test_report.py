"""``shardsmith report``: the terminal summary, the self-contained HTML page (opened in headless
Chromium: the plots must render), and the sweep comparison on crafted runs."""

from __future__ import annotations

import base64
import copy
import html
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from shardsmith.cli import main
from shardsmith.profiling import report
from shardsmith.profiling.plots import BOUND_COLOURS

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed "
                                                               "(.ci/run installs Debian's chromium package)")


def chromium(tmp_path, url: str, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    return subprocess.run([CHROMIUM, *flags, *args, url], capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def run_dir(inprocess_run):
    result, _ = inprocess_run
    return os.path.dirname(result.path)


def test_terminal_summary_names_the_three_slowest_stages(inprocess_run, capsys, run_dir):
    _, profile = inprocess_run
    assert main(["report", run_dir, "--no-html"]) == 0
    out = capsys.readouterr().out
    expected = sorted(profile["stages"], key=lambda s: -s["wall_s"])[:3]
    lines = out.splitlines()
    start = lines.index("slowest stages (seconds summed over their calls):")
    for i, stage in enumerate(expected, 1):
        line = lines[start + i]
        assert line.strip().startswith(f"{i}. {stage['name']} ")
        assert stage["bound"] in line and f"{stage['wall_s']:.2f} s" in line
    assert "cost: " in out and "USD per TB of input" in out and "per million rows" in out
    assert "projection to 10 GB of input" in out
    assert not os.path.exists(os.path.join(run_dir, "report.html"))


def test_html_report_is_one_self_contained_file(run_dir, tmp_path, capsys):
    target = tmp_path / "r.html"
    assert main(["report", run_dir, "--out", str(target)]) == 0
    text = target.read_text()
    assert f"report: {target}" in capsys.readouterr().out
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text), "the page must not fetch anything"
    images = re.findall(r'<img class="plot" decoding="sync" alt="([^"]+)" src="data:image/svg\+xml;base64,([^"]+)"',
                        text)
    assert [alt for alt, _ in images] == ["Time per stage", "Throughput per stage", "Memory over time",
                                          "Worker utilisation over time", "Waterfall of stages per worker"]
    for _, data in images:
        svg = ET.fromstring(base64.b64decode(data))
        assert svg.tag.endswith("svg") and len(list(svg.iter())) > 50
    assert "<table class='stages'>" in text and "Cost and projection" in text
    assert "How a stage's bound is decided" in html.unescape(text)


def test_report_can_reprice_a_run(run_dir, capsys):
    assert main(["report", run_dir, "--no-html", "--cost-per-hour", "7.2"]) == 0
    out = capsys.readouterr().out
    profile = json.load(open(os.path.join(run_dir, "profile.json")))
    assert f"cost: {report.money(profile['wall_s'] / 500, 'USD')} (7.20 USD/h" in out


@needs_chromium
def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    """A real browser decodes every plot, and the screenshot shows them in their colours."""
    page = tmp_path / "report.html"
    assert main(["report", run_dir, "--out", str(page)]) == 0
    dom = chromium(tmp_path, page.as_uri(), "--virtual-time-budget=5000", "--dump-dom").stdout
    assert 'data-plots="5"' in dom and 'data-plots-rendered="5"' in dom
    shot = tmp_path / "shot.png"
    chromium(tmp_path, page.as_uri(), "--window-size=1280,2400", "--hide-scrollbars", "--virtual-time-budget=5000",
             f"--screenshot={shot}")
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2400)
    colours = image.getcolors(maxcolors=1 << 20)
    counts = {rgb: n for n, rgb in colours}
    # The slowest stage's bar is the longest of the time-per-stage plot, in the colour of its bound.
    profile = json.load(open(os.path.join(run_dir, "profile.json")))
    bound = max(profile["stages"], key=lambda s: s["wall_s"])["bound"]
    colour = tuple(int(BOUND_COLOURS[bound][i:i + 2], 16) for i in (1, 3, 5))
    assert counts.get(colour, 0) > 2000, f"the time-per-stage bars ({bound}) are not on the screenshot"
    assert counts.get((85, 168, 104), 0) > 2000, "the throughput bars are not on the screenshot"
    white = counts.get((255, 255, 255), 0)
    assert white < 0.9 * 1280 * 2400 and len(colours) > 200


# --- comparing the runs of a sweep -------------------------------------------------------------------
def _job(root, num: int, base: dict, overrides: list[str], wall: float, cost: float | None):
    job = root / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if wall is None:
        return
    p = copy.deepcopy(base)
    p["wall_s"] = wall
    p["cost"]["run"] = cost
    p["cost"]["price_per_hour"] = None if cost is None else 1.0
    p["cost"]["node_hours"] = wall / 3600
    p["hydra"] = {"mode": "multirun", "job_num": num, "overrides": overrides, "run_dir": str(job)}
    (job / "profile.json").write_text(json.dumps(p))


@pytest.fixture
def crafted_sweep(inprocess_run, tmp_path):
    """Four jobs: cheap but slow, mid, fast but dear, and one that failed."""
    _, base = inprocess_run
    root = tmp_path / "multirun" / "2026-01-01" / "00-00-00"
    common = ["source.paths=[data/*.parquet]", "profiling.cost_per_hour=1.0"]
    _job(root, 0, base, ["engine.n_workers=1", "engine.partition_bytes=64MB", *common], 100.0, 0.50)
    _job(root, 1, base, ["engine.n_workers=2", "engine.partition_bytes=64MB", *common], 50.0, 0.80)
    _job(root, 2, base, ["engine.n_workers=4", "engine.partition_bytes=64MB", *common], 30.0, 1.20)
    _job(root, 3, base, ["engine.n_workers=8", "engine.partition_bytes=64MB", *common], None, None)
    return root


def test_compare_picks_the_cheapest_run_within_the_deadline(crafted_sweep, capsys):
    runs = report.load_runs(str(crafted_sweep))
    assert [r["label"] for r in runs] == [f"engine.n_workers={n}" for n in (1, 2, 4, 8)]
    assert runs[3]["status"].startswith("no profile")
    assert report.choose(runs, None)["job"] == 0
    assert report.choose(runs, 60.0)["job"] == 1
    assert report.choose(runs, 40.0)["job"] == 2
    assert report.choose(runs, 10.0) is None

    assert main(["report", "--compare", str(crafted_sweep.parent.parent), "--deadline", "1min"]) == 0
    out = capsys.readouterr().out
    assert "cheapest setting within the deadline of 60 s: engine.n_workers=2 (0.8000 USD cost, 50 s)" in out
    row = next(line for line in out.splitlines() if line.startswith("1 "))
    assert "met deadline  <- cheapest" in row
    assert "missed deadline" in next(line for line in out.splitlines() if line.startswith("0 "))
    html = (crafted_sweep.parent.parent / "compare.html").read_text()
    assert html.count('<img class="plot"') == 2 and "<tr class=chosen>" in html
    assert os.path.isfile(crafted_sweep / "1" / "report.html")


def test_compare_fails_when_no_run_met_the_deadline(crafted_sweep, capsys):
    assert main(["report", "--compare", str(crafted_sweep), "--deadline", "20s", "--no-html"]) == 1
    assert "no run finished within the deadline of 20 s; the fastest was engine.n_workers=4" in capsys.readouterr().out


def test_compare_without_prices_ranks_by_node_hours(crafted_sweep, capsys):
    for n in (0, 1, 2):  # unprice every run: node-hours are wall/3600 here, so the slowest is not cheapest
        path = crafted_sweep / str(n) / "profile.json"
        p = json.loads(path.read_text())
        p["cost"]["run"] = None
        path.write_text(json.dumps(p))
    runs = report.load_runs(str(crafted_sweep))
    assert report.cost_basis(runs)[0] == "node_hours"
    assert report.choose(runs, None)["job"] == 2
    runs = report.load_runs(str(crafted_sweep), price=2.0)
    assert report.cost_basis(runs)[0] == "cost" and runs[1]["cost"] == pytest.approx(2.0 * 50 / 3600)


@needs_chromium
def test_compare_page_renders_in_headless_chromium(crafted_sweep, tmp_path):
    assert main(["report", "--compare", str(crafted_sweep), "--deadline", "60"]) == 0
    dom = chromium(tmp_path, (crafted_sweep / "compare.html").as_uri(), "--virtual-time-budget=5000",
                   "--dump-dom").stdout
    assert 'data-plots="2"' in dom and 'data-plots-rendered="2"' in dom


def test_report_errors_name_the_path(tmp_path, capsys, crafted_sweep):
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert f"{tmp_path / 'nowhere'}: no such file or directory" in capsys.readouterr().err
    assert main(["report", str(crafted_sweep)]) == 2
    assert "3 profiles under this directory" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "profile.json").write_text("{not json")
    assert main(["report", str(bad)]) == 2
    assert "not a readable profile" in capsys.readouterr().err
    assert main(["report", str(crafted_sweep / "0"), "--deadline", "5m"]) == 2
    assert "--deadline: --deadline goes with --compare" in capsys.readouterr().err
    assert main(["report", "--compare", str(crafted_sweep), "--deadline", "soon"]) == 2
    assert "expected a duration like 90s" in capsys.readouterr().err
    assert main(["report", "--compare", str(tmp_path / "bad")]) == 2


def test_durations():
    assert report.parse_duration("90") == 90 and report.parse_duration("90s") == 90
    assert report.parse_duration("10m") == 600 and report.parse_duration("1.5h") == 5400
