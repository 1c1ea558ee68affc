"""`shardsmith drift`: two compiles of data with a known shift give the PSI, JS and KS distances,
null-rate and out-of-vocabulary changes that the formulas give; exit 1 past a threshold."""

from __future__ import annotations

import html
import json
import math
import os

import numpy as np
import pyarrow as pa
import pytest

from shardsmith.profiling import plots
from shardsmith.profiling.report.drift import NO_PLOTS, render_drift
from shardsmith.shards.drift import EPS, compare
from shardsmith.shards.manifest import read_manifest
from tests.conftest import cli, run_compile, write_table

ONE_SPLIT = ("~split.fractions.valid", "~split.fractions.test", "split.fractions.train=1.0")
GRAPH = ("graph=[{op: categorify, cols: [C]}]", "~roles.label")


def make(path, k_counts, c_values, x, k_nulls=0):
    """K: int8 values 0..3 with the given counts (then ``k_nulls`` nulls); C: strings; X: floats."""
    k = np.repeat(np.arange(4, dtype=np.int8), k_counts)
    n = len(k) + k_nulls
    table = pa.table({"K": pa.array(np.concatenate([k, np.zeros(k_nulls, np.int8)]),
                                    mask=np.arange(n) >= len(k)),
                      "C": pa.array(np.resize(np.asarray(c_values), n)), "X": pa.array(np.resize(x, n))})
    os.makedirs(path, exist_ok=True)
    return write_table(os.path.join(path, "part-0.parquet"), table, row_group_rows=2500)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    d = tmp_path_factory.mktemp("drift")
    x = np.random.default_rng(0).uniform(0, 1, 10_000)
    make(d / "a", [2500] * 4, ["a", "b", "c", "d"], x)
    make(d / "b", [1000, 2000, 3000, 3000], ["a", "b", "e", "f"], x + 100.0, k_nulls=1000)
    base = run_compile(f"{d}/a/*.parquet", d / "base", *GRAPH, *ONE_SPLIT)
    new = run_compile(f"{d}/b/*.parquet", d / "new", *GRAPH, *ONE_SPLIT)
    same = run_compile(f"{d}/a/*.parquet", d / "same", *GRAPH, *ONE_SPLIT, "output.shard_rows=999")
    return base.path, new.path, same.path


def test_known_shift_gives_known_distances(datasets):
    base, new, _ = datasets
    proc = cli("drift", base, new, "--json", "--no-html")
    assert proc.returncode == 1, proc.stderr
    res = json.loads(proc.stdout)
    cols = {c["name"]: c for c in res["columns"]}
    p, q = np.full(4, 0.25), np.array([0.1, 0.2, 0.3, 0.3]) / 0.9  # NEW's K: 9,000 values and 1,000 nulls
    assert cols["K"]["psi"] == pytest.approx(float(np.sum((q - p) * np.log(q / p))), rel=1e-12)
    m = (p + q) / 2
    js = math.sqrt((np.sum(p * np.log2(p / m)) + np.sum(q * np.log2(q / m))) / 2)
    assert cols["K"]["js"] == pytest.approx(js, rel=1e-12)
    assert cols["K"]["ks"] == pytest.approx(float(np.max(np.abs(np.cumsum(p) - np.cumsum(q)))), rel=1e-12)
    assert cols["K"]["null_rate"] == pytest.approx(0.1)
    # X moved past every BASE value: the distributions are disjoint.
    assert cols["X"]["ks"] == 1.0 and cols["X"]["psi"] > 5
    # C: each side fitted its own vocabulary; half of NEW's values (e, f) are not in BASE's.
    assert cols["C"]["oov_rate"] == 0.5
    pc_, qc = np.array([0.25, 0.25, 0.25, 0.25, 0.0]), np.array([0.25, 0.25, 0.0, 0.0, 0.5])
    a, b = np.maximum(pc_, EPS), np.maximum(qc, EPS)
    assert cols["C"]["psi"] == pytest.approx(float(np.sum((b - a) * np.log(b / a))), rel=1e-12)
    assert cols["C"]["bins"]["labels"] == ["'a'", "'b'", "'c'", "'d'", "(other values)"]
    assert cols["K"]["psi"] < 0.25
    assert set(res["crossed"]) == {"K: null_rate 0.1 > 0.05", f"X: psi {cols['X']['psi']:.4g} > 0.25",
                                   f"C: psi {cols['C']['psi']:.4g} > 0.25",
                                   "C: oov_rate 0.5 > 0.05"}
    assert res["rows"] == {"base": 10_000, "new": 10_000, "change": 0.0, "crossed": False}


def test_no_drift_exits_zero_and_thresholds_come_from_the_command_line(datasets, tmp_path):
    base, new, same = datasets
    proc = cli("drift", base, same, "--out", str(tmp_path / "d.html"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no drift (thresholds: psi 0.25, null_rate 0.05, oov_rate 0.05)" in proc.stdout
    assert (tmp_path / "d.html").exists()
    res = json.loads(cli("drift", base, same, "--json", "--no-html").stdout)
    assert all(c["psi"] == 0 and c["js"] == 0 for c in res["columns"] if c["psi"] is not None)
    off = cli("drift", base, new, "--no-html", "--fail-on", "psi=off,null_rate=off,oov_rate=off")
    assert off.returncode == 0, off.stdout
    strict = cli("drift", base, same, "--no-html", "drift=strict", "drift.ks=0")
    assert strict.returncode == 0 and "ks 0" in strict.stdout
    bad = cli("drift", base, new, "--fail-on", "psy=1")
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: --fail-on: unknown metric 'psy'")


def test_the_page_plots_drifted_columns_or_says_why_not(datasets, monkeypatch):
    base, new, _ = datasets
    result = compare(read_manifest(base), read_manifest(new), {"psi": 0.25})
    page = render_drift(result)
    assert page.count("<figure>") == 2 and "data:image/svg+xml;base64," in page  # X and C drifted

    def missing():
        raise ImportError("no matplotlib")

    monkeypatch.setattr(plots, "_pyplot", missing)
    page = render_drift(result)
    assert "<figure>" not in page and html.escape(NO_PLOTS) in page and "<table class=drift>" in page
