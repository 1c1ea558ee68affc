"""What content digests (kernels/digest.py) cost a CPU compile: the demo pipeline, engine=inprocess.

Each run is its own process and compiles the demo data twice, alternating: once as shipped, and
once with the CPU backend's ``content_digests`` timed (every call's seconds summed), which is the
digest's own cost, in the same process as the rest of the compile so that the machine's load
weighs on both alike. Prints, per run, the compile's wall time, the seconds spent in digests and
their share, with the machine's load average; then the medians.

    python bench/compile/digest_cost.py --rows 1000000 --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def one_run(data: str, out: str) -> dict:
    """A compile with the digest calls timed (in a child process)."""
    sys.path.insert(0, ROOT)
    from shardsmith.backends.cpu import backend as cpu
    from shardsmith.compiler.config import compose
    from shardsmith.runtime import compile_dataset

    spent = [0.0]
    original = cpu.CpuBackend.content_digests

    def timed(self, frame, schema):
        t0 = time.perf_counter()
        try:
            return original(self, frame, schema)
        finally:
            spent[0] += time.perf_counter() - t0

    cpu.CpuBackend.content_digests = timed
    cfg = compose([f"source.paths=[{data}/*.parquet]", f"output.dir={out}", "engine=inprocess",
                   "output.overwrite=true", "profiling.progress=off"])
    t0 = time.perf_counter()
    result = compile_dataset(cfg, log=lambda *a: None)
    wall = time.perf_counter() - t0
    return {"wall": wall, "digest_s": spent[0], "rows": result.manifest["rows"]["out"],
            "shards": sum(len(s["shards"]) for s in result.manifest["splits"].values()),
            "load": os.getloadavg()}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_run":
        print(json.dumps(one_run(sys.argv[2], sys.argv[3])))
        return 0
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--work", default="/tmp/shardsmith-digest-cost")
    args = p.parse_args()
    data = os.path.join(args.work, f"data-{args.rows}")
    if not os.path.isdir(data):
        subprocess.run([sys.executable, "-m", "shardsmith", "demo-data", "--rows", str(args.rows), "--out", data],
                       check=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    runs = []
    for i in range(args.reps):
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "_run", data, os.path.join(args.work, "out")],
                              capture_output=True, text=True, check=True, env=dict(os.environ, PYTHONPATH=ROOT))
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        runs.append(r)
        print(f"run {i}: compile {r['wall']:.2f} s, digests {r['digest_s']:.3f} s "
              f"({100 * r['digest_s'] / r['wall']:.2f}%), {r['rows']:,} rows in {r['shards']} shards, "
              f"load average {r['load'][0]:.2f} on {os.cpu_count()} cores", flush=True)
    share = statistics.median(r["digest_s"] / r["wall"] for r in runs)
    print(f"median: compile {statistics.median(r['wall'] for r in runs):.2f} s, digests "
          f"{statistics.median(r['digest_s'] for r in runs):.3f} s, {100 * share:.2f}% of the compile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
