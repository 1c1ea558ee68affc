"""GPU kernel throughput: the demo pipeline's fused continuous chain and the hash kernels, against
the device-to-device copy bandwidth measured in the same run.

    PYTHONPATH=/tmp/gpu-site:$PWD python bench/gpu/bench_kernels.py --rows 64000000 --out $OUT

Every figure is the median of ``--repeats`` timed runs (CUDA events) after a warm-up; bytes count
what a kernel must read and write (values and validity bits), as the copy counts read + write.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` on the device (CUDA events), after one warm-up call."""
    import cupy as cp

    fn()
    cp.cuda.Device().synchronize()
    times = []
    for _ in range(repeats):
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop) / 1e3)
    return statistics.median(times)


def copy_bandwidth(nbytes: int, repeats: int) -> dict:
    import cupy as cp

    a = cp.empty(nbytes, dtype=cp.uint8)
    b = cp.empty_like(a)
    a.fill(1)
    t = timed(lambda: b.data.copy_from_device_async(a.data, nbytes), repeats)
    return {"bytes": nbytes, "seconds": t, "GBps_read_plus_write": 2 * nbytes / t / 1e9}


def demo_chain(rows: int, cols: int, repeats: int, float_mode: str = "exact") -> dict:
    """fill_missing -> clip -> log1p -> normalize over ``cols`` float32 columns with ~10% nulls, as
    one generated kernel (kernels/codegen.py) in ``float_mode``, launched as the GPU engine launches it."""
    import cupy as cp
    import numpy as np

    from shardsmith.backends.gpu import columns as C
    from shardsmith.backends.gpu import impl, transfer
    from shardsmith.kernels import codegen, gpu
    from shardsmith.ops.numeric import Clip, FillMissing, Log1p, Normalize

    ops = [FillMissing(cols=("x",), value=0.0), Clip(cols=("x",), lower=0.0), Log1p(cols=("x",)),
           Normalize(cols=("x",))]
    params = [[{"fill": 0.0}, {"lo": 0.0}, {}, {"mean": 1.5, "std": 1.2}] for _ in range(cols)]
    layout = codegen.layout_of(params[0])
    src = codegen.render(ops, layout, "float32", ("float32",) * 4, float_mode)
    P, B, BO = codegen.pack(layout, params)
    rng = cp.random.default_rng(0)
    inputs = []
    for _ in range(cols):
        x = cp.exp(rng.standard_normal(rows, dtype=cp.float32) * 2).astype(cp.float32) - 1
        valid = rng.random(rows, dtype=cp.float32) > 0.1
        inputs.append(C.from_device(x, C.pack_bits(valid), int(rows - int(cp.count_nonzero(valid)))))
    whole_call = timed(lambda: impl.launch_fused(src, inputs, "float32", P, B, BO), repeats)

    # The kernel alone, with its arguments prepared once (what the group call adds is small H2D
    # copies of pointers and parameters, and one read of the null counts).
    n32 = ((rows + 31) // 32) * 32
    dsts = [cp.empty(rows, dtype=cp.float32) for _ in range(cols)]
    masks = [cp.empty(C.mask_alloc_words(rows), dtype=cp.uint32) for _ in range(cols)]
    nulls = cp.zeros(cols, dtype=cp.uint64)
    ptrs = lambda arrs: transfer.to_device(np.array([a.data.ptr for a in arrs], dtype=np.uint64))  # noqa: E731
    args = (ptrs([C.values(s) for s in inputs]), ptrs([C.mask_words(s)[0] for s in inputs]),
            transfer.to_device(np.zeros(cols, dtype=np.int64)), ptrs(dsts), ptrs(masks), nulls,
            transfer.to_device(P), transfer.to_device(B), transfer.to_device(BO), np.int64(rows))
    kernel_only = timed(lambda: gpu.launch(src, src.entries[0], n32, args, grid_y=cols), repeats)
    moved = cols * (rows * 4 * 2 + 2 * rows / 8)  # float32 in and out, and both validity bitmasks

    def separate_cupy_calls():  # the same work as op-at-a-time CuPy calls, for comparison
        for s in inputs:
            x = C.values(s)
            v = cp.where(C.validity(s), x, cp.float32(0))
            v = cp.maximum(v, 0)
            v = cp.log1p(v)
            (v - 1.5) / 1.2

    separate = timed(separate_cupy_calls, repeats)
    return {"rows": rows, "columns": cols, "bytes_moved": moved, "kernel_seconds": kernel_only,
            "kernel_GBps": moved / kernel_only / 1e9, "group_call_seconds": whole_call,
            "group_call_GBps": moved / whole_call / 1e9, "separate_cupy_seconds": separate,
            "source": src.name, "float_mode": float_mode}


def hash_kernels(rows: int, repeats: int, backend) -> dict:
    import cupy as cp
    import numpy as np
    import pyarrow as pa

    from shardsmith.backends.gpu import columns as C
    from shardsmith.backends.gpu import transfer

    rng = cp.random.default_rng(1)
    ints = C.from_device(rng.integers(0, 2**62, rows, dtype=cp.int64))
    out = {}
    t = timed(lambda: backend.buckets(backend.hash(ints, 7), 1_000_000), repeats)
    out["int64"] = {"rows": rows, "seconds": t, "input_GBps": rows * 8 / t / 1e9, "rows_per_s": rows / t}
    n_str = min(rows, 20_000_000)
    host = np.random.default_rng(2).integers(0, 2**32, n_str, dtype=np.uint64)
    from shardsmith.demo import _hex_strings

    strings = transfer.array_to_series(_hex_strings(host))  # 8-byte strings, as the demo's C1..C3
    assert isinstance(strings.to_arrow().type, pa.DataType)
    t = timed(lambda: backend.buckets(backend.hash(strings, 7), 1_000_000), repeats)
    out["string8"] = {"rows": n_str, "seconds": t, "input_GBps": n_str * 12 / t / 1e9, "rows_per_s": n_str / t}
    return out


# Issue 14's targets for the fused kernel, as a share of the copy bandwidth, per engine.float_mode.
CHAIN_TARGETS = {"exact": 0.4, "fast": 0.7}


def report_chain(chain: dict, copy: dict, target: float) -> None:
    ratio = chain["kernel_GBps"] / copy["GBps_read_plus_write"]
    chain["share_of_copy"] = ratio
    print(f"RESULT fused fill->clip->log1p->normalize ({chain['float_mode']}), {chain['columns']} x "
          f"{chain['rows']:,} float32: kernel {chain['kernel_seconds'] * 1e3:.2f} ms = {chain['kernel_GBps']:,.0f} "
          f"GB/s = {ratio:.0%} of copy; group call {chain['group_call_seconds'] * 1e3:.2f} ms; separate CuPy "
          f"calls {chain['separate_cupy_seconds'] * 1e3:.2f} ms", flush=True)
    print(f"{'PASS' if ratio >= target else 'BELOW TARGET'} fused kernel ({chain['float_mode']}) at {ratio:.0%} "
          f"of copy bandwidth (target {target:.0%})", flush=True)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=64_000_000)
    p.add_argument("--cols", type=int, default=13)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--copy-bytes", type=int, default=4 * 2**30)
    p.add_argument("--out", default=os.environ.get("OUT", "."))
    args = p.parse_args()
    import cupy as cp

    from shardsmith.backends import get_backend

    props = cp.cuda.runtime.getDeviceProperties(0)
    result = {"device": props["name"].decode(), "date": time.strftime("%Y-%m-%d"),
              "cupy": cp.__version__}
    copy = copy_bandwidth(args.copy_bytes, args.repeats)
    result["copy"] = copy
    print(f"RESULT copy d2d: {copy['GBps_read_plus_write']:,.0f} GB/s (read + write, "
          f"{args.copy_bytes / 2**30:.1f} GiB)", flush=True)
    for mode, target in CHAIN_TARGETS.items():
        chain = demo_chain(args.rows, args.cols, args.repeats, mode)
        result["fused_demo_chain" if mode == "exact" else f"fused_demo_chain_{mode}"] = chain
        report_chain(chain, copy, target)
    hashes = hash_kernels(min(args.rows, 64_000_000), args.repeats, get_backend("gpu"))
    result["hash"] = hashes
    for kind, h in hashes.items():
        print(f"RESULT hash+bucket {kind}: {h['rows']:,} rows in {h['seconds'] * 1e3:.2f} ms = "
              f"{h['rows_per_s'] / 1e9:.2f} G rows/s, {h['input_GBps']:,.0f} GB/s of input", flush=True)
    with open(os.path.join(args.out, "bench_kernels.json"), "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
