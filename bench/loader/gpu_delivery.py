"""On a CUDA machine: ShardDataset batches delivered to the GPU against the pinned host-to-device
copy bandwidth (issue 4's target: 80% of it). Needs no loader peers, so it runs on the GPU machine.

    python bench/loader/gpu_delivery.py --rows 1200000 --out $OUT
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", default="/tmp/shardsmith-loader-gpu")
    ap.add_argument("--out", default=".")
    args = ap.parse_args(argv)
    sys.path.insert(0, HERE)
    import torch
    from run import BATCH, gpu_check  # noqa: E402  (bench/loader/run.py)

    from shardsmith.compiler.config import compose
    from shardsmith.demo import generate
    from shardsmith.runtime import compile_dataset
    from shardsmith.shards.manifest import read_manifest

    if not torch.cuda.is_available():
        print("FAIL loader GPU delivery: no CUDA device visible to torch")
        return 1
    raw, ds = os.path.join(args.work, "raw"), os.path.join(args.work, "ds")
    if not os.path.exists(os.path.join(raw, "part-00000.parquet")):
        generate(args.rows, raw)
    compile_dataset(compose(["engine=inprocess", f"source.paths=[{raw}/*.parquet]", f"output.dir={ds}",
                             "output.shard_rows=131072"]), log=lambda *a: None)
    result = gpu_check(read_manifest(ds), args.runs)
    result["batch_size"] = BATCH
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "loader_gpu.json"), "w") as f:
        json.dump(result, f, indent=1)
    h2d = result["pinned_h2d_bytes_per_s"]
    print(f"RESULT loader GPU delivery on {result['device']}: pinned H2D {h2d / 1e9:.1f} GB/s")
    for w in (0, 2):
        r = result[f"workers_{w}"]
        print(f"RESULT loader GPU delivery workers={w}: {r['bytes_per_s'] / 1e9:.2f} GB/s = "
              f"{100 * r['fraction_of_h2d']:.1f}% of pinned H2D (target 80%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
