"""Expectations (ops/expectations.py) evaluated during the transform pass, merged, and judged.

In a transform task, each stage's checks (``input``: right after the read; ``output``: after the
last step) give a small JSON partial per check (rows, offending rows and the first examples, nulls,
exact moments) that travels in the partition's meta (and its journal line, so a resumed compile
keeps it); quarantine checks send their offending rows to the quarantine there and then.

``unique`` and ``distinct_count`` need the distinct values, exactly. Each task writes its
partition's distinct values with their counts (at most the partition's rows) to
``quality/<check>/part-NNNNN.parquet`` in the staging directory, one row group per hash bucket
of the value (the shardsmith hash, seeded); after the pass one task per bucket reads that bucket of
every partition's file and counts. Buckets are disjoint, so the counts add up exactly, and a
bucket task holds about DISTINCT_BUCKET_ROWS values: memory stays bounded whatever the input.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shardsmith.backends import get_backend
from shardsmith.errors import ExpectationError
from shardsmith.ir import FILE_COL, ROW_COL
from shardsmith.ir.expr import Col, Expr
from shardsmith.ops.expectations import expectation_json
from shardsmith.ops.stats import Moments, ValueCounts, mean_from

QUALITY_DIR = "quality"
DISTINCT_SEED = 0x5EED_D157
DISTINCT_BUCKET_ROWS = 8_000_000  # distinct values a bucket task holds at most, about
EXAMPLES = 3


# --- in a task ------------------------------------------------------------------------------------
def check_stage(be, frame, checks, ctx, spill: dict | None = None, only_quarantine: bool = False):
    """Evaluate one stage's ``checks`` on ``frame``: the frame without the rows quarantine checks
    took (each row once, for the first check it fails), and each check's partial by key.
    ``spill``: where distinct values go (``{"dir", "partition", "buckets"}``), None to skip them;
    ``only_quarantine``: evaluate the quarantine checks only (serving a batch: shardsmith/serve.py)."""
    partials, taken = {}, None
    for e in checks:
        if only_quarantine and e.severity != "quarantine":
            continue
        rows = _rows(be, frame, e)
        if e.kind == "row":
            bad = be.predicate_mask(frame, e.failing())
            bad = bad if rows is None else bad & rows
            partials[e.key] = _row_partial(be, frame, e, bad, rows, ctx)
            if e.severity == "quarantine" and partials[e.key]["failing"]:
                new = bad if taken is None else bad & ~taken
                partials[e.key]["quarantined"] = int(new.sum())
                _quarantine(be, frame, e, new, ctx)
                taken = new if taken is None else taken | new
        else:
            partials[e.key] = _aggregate_partial(be, frame, e, rows, spill)
    if taken is not None:
        frame = be.filter_mask(frame, ~taken)
    return frame, partials


def drop_quarantined(be, frame, checks):
    """``frame`` without the rows that the quarantine checks among ``checks`` would take (a fit
    pass: quarantined input rows are left out of every statistic)."""
    taken = None
    for e in checks:
        if e.severity == "quarantine":
            bad = be.predicate_mask(frame, e.failing())
            taken = bad if taken is None else taken | bad
    return frame if taken is None else be.filter_mask(frame, ~taken)


def _rows(be, frame, e):
    """The rows a check looks at: its split's, or None for all."""
    if e.split is None:
        return None
    return be.split_ids(frame) == e.split_index


def _count(mask, frame, be) -> int:
    return be.num_rows(frame) if mask is None else int(mask.sum())


def _row_partial(be, frame, e, bad, rows, ctx) -> dict:
    failing = int(bad.sum())
    out = {"rows": _count(rows, frame, be), "failing": failing}
    if failing:
        first = _host_table(be, be.slice(be.filter_mask(frame, bad), 0, EXAMPLES), _value_columns(e))
        out["examples"] = [[ctx.files[f] if f < len(ctx.files) else str(f), r, v] for f, r, v in zip(
            first[FILE_COL].to_pylist(), first[ROW_COL].to_pylist(), _values_text(first, e))]
    return out


def _value_columns(e) -> list[str]:
    return sorted(e.columns())


def _host_table(be, frame, cols: list[str]) -> pa.Table:
    return be.to_arrow(be.select(frame, [FILE_COL, ROW_COL, *cols]))


def _values_text(table: pa.Table, e) -> list[str]:
    cols = _value_columns(e)
    if e.check != "expr":
        return [repr(v) for v in table[cols[0]].to_pylist()]
    rows = zip(*(table[c].to_pylist() for c in cols))
    return [", ".join(f"{c}={v!r}" for c, v in zip(cols, r)) for r in rows]


def _quarantine(be, frame, e, mask, ctx) -> None:
    host = np.asarray(mask.get() if hasattr(mask, "get") else mask, dtype=bool)
    if not host.any():
        return
    values = _values_text(_host_table(be, be.filter_mask(frame, mask), _value_columns(e)), e)
    ctx.quarantine(frame, host, e.key, e.col or ",".join(_value_columns(e)), values,
                   f"expectation {e.key} {e.describe()}")


def _aggregate_partial(be, frame, e, rows, spill) -> dict:
    n = _count(rows, frame, be)
    missing = be.predicate_mask(frame, Expr("is_null", (Col(e.col),)))
    nulls = int((missing if rows is None else missing & rows).sum())
    out = {"rows": n, "nulls": nulls}
    column = frame[e.col] if rows is None else be.filter_mask(be.select(frame, [e.col]), rows)[e.col]
    if e.check == "mean_between":
        out["moments"] = list(be.partial(Moments(e.col), column))
    elif e.distinct and spill is not None:
        values, counts, _ = be.partial(ValueCounts(e.col), column)
        write_distinct(spill, e.key, values, counts)
    return out


def write_distinct(spill: dict, key: str, values, counts) -> None:
    """One partition's distinct values of a check, bucketed by hash (see the module docstring)."""
    values = values if isinstance(values, pa.Array) else pa.array(values)
    counts = np.asarray(counts, dtype=np.int64)
    if pa.types.is_floating(values.type):  # NaN is missing; -0.0 counts as 0.0
        keep = ~np.isnan(values.to_numpy(zero_copy_only=False))
        values = pa.array(values.to_numpy(zero_copy_only=False)[keep] + 0.0, type=values.type)
        counts = counts[keep]
    if len(values) == 0:
        return
    buckets = get_backend("cpu", "numpy").hash(values, DISTINCT_SEED) % np.uint64(spill["buckets"])
    table = pa.table({"value": values, "count": counts, "bucket": pa.array(buckets.astype(np.int32))})
    table = table.take(pc.sort_indices(table["bucket"]))
    path = os.path.join(spill["dir"], safe_name(key), f"part-{spill['partition']:05d}.parquet")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    bounds = np.flatnonzero(np.diff(table["bucket"].to_numpy(), prepend=-1, append=-1)).tolist()
    with pq.ParquetWriter(path + ".tmp", table.schema, compression="zstd") as w:
        for lo, hi in zip(bounds, bounds[1:]):  # one row group per bucket: a bucket task reads its own
            w.write_table(table.slice(lo, hi - lo))
    os.replace(path + ".tmp", path)


def safe_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", key).strip("-")


# --- after the pass -------------------------------------------------------------------------------
def distinct_bucket(paths: list[str], bucket: int) -> dict:
    """Exact distinct values of one bucket over every partition's file (a task)."""
    parts = [pq.read_table(p, filters=[("bucket", "=", bucket)], columns=["value", "count"])
             for p in paths if os.path.exists(p)]
    parts = [t for t in parts if t.num_rows]
    if not parts:
        return {"distinct": 0, "duplicated_values": 0, "duplicate_rows": 0, "examples": []}
    grouped = pa.concat_tables(parts).group_by("value").aggregate([("count", "sum")])
    dup = grouped.filter(pc.greater(grouped["count_sum"], 1))
    top = dup.take(pc.sort_indices(dup, [("count_sum", "descending")])[:EXAMPLES]) if dup.num_rows else dup
    return {"distinct": grouped.num_rows, "duplicated_values": dup.num_rows,
            "duplicate_rows": int(pc.sum(dup["count_sum"]).as_py() or 0) - dup.num_rows,
            "examples": [[repr(v), c] for v, c in zip(top["value"].to_pylist(), top["count_sum"].to_pylist())]}


def buckets_for(plan) -> int:
    """Distinct-value buckets: enough that one holds about DISTINCT_BUCKET_ROWS values at most."""
    src = plan.graph.source
    rows = src.rows if all(f.rows >= 0 for f in src.files) else sum(f.bytes for f in src.files) // 8
    return max(1, math.ceil(rows / DISTINCT_BUCKET_ROWS))


def distinct_counts(ex, spill_dir: str, checks, partitions: int, buckets: int) -> dict:
    """Per distinct check: the merged bucket results (tasks on the executor, one per bucket)."""
    out = {}
    for e in checks:
        if not e.distinct:
            continue
        paths = [os.path.join(spill_dir, safe_name(e.key), f"part-{i:05d}.parquet") for i in range(partitions)]
        results = [f.result() for f in [ex.submit(distinct_bucket, paths, b) for b in range(buckets)]]
        examples = sorted((x for r in results for x in r["examples"]), key=lambda x: -x[1])[:EXAMPLES]
        out[e.key] = {k: sum(r[k] for r in results) for k in ("distinct", "duplicated_values", "duplicate_rows")}
        out[e.key]["examples"] = examples
    return out


def merge_partials(metas: list[dict]) -> dict:
    """The partitions' partials merged in partition order, per check key."""
    out: dict = {}
    for meta in metas:
        for key, p in (meta.get("quality") or {}).items():
            m = out.setdefault(key, {"rows": 0})
            m["rows"] += p["rows"]
            for k in ("failing", "nulls", "quarantined"):
                if k in p:
                    m[k] = m.get(k, 0) + p[k]
            if "examples" in p:
                m["examples"] = (m.get("examples", []) + p["examples"])[:EXAMPLES]
            if "moments" in p:
                m["moments"] = Moments(key).merge([tuple(m["moments"]), tuple(p["moments"])]) \
                    if "moments" in m else tuple(p["moments"])
    return out


# --- judging --------------------------------------------------------------------------------------
def judge(checks, merged: dict, distinct: dict, split_rows: dict, fractions: dict) -> list[dict]:
    """Each check's result: its definition, what was observed, passed or not, and the status its
    severity gives a broken check (failed, warned, quarantined)."""
    out = []
    for e in checks:
        if e.kind == "dataset":
            ok, observed, detail = _judge_dataset(e, split_rows, fractions)
        else:
            m = {**merged.get(e.key, {"rows": 0}), **distinct.get(e.key, {})}
            ok, observed, detail = JUDGES[e.check](e, m)
        status = "passed" if ok else {"fail": "failed", "warn": "warned", "quarantine": "quarantined"}[e.severity]
        out.append({**expectation_json(e), "status": status, "observed": observed, "detail": detail})
    return out


def _judge_rows(e, m):
    n, k = m["rows"], m.get("failing", 0)
    what = "are missing" if e.check == "not_null" else "offend"
    first = f" (first: {m['examples'][0][0]} row {m['examples'][0][1]}: {m['examples'][0][2]})" if k else ""
    observed = {"rows": n, "failing": k, "examples": m.get("examples", [])}
    if "quarantined" in m:
        observed["quarantined"] = m["quarantined"]
    return k == 0, observed, f"{k:,} of {n:,} rows {what}{first}"


def _judge_nulls(e, m):
    n, k = m["rows"], m.get("nulls", 0)
    frac = k / n if n else 0.0
    return frac <= e.max, {"rows": n, "nulls": k, "null_fraction": frac}, f"null fraction {frac:.4g} ({k:,} of {n:,})"


def _judge_mean(e, m):
    moments = m.get("moments", (0, 0, 0))
    if not moments[0]:
        return False, {"rows": m["rows"], "count": 0, "mean": None}, "no values to average"
    mean = float(mean_from(moments))
    ok = (e.min is None or mean >= e.min) and (e.max is None or mean <= e.max)
    return ok, {"rows": m["rows"], "count": moments[0], "mean": mean}, f"mean {mean:.6g} over {moments[0]:,} values"


def _judge_distinct(e, m):
    d = m.get("distinct", 0)
    ok = (e.min is None or d >= e.min) and (e.max is None or d <= e.max)
    return ok, {"rows": m["rows"], "nulls": m.get("nulls", 0), "distinct": d}, f"{d:,} distinct values"


def _judge_unique(e, m):
    dv, dr = m.get("duplicated_values", 0), m.get("duplicate_rows", 0)
    eg = ", ".join(f"{v} x{c}" for v, c in m.get("examples", []))
    observed = {"rows": m["rows"], "distinct": m.get("distinct", 0), "duplicated_values": dv, "duplicate_rows": dr,
                "examples": m.get("examples", [])}
    return dv == 0, observed, (f"{dv:,} value(s) occur more than once ({dr:,} extra rows; e.g. {eg})" if dv
                               else f"{m.get('distinct', 0):,} distinct values, none repeated")


JUDGES = {"not_null": _judge_rows, "between": _judge_rows, "in_set": _judge_rows, "expr": _judge_rows,
          "max_null_fraction": _judge_nulls, "mean_between": _judge_mean, "distinct_count": _judge_distinct,
          "unique": _judge_unique}


def _judge_dataset(e, split_rows: dict, fractions: dict):
    total = sum(split_rows.values())
    if e.check == "row_count":
        n = split_rows[e.split] if e.split else total
        ok = (e.min is None or n >= e.min) and (e.max is None or n <= e.max)
        return ok, {"rows": n}, f"{n:,} rows" + (f" in split {e.split}" if e.split else "")
    shares = {s: (n / total if total else 0.0) for s, n in split_rows.items()}
    off = {s: shares[s] - fractions[s] for s in split_rows}
    worst = max(off, key=lambda s: abs(off[s]))
    ok = all(abs(d) <= e.tolerance for d in off.values())
    detail = ", ".join(f"{s} {shares[s]:.4f} (configured {fractions[s]:g})" for s in split_rows)
    return ok, {"fractions": shares, "worst": worst}, detail


def section(results: list[dict]) -> dict:
    """The manifest's ``quality`` section."""
    counts = {s: sum(r["status"] == s for r in results) for s in ("passed", "warned", "quarantined", "failed")}
    quarantined = sum(r["observed"].get("quarantined", 0) for r in results)
    return {"passed": counts["warned"] == counts["failed"] == 0, "checked": len(results), "counts": counts,
            "quarantined_rows": quarantined, "expectations": results}


def broken_lines(results: list[dict], status: str) -> list[str]:
    return [f"{r['key']}: expectation broken: {r['description']}: {r['detail']}" for r in results
            if r["status"] == status]


def raise_if_failed(results: list[dict]) -> None:
    lines = broken_lines(results, "failed")
    if lines:
        raise ExpectationError(lines)
