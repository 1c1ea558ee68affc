#!/usr/bin/env bash
# Every GPU check of the GPU engine in one call, for a GPU machine lent for minutes.
#
# From the repository root, after the RAPIDS wheels are installed (shared/gpu/README.md):
#   bash .gpu/install.sh finish && export PYTHONPATH=/tmp/gpu-site:$PWD && bash bench/gpu/check.sh
#
# Steps, each under its own time limit (they add up to 10 minutes at most; 5 to 6 expected), each
# printing its result lines as they come (PASS / FAIL / RESULT / BELOW TARGET):
#   0. the environment: GPU, driver, versions, and whether the GPU engine can run
#   a. the GPU test suite (pytest -m gpu: device tests and the GPU half of the parity suite), then
#      the CPU half of the parity suite (this machine's numpy / pyarrow)
#   b. kernel throughput: the demo pipeline's fused chain against the device-to-device copy, hashes
#   c. end to end: the demo pipeline at 20,000,000 rows, engine=gpu (cuDF's writer, cold then warm,
#      then pyarrow's writer) against engine=cpu, compared by content digests
# Issue 14's large run, a call of its own (only step c; data made on the device, about 36 s per
# 100M rows; outputs of warm runs removed as they are timed, for the 64 GiB disk):
#   CHECK_STEPS=c CHECK_ROWS=100000000 bash bench/gpu/check.sh
# CHECK_STEPS: the steps to run, any of env,a,b,c (default all). Step c's limits grow with the rows.
# The reader tests of step a (polars, duckdb, HF datasets on the cuDF-written shards) are skipped where
# those packages are missing, as on the lent machine: bring them along with pack.sh's extra
# requirements, dependencies included (it downloads --no-deps); step a lists every skip and its reason.
# Details go to $OUT (or bench/results/gpu-<time> without one): check.log, pytest-gpu.xml,
# env.txt, bench_kernels.json, bench_e2e.json. Nothing here needs the network.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
OUT=${OUT:-bench/results/gpu-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export PYTHONPATH=${PYTHONPATH:-$PWD}
export SHARDSMITH_KERNEL_CACHE=${SHARDSMITH_KERNEL_CACHE:-/tmp/shardsmith-kernels}
ROWS=${CHECK_ROWS:-20000000}  # smaller values only for a dry run elsewhere
KERNEL_ROWS=${CHECK_KERNEL_ROWS:-64000000}
STEPS=",${CHECK_STEPS:-env,a,b,c},"
wants() { [[ $STEPS == *",$1,"* ]]; }
# Step c's limits: 20M rows as measured on the H200 (GPU 26 s, CPU 20 s a run), scaled with the
# rows; the whole step within one 600 s call at most.
SCALE=$(( (ROWS + 19999999) / 20000000 ))
GPU_LIMIT=$(( 70 * SCALE )); CPU_LIMIT=$(( 130 * SCALE ))
E2E_BUDGET=$(( 285 * SCALE < 560 ? 285 * SCALE : 560 ))
LOG="$OUT/check.log"
: > "$LOG"
# shellcheck source=bench/gpu/steps.sh
. bench/gpu/steps.sh

wants env && step "environment" 30 python bench/gpu/probe.py
cp "$LOG" "$OUT/env.txt"

TIMEOUT_ARGS=(-p no:cacheprovider)
python -c "import pytest_timeout" 2>/dev/null && TIMEOUT_ARGS+=(--timeout=90)
# Not -x: one run of this script should show every failure, not only the first.
wants a && step "a. GPU test suite (pytest -m gpu)" 200 \
  python -m pytest -m gpu -q -rs --maxfail=40 "${TIMEOUT_ARGS[@]}" \
    --junitxml="$OUT/pytest-gpu.xml" tests
wants a && step "a. parity suite, CPU half, on this machine's numpy / pyarrow" 30 \
  python -m pytest -m "not gpu" -q "${TIMEOUT_ARGS[@]}" tests/parity
wants b && step "b. kernel throughput" 45 \
  python bench/gpu/bench_kernels.py --rows "$KERNEL_ROWS" --out "$OUT"
# Inside its budget: the GPU cold run, the CPU run, a warm GPU run, then a GPU run with the arrow
# writer, each under its own limit.
wants c && step "c. end to end, $ROWS rows, gpu vs cpu" $((E2E_BUDGET + 15)) \
  python bench/gpu/bench_e2e.py --rows "$ROWS" --files $((8 * SCALE)) --gpu-runs 2 --cpu-runs 1 \
    --gpu-limit "$GPU_LIMIT" --cpu-limit "$CPU_LIMIT" --budget "$E2E_BUDGET" --arrow-run --work /tmp/shardsmith-bench --out "$OUT"

say "=== summary $(date +%H:%M:%S), details in $OUT"
grep -E "^(RESULT|BELOW TARGET|FAIL)" "$LOG" | grep -v "^FAIL a\.\|^FAIL b\.\|^FAIL c\.\|^FAIL environment"
for line in "${STATUS[@]}"; do echo "$line"; done
