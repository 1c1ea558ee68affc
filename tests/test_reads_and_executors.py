"""One read of the input or one per pass, in this process (serially or on threads) or on a Dask
cluster: the same bytes every way; and what ``shardsmith plan`` says about each choice and why."""

from __future__ import annotations

import gc
import json
import os
import threading
import time
import weakref

import pytest

from shardsmith.compiler import sizing
from shardsmith.compiler.config import EngineConfig
from shardsmith.runtime.threads import Threads
from tests.conftest import cli, run_compile


def shard_hashes(res) -> dict:
    return {s["path"]: s["sha256"] for split in res.manifest["splits"].values() for s in split["shards"]}


def test_one_read_and_two_reads_write_the_same_bytes(demo_dir, tmp_path):
    """Kept partitions (reads=once) against a read per pass, serially and on threads in this
    process, over different partition sizes, on NumPy and compiled kernels: the same shards, the
    same manifest statistics and row accounting."""
    from shardsmith.kernels import cpujit

    common = ("output.shard_rows=7000", "fit.cache=off")  # every compile fits: no fit cache shared
    kernels = "numba" if cpujit.available() else "numpy"
    settings = {
        "per-pass-serial": ("engine.reads=per_pass", "engine.partition_bytes=1MB"),
        "once-serial": ("engine.reads=once", "engine.partition_bytes=300KB"),
        "once-threads": ("engine.reads=once", "engine.cluster=auto", "engine.threads_per_worker=3",
                         f"engine.cpu_kernels={kernels}"),
        "per-pass-threads": ("engine.reads=per_pass", "engine.cluster=auto", "engine.threads_per_worker=2",
                             "engine.partition_bytes=100KB"),
    }
    runs = {k: run_compile(f"{demo_dir}/*.parquet", tmp_path / k, *common, *v) for k, v in settings.items()}
    assert {k: r.manifest["plan"]["partitions"] for k, r in runs.items()}["once-serial"] > 3
    ref = runs["per-pass-serial"]
    for name, r in runs.items():
        assert shard_hashes(r) == shard_hashes(ref), name
        assert r.manifest["stats"] == ref.manifest["stats"] and r.manifest["rows"] == ref.manifest["rows"], name
    assert runs["once-threads"].manifest["engine"]["executor"] == "inprocess"


def test_kept_partitions_carry_the_first_passs_elementwise_steps(demo_dir, tmp_path):
    """The elementwise steps that open the first fit pass run once, as each partition is read;
    later fit passes and the transform start after them. Three fit passes (a fitted fill, then a
    quantile bucketize of its output, then a normalize of that), a filter, a cross and a
    categorify: the same bytes as reading per pass, and the plan says what runs when read."""
    from shardsmith.compiler.config import compose
    from shardsmith.runtime import prepare

    graph = ("graph=[{op: clip, cols: ['I*'], lower: 0}, {op: log1p, cols: ['I*']},"
             " {op: fill_missing, cols: ['I*'], strategy: median},"
             " {op: bucketize, cols: [I1], quantiles: 4, out: [I1q]},"
             " {op: normalize, cols: [I1q, I2]}, {op: filter, expr: 'I3 > 0.5'},"
             " {op: hashed_cross, cols: [C1, C2], num_buckets: 1000}, {op: categorify, cols: [C3, C4]}]")
    common = ("output.shard_rows=5000", "engine.partition_bytes=500KB", graph, "fit.cache=off")
    prep = prepare(compose([f"source.paths=[{demo_dir}/*.parquet]", "output.dir=unused", "engine.reads=once",
                            *common]))
    plan = prep.plan
    assert len(plan.fit_programs) == 3 and [i.key for i in plan.read_prefix] == ["graph[0]..graph[1]"]
    assert all(not any(getattr(i, "key", "").startswith("graph[0]") for i in p) for p in plan.fit_after_read)
    runs = {k: run_compile(f"{demo_dir}/*.parquet", tmp_path / k, *common, f"engine.reads={k}",
                           "engine.cluster=auto", "engine.threads_per_worker=2") for k in ("once", "per_pass")}
    assert shard_hashes(runs["once"]) == shard_hashes(runs["per_pass"])
    assert runs["once"].manifest["stats"] == runs["per_pass"].manifest["stats"]
    assert runs["once"].manifest["rows"] == runs["per_pass"].manifest["rows"]
    assert runs["once"].manifest["rows"]["filtered"] > 0


def test_input_checks_see_the_values_as_read_when_kept(demo_dir, tmp_path):
    """An input check that quarantines rows: a kept partition then carries no elementwise prefix
    (the check must see the values as read), its quarantined rows stay out of every fit pass, and
    the bytes, quarantine and row accounting equal those of reading per pass."""
    from shardsmith.compiler.config import compose
    from shardsmith.runtime import prepare

    graph = ("graph=[{op: clip, cols: [I2], lower: 1}, {op: fill_missing, cols: [I2], strategy: median},"
             " {op: normalize, cols: [I2]}]")
    expect = "expect=[{col: I2, check: between, min: 0, at: input, severity: quarantine}]"
    common = ("output.shard_rows=7000", "engine.partition_bytes=500KB", graph, expect, "fit.cache=off")
    plan = prepare(compose([f"source.paths=[{demo_dir}/*.parquet]", "output.dir=unused", "engine.reads=once",
                            *common])).plan
    assert plan.read_once and plan.read_prefix == () and len(plan.fit_programs) == 2
    runs = {k: run_compile(f"{demo_dir}/*.parquet", tmp_path / k, *common, f"engine.reads={k}")
            for k in ("once", "per_pass")}
    once, per = runs["once"].manifest, runs["per_pass"].manifest
    assert once["rows"]["quarantined"] > 100 and once["rows"] == per["rows"]
    assert shard_hashes(runs["once"]) == shard_hashes(runs["per_pass"]) and once["stats"] == per["stats"]
    assert [s["sha256"] for s in once["quarantine"]["shards"]] == [s["sha256"] for s in per["quarantine"]["shards"]]


def test_a_reused_fit_reads_once_in_the_transform(demo_dir, tmp_path):
    """A fit from the fit cache runs no fit pass: the plan then reads once, in the transform,
    with the whole transform program, and writes the bytes of the compile that fitted."""
    common = ("output.shard_rows=7000", "engine.reads=once", "graph=[{op: log1p, cols: [I1]},"
              " {op: normalize, cols: [I1]}, {op: categorify, cols: [C1]}]", f"fit.cache={tmp_path / 'cache'}")
    first = run_compile(f"{demo_dir}/*.parquet", tmp_path / "a", *common)
    again = run_compile(f"{demo_dir}/*.parquet", tmp_path / "b", *common, "profiling.enabled=true")
    assert first.manifest["fit"]["source"] == "fit" and again.manifest["fit"]["source"] == "cache"
    assert shard_hashes(again) == shard_hashes(first)
    profile = json.load(open(os.path.join(os.path.dirname(again.path), "profile.json")))
    reads = {s["name"]: s["calls"] for s in profile["stages"] if s["name"].endswith(":read")}
    assert reads == {"transform:read": again.manifest["plan"]["partitions"]}


@pytest.mark.slow
def test_one_read_on_a_local_cluster_writes_the_same_bytes(demo_dir, tmp_path):
    """The kept partitions stay on the Dask workers that read them (single-threaded worker
    processes here, so the transform runs where its partition is)."""
    common = ("output.shard_rows=7000", "engine.partition_bytes=300KB", "fit.cache=off")
    ref = run_compile(f"{demo_dir}/*.parquet", tmp_path / "ref", *common, "engine.reads=per_pass")
    dask = run_compile(f"{demo_dir}/*.parquet", tmp_path / "dask", *common, "engine.reads=once",
                       "engine.cluster=local", "engine.n_workers=2", "engine.processes=true", engine="cpu")
    assert dask.manifest["engine"]["executor"] == "dask" and dask.manifest["engine"]["workers"] == 2
    assert shard_hashes(dask) == shard_hashes(ref) and dask.manifest["stats"] == ref.manifest["stats"]


def test_the_fitted_state_is_read_once(demo_dir, tmp_path):
    """With reads=once the profile counts one read per partition (in the first fit pass), with
    reads=per_pass one per partition per pass."""
    once = run_compile(f"{demo_dir}/*.parquet", tmp_path / "once", "engine.reads=once", "profiling.enabled=true",
                       "fit.cache=off")
    per = run_compile(f"{demo_dir}/*.parquet", tmp_path / "per", "engine.reads=per_pass", "profiling.enabled=true",
                      "fit.cache=off")

    def reads(res):
        profile = json.load(open(os.path.join(os.path.dirname(res.path), "profile.json")))
        return {s["name"]: s["calls"] for s in profile["stages"] if s["name"].endswith(":read")}

    parts = once.manifest["plan"]["partitions"]
    assert reads(once) == {"fit0:read": parts}  # a stage that never ran is not listed
    assert reads(per) == {"fit0:read": parts, "transform:read": parts}


def test_merge_trees_per_thread_count_every_partial_once(demo_dir, tmp_path):
    """On threads, each thread's merge tree merges its share of the statistics: the same fitted
    state and shards as one tree (serially), with many partitions and with one (where every tree's
    root is the one task's result), and each task's spans in the profile once."""
    import pyarrow.parquet as pq

    one = tmp_path / "one"
    one.mkdir()
    pq.write_table(pq.read_table(f"{demo_dir}/{sorted(os.listdir(demo_dir))[0]}").slice(0, 3000), one / "p.parquet")
    common = ("output.shard_rows=7000", "fit.cache=off", "profiling.enabled=true")
    threads = ("engine.cluster=auto", "engine.threads_per_worker=3", "engine.partition_bytes=300KB")
    for name, glob in {"many": f"{demo_dir}/*.parquet", "one": f"{one}/*.parquet"}.items():
        serial = run_compile(glob, tmp_path / f"{name}-serial", *common, "engine.partition_bytes=300KB")
        trees = run_compile(glob, tmp_path / f"{name}-trees", *common, *threads)
        assert trees.manifest["engine"]["executor"] == "inprocess", name
        assert shard_hashes(trees) == shard_hashes(serial) and trees.manifest["stats"] == serial.manifest["stats"]
        assert trees.manifest["fit"] == serial.manifest["fit"], name
        profile = json.load(open(os.path.join(os.path.dirname(trees.path), "profile.json")))
        calls = {s["name"]: s["calls"] for s in profile["stages"]}
        parts = trees.manifest["plan"]["partitions"]
        assert (parts == 1) == (name == "one") and calls["fit0:read"] == parts, name
        # n - 1 merges per tree, and 3 trees: at most one per statistic of the widest step
        assert calls.get("fit0:merge", 0) == 3 * (parts - 1), name


def test_plan_says_how_often_it_reads_and_where_it_runs(demo_dir):
    proc = cli("plan", f"source.paths=[{demo_dir}/*.parquet]")
    assert proc.returncode == 0, proc.stderr
    lines = {line.split(":", 1)[0]: line for line in proc.stdout.splitlines()
             if line.startswith(("reads:", "executor:"))}
    assert lines["reads"].startswith("reads: once (the first pass keeps the decoded partitions for the next ones): "
                                     "the decoded input (")
    assert "fits in half the memory budget" in lines["reads"] and "memory available)" in lines["reads"]
    assert lines["executor"].startswith("executor: this process, ") and "task thread(s): the decoded input" in \
        lines["executor"]
    small = cli("plan", f"source.paths=[{demo_dir}/*.parquet]", "engine.memory_limit=10MB")
    assert "reads: once per pass (memory bounded by the partitions in flight): the decoded input (" in small.stdout
    assert "exceeds half the memory budget (10 MB: engine.memory_limit=10MB)" in small.stdout
    forced = cli("plan", f"source.paths=[{demo_dir}/*.parquet]", "engine=inprocess", "engine.reads=per_pass")
    assert "reads: once per pass (memory bounded by the partitions in flight): engine.reads=per_pass" in forced.stdout
    assert "executor: this process, 1 task thread(s): engine.cluster=inprocess" in forced.stdout
    remote = cli("plan", f"source.paths=[{demo_dir}/*.parquet]", "engine.scheduler=tcp://127.0.0.1:8786")
    assert "reads: once per pass (memory bounded by the partitions in flight): the memory budget is not known " \
           "here" in remote.stdout
    assert "executor: an existing Dask cluster: engine.scheduler=tcp://127.0.0.1:8786" in remote.stdout
    bad = cli("plan", f"source.paths=[{demo_dir}/*.parquet]", "engine.reads=twice")
    assert bad.returncode == 2 and bad.stderr.strip() == \
        "error: engine.reads: expected one of auto, once, per_pass, got 'twice'"


def test_sizing_decisions():
    auto = EngineConfig()
    assert sizing.choose_reads(auto, 2, 400, 1000).value == "once"
    assert sizing.choose_reads(auto, 2, 600, 1000).value == "per_pass"
    assert sizing.choose_reads(auto, 1, 10**12, 1000).value == "once"  # nothing fitted: one pass anyway
    assert sizing.choose_reads(auto, 3, 1, None).value == "per_pass"
    assert sizing.choose_reads(EngineConfig(reads="once"), 2, 10**12, 1).value == "once"
    assert sizing.choose_executor(auto, "cpu", 10**6).value == "inprocess"
    assert sizing.choose_executor(auto, "cpu", sizing.AUTO_INPROCESS_BYTES + 1).value == "local"
    assert sizing.choose_executor(auto, "gpu", 1).value == "local"
    assert sizing.choose_executor(EngineConfig(processes=True), "cpu", 1).value == "local"
    assert sizing.choose_executor(EngineConfig(scheduler="tcp://h:1"), "cpu", 1).value == "scheduler"
    local = EngineConfig(cluster="local", memory_limit="1GB", n_workers=3, processes=True)
    assert sizing.memory_budget(local, "cpu", "local", 5) == 3 * 10**9
    assert sizing.memory_budget(auto, "cpu", "inprocess", 5) == 5
    assert sizing.memory_budget(auto, "gpu", "local", 5) is None


def test_threads_run_a_task_when_its_arguments_are_ready():
    ex = Threads(2)
    try:
        gate = threading.Event()
        slow = ex.submit(lambda: gate.wait(5) and 7)
        nested = ex.submit(lambda pieces: sum(v for v, _ in pieces), [(slow, "a"), (ex.submit(lambda: 3), "b")])
        free = ex.submit(lambda: "free")
        assert free.result(timeout=5) == "free"  # not queued behind the task that waits for `slow`
        assert not nested.done()
        gate.set()
        assert nested.result(timeout=5) == 10
        failed = ex.submit(lambda: 1 / 0)
        downstream = ex.submit(lambda x: x + 1, failed)
        with pytest.raises(ZeroDivisionError):
            downstream.result(timeout=5)
        assert ex.scatter({"a": 1}).result() == {"a": 1}
    finally:
        ex.close()


def test_threads_let_go_of_a_kept_result_once_its_last_task_ran():
    """A task's callbacks stay on the futures it waited for: they must not keep its arguments (a
    kept partition) alive, or memory would hold every partition to the end of the compile."""

    class Big:
        pass

    ex = Threads(2)
    try:
        gate = threading.Event()
        kept = ex.submit(lambda: (gate.wait(5), Big())[1])
        use = ex.submit(lambda b: type(b).__name__, kept)  # waits: its callback sits on `kept`
        gate.set()
        assert use.result(timeout=5) == "Big"
        ref = weakref.ref(kept.result())
        del kept
        gc.disable()  # freed by reference counting alone, not by a collection of cycles
        try:
            time.sleep(0.05)
            assert ref() is None
        finally:
            gc.enable()
    finally:
        ex.close()


def test_the_transform_lets_go_of_its_kept_partition_in_this_process(demo_dir, tmp_path):
    """The transform is a kept read's last use: in this process it drops the kept frame as it
    starts, so the columns its program replaces are freed as it goes (the same result); a
    cluster's worker keeps it (the task may run again there)."""
    from dataclasses import replace

    from shardsmith.compiler.config import compose
    from shardsmith.compiler.sizing import Choice
    from shardsmith.runtime import prepare, tasks

    cfg = compose([f"source.paths=[{demo_dir}/*.parquet]", f"output.dir={tmp_path / 'o'}", "engine.reads=once",
                   "graph=[{op: log1p, cols: [I1]}, {op: categorify, cols: [C4], freq_threshold: 0}]"])
    plan = prepare(cfg).plan
    part = plan.partitions[0]
    states = {"graph[1]": {"C4": {"vocab": __import__("pyarrow").table({"value": [0], "count": [1]}),
                                  "nulls": 0, "cardinality": 4}}}
    results = {}
    for executor in ("inprocess", "local"):
        p = replace(plan, executor=Choice(executor, "test"))
        kept = tasks.read_task("cpu", p, part)
        frame = kept["frame"]
        results[executor] = tasks.transform_task("cpu", p, part, states, kept=kept)
        assert (kept["frame"] is None) == (executor == "inprocess") and frame.num_rows == part.rows
    a, b = results["inprocess"], results["local"]
    assert a["meta"] == b["meta"] and a["meta"]["rows_read"] == part.rows
    assert all(a["splits"][n].equals(b["splits"][n]) for n in a["splits"])
