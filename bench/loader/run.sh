#!/usr/bin/env bash
# Build the loader benchmark's venv (if needed) and run the benchmark; extra arguments go to run.py
# (e.g. --rows 1200000 --runs 3). Results: bench/results/loader/ and the "## Loader" section of
# BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=bench/results/venv-loader
bash bench/loader/setup_venv.sh "$VENV"
exec "$VENV/bin/python" bench/loader/run.py "$@"
