#!/usr/bin/env bash
# The loader's device path on a GPU machine, in one call (issue 13): its GPU tests, then delivery into
# device memory, shuffled, by each way of assembling batches, against the pinned-copy ceiling.
#
# From the repository root on the lent H200; nothing to install (torch, pyarrow, numpy and pytest are
# there; Hydra is not needed: the data is written by tests/loader/synthetic.py):
#   bash bench/loader/gpu_device.sh
# Steps, each under its own time limit (they add up to 580 s at most; about 4 minutes expected), each
# printing RESULT / SKIP / PASS / FAIL lines as they come:
#   0. the environment                1. data: 4,000,000 rows of the demo's schema, Parquet + tar
#   2. the GPU tests (tests/loader/test_device_gpu.py; test_gpu_decode.py where cuDF imports)
#   3. the ceiling: pinned and pageable host-to-device copies, device-to-device
#   4. delivery: the host path (today's), the device path (in process and 4 workers; Parquet and
#      WebDataset; batch 1024 and 4096), the cudf path (where cuDF imports); the first 30 batches of
#      each device run compared with the host path's, bit for bit
#   5. each side alone: the host's decode + pack, the device's batch cutting
# Details go to $OUT (or bench/results/loader-device-<time>): gpu_device.log, loader_device.jsonl,
# pytest-loader-gpu.xml. LOADER_DEVICE=cpu rehearses every step on a machine without a GPU
# (the device path's CPU stand-in; its figures mean nothing), LOADER_ROWS sets the data size.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
OUT=${OUT:-bench/results/loader-device-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
export OUT PYTHONUNBUFFERED=1
export PYTHONPATH=${PYTHONPATH:-$PWD}
DATA=${LOADER_DATA:-/tmp/shardsmith-loader-device}
ROWS=${LOADER_ROWS:-4000000}
DEVICE=${LOADER_DEVICE:-cuda}
LOG="$OUT/gpu_device.log"
: > "$LOG"
# shellcheck source=bench/gpu/steps.sh
. bench/gpu/steps.sh

B=(python bench/loader/device_bench.py --data "$DATA" --rows "$ROWS" --device "$DEVICE" --out "$OUT")
step "0. environment" 30 "${B[@]}" env
step "1. data, $ROWS rows" 100 "${B[@]}" data
TIMEOUT_ARGS=(-p no:cacheprovider)
python -c "import pytest_timeout" 2>/dev/null && TIMEOUT_ARGS+=(--timeout=100)
# --noconftest: the suite's conftest imports the compiler (Hydra); these two files need none of it.
step "2. GPU tests" 120 python -m pytest --noconftest -q "${TIMEOUT_ARGS[@]}" \
  --junitxml="$OUT/pytest-loader-gpu.xml" tests/loader/test_device_gpu.py tests/loader/test_gpu_decode.py
step "3. ceiling" 30 "${B[@]}" ceiling
step "4a. host path (today's), in process" 30 "${B[@]}" deliver --assemble host
step "4b. device path, in process" 30 "${B[@]}" deliver --assemble device --check 30
step "4c. device path, 4 workers" 40 "${B[@]}" deliver --assemble device --workers 4 --check 30
step "4d. device path, WebDataset, in process" 30 "${B[@]}" deliver --assemble device --format webdataset --check 30
step "4e. device path, WebDataset, 4 workers" 40 "${B[@]}" deliver --assemble device --format webdataset \
  --workers 4 --check 30
step "4f. device path, batch 4096" 30 "${B[@]}" deliver --assemble device --batch 4096 --check 30
step "4g. cudf path, in process" 40 "${B[@]}" deliver --assemble cudf --check 30
step "5a. host side alone: decode + pack" 30 "${B[@]}" host-blocks
step "5b. device side alone: batches from blocks on the device" 30 "${B[@]}" gather

say "=== summary $(date +%H:%M:%S), details in $OUT"
grep -E "^(RESULT|SKIP)" "$LOG"
for line in "${STATUS[@]}"; do echo "$line"; done
