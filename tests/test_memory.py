"""Peak memory follows the partition and shard sizes, not the dataset size, when the input is read
once per pass (engine.reads=per_pass, what auto chooses for an input that does not fit the memory
budget; reads=once keeps every decoded partition by design)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shardsmith.demo import generate

SCRIPT = """
import resource, sys
from shardsmith.compiler.config import compose
from shardsmith.runtime import compile_dataset
# Exact vocabularies grow with the number of distinct values, whatever the engine: keep categorify
# to the low-cardinality columns and hash the others, so that what is measured is the engine.
graph = ("graph=[{op: fill_missing, cols: ['I*'], value: 0}, {op: log1p, cols: ['I*']},"
         " {op: normalize, cols: ['I*']}, {op: hashed_cross, cols: [C1, C2], num_buckets: 1000},"
         " {op: categorify, cols: [C1, C2, C3, C4, C5, C6]}, {op: hash_bucket, cols: ['C??'], num_buckets: 100000}]")
cfg = compose([f"source.paths=[{sys.argv[1]}/*.parquet]", f"output.dir={sys.argv[2]}", "engine=inprocess",
               "engine.partition_bytes=2MB", "output.shard_rows=20000", "engine.reads=per_pass", graph])
compile_dataset(cfg, log=lambda *_: None)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_dataset(tmp_path):
    peaks = {}
    for rows in (100_000, 800_000):
        generate(rows, str(tmp_path / f"raw{rows}"), files=max(1, rows // 200_000), row_group_rows=8192)
        out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / f"raw{rows}"), str(tmp_path / f"o{rows}")],
                             capture_output=True, text=True, check=True)
        peaks[rows] = int(out.stdout.strip().splitlines()[-1]) / 1024  # MiB
    # 8x the rows (about 230 MB more of decoded data) may not cost more than 25% more memory.
    assert peaks[800_000] < peaks[100_000] * 1.25, peaks


def test_a_compile_in_process_hands_freed_memory_back_between_fit_and_transform(demo_dir, tmp_path):
    """runtime/threads.release_freed_memory runs once, after the last fit task and before the
    first transform task, in a compile on this process's threads (where the resident set peaks as
    the transform starts); the allocators stay usable after it."""
    from unittest import mock

    from shardsmith.runtime import driver, tasks
    from tests.conftest import run_compile

    events = []

    def recording(name, fn):
        def run(*a, **k):
            events.append(name)
            return fn(*a, **k)
        return run

    with mock.patch.object(driver, "release_freed_memory", recording("release", driver.release_freed_memory)), \
            mock.patch.object(tasks, "fit_task", recording("fit", tasks.fit_task)), \
            mock.patch.object(tasks, "transform_task", recording("transform", tasks.transform_task)):
        res = run_compile(f"{demo_dir}/*.parquet", tmp_path / "out", engine="cpu")
    assert res.manifest["rows"]["out"] == 30_000 and res.manifest["engine"]["executor"] == "inprocess"
    assert events.count("release") == 1 and "fit" in events and "transform" in events
    at = events.index("release")
    assert "transform" not in events[:at] and "fit" not in events[at:]
