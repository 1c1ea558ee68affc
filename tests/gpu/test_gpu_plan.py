"""The GPU engine as the compiler sees it, without a GPU: fusion counted in kernels, every op
lowered (or a plan-time error naming the op), plan notes, engine selection and its settings."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shardsmith.backends import gpu_unavailable_reason, lowerings_for
from shardsmith.compiler.build import build
from shardsmith.compiler.config import from_dict
from shardsmith.compiler.passes import optimize
from shardsmith.compiler.passes.fuse_elementwise import kernel_count
from shardsmith.compiler.planner import physical_plan
from shardsmith.errors import ConfigError, PlanError
from shardsmith.runtime.driver import check_lowerings


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    n = 500
    table = pa.table({
        "f32a": rng.normal(size=n).astype(np.float32), "f32b": rng.normal(size=n).astype(np.float32),
        "f64": rng.normal(size=n), "i32": rng.integers(0, 9, n).astype(np.int32),
        "s": pa.array([f"v{i % 7}" for i in range(n)]), "k": rng.integers(0, 100, n),
    })
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=100)
    return tmp_path


def _cfg(data, graph, kind="cpu", **engine):
    return from_dict({"name": "t", "source": {"paths": [str(data / "in.parquet")]}, "graph": graph,
                      "split": {"fractions": {"train": 1.0}, "fit_on": None},
                      "output": {"dir": str(data / "out"), "shard_rows": 1000},
                      "engine": {"kind": kind, "cluster": "inprocess", **engine}})


def _plan(cfg):
    kind = "gpu" if cfg.engine.kind == "gpu" else "cpu"
    return physical_plan(optimize(build(cfg)), cfg.engine, kind, 8 * 2**30 if kind == "gpu" else None)


def test_a_chain_over_same_typed_columns_is_one_kernel(data):
    plan = _plan(_cfg(data, [{"op": "fill_missing", "cols": ["f32a", "f32b"], "value": 0},
                             {"op": "clip", "cols": ["f32a", "f32b"], "lower": 0},
                             {"op": "log1p", "cols": ["f32a", "f32b"]}]))
    assert kernel_count(plan.transform) == 1


def test_columns_of_different_dtypes_or_chains_get_their_own_kernels(data):
    plan = _plan(_cfg(data, [{"op": "fill_missing", "cols": ["f32a", "f32b", "f64", "i32"], "value": 0},
                             {"op": "log1p", "cols": ["f32a", "f64"]}]))
    # f32a: fill, log1p (float32); f32b: fill (float32); f64: fill, log1p (float64); i32: fill (int32)
    assert kernel_count(plan.transform) == 4


def test_a_non_elementwise_step_splits_fusion(data):
    plan = _plan(_cfg(data, [{"op": "log1p", "cols": ["f32a"]}, {"op": "hash_bucket", "cols": ["k"], "num_buckets": 8},
                             {"op": "log1p", "cols": ["f32b"]}]))
    assert kernel_count(plan.transform) == 2
    assert len([n for n in plan.transform if hasattr(n, "groups")]) == 2


def test_the_demo_pipeline_is_one_kernel_per_pass(tmp_path):
    from shardsmith.compiler.config import compose
    from shardsmith.demo import generate

    generate(2000, str(tmp_path / "raw"), files=1)
    cfg = compose([f"source.paths=[{tmp_path}/raw/*.parquet]", "engine=gpu"])
    plan = physical_plan(optimize(build(cfg)), dataclasses.replace(cfg.engine, partition_bytes="64MB"), "gpu")
    assert kernel_count(plan.transform) == 1
    assert [kernel_count(p) for p in plan.fit_programs] == [1]  # fill -> clip -> log1p, before normalize's fit


def test_every_cpu_lowering_has_a_gpu_lowering():
    cpu, gpu = lowerings_for("cpu"), lowerings_for("gpu")
    builtin = {cls for cls in cpu.table if cls.__module__.startswith("shardsmith.")}  # not users' plugins
    assert builtin <= set(gpu.table), f"ops without a GPU lowering: {builtin - set(gpu.table)}"


def test_an_op_without_a_gpu_lowering_fails_at_plan_time_naming_it(data):
    from shardsmith.backends.base import register_lowering
    from shardsmith.ops.base import _REGISTRY, ColumnwiseOp, register_op
    from shardsmith.runtime.explain import explain

    @register_op
    @dataclasses.dataclass(frozen=True)
    class Shout(ColumnwiseOp):
        """Upper-case strings (a user op lowered for the CPU only)."""

        op_name = "shout_test_only"

    try:
        register_lowering("cpu", Shout)(lambda be, step, frame, state, ctx: frame)
        cfg = _cfg(data, [{"op": "shout_test_only", "cols": ["s"]}], kind="gpu")
        plan = _plan(dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, partition_bytes="64MB")))
        check_lowerings(plan, lowerings_for("cpu"))  # fine on the CPU
        with pytest.raises(PlanError, match="op 'shout_test_only' has no lowering for the gpu backend"):
            check_lowerings(plan, lowerings_for("gpu"))
        cfg = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, partition_bytes="64MB"))
        if gpu_unavailable_reason() is None:
            with pytest.raises(PlanError, match="graph\\[0\\]: op 'shout_test_only'"):
                explain(cfg)
    finally:
        _REGISTRY.pop("shout_test_only", None)
        lowerings_for("cpu").table.pop(Shout, None)


def test_plan_says_which_casts_run_on_the_host(data):
    from shardsmith.runtime import explain as ex  # explains a GPU plan on a machine without a GPU

    cfg = _cfg(data, [{"op": "cast", "cols": ["s"], "dtype": "int32", "on_error": "null"},
                      {"op": "cast", "cols": ["i32"], "dtype": "float64"}], kind="gpu", partition_bytes="64MB")
    text = ex.explain(cfg)
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("graph[0]"))
    assert lines[at + 1].strip().startswith("on the gpu engine: runs on the host (pyarrow) for s:")
    assert not any("on the gpu engine" in line for line in lines[at + 2 :])  # a numeric cast stays on the GPU


@pytest.mark.skipif(gpu_unavailable_reason() is None, reason="checks the message given where no GPU is usable")
def test_engine_gpu_without_a_gpu_is_one_clear_error(tmp_path):
    import subprocess
    import sys

    from shardsmith.demo import generate

    generate(1000, str(tmp_path / "raw"), files=1)
    proc = subprocess.run([sys.executable, "-m", "shardsmith", "compile", f"source.paths=[{tmp_path}/raw/*.parquet]",
                           "engine=gpu", f"output.dir={tmp_path}/out", f"hydra.run.dir={tmp_path}/hydra"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: engine.kind: the GPU engine cannot run here: ")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(gpu_unavailable_reason() is None, reason="checks the fallback where no GPU is usable")
def test_engine_auto_falls_back_to_the_cpu(data):
    from shardsmith.runtime import compile_dataset

    result = compile_dataset(_cfg(data, [{"op": "log1p", "cols": ["f32a"]}], kind="auto"), log=lambda *a: None)
    assert result.manifest["engine"]["kind"] == "cpu"


# --- engine settings ---------------------------------------------------------------------------------
def test_partition_bytes_auto_is_a_32nd_of_gpu_memory_on_the_gpu(data):
    from shardsmith.compiler.planner import CPU_PARTITION_BYTES, partition_target

    cfg = _cfg(data, [], kind="gpu", partition_bytes="auto")
    memory = 80 * 2**30  # the planner is pure: the runtime asks the machine and passes what it found
    assert partition_target(cfg.engine, "gpu", memory) == memory // 32
    assert partition_target(dataclasses.replace(cfg.engine, partition_bytes="0.1"), "gpu", memory) == 8 * 2**30
    assert partition_target(dataclasses.replace(cfg.engine, partition_bytes="25%"), "gpu", memory) == 20 * 2**30
    assert partition_target(dataclasses.replace(cfg.engine, partition_bytes="1GB"), "gpu", memory) == 10**9
    assert partition_target(dataclasses.replace(cfg.engine, kind="auto"), "cpu") == CPU_PARTITION_BYTES
    with pytest.raises(ConfigError, match="engine.partition_bytes"):
        partition_target(dataclasses.replace(cfg.engine, kind="auto", partition_bytes="0.1"), "cpu")


def test_a_fraction_of_gpu_memory_is_refused_on_the_cpu_engine(data):
    with pytest.raises(ConfigError, match="engine.partition_bytes: a fraction of GPU memory"):
        _cfg(data, [], kind="cpu", partition_bytes="0.05")
    with pytest.raises(ConfigError, match="engine.rmm_pool_size"):
        _cfg(data, [], kind="gpu", rmm_pool_size="lots")
    with pytest.raises(ConfigError, match="engine.gpu_threads_per_worker"):
        _cfg(data, [], kind="gpu", gpu_threads_per_worker=0)


def test_cuda_cluster_settings(monkeypatch, data):
    from shardsmith.runtime.cluster import cuda_cluster_kwargs

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    engine = _cfg(data, [], kind="gpu").engine
    assert cuda_cluster_kwargs(engine) == {"threads_per_worker": 8, "pre_import": ["cudf", "cupy"]}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    engine = dataclasses.replace(engine, n_workers=1, rmm_pool_size="0.5", device_memory_limit="10GB",
                                 spill_cudf=True, gpu_threads_per_worker=2)
    assert cuda_cluster_kwargs(engine) == {
        "threads_per_worker": 2, "pre_import": ["cudf", "cupy"], "n_workers": 1, "CUDA_VISIBLE_DEVICES": "2,3",
        "rmm_pool_size": 0.5, "rmm_allocator_external_lib_list": ["cupy"], "device_memory_limit": 10**10,
        "enable_cudf_spill": True}
    assert cuda_cluster_kwargs(dataclasses.replace(engine, device_memory_limit="0"))["device_memory_limit"] == 0


def test_the_shipped_gpu_and_auto_engine_configs_compose():
    from shardsmith.compiler.config import compose

    gpu = compose(["engine=gpu", "source.paths=[x.parquet]"]).engine
    assert (gpu.kind, gpu.partition_bytes, gpu.rmm_pool_size, gpu.gpu_threads_per_worker) == ("gpu", "auto", "0.5", 8)
    auto = compose(["engine=auto", "source.paths=[x.parquet]"]).engine
    assert (auto.kind, auto.threads_per_worker, auto.partition_bytes) == ("auto", None, "auto")  # null: per core


# --- the Parquet writer and the float mode -----------------------------------------------------------
def test_the_writer_and_float_mode_each_engine_gets(data):
    from shardsmith.compiler.explain import explain_lines
    from shardsmith.runtime.identity import dataset_key

    def plan(kind="cpu", output=None, **engine):
        cfg = _cfg(data, [{"op": "log1p", "cols": ["f32a"]}], kind=kind, **engine)
        cfg = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, **(output or {})))
        return _plan(cfg)

    assert (plan().writer, plan().float_mode) == ("arrow", "exact")
    gpu = plan("gpu", float_mode="fast")
    assert (gpu.writer, gpu.float_mode) == ("cudf", "fast")
    assert plan("gpu", {"writer": "arrow"}).writer == "arrow"
    assert plan("gpu", {"compression": "gzip"}).writer == "arrow"  # auto: what cuDF's writer cannot do stays pyarrow
    assert plan("gpu", {"compression_level": 9}).writer == "arrow"
    text = "\n".join(explain_lines(gpu.graph, [], gpu, lowerings_for("gpu")))
    assert "  Parquet written by cuDF, from device memory (output.writer: auto); identity by content digests" in text
    assert "  float_mode fast: float32 chains computed in float32 arithmetic, not bit-identical" in text
    # The dataset key follows the files: auto and arrow on the CPU write the same ones.
    resolved = {"output": {"dir": "x", "writer": "auto"}, "engine": {}, "source": {"paths": ["in"]}}
    arrow = {**resolved, "output": {"dir": "x", "writer": "arrow"}}
    assert dataset_key(resolved, [], [], writer="arrow") == dataset_key(arrow, [], [], writer="arrow")
    assert len({dataset_key(resolved, [], [], writer=w, float_mode=m) for w, m in
                (("arrow", "exact"), ("cudf", "exact"), ("cudf", "fast"))}) == 3


def test_auto_engine_with_the_cudf_writer_is_one_error_where_it_chose_the_cpu(data):
    cfg = _cfg(data, [], kind="auto")
    cfg = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, writer="cudf"))
    with pytest.raises(ConfigError, match="output.writer: cudf writes Parquet from GPU memory, and the GPU engine "
                                          "cannot run here"):
        _plan(cfg)


def test_an_output_with_a_date_column_is_written_by_pyarrow(data):
    """cuDF has no date type (its DataFrame turns day timestamps into second timestamps, seen on an
    H200): auto keeps pyarrow for an output holding a date, and cudf asked for is one error."""
    (data / "dated").mkdir()
    pq.write_table(pa.table({"d": pa.array([0, None, 9000], pa.date32())}), data / "dated" / "in.parquet")
    assert _plan(_cfg(data / "dated", [], kind="gpu")).writer == "arrow"  # a date read and kept
    dated = [{"op": "derive", "out": "day", "expr": "coalesce(d, '2000-01-02')"}, {"op": "drop", "cols": ["d"]}]
    assert _plan(_cfg(data / "dated", dated, kind="gpu")).writer == "arrow"  # a date derived
    assert _plan(_cfg(data, [], kind="gpu")).writer == "cudf"
    cfg = _cfg(data / "dated", dated, kind="gpu")
    cfg = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, writer="cudf"))
    with pytest.raises(ConfigError, match="output.writer: cuDF's Parquet writer has no date type and would write "
                                          "column 'day' as a timestamp; use output.writer=auto or arrow"):
        _plan(cfg)
