"""Events compile benchmark: ``configs/pipeline/events.yaml`` (side-table joins, derived columns,
out-of-fold target encodings, per-user aggregates, lags, categoricals, a time split) against a
polars implementation of the same work (bench/compile/events_peer.py), outputs checked identical.

One run: makes the events demo set if absent (``shardsmith demo-data --kind events``), then runs
shardsmith on its default local Dask cluster, shardsmith with ``engine=inprocess`` and the polars
peer, alternating, ``--reps`` times each, every run its own process, measured as
bench/compile/run.py measures (wall, CPU, peak RSS of the process tree). Then it checks that the
outputs agree and fails (exit 1) if they do not: rows and shard sizes per split, the output
schema, vocabulary sizes, every integer and categorical column (sha256), the float columns within
``--tol`` (relative).

Usage (from the repository root)::

    python bench/compile/events.py                       # 2,000,000 events, 3 repetitions each
    python bench/compile/events.py --rows 200000 --reps 1

Results: ``bench/results/events/results.json`` and ``summary.md`` (git-ignored).
"""

from __future__ import annotations

import datetime
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import events_peer as peer  # noqa: E402
import run as base  # noqa: E402  (measuring a process, the machine, versions)

IMPLS = ("shardsmith", "shardsmith-inprocess", "polars")


def ensure_data(data: str, rows: int) -> None:
    files = sorted(glob.glob(os.path.join(data, "events", "*.parquet")))
    if files and sum(pq.ParquetFile(f).metadata.num_rows for f in files) == rows:
        return
    shutil.rmtree(data, ignore_errors=True)
    print(f"generating {rows:,} events in {data}", flush=True)
    subprocess.run([sys.executable, "-m", "shardsmith", "demo-data", "--kind", "events", "--rows", str(rows),
                    "--out", data], check=True)


def overrides(data: str, out: str) -> list[str]:
    return ["pipeline=events", f"source.paths=[{data}/events/*.parquet]",
            f"tables.users.paths=[{data}/users/*.parquet]", f"tables.items.paths=[{data}/items/*.parquet]",
            f"output.dir={out}", "fit.cache=off"]  # every run fits, as the peer does (a hit would skip the fit)


def command(impl: str, data: str, out: str, shard_rows: int) -> list[str]:
    if impl.startswith("shardsmith"):
        return base.shardsmith_command(impl, overrides(data, out))
    return [sys.executable, os.path.join(HERE, "events_peer.py"), "--data", data, "--out", out,
            "--shard-rows", str(shard_rows)]


def read(out: str) -> tuple[dict, dict]:
    parts = {split: base.read_split(out, split) for split in peer.SPLITS}
    return {s: t for s, (t, _) in parts.items()}, {s: sizes for s, (_, sizes) in parts.items()}


def vocab_sizes(impl: str, out: str) -> dict:
    return base.vocab_sizes(impl, out, peer.CATS, peer.FIRST_ID)


def check_agreement(outs: dict[str, str], tol: float) -> dict:
    """Every implementation's output against shardsmith's (default engine); raise on a mismatch."""
    ref_name = IMPLS[0]
    ref, ref_sizes = read(outs[ref_name])
    problems, report = [], {"reference": ref_name, "rows": {s: t.num_rows for s, t in ref.items()},
                            "float_columns": {}}
    for name, out in outs.items():
        if name == ref_name:
            continue
        got, sizes = read(out)
        if sizes != ref_sizes:
            problems.append(f"{name}: shard rows {sizes} != {ref_sizes}")
        if vocab_sizes(name, out) != vocab_sizes(ref_name, outs[ref_name]):
            problems.append(f"{name}: vocabulary sizes differ")
        for split in peer.SPLITS:
            a, b = ref[split], got[split]
            if a.schema != b.schema:
                problems.append(f"{name}: {split} schema {b.schema} != {a.schema}")
                continue
            for col in a.column_names:
                problems += _compare(name, split, col, a[col], b[col], tol, report["float_columns"])
    if problems:
        raise SystemExit("DISAGREE:\n  " + "\n  ".join(problems[:40]))
    return report


def _compare(name, split, col, want, have, tol, floats) -> list[str]:
    if not pa.types.is_floating(want.type):
        digest = [hashlib.sha256(np.ascontiguousarray(c.to_numpy(zero_copy_only=False)).tobytes()).hexdigest()
                  for c in (want.fill_null(0), have.fill_null(0))]
        nulls = want.null_count == have.null_count and want.is_null().equals(have.is_null())
        return [] if digest[0] == digest[1] and nulls else [f"{name}: {split}.{col} differs"]
    a = want.to_numpy(zero_copy_only=False).astype(np.float64)
    b = have.to_numpy(zero_copy_only=False).astype(np.float64)
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return [f"{name}: {split}.{col} nulls differ"]
    ok = ~np.isnan(a)
    rel = np.abs(a[ok] - b[ok]) / np.maximum(np.abs(a[ok]), 1e-12)
    worst = float(rel.max()) if rel.size else 0.0
    entry = floats.setdefault(f"{name}:{col}", {"max_rel_diff": 0.0, "values_differing": 0, "values": 0})
    entry["max_rel_diff"] = max(entry["max_rel_diff"], worst)
    entry["values_differing"] += int((a[ok] != b[ok]).sum())
    entry["values"] += int(ok.sum())
    return [] if worst <= tol else [f"{name}: {split}.{col} differs by up to {worst:.3g} relative (tolerance {tol})"]


def summarize(results: dict, rows: int) -> str:
    med = {impl: base.medians(runs) for impl, runs in results.items()}
    lines = ["| implementation | wall s (median) | min..max | events/s | CPU s (user + sys) | peak RSS, tree | "
             "load avg |", "|---|---:|---:|---:|---:|---:|---:|"]
    for impl, m in med.items():
        walls = [r["wall_s"] for r in results[impl]]
        lines.append(f"| {impl} | {m['wall_s']:.2f} | {min(walls):.2f}..{max(walls):.2f} | {rows / m['wall_s']:,.0f} | "
                     f"{m['cpu_s']:.1f} ({m['user_s']:.1f} + {m['sys_s']:.1f}) | "
                     f"{m['peak_tree_rss'] / 2**30:.2f} GiB | {m['load_before']:.1f} |")
    if "polars" in med:
        lines += ["", "| shardsmith engine | vs polars: speed | vs polars: CPU time | vs polars: peak RSS |",
                  "|---|---:|---:|---:|"]
        for impl in IMPLS[:2]:
            if impl in med:
                m, p = med[impl], med["polars"]
                lines.append(f"| {impl} | {p['wall_s'] / m['wall_s']:.2f}x | {p['cpu_s'] / m['cpu_s']:.2f}x | "
                             f"{m['peak_tree_rss'] / p['peak_tree_rss']:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = base.bench_parser(__doc__.splitlines()[0], IMPLS, 3, "events-data", "events", 1e-6,
                             "largest relative difference of float outputs").parse_args(argv)
    data, work = os.path.abspath(args.data), os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    ensure_data(data, args.rows)
    shard_rows = base.planned_shard_rows(overrides(data, "unused"))
    impls = [i for i in IMPLS if i in args.only]
    outs = {i: os.path.join(work, f"out-{i}") for i in impls}
    results = base.alternate(impls, args.reps, lambda impl: command(impl, data, outs[impl], shard_rows), outs, work,
                             args.sample)
    agreement = check_agreement(outs, args.tol) if impls == list(IMPLS) else None
    summary = summarize(results, args.rows)
    report = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "rows": args.rows,
              "reps": args.reps, "shard_rows": shard_rows, "machine": base.machine(), "versions": base.versions(),
              "runs": results, "medians": {i: base.medians(r) for i, r in results.items()}, "agreement": agreement}
    with open(os.path.join(work, "results.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(work, "summary.md"), "w") as f:
        f.write(summary + "\n")
    if agreement:
        floats = "; ".join(f"{k}: max rel diff {v['max_rel_diff']:.2g}, {v['values_differing']} of {v['values']} differ"
                           for k, v in agreement["float_columns"].items() if v["values_differing"])
        print(f"\nAGREE: rows {agreement['rows']}; integer and categorical columns identical; "
              f"float columns within {args.tol} ({floats or 'all identical'})")
    print(f"\n{summary}\n(medians of {args.reps} run(s) each)")


if __name__ == "__main__":
    main()
