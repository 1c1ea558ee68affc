#!/usr/bin/env bash
# A second, shorter GPU session: the loader's CUDA test, and profiled 20M-row demo compiles on the
# GPU (Dask-CUDA and in-process) and on the CPU cores, whose profile.json files come back in $OUT,
# plus the fused chain in float32 arithmetic against the float64 one (what exactness costs).
# Run like check.sh: bash .gpu/install.sh finish && export PYTHONPATH=/tmp/gpu-site:$PWD && bash bench/gpu/profile_run.sh
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
OUT=${OUT:-bench/results/gpu-profile}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
W=/tmp/e2e
echo "=== loader CUDA test"
timeout 120 python -m pytest -q -p no:cacheprovider -m gpu tests/loader/test_dataset.py 2>&1 | tail -4
echo "=== data"
timeout 90 python -c "from shardsmith.demo import generate; generate(20_000_000, '$W/raw', files=8)" || exit 1
for run in "gpu engine=gpu" "gpuinproc engine=gpu engine.cluster=inprocess" "cpu engine=cpu"; do
  # shellcheck disable=SC2086  # the words of a run are meant to split
  set -- $run
  name=$1; shift
  echo "=== compile $name"
  timeout 150 python -m shardsmith compile "$@" "source.paths=[$W/raw/*.parquet]" "output.dir=$W/$name" \
    "hydra.run.dir=$W/h-$name" 2>&1 | grep -E "wrote|fit pass|error" | tail -3
  cp "$W/$name/profile.json" "$OUT/profile_$name.json" 2>/dev/null
  timeout 60 python -m shardsmith report "$W/$name" 2>&1 | tail -12
done
echo "=== fused chain: float64 (as shipped) against float32 arithmetic, 13 x 64M float32"
timeout 60 python - <<'PY'
import cupy as cp
n, k = 64_000_000, 13
xs = [cp.random.random(n, dtype=cp.float32) * 100 for _ in range(k)]
body = "{T} v = isnan(x) ? ({T})0 : ({T})x; v = v < ({T})0 ? ({T})0 : v; v = log1p(v); y = (float)((v - ({T})1.5) / ({T})2.5);"
for T in ("double", "float"):
    kern = cp.ElementwiseKernel("float32 x", "float32 y", body.format(T=T), f"chain_{T}")
    outs = [cp.empty_like(x) for x in xs]
    for x, o in zip(xs, outs):
        kern(x, o)
    cp.cuda.Device().synchronize()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    for _ in range(3):
        for x, o in zip(xs, outs):
            kern(x, o)
    end.record(); end.synchronize()
    ms = cp.cuda.get_elapsed_time(start, end) / 3
    print(f"RESULT chain in {T}: {ms:.2f} ms = {k * n * 8 / ms / 1e6:.0f} GB/s (read + write)")
PY
