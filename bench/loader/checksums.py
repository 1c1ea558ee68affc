"""What corruption detection costs the loader: samples/s of ``ShardDataset`` with the default checks
(Parquet: shard size, footer sha256, page CRC-32; WebDataset tar: sha256 of the whole shard) against
the same loop with them off (``shards.readers.CHECKSUMS = False``, a switch for this measurement
only), and against ``verify=True`` (the full sha256 of every Parquet shard before its first read).

    python bench/loader/checksums.py --rows 1000000 --runs 7

One pass reads the train split once, shuffled, batch 1024, num_workers=0, touching every tensor of
every batch; passes alternate between the settings so that each meets similar machine load; the
figure is the median samples/s per setting, and the cost is 1 - median(on) / median(off). The
1-minute load average (``os.getloadavg``) is recorded before and after each pass. Writes
``checksums.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

SETTINGS = {  # name -> (format, default checks on, verify=True)
    "parquet: no checks": ("parquet", False, False),
    "parquet: default checks": ("parquet", True, False),
    "parquet: verify=True": ("parquet", True, True),
    "webdataset: no checks": ("webdataset", False, False),
    "webdataset: default checks": ("webdataset", True, False),
}


def build(work: str, rows: int) -> str:
    from shardsmith.compiler.config import compose
    from shardsmith.demo import generate
    from shardsmith.runtime import compile_dataset

    raw, out = os.path.join(work, "raw"), os.path.join(work, "ds")
    if not os.path.exists(os.path.join(raw, "part-00000.parquet")):
        generate(rows, raw)
    cfg = compose(["engine=inprocess", f"source.paths=[{raw}/*.parquet]", f"output.dir={out}",
                   "output.shard_rows=131072", "output.format=[parquet,webdataset]"])
    compile_dataset(cfg, log=lambda *a: None)
    return out


def one_pass(ds_dir: str, fmt: str, checks: bool, verify: bool) -> float:
    """Samples/s of one shuffled pass over the train split."""
    from shardsmith.shards import ShardDataset, readers

    readers.CHECKSUMS = checks
    ds = ShardDataset(ds_dir, batch_size=1024, seed=1, format=fmt, verify=verify)
    t0, n = time.perf_counter(), 0
    for batch in ds:
        for t in batch.values():
            t.sum()
        n += len(next(iter(batch.values())))
    readers.CHECKSUMS = True
    return n / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--work", default="/tmp/shardsmith-bench-checksums")
    ap.add_argument("--out", default=".")
    args = ap.parse_args(argv)
    ds = build(args.work, args.rows)
    for setting in SETTINGS.values():  # warm the page cache and the imports
        one_pass(ds, *setting)
    samples: dict[str, list[float]] = {name: [] for name in SETTINGS}
    loads = []
    for _ in range(args.runs):
        for name, setting in SETTINGS.items():
            loads.append(os.getloadavg()[0])
            samples[name].append(one_pass(ds, *setting))
    loads.append(os.getloadavg()[0])
    medians = {name: statistics.median(v) for name, v in samples.items()}
    cost = {fmt: 1 - medians[f"{fmt}: default checks"] / medians[f"{fmt}: no checks"]
            for fmt in ("parquet", "webdataset")}
    cost["parquet verify=True"] = 1 - medians["parquet: verify=True"] / medians["parquet: no checks"]
    report = {"date": time.strftime("%Y-%m-%d"), "rows": args.rows, "runs": args.runs,
              "machine": {"cpu": platform.processor() or platform.machine(), "nproc": os.cpu_count()},
              "load_average_1m": {"min": min(loads), "max": max(loads)},
              "samples_per_s": samples, "median_samples_per_s": medians, "cost": cost}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "checksums.json"), "w") as f:
        json.dump(report, f, indent=1)
    for name, m in medians.items():
        print(f"{name:<28} {m:>12,.0f} samples/s (median of {args.runs})")
    for what, c in cost.items():
        print(f"cost of checks, {what}: {100 * c:.1f}%")
    print(f"load average (1 min) during the passes: {min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
