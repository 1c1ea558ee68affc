"""Drift between two datasets, from their manifests and fitted state alone (no shard is read).

Every compile records per split and column the null count and a histogram of the finite values
over fixed keys (shards/summary.py: 8 bins per power of two, integers below 16 exact), so two
datasets' histograms compare bin by bin. Per output column present in both:

* ``psi``: population stability index, sum((q - p) * ln(q / p)) over bins, shares floored at
  ``EPS`` (an empty bin would make it infinite). Continuous columns use ``bins`` bins at BASE's
  quantiles (bin edges are histogram keys, so both sides fall into them exactly); columns with at
  most ``2 * bins`` distinct keys, and categorical ids, use every key as a bin.
* ``js``: Jensen-Shannon distance (base 2, in [0, 1]) over the same bins.
* ``ks``: Kolmogorov-Smirnov distance of continuous columns: the largest gap between the two
  cumulative distributions at the histogram's keys (exact there; between keys the true gap can
  exceed it by at most the mass of one key's bin).
* ``null_rate``: NEW's share of missing values minus BASE's.
* ``oov_rate`` (columns made by ``categorify``): NEW's share of values outside BASE's vocabulary
  minus BASE's own share (its rare values, kept below ``freq_threshold``, are out of vocabulary
  too, so identical data gives 0, like ``null_rate``; both shares are in ``oov_rates``). When both
  use the same vocabulary (NEW compiled with ``fit.from`` BASE, or equal vocabularies) it is exact:
  the shares of the out-of-vocabulary id. When each fitted its own, it is computed from the
  vocabularies on their fit splits (NEW's values kept below its own ``freq_threshold`` count as
  unseen), and psi / js compare the value counts of BASE's most frequent values (plus one bin for
  the rest) instead of the ids, which then mean different values.
* ``row_count``: (NEW rows - BASE rows) / BASE rows, for the dataset.

A column whose fitted state (means, quantiles, ...) differs between the two datasets is compared on
each dataset's own fitted scale (a normalised column hides a shift of its mean): the result notes
it; compile NEW with ``fit.from=BASE/manifest.json`` to compare on one scale.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shardsmith.errors import InputError
from shardsmith.kernels.exact import hist_keys, key_value, merge_histograms
from shardsmith.kernels.lookup import OOV_ID
from shardsmith.shards.state import load_state_doc

METRICS = ("psi", "js", "ks", "null_rate", "oov_rate", "row_count")
EPS = 1e-4
TOP_VALUES = 20  # vocabulary-based comparisons: BASE's most frequent values, each a bin


# --- one side -------------------------------------------------------------------------------------
def side_stats(manifest: dict, split: str | None) -> tuple[int, dict]:
    """Rows and per column {nulls, hist (keys, counts)} of one split, or of all splits merged."""
    names = [split] if split else list(manifest["splits"])
    for n in names:
        if n not in manifest["splits"]:
            raise InputError(f"no split '{n}' in {manifest['name']} (splits: {', '.join(manifest['splits'])})",
                             "--split")
    rows = sum(manifest["splits"][n]["rows"] for n in names)
    out = {}
    for col in manifest["schema"]:
        entries = [manifest.get("stats", {}).get(n, {}).get(col["name"], {}) for n in names]
        hists = [(np.asarray(e["hist"]["keys"], np.int64), np.asarray(e["hist"]["counts"], np.int64))
                 for e in entries if "hist" in e]
        out[col["name"]] = {"nulls": sum(e.get("nulls", 0) for e in entries),
                            "hist": merge_histograms(hists) if hists else None}
    return rows, out


def _summary(manifest: dict, rows: int) -> dict:
    return {"path": manifest["_dir"], "name": manifest["name"], "rows": rows,
            "dataset_key": manifest.get("dataset_key")}


# --- distances ------------------------------------------------------------------------------------
def psi(p: np.ndarray, q: np.ndarray) -> float:
    """Population stability index of bin counts ``p`` (BASE) and ``q`` (NEW).

    >>> round(psi(np.array([50, 50]), np.array([30, 70])), 6)
    0.16946
    """
    a, b = np.maximum(p / p.sum(), EPS), np.maximum(q / q.sum(), EPS)
    return float(np.sum((b - a) * np.log(b / a)))


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2) of bin counts: 0 identical, 1 disjoint.

    >>> js_distance(np.array([1, 0]), np.array([0, 1]))
    1.0
    """
    a, b = p / p.sum(), q / q.sum()
    m = (a + b) / 2
    div = sum(float(np.sum(x[x > 0] * np.log2(x[x > 0] / m[x > 0]))) for x in (a, b)) / 2
    return math.sqrt(max(div, 0.0))


def ks_distance(base: tuple, new: tuple) -> float:
    """Largest gap between the cumulative distributions of two key histograms."""
    keys = np.union1d(base[0], new[0])
    cdfs = []
    for k, c in (base, new):
        dense = np.zeros(len(keys))
        dense[np.searchsorted(keys, k)] = c
        cdfs.append(np.cumsum(dense) / dense.sum())
    return float(np.max(np.abs(cdfs[0] - cdfs[1])))


def quantile_edges(keys: np.ndarray, counts: np.ndarray, bins: int) -> np.ndarray:
    """Bin edges (keys) at BASE's quantiles 1/bins .. (bins-1)/bins: a key goes to the bin of the
    last edge at or below it; the quantile's own key stays in the lower bin."""
    cdf = np.cumsum(counts) / counts.sum()
    idx = np.searchsorted(cdf, np.arange(1, bins) / bins, side="left") + 1
    return np.unique(keys[idx[idx < len(keys)]])


def rebin(hist: tuple, edges: np.ndarray) -> np.ndarray:
    keys, counts = hist
    return np.bincount(np.searchsorted(edges, keys, side="right"), weights=counts,
                       minlength=len(edges) + 1).astype(np.int64)


def _bins(base: tuple, new: tuple, categorical: bool, bins: int) -> tuple[np.ndarray, list[str]]:
    union = np.union1d(base[0], new[0])
    edges = union[1:] if categorical or len(union) <= 2 * bins else quantile_edges(*base, bins)
    lows = [union[0], *edges]
    labels = [_label(lo, hi) for lo, hi in zip(lows, [*edges, None])]
    return edges, labels


def _label(lo, hi) -> str:
    a = key_value(int(lo))
    return f"[{a:.4g}, {key_value(int(hi)):.4g})" if hi is not None else f">= {a:.4g}"


# --- vocabularies ---------------------------------------------------------------------------------
def _categorify_step(manifest: dict, col: str) -> dict | None:
    steps = manifest.get("lineage", {}).get("columns", {}).get(col, {}).get("steps", [])
    return next((s for s in reversed(steps) if s["op"] == "categorify" and s.get("state", {}).get("files")), None)


def _vocab(manifest: dict, step: dict):
    path = os.path.join(manifest["_dir"], step["state"]["files"][0])
    try:
        return pq.read_table(path, columns=["value", "count"])
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read a vocabulary of the dataset: {exc}", path) from None


def _oov_count(manifest: dict, col: str) -> int:
    """Out-of-vocabulary ids of ``col`` among the fit split's rows (all rows when no fit split)."""
    fit_on = manifest["config"]["resolved"].get("split", {}).get("fit_on")
    _, stats = side_stats(manifest, fit_on if fit_on in manifest["splits"] else None)
    hist = stats[col]["hist"]
    if hist is None:
        return 0
    one = hist_keys(np.array([float(OOV_ID)]), 3)[0]
    return int(hist[1][hist[0] == one].sum())


def _vocab_compare(base_m, new_m, col, b_step, n_step, bins) -> dict:
    vb, vn = _vocab(base_m, b_step), _vocab(new_m, n_step)
    if vb.equals(vn):
        return {"shared": True}
    if base_m.get("parent") or new_m.get("parent"):
        return {"shared": False, "note": "vocabularies differ and one was taken from a third dataset "
                                         "(fit.from): the values are not comparable"}
    n_total = int(pc.sum(vn["count"]).as_py() or 0) + _oov_count(new_m, col)
    b_total = int(pc.sum(vb["count"]).as_py() or 0) + _oov_count(base_m, col)
    seen = pc.is_in(vn["value"], value_set=vb["value"].combine_chunks())
    unseen = int(pc.sum(pc.filter(vn["count"], pc.invert(seen))).as_py() or 0) + _oov_count(new_m, col)
    top = vb.slice(0, max(bins, TOP_VALUES))  # vocabularies are ordered by count, descending
    idx = pc.index_in(top["value"], value_set=vn["value"].combine_chunks()).to_numpy(zero_copy_only=False)
    n_counts = vn["count"].to_numpy()
    q = np.array([n_counts[int(i)] if not np.isnan(i) else 0 for i in idx], dtype=np.float64)
    p = top["count"].to_numpy().astype(np.float64)
    p, q = np.append(p, b_total - p.sum()), np.append(q, n_total - q.sum())
    labels = [repr(v) for v in top["value"].to_pylist()] + ["(other values)"]
    shares = [_rate(_oov_count(base_m, col), b_total), _rate(unseen, n_total)]
    return {"shared": False, "oov_rates": shares, "p": p, "q": q, "labels": labels,
            "note": "each dataset fitted its own vocabulary: compared by value on the fit splits"}


def _state_entries(manifest: dict, col: str) -> list:
    doc = load_state_doc(os.path.join(manifest["_dir"], "state")) or {}
    out = []
    for s in manifest.get("lineage", {}).get("columns", {}).get(col, {}).get("steps", []):
        for entry in (s.get("state") or {}).get("entries", []):
            step, _, key = entry.partition("/")
            out.append((entry, doc.get(step, {}).get(key) if key else doc.get(step)))
    return out


# --- the comparison -------------------------------------------------------------------------------
def compare(base_m: dict, new_m: dict, thresholds: dict, split: str | None = None, bins: int = 10) -> dict:
    """Drift of NEW against BASE: per column metrics, what crossed ``thresholds`` (metric -> limit,
    None for no limit), and the row counts."""
    b_rows, b_stats = side_stats(base_m, split)
    n_rows, n_stats = side_stats(new_m, split)
    schema_b = {c["name"]: c for c in base_m["schema"]}
    columns = [_column(c, schema_b[c["name"]], b_stats, n_stats, b_rows, n_rows, base_m, new_m, bins)
               for c in new_m["schema"] if c["name"] in schema_b]
    change = (n_rows - b_rows) / b_rows if b_rows else (0.0 if n_rows == 0 else math.inf)
    rows = {"base": b_rows, "new": n_rows, "change": change}
    crossed = []
    for col in columns:
        col["crossed"] = [m for m in METRICS[:5] if _over(col, m, thresholds.get(m))]
        crossed += [f"{col['name']}: {m} {_abs_metric(col, m):.4g} > {thresholds[m]:g}" for m in col["crossed"]]
    rows["crossed"] = thresholds.get("row_count") is not None and abs(change) > thresholds["row_count"]
    if rows["crossed"]:
        crossed.append(f"rows: change {change:+.2%} beyond {thresholds['row_count']:g}")
    return {"base": _summary(base_m, b_rows), "new": _summary(new_m, n_rows), "split": split or "all",
            "bins": bins, "thresholds": thresholds, "rows": rows, "columns": columns,
            "added": [c["name"] for c in new_m["schema"] if c["name"] not in schema_b],
            "removed": [n for n in schema_b if n not in {c["name"] for c in new_m["schema"]}],
            "crossed": crossed, "drifted": bool(crossed)}


def _abs_metric(col: dict, m: str):
    v = col.get(m)
    return abs(v) if v is not None else None


def _over(col: dict, metric: str, limit) -> bool:
    v = _abs_metric(col, metric)
    return limit is not None and v is not None and v > limit


def _column(new_c, base_c, b_stats, n_stats, b_rows, n_rows, base_m, new_m, bins) -> dict:
    name = new_c["name"]
    b, n = b_stats[name], n_stats[name]
    categorical = new_c["role"] == "categorical"
    out = {"name": name, "role": new_c["role"], "dtype": new_c["dtype"], "psi": None, "js": None, "ks": None,
           "null_rate": _rate(n["nulls"], n_rows) - _rate(b["nulls"], b_rows), "oov_rate": None, "notes": [],
           "null_rates": [_rate(b["nulls"], b_rows), _rate(n["nulls"], n_rows)]}
    if base_c["dtype"] != new_c["dtype"]:
        out["notes"].append(f"dtype changed: {base_c['dtype']} -> {new_c['dtype']}")
    b_step, n_step = _categorify_step(base_m, name), _categorify_step(new_m, name)
    vocab = _vocab_compare(base_m, new_m, name, b_step, n_step, bins) if b_step and n_step else None
    if vocab is not None and not vocab["shared"]:
        out["notes"].append(vocab["note"])
        if "p" in vocab:
            _distances(out, vocab["p"], vocab["q"], vocab["labels"])
            _oov(out, *vocab["oov_rates"])
        return out
    if _state_entries(base_m, name) != _state_entries(new_m, name):
        out["notes"].append("fitted separately: compared on each dataset's own fitted scale "
                            "(compile NEW with fit.from=BASE to compare on one)")
    if b["hist"] is not None and n["hist"] is not None and len(b["hist"][0]) and len(n["hist"][0]):
        edges, labels = _bins(b["hist"], n["hist"], categorical, bins)
        _distances(out, rebin(b["hist"], edges), rebin(n["hist"], edges), labels)
        if not categorical:
            out["ks"] = ks_distance(b["hist"], n["hist"])
        if vocab is not None:  # one vocabulary: the out-of-vocabulary id is exact
            _oov(out, _oov_share(b["hist"]), _oov_share(n["hist"]))
    return out


def _oov_share(hist) -> float:
    one = hist_keys(np.array([float(OOV_ID)]), 3)[0]
    keys, counts = hist
    return float(counts[keys == one].sum() / counts.sum())


def _oov(out: dict, base: float, new: float) -> None:
    out["oov_rate"], out["oov_rates"] = new - base, [base, new]


def _distances(out: dict, p: np.ndarray, q: np.ndarray, labels: list[str]) -> None:
    if p.sum() and q.sum():
        out["psi"], out["js"] = psi(p, q), js_distance(p, q)
        out["bins"] = {"labels": labels, "base": (p / p.sum()).tolist(), "new": (q / q.sum()).tolist()}


def _rate(k: int, n: int) -> float:
    return k / n if n else 0.0


# --- text -----------------------------------------------------------------------------------------
def text_lines(result: dict) -> list[str]:
    """The table ``shardsmith drift`` prints."""
    b, n, rows = result["base"], result["new"], result["rows"]
    lines = [f"drift of {n['path']} ({n['name']}) against {b['path']} ({b['name']}), split: {result['split']}",
             f"rows: {rows['base']:,} -> {rows['new']:,} ({rows['change']:+.2%})"]
    head = f"{'column':<16} {'role':<12} {'psi':>8} {'js':>7} {'ks':>7} {'null':>8} {'oov':>7}  crossed"
    lines += [head, "-" * len(head)]
    for c in result["columns"]:
        cells = [_cell(c["psi"], 8), _cell(c["js"], 7), _cell(c["ks"], 7), f"{c['null_rate']:+8.4f}",
                 _cell(c["oov_rate"], 7, "+")]
        lines.append(f"{c['name']:<16} {c['role']:<12} {' '.join(cells)}  {', '.join(c['crossed'])}".rstrip())
    for c in result["columns"]:
        lines += [f"note: {c['name']}: {note}" for note in c["notes"]]
    if result["added"] or result["removed"]:
        added, removed = ", ".join(result["added"]) or "-", ", ".join(result["removed"]) or "-"
        lines.append(f"columns added: {added}; removed: {removed}")
    limits = ", ".join(f"{k} {v:g}" for k, v in result["thresholds"].items() if v is not None) or "none"
    verdict = f"drift: {len(result['crossed'])} threshold(s) crossed" if result["drifted"] else "no drift"
    lines.append(f"{verdict} (thresholds: {limits})")
    lines += [f"  {c}" for c in result["crossed"]]
    return lines


def _cell(v, width: int, sign: str = "") -> str:
    return f"{v:{sign}{width}.4f}" if v is not None else f"{'-':>{width}}"

