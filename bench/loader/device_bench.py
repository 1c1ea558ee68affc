"""Delivery into device memory: how many samples a second (and GB/s) ``ShardDataset`` batches land
on the GPU, shuffled, for the compiled demo's schema (161 bytes a row), by each way of assembling
them (``assemble="host"``: today's path; ``"device"``; ``"cudf"``), against the pinned
host-to-device copy, the bus's ceiling. Issue 13's target: 10x the host path's 0.32 GB/s, i.e.
3.2 GB/s (about 20M samples/s), on one H200.

One measurement per call, so that a wrapper (``bench/loader/gpu_device.sh``) can give each its own
time limit; each appends one JSON line to ``OUT/loader_device.jsonl`` and prints one RESULT line.

    python bench/loader/device_bench.py data --rows 4000000     # the dataset (tests/loader/synthetic.py)
    python bench/loader/device_bench.py ceiling                 # pinned / pageable H2D, D2D copies
    python bench/loader/device_bench.py deliver --assemble device --workers 0 --format parquet --check 20
    python bench/loader/device_bench.py host-blocks             # the host's share alone: decode + pack
    python bench/loader/device_bench.py gather                  # the device's share alone: batches cut
                                                                # from blocks already on the device

A delivery pass runs from creating the loader's iterator (worker start-up and the first block
included) to the last batch of the epoch, then ``torch.cuda.synchronize()``; epochs are repeated
(``set_epoch``, each a new order) until ``--seconds`` have passed; the figure is rows over time.
The loop only counts rows: a training step would add its own work. ``--device cpu`` rehearses
every step on a machine without a GPU (the device path's CPU stand-in; no figure to keep).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_DATA = "/tmp/shardsmith-loader-device"


def _synthetic():
    # An importable module (not one loaded from its file path): the writer sends its shard function
    # to a process pool, which must import it by name. main() puts ROOT on sys.path.
    from tests.loader import synthetic  # lazy: the data step alone needs it

    return synthetic


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def emit(args, record: dict, line: str) -> None:
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "device_arg": args.device, **record}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "loader_device.jsonl"), "a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"RESULT {line}", flush=True)


# --- steps ----------------------------------------------------------------------------------------------
def cmd_env(args) -> int:
    import pyarrow
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "pyarrow": pyarrow.__version__, "cpus": os.cpu_count(), "cuda": torch.cuda.is_available()}
    if info["cuda"]:
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        import cudf

        info["cudf"] = cudf.__version__
    except Exception as exc:  # noqa: BLE001 - only reported
        info["cudf"] = f"not importable ({type(exc).__name__})"
    emit(args, {"step": "env", **info}, " ".join(f"{k}={v}" for k, v in info.items()))
    return 0


def cmd_data(args) -> int:
    from shardsmith.shards.readers import load_manifest

    path = os.path.join(args.data, "manifest.json")
    if os.path.exists(path) and load_manifest(args.data)["splits"]["train"]["rows"] == args.rows:
        print(f"reusing {args.data}")
    else:
        t0 = time.perf_counter()
        _synthetic().write(args.data, args.rows, jobs=os.cpu_count() or 1)
        print(f"wrote {args.rows:,} rows in {time.perf_counter() - t0:.1f} s")
    sizes = {}
    for name in os.listdir(os.path.join(args.data, "train")):
        kind = name.rsplit(".", 1)[-1]
        sizes[kind] = sizes.get(kind, 0) + os.path.getsize(os.path.join(args.data, "train", name))
    emit(args, {"step": "data", "rows": args.rows, "bytes": sizes},
         f"data {args.rows:,} rows: " + ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in sorted(sizes.items())))
    return 0


def _copy_rate(src, dst, reps: int) -> float:
    import torch

    dst.copy_(src, non_blocking=True)
    torch.cuda.synchronize()
    rates = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            dst.copy_(src, non_blocking=True)
        torch.cuda.synchronize()
        rates.append(reps * src.numel() / (time.perf_counter() - t0))
    return statistics.median(rates)


def cmd_ceiling(args) -> int:
    import torch

    if args.device != "cuda":
        print("SKIP ceiling: no CUDA device asked for")
        return 0
    n = 256 << 20
    pinned = torch.empty(n, dtype=torch.uint8, pin_memory=True)
    pageable = torch.empty(n, dtype=torch.uint8)
    dev, dev2 = torch.empty(n, dtype=torch.uint8, device="cuda"), torch.empty(n, dtype=torch.uint8, device="cuda")
    rec = {"step": "ceiling", "pinned_h2d": _copy_rate(pinned, dev, 10), "pageable_h2d": _copy_rate(pageable, dev, 2),
           "d2d_read_plus_write": 2 * _copy_rate(dev, dev2, 20)}
    emit(args, rec, f"ceiling pinned H2D {rec['pinned_h2d'] / 1e9:.1f} GB/s, pageable H2D "
                    f"{rec['pageable_h2d'] / 1e9:.1f} GB/s, D2D {rec['d2d_read_plus_write'] / 1e9:.0f} GB/s")
    return 0


def _dataset(args, assemble: str, device: str | None = None):
    from shardsmith.shards import ShardDataset

    return ShardDataset(args.data, batch_size=args.batch, seed=1, device=device or args.device, assemble=assemble,
                        format=args.format, shuffle_buffer=args.shuffle_buffer)


def _loader(ds, workers: int):
    from shardsmith.shards import ShardLoader

    return ShardLoader(ds, num_workers=workers)


def _bits(batch) -> list:
    return [t.cpu().numpy().tobytes() for t in batch.values()]


def check_same(args) -> str:
    """The first ``--check`` batches of the path under test against the host path on the CPU."""
    ref, got = iter(_loader(_dataset(args, "host", "cpu"), args.workers)), \
        iter(_loader(_dataset(args, args.assemble), args.workers))
    for i in range(args.check):
        a, b = next(ref, None), next(got, None)
        if a is None and b is None:
            break
        if a is None or b is None or _bits(a) != _bits(b):
            return f"DIFFERENT at batch {i}"
    return f"identical ({args.check} batches)"


def cmd_deliver(args) -> int:
    if args.assemble == "cudf":
        from shardsmith.errors import ShardsmithError

        try:
            _dataset(args, "cudf")
        except ShardsmithError as exc:
            print(f"SKIP deliver cudf: {exc}")
            return 0
    check = check_same(args) if args.check else None
    ds = _dataset(args, args.assemble)
    row_bytes = sum(dt.itemsize for _, dt in ds.columns)
    rows, epochs, first = 0, 0, None
    t0 = time.perf_counter()
    while epochs == 0 or (time.perf_counter() - t0 < args.seconds and epochs < args.max_epochs):
        ds.set_epoch(epochs)
        for batch in _loader(ds, args.workers):
            if first is None:
                _sync(args.device)
                first = time.perf_counter() - t0
            rows += int(next(iter(batch.values())).shape[0])
        epochs += 1
    _sync(args.device)
    took = time.perf_counter() - t0
    rec = {"step": "deliver", "assemble": args.assemble, "workers": args.workers, "format": args.format,
           "batch_size": args.batch, "shuffle_buffer": args.shuffle_buffer, "rows": rows, "epochs": epochs,
           "seconds": took, "first_batch_s": first, "rows_per_s": rows / took, "bytes_per_s": rows * row_bytes / took,
           "row_bytes": row_bytes, "check": check}
    emit(args, rec, f"deliver assemble={args.assemble} workers={args.workers} format={args.format} "
                    f"batch={args.batch}: {rows / took / 1e6:.2f}M samples/s = {rows * row_bytes / took / 1e9:.2f} "
                    f"GB/s ({epochs} epochs, {took:.1f} s, first batch {first:.2f} s)"
                    + (f"; batches vs host path: {check}" if check else ""))
    return 0 if check is None or check.startswith("identical") else 1


def cmd_host_blocks(args) -> int:
    """Decode + pack of every block of an epoch, as the device path's read-ahead threads do, with
    no device: the rate the host can feed the device path in one process."""
    import torch

    from shardsmith.shards import order as od
    from shardsmith.shards.loader.blocks import BlockFeed
    from shardsmith.shards.loader.dataset import READAHEAD_THREADS
    from shardsmith.shards.loader.gather import read_block
    from shardsmith.shards.loader.layout import BatchSpec

    ds = _dataset(args, "device")
    plan, spec, lock = ds.plan(), BatchSpec(ds.columns), threading.Lock()
    pin = args.device == "cuda"

    def make(j: int) -> int:
        n = plan.block_rows(j)
        buf = torch.empty(spec.nbytes(n), dtype=torch.uint8, pin_memory=pin)
        spec.pack(read_block(ds.source, plan, j, lock), buf.numpy(), n)
        return n

    loads = od.block_loads(plan, np.arange(plan.batches), 2)
    t0 = time.perf_counter()
    feed = BlockFeed(loads, make, READAHEAD_THREADS)
    rows = sum(feed() for _ in loads)
    feed.close()
    took = time.perf_counter() - t0
    row_bytes = sum(dt.itemsize for _, dt in ds.columns)
    rec = {"step": "host-blocks", "format": args.format, "threads": READAHEAD_THREADS, "rows": rows, "seconds": took,
           "rows_per_s": rows / took, "bytes_per_s": rows * row_bytes / took}
    emit(args, rec, f"host-blocks format={args.format} ({READAHEAD_THREADS} threads, decode + pack, no device): "
                    f"{rows / took / 1e6:.2f}M rows/s = {rows * row_bytes / took / 1e9:.2f} GB/s")
    return 0


def cmd_gather(args) -> int:
    """Batches cut on the device from blocks already there: the device side's rate alone (what the
    per-batch work costs: one buffer, a strided copy per dtype, the column views)."""
    from shardsmith.shards import order as od
    from shardsmith.shards.loader import gather
    from shardsmith.shards.loader.device import Staging
    from shardsmith.shards.loader.layout import BatchSpec

    ds = _dataset(args, "device")
    plan, spec, lane = ds.plan(), BatchSpec(ds.columns), ds.lane()
    staging = Staging(lane, 2)
    blocks, schedule = [], od.block_schedule(plan, np.arange(plan.batches), gather.CAPACITY)
    for j in od.loads(schedule):
        parts = gather.read_block(ds.source, plan, j)
        n = plan.block_rows(j)
        blocks.append(gather.staged_upload(staging, lane, spec, plan, j,
                                           lambda slot, p=parts, n=n: spec.pack(p, slot.numpy(), n)))
    _sync(args.device)
    feed = iter(blocks)
    batches = gather.DeviceBatches(plan, spec, lane)
    t0 = time.perf_counter()
    rows = sum(len(next(iter(batches.batch(steps, lambda: next(feed)).values()))) for steps in schedule)
    _sync(args.device)
    took = time.perf_counter() - t0
    row_bytes = sum(dt.itemsize for _, dt in ds.columns)
    rec = {"step": "gather", "batch_size": args.batch, "rows": rows, "seconds": took, "rows_per_s": rows / took,
           "batches_per_s": plan.batches / took, "bytes_per_s": rows * row_bytes / took}
    emit(args, rec, f"gather batch={args.batch} (blocks already on the device): {rows / took / 1e6:.2f}M rows/s, "
                    f"{plan.batches / took:,.0f} batches/s = {rows * row_bytes / took / 1e9:.2f} GB/s")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["env", "data", "ceiling", "deliver", "host-blocks", "gather"])
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--rows", type=int, default=4_000_000)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--assemble", default="device", choices=["host", "device", "cudf"])
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--format", default="parquet", choices=["parquet", "webdataset"])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--shuffle-buffer", type=int, default=262_144)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--max-epochs", type=int, default=50)
    ap.add_argument("--check", type=int, default=0, help="first compare this many batches with the host path's")
    args = ap.parse_args(argv)
    sys.path.insert(0, ROOT)
    return {"env": cmd_env, "data": cmd_data, "ceiling": cmd_ceiling, "deliver": cmd_deliver,
            "host-blocks": cmd_host_blocks, "gather": cmd_gather}[args.step](args)


if __name__ == "__main__":
    sys.exit(main())
