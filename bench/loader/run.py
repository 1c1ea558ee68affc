"""Loader benchmark: samples/s into a training-style loop, shardsmith against its peers, in one run.

    bench/loader/run.sh                    # builds the benchmark venv, then runs this
    python bench/loader/run.py --rows 1200000 --runs 3 --work bench/results/loader

The same rows (the train split of the compiled demo dataset) are read by
* shardsmith ``ShardDataset`` + ``ShardLoader`` over the Parquet shards, shuffled;
* the naive baseline: pyarrow reads whole row groups in order, no shuffle, each column converted to
  a tensor and sliced into batches (in the loop's process; with workers, row groups dealt to them);
* WebDataset over the tar shards shardsmith wrote: ``WebDataset(shardshuffle).shuffle().decode()
  .to_tuple().batched()`` in a ``WebLoader(batch_size=None)``, as its documentation shows;
* MosaicML Streaming (MDS, written with ``MDSWriter``): ``StreamingDataset(shuffle=True, batch_size)``
  in a torch ``DataLoader``;
* LitData (written with ``litdata.optimize``): ``StreamingDataset(shuffle=True)`` in a
  ``StreamingDataLoader``.
Peers store a sample as dense float32[13], sparse int32[27] and the label (their natural layout);
shardsmith and the baseline yield one tensor per column. The loop touches every tensor of every
batch (``t.sum()``), batch size 1024, with num_workers 0 and 2. Each measurement is one pass from
creating the iterator (worker start-up included) to the last batch, or to ``--cap`` seconds for
slow loaders; the figure is the median samples/s over ``--runs`` passes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "shim"))  # MDS imports torchvision at start-up: see shim/torchvision

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

BATCH = 1024
SHUFFLE_BUFFER_PEERS = 10_000  # rows in WebDataset's shuffle buffer


# --- data ---------------------------------------------------------------------------------------------------
def build_dataset(work: str, rows: int) -> dict:
    from shardsmith.compiler.config import compose
    from shardsmith.demo import generate
    from shardsmith.runtime import compile_dataset
    from shardsmith.shards.manifest import read_manifest

    raw, out = os.path.join(work, "raw"), os.path.join(work, "ds")
    if not os.path.exists(os.path.join(raw, "part-00000.parquet")):
        generate(rows, raw)
    # One tar sample per row, as the WebDataset peer was measured (and as its own writer would write):
    # batched samples (the default since) are in the "WebDataset shards" part of BENCHMARKS.md.
    cfg = compose(["engine=cpu", "engine.n_workers=2", f"source.paths=[{raw}/*.parquet]", f"output.dir={out}",
                   "output.shard_rows=131072", "output.format=[parquet,webdataset]",
                   "output.webdataset.rows_per_sample=1"])
    compile_dataset(cfg, log=lambda *a: None)
    return read_manifest(out)


def train_shards(manifest: dict, fmt: str) -> list[str]:
    return [os.path.join(manifest["_dir"], s["path"]) for s in manifest["splits"]["train"]["shards"]
            if s["format"] == fmt]


def columns_of(manifest: dict):
    roles = {c["name"]: c["role"] for c in manifest["schema"]}
    dense = [n for n, r in roles.items() if r == "continuous"]
    sparse = [n for n, r in roles.items() if r == "categorical"]
    return dense, sparse


def row_groups(paths):
    for path in paths:
        pf = pq.ParquetFile(path)
        for g in range(pf.metadata.num_row_groups):
            yield path, g


def peer_samples(path: str, group: int, dense, sparse):
    """One row group as peer samples: dense float32[13], sparse int32[27], label."""
    t = pq.ParquetFile(path).read_row_group(group)
    d = np.column_stack([t.column(c).to_numpy() for c in dense]).astype(np.float32)
    s = np.column_stack([t.column(c).to_numpy() for c in sparse]).astype(np.int32)
    y = t.column("label").to_numpy()
    for i in range(t.num_rows):
        yield {"dense": d[i], "sparse": s[i], "label": int(y[i])}


def write_mds(manifest, work) -> str:
    from streaming import MDSWriter

    out = os.path.join(work, "mds")
    if os.path.exists(os.path.join(out, "index.json")):
        return out
    shutil.rmtree(out, ignore_errors=True)
    dense, sparse = columns_of(manifest)
    cols = {"dense": f"ndarray:float32:{len(dense)}", "sparse": f"ndarray:int32:{len(sparse)}", "label": "int8"}
    with MDSWriter(out=out, columns=cols, compression=None, size_limit="64mb") as w:
        for path, g in row_groups(train_shards(manifest, "parquet")):
            for sample in peer_samples(path, g, dense, sparse):
                w.write(sample)
    return out


def _litdata_fn(item):
    path, group, dense, sparse = item
    yield from peer_samples(path, group, dense, sparse)


def write_litdata(manifest, work) -> str:
    from litdata import optimize

    out = os.path.join(work, "litdata")
    if os.path.exists(os.path.join(out, "index.json")):
        return out
    shutil.rmtree(out, ignore_errors=True)
    dense, sparse = columns_of(manifest)
    inputs = [(p, g, dense, sparse) for p, g in row_groups(train_shards(manifest, "parquet"))]
    optimize(fn=_litdata_fn, inputs=inputs, output_dir=out, chunk_bytes="64MB", num_workers=2, verbose=False)
    return out


# --- loaders --------------------------------------------------------------------------------------------------
def shardsmith_loader(manifest, workers, epoch, shuffle=True):
    from shardsmith.shards import ShardDataset, ShardLoader

    ds = ShardDataset(manifest, batch_size=BATCH, shuffle=shuffle, seed=1)
    ds.set_epoch(epoch)
    return ShardLoader(ds, num_workers=workers)


class NaiveParquet(torch.utils.data.IterableDataset):
    """Whole row groups in order, columns to tensors, sliced into batches; row groups dealt to workers."""

    def __init__(self, paths):
        super().__init__()
        self.groups = list(row_groups(paths))

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        mine = self.groups if info is None else self.groups[info.id:: info.num_workers]
        files = {}
        for path, g in mine:
            pf = files.setdefault(path, pq.ParquetFile(path))
            t = pf.read_row_group(g)
            cols = {n: torch.from_numpy(t.column(n).to_numpy()) for n in t.column_names}
            for s in range(0, t.num_rows, BATCH):
                yield {n: c[s: s + BATCH].clone() if info is not None else c[s: s + BATCH] for n, c in cols.items()}


def naive_loader(manifest, workers, epoch):
    ds = NaiveParquet(train_shards(manifest, "parquet"))
    return torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)


def webdataset_loader(manifest, workers, epoch):
    import webdataset as wds

    urls = train_shards(manifest, "webdataset")
    ds = (wds.WebDataset(urls, shardshuffle=len(urls), seed=epoch, nodesplitter=wds.split_by_node,
                         workersplitter=wds.split_by_worker)
          .shuffle(SHUFFLE_BUFFER_PEERS).decode().to_tuple("continuous.npy", "categorical.npy", "cls")
          .batched(BATCH))
    return wds.WebLoader(ds, batch_size=None, num_workers=workers)


def mds_loader(manifest, workers, epoch, local=None):
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()
    ds = StreamingDataset(local=local, batch_size=BATCH, shuffle=True, shuffle_seed=1000 + epoch)
    return torch.utils.data.DataLoader(ds, batch_size=BATCH, num_workers=workers)


def litdata_loader(manifest, workers, epoch, local=None):
    from litdata import StreamingDataLoader, StreamingDataset

    ds = StreamingDataset(local, shuffle=True, seed=epoch)
    return StreamingDataLoader(ds, batch_size=BATCH, num_workers=workers)


# --- measuring ---------------------------------------------------------------------------------------------
def consume(batch) -> int:
    """What a training step does with the data: touch every tensor; returns the batch's rows."""
    tensors = list(batch.values()) if isinstance(batch, dict) else list(batch)
    for t in tensors:
        t.sum()
    return int(tensors[0].shape[0])


def measure(make, cap: float) -> dict:
    t0 = time.perf_counter()
    rows = batches = 0
    for batch in make():
        rows += consume(batch)
        batches += 1
        if time.perf_counter() - t0 > cap:
            break
    wall = time.perf_counter() - t0
    return {"rows": rows, "batches": batches, "seconds": wall, "samples_per_s": rows / wall}


def gpu_check(manifest, runs: int) -> dict | None:
    """On a CUDA machine: batches delivered to the GPU (bytes/s) against pinned host-to-device
    bandwidth (the issue's target: 80% of it). Absent without a GPU."""
    if not torch.cuda.is_available():
        return None
    from shardsmith.shards import ShardDataset, ShardLoader

    host = torch.empty(256 << 20, dtype=torch.uint8, pin_memory=True)
    dev = torch.empty_like(host, device="cuda")
    dev.copy_(host, non_blocking=True)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        dev.copy_(host, non_blocking=True)
    torch.cuda.synchronize()
    h2d = 10 * host.numel() / (time.perf_counter() - t0)
    out = {"pinned_h2d_bytes_per_s": h2d, "device": torch.cuda.get_device_name(0)}
    for workers in (0, 2):
        rates = []
        for epoch in range(runs):
            ds = ShardDataset(manifest, batch_size=BATCH, seed=1, device="cuda")
            ds.set_epoch(epoch)
            row_bytes = sum(dt.itemsize for _, dt in ds.columns)
            t0, rows = time.perf_counter(), 0
            for batch in ShardLoader(ds, num_workers=workers):
                rows += int(next(iter(batch.values())).shape[0])
            torch.cuda.synchronize()
            rates.append(rows * row_bytes / (time.perf_counter() - t0))
        med = statistics.median(rates)
        out[f"workers_{workers}"] = {"bytes_per_s": med, "fraction_of_h2d": med / h2d}
    return out


def machine() -> dict:
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    model = next((line.split(":", 1)[1].strip() for line in sh("lscpu").splitlines()
                  if line.startswith("Model name")), platform.processor())
    mem = next((line.split()[1] for line in sh("free -g").splitlines() if line.startswith("Mem:")), "?")
    return {"cpu": model, "nproc": sh("nproc"), "mem_gib": mem, "python": platform.python_version()}


def versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("shardsmith", "torch", "pyarrow", "numpy", "webdataset", "mosaicml-streaming", "litdata"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_200_000, help="demo rows to generate (train is about 90%%)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cap", type=float, default=60.0, help="seconds at most per pass (slow peers)")
    ap.add_argument("--work", default=os.path.join(ROOT, "bench", "results", "loader"))
    ap.add_argument("--only", default="", help="comma-separated loader names to run")
    ap.add_argument("--workers", default="0,2")
    ap.add_argument("--markdown", default=os.path.join(ROOT, "BENCHMARKS.md"))
    ap.add_argument("--no-gpu", action="store_true", help="skip the GPU delivery check even where CUDA exists")
    args = ap.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    t = time.perf_counter()
    manifest = build_dataset(args.work, args.rows)
    train_rows = manifest["splits"]["train"]["rows"]
    print(f"dataset: {train_rows:,} train rows ({time.perf_counter() - t:.0f} s)", flush=True)
    mds_dir, lit_dir = write_mds(manifest, args.work), write_litdata(manifest, args.work)
    print(f"peer formats written ({time.perf_counter() - t:.0f} s)", flush=True)
    loaders = {
        "shardsmith (shuffled)": lambda w, e: shardsmith_loader(manifest, w, e),
        "shardsmith (in order)": lambda w, e: shardsmith_loader(manifest, w, e, shuffle=False),
        "naive pyarrow (in order)": lambda w, e: naive_loader(manifest, w, e),
        "webdataset (shuffled)": lambda w, e: webdataset_loader(manifest, w, e),
        "mosaicml-streaming MDS (shuffled)": lambda w, e: mds_loader(manifest, w, e, local=mds_dir),
        "litdata (shuffled)": lambda w, e: litdata_loader(manifest, w, e, local=lit_dir),
    }
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    chosen = {n: m for n, m in loaders.items() if not only or any(o in n for o in only)}
    worker_counts = [int(w) for w in args.workers.split(",")]
    passes: dict = {(n, w): [] for w in worker_counts for n in chosen}
    loads = []
    for epoch in range(args.runs):  # passes interleaved, so a busy spell on the machine hits every loader
        for workers in worker_counts:
            for name, make in chosen.items():
                loads.append(os.getloadavg()[0])
                r = measure(lambda m=make, w=workers, e=epoch: m(w, e), args.cap)
                passes[(name, workers)].append(r)
                print(f"pass {epoch}: {name:<36} workers={workers}  {r['samples_per_s']:>12,.0f} samples/s "
                      f"({r['rows']:,} rows in {r['seconds']:.1f} s, load {loads[-1]:.1f})", flush=True)
    results = []
    for (name, workers), runs in passes.items():
        med = statistics.median(r["samples_per_s"] for r in runs)
        results.append({"loader": name, "num_workers": workers, "median_samples_per_s": med, "runs": runs})
        print(f"{name:<36} workers={workers}  median {med:>12,.0f} samples/s", flush=True)
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "versions": versions(), "train_rows": train_rows, "batch_size": BATCH,
              "runs": args.runs, "cap_s": args.cap, "results": results,
              "load_average": {"min": min(loads, default=0), "max": max(loads, default=0)},
              "gpu": gpu_check(manifest, args.runs) if not args.no_gpu else None}
    path = os.path.join(args.work, f"results-{report['date'][:10]}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {path}")
    if args.markdown:
        from report import update_benchmarks  # noqa: E402  (bench/loader/report.py)

        update_benchmarks(args.markdown, report)
        print(f"updated the '## Loader' section of {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    sys.exit(main())
