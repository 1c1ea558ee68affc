"""Optimiser passes: golden before/after, the IR validator after every pass, the same rows with and
without the passes, one pass over the data for independent statistics, kernel counts for fusion."""

from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest

from shardsmith.backends.cpu import CpuBackend
from shardsmith.compiler.build import build
from shardsmith.compiler.config import compose
from shardsmith.compiler.explain import render
from shardsmith.compiler.passes import PASSES, optimize
from shardsmith.compiler.passes.fuse_elementwise import kernel_count
from shardsmith.compiler.passes.plan_fit import fit_passes, plan_fit
from shardsmith.compiler.passes.validate import validate
from shardsmith.compiler.planner import physical_plan
from shardsmith.ir import Fused
from shardsmith.runtime import compile_dataset
from tests.conftest import run_compile

GRAPH = ("graph=[{op: fill_missing, cols: [I1, I2], value: 0}, {op: log1p, cols: [I1, I2]},"
         " {op: filter, expr: 'label == 1'}, {op: normalize, cols: [I1]},"
         " {op: categorify, cols: [C5]}, {op: drop, cols: [C7, I3]}, {op: clip, cols: [I4], lower: 1},"
         " {op: drop, cols: [I4]}]")


def graph_for(demo_dir, *overrides):
    return build(compose([f"source.paths=[{demo_dir}/*.parquet]", *overrides]))


def test_each_pass_golden(demo_dir):
    g = graph_for(demo_dir, GRAPH, "split.fit_on=null")
    trace = []
    optimize(g, trace=trace, check=True)
    after = {name: render(graph) for name, graph in trace}
    # prune_columns: the clip on I4 is dead (I4 is dropped), C7 and I3 are never read.
    assert not any("clip" in line for line in after["prune_columns"])
    assert after["prune_columns"][0] == "source parquet: 3 file(s), 30,000 rows; reads 37 of 40 column(s)"
    # push_filters: the filter reads an untouched source column and no fitted step precedes it.
    assert "  pushed filter: (label == 1)" in after["push_filters"]
    assert not any(line.startswith("graph[2]") for line in after["push_filters"])
    # plan_fit: both fitted steps in pass 0.
    assert "graph[3]  normalize([I1])  [fitted in pass 0]" in after["plan_fit"]
    assert "graph[4]  categorify([C5])  [fitted in pass 0]" in after["plan_fit"]
    # fuse_elementwise: fill + log1p + normalize on I1 is one kernel, fill + log1p on I2 another.
    fused = [line for line in after["fuse_elementwise"] if "kernel" in line]
    assert fused[0].startswith("graph[0]..graph[3]  fused: 3 step(s), 2 kernel(s)")


def test_a_filter_after_a_fitted_step_stays_put(demo_dir):
    g = optimize(graph_for(demo_dir, "graph=[{op: normalize, cols: [I1]}, {op: filter, expr: 'label == 1'}]"))
    assert g.source.filter is None
    assert [s.op.op_name for s in g.flat_steps()] == ["normalize", "filter"]


def test_validator_rejects_a_corrupted_graph(demo_dir):
    from dataclasses import replace

    from shardsmith.errors import PlanError

    g = graph_for(demo_dir, GRAPH)
    bad = g.with_steps([g.steps[0], replace(g.steps[1], schema=g.steps[0].schema.drop(["I1"]))])
    with pytest.raises(PlanError, match="does not match"):
        validate(bad)


def test_independent_statistics_take_one_pass(demo_dir, monkeypatch, tmp_path):
    reads = []
    original = CpuBackend.read

    def counting(self, part, source, split, ctx=None):
        reads.append(part.index)
        return original(self, part, source, split, ctx)

    monkeypatch.setattr(CpuBackend, "read", counting)
    graph = ("graph=[{op: normalize, cols: [I1]}, {op: normalize_minmax, cols: [I2]},"
             " {op: categorify, cols: [C1, C2]}, {op: fill_missing, cols: [I3], strategy: median},"
             " {op: bucketize, cols: [I5], quantiles: 4}]")
    # fit.cache=off: each compile below fits (they share a parent directory, hence a fit cache).
    res = run_compile(f"{demo_dir}/*.parquet", tmp_path / "a", "engine.partition_bytes=100KB", graph,
                      "engine.reads=per_pass", "fit.cache=off")
    parts = res.manifest["plan"]["partitions"]
    assert parts > 3
    assert res.manifest["plan"]["fit_passes"] == 1
    assert len(reads) == 2 * parts  # one fit pass + one transform pass
    reads.clear()
    run_compile(f"{demo_dir}/*.parquet", tmp_path / "once", "engine.partition_bytes=100KB", graph, "engine.reads=once",
                "fit.cache=off")
    assert len(reads) == parts  # kept from the fit pass for the transform
    # normalize after a fitted median fill depends on it: two fit passes, three reads in all (or one).
    graph = ("graph=[{op: fill_missing, cols: [I1], strategy: median}, {op: normalize, cols: [I1]},"
             " {op: categorify, cols: [C1]}]")
    for reads_setting, want in (("per_pass", 3 * parts), ("once", parts)):
        reads.clear()
        res = run_compile(f"{demo_dir}/*.parquet", tmp_path / f"two-{reads_setting}", "engine.partition_bytes=100KB",
                          graph, f"engine.reads={reads_setting}", "fit.cache=off")
        assert res.manifest["plan"]["fit_passes"] == 2
        assert len(reads) == want


def test_plan_fit_stages(demo_dir):
    g = plan_fit(graph_for(demo_dir, "graph=[{op: fill_missing, cols: [I1], strategy: mean},"
                           " {op: normalize, cols: [I1]}, {op: normalize, cols: [I2]},"
                           " {op: filter, expr: 'I1 > 0'}, {op: categorify, cols: [C1]}]"))
    assert [s.fit_stage for s in g.steps] == [0, 1, 0, None, 2]
    assert fit_passes(g) == 3


def test_fusion_counts_kernels(demo_dir):
    unfused = optimize(graph_for(demo_dir), passes=PASSES[:-1])
    fused = optimize(graph_for(demo_dir))
    assert kernel_count(unfused.steps) == 0
    # Four elementwise steps over 13 columns: one kernel for the whole column group.
    assert kernel_count(fused.steps) == 1
    node = fused.steps[0]
    assert isinstance(node, Fused) and len(node.steps) == 4 and len(node.groups[0].chains) == 13
    mixed = optimize(graph_for(demo_dir, "graph=[{op: clip, cols: [I1, I2], lower: 0},"
                               " {op: log1p, cols: [I1]}, {op: clip, cols: [I3, label], upper: 5}]"))
    # I1: clip>log1p, I2: clip, I3 (float32) clip-upper, label (int8) clip-upper: four signatures.
    assert kernel_count(mixed.steps) == 4


def test_passes_do_not_change_rows(demo_dir, tmp_path):
    overrides = [GRAPH, "split.fit_on=null", "output.shard_rows=4000"]
    full = run_compile(f"{demo_dir}/*.parquet", tmp_path / "full", *overrides)
    bare = run_compile(f"{demo_dir}/*.parquet", tmp_path / "bare", *overrides, passes=(validate, plan_fit))
    assert full.manifest["plan"]["passes_over_data"] == bare.manifest["plan"]["passes_over_data"] == 2

    def table(res):
        root = os.path.dirname(res.path)
        return [pq.read_table(os.path.join(root, s["path"])) for sp in res.manifest["splits"].values()
                for s in sp["shards"]]

    a, b = table(full), table(bare)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.equals(y)
    assert full.manifest["rows"] == bare.manifest["rows"]


def test_physical_plan_partitions_follow_row_groups(demo_dir):
    g = optimize(graph_for(demo_dir))
    small = physical_plan(g, compose(["engine.partition_bytes=1"]).engine)
    assert len(small.partitions) == sum(len(f.row_groups) for f in g.source.files)
    big = physical_plan(g, compose(["engine.partition_bytes=10GB"]).engine)
    assert len(big.partitions) == len(g.source.files)
    assert sum(p.rows for p in small.partitions) == sum(p.rows for p in big.partitions) == 30_000


def test_second_pipeline_composes_and_runs(demo_dir, tmp_path):
    import pyarrow as pa

    res = run_compile(f"{demo_dir}/*.parquet", tmp_path / "h", "pipeline=criteo_hashed")
    assert res.manifest["name"] == "criteo_hashed" and res.manifest["plan"]["fit_passes"] == 2
    raw = pa.concat_tables([pq.read_table(os.path.join(demo_dir, f)) for f in sorted(os.listdir(demo_dir))])
    negative = sum(1 for v in raw["I2"].to_pylist() if v is not None and v < 0)
    assert negative > 0
    assert res.manifest["rows"] == {"in": 30_000, "out": 30_000 - negative, "filtered": negative, "quarantined": 0}
    schema = {c["name"]: c for c in res.manifest["schema"]}
    assert schema["C26"]["cardinality"] == 1000003 and schema["C123"]["cardinality"] == 100003
    assert 2 <= schema["B1"]["cardinality"] <= 17
    train = pq.read_table(os.path.join(os.path.dirname(res.path), res.manifest["splits"]["train"]["shards"][0]["path"]))
    assert train["B1"].null_count == 0 and 0.0 <= min(train["I1"].to_pylist()) and max(train["I1"].to_pylist()) <= 1.0


@pytest.mark.parametrize("cores", [1, 2, 3, 8])
def test_auto_partitions_give_every_task_thread_one(demo_dir, monkeypatch, cores):
    """partition_bytes auto on the CPU: 128 MB, or less where that would leave a task thread
    without a partition (here the minimum lowered to fit the small demo), in whole row groups;
    a size given is taken as it is; the same rows either way, and the plan says why."""
    from shardsmith.compiler import planner

    monkeypatch.setattr(planner, "AUTO_MIN_PARTITION_BYTES", 1)
    g = optimize(graph_for(demo_dir))
    groups = sum(len(f.row_groups) for f in g.source.files)
    auto = physical_plan(g, compose(["engine.partition_bytes=auto"]).engine, cores=cores)
    given = physical_plan(g, compose(["engine.partition_bytes=128MB"]).engine, cores=cores)
    assert len(given.partitions) == len(g.source.files) and given.partition_note == ""
    if cores <= len(given.partitions):  # every thread has one already: as given
        assert auto.partitions == given.partitions and auto.partition_note == ""
    else:
        assert min(cores, groups) <= len(auto.partitions) <= groups
        assert auto.partition_note.endswith(f"so that each of the {cores} task thread(s) has one")
        assert f"  {auto.partition_note}" in planner.describe(auto)
    assert sum(p.rows for p in auto.partitions) == sum(p.rows for p in given.partitions) == 30_000
    # A local cluster's tasks at once: its workers times their threads (4 processes of one thread;
    # one worker of a thread per core).
    workers = physical_plan(g, compose(["engine.partition_bytes=auto", "engine.cluster=local", "engine.processes=true",
                                        "engine.n_workers=4"]).engine, cores=cores)
    assert len(workers.partitions) >= 4 and workers.partition_note.endswith("each of the 4 task thread(s) has one")
    one = physical_plan(g, compose(["engine.partition_bytes=auto", "engine.cluster=local"]).engine, cores=cores)
    assert len(one.partitions) >= min(cores, groups)


def test_a_text_file_too_big_for_memory_is_warned_of(demo_dir, tmp_path, capsys):
    """A CSV file is read whole, as one partition: when that many at once would exceed the memory
    budget, the plan says so (naming the file) and a compile logs it; within budget, not a word."""
    import pyarrow.csv as pcsv

    from shardsmith.cli import main
    from shardsmith.compiler import planner

    for f in sorted(os.listdir(demo_dir)):
        pcsv.write_csv(pq.read_table(os.path.join(demo_dir, f)), tmp_path / f.replace(".parquet", ".csv"))
    cfg = compose([f"source.paths=[{tmp_path}/*.csv]", "source.format=csv"])
    g = optimize(build(cfg))
    largest = max(os.path.getsize(tmp_path / f) for f in os.listdir(tmp_path))
    tight = physical_plan(g, cfg.engine, host_memory=largest, cores=2)
    assert len(tight.warnings) == 1 and "read whole, as one partition" in tight.warnings[0]
    assert tight.warnings[0].startswith(str(tmp_path)) and f"  warning: {tight.warnings[0]}" in planner.describe(tight)
    assert physical_plan(g, cfg.engine, host_memory=100 * largest, cores=2).warnings == ()
    once = compose([f"source.paths=[{tmp_path}/*.csv]", "source.format=csv", "engine.reads=once"]).engine
    kept = physical_plan(g, once, host_memory=3 * largest, cores=2)  # every file held: their sum counts
    assert len(kept.warnings) == 1 and kept.warnings[0].endswith("read it per pass (engine.reads=per_pass)")
    limited = [f"source.paths=[{tmp_path}/*.csv]", "source.format=csv", f"engine.memory_limit={largest}"]
    assert main(["plan", *limited]) == 0
    out = capsys.readouterr().out  # this machine's cores decide how many at once: the file and the advice
    assert f"  warning: {tmp_path}" in out and "split it into smaller files" in out
    logged: list[str] = []
    compile_dataset(compose([*limited, f"output.dir={tmp_path}/out", "fit.cache=off"]), log=logged.append)
    warned = [line for line in logged if line.startswith("warning: ")]
    assert len(warned) == 1 and warned[0].startswith(f"warning: {tmp_path}") and "one partition" in warned[0]
