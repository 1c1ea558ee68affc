#!/usr/bin/env bash
# Reproduce BENCHMARKS.md "WebDataset shards": demo input, the code before batched samples
# (commit 48bb4a8, exported with git archive), a Parquet-only compile for the per-shard layout
# comparison, then bench/loader/wds_layouts.py and wds_compile.py. Results land beside this script
# as wds-*-DATE.json. Run in an environment with shardsmith's dependencies and webdataset.
#   bash bench/loader/wds_run.sh [ROWS (2000000)] [WORK DIR (/tmp/wds-bench)]
set -euo pipefail
rows=${1:-2000000}
work=${2:-/tmp/wds-bench}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
day=$(date -u +%Y-%m-%d)
export PYTHONPATH="$repo"
mkdir -p "$work"
if [ ! -d "$work/base" ]; then
  mkdir "$work/base"
  git -C "$repo" archive 48bb4a8 | tar -x -C "$work/base"
fi
[ -d "$work/data" ] || python -m shardsmith demo-data --rows "$rows" --out "$work/data"
if [ ! -f "$work/parquet/manifest.json" ]; then
  python -m shardsmith compile "source.paths=[$work/data]" "output.dir=$work/parquet" engine=inprocess \
    profiling.progress=off "hydra.run.dir=$work/hydra"
fi
uptime
python "$here/wds_layouts.py" "$work/parquet" --out "$here/wds-layouts-$day.json"
python "$here/wds_layouts.py" "$work/parquet" --levels-only --out "$here/wds-levels-$day.json"
python "$here/wds_compile.py" --data "$work/data" --base-code "$work/base" --reps 3 \
  --out "$here/wds-compile-$day-a.json"
python "$here/wds_compile.py" --data "$work/data" --base-code "$work/base" --reps 5 \
  --only "before: parquet" "after: parquet" "after: parquet + webdataset (1024 rows/sample)" \
  "after: parquet + webdataset (1024, zstd)" --out "$here/wds-compile-$day-b.json"
uptime
