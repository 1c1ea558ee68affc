"""``shardsmith warmup``: a plan's kernels compiled ahead into the kernel cache, without a GPU."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from shardsmith.backends import gpu_unavailable_reason
from shardsmith.compiler.build import build
from shardsmith.compiler.config import compose
from shardsmith.compiler.passes import optimize
from shardsmith.compiler.planner import physical_plan
from shardsmith.kernels import gpu, nvrtc
from shardsmith.runtime.warmup import plan_sources
from tests.conftest import cli

GOLDEN = Path(__file__).resolve().parent / "golden"


def _plan(demo_dir, *overrides):
    cfg = compose([f"source.paths=[{demo_dir}/*.parquet]", *overrides])
    return physical_plan(optimize(build(cfg)), cfg.engine, "gpu", 8 * 2**30)


def test_the_plans_sources_are_the_kernels_a_compile_launches(demo_dir):
    """Rendered before any fit, they are the demo pipeline's golden kernels (rendered from a real
    fit), plus the hash and lookup kernels."""
    sources = {s.name: s for s in plan_sources(_plan(demo_dir))}
    golden = {p.name: p.read_text() for p in GOLDEN.glob("ss_fused_*.cu")}
    assert {n: s.text for n, s in sources.items() if n.startswith("ss_fused_")} == golden
    assert sorted(n for n in sources if not n.startswith("ss_fused_")) == ["lookup.cu", "xxhash64.cu"]
    fast = {s.name for s in plan_sources(_plan(demo_dir, "engine=gpu", "engine.float_mode=fast"))}
    assert len(fast) == 4 and not (fast & set(golden))  # float_mode fast: other kernels


def test_a_plan_that_reuses_a_fit_still_renders_its_transform_kernels(demo_dir):
    """A compile whose fit comes from the fit cache or fit.from has no fit passes (fitsource.resolve):
    its transform kernels are rendered all the same (they were a KeyError), and are the full plan's."""
    full = _plan(demo_dir)
    reused = {s.name for s in plan_sources(replace(full, fit_programs=(), fit_columns=()))}
    golden = {p.name for p in GOLDEN.glob("ss_fused_*.cu")}
    assert {"lookup.cu", "xxhash64.cu"} < reused <= {s.name for s in plan_sources(full)}
    assert reused & golden


@pytest.mark.skipif(nvrtc.unavailable_reason() is not None, reason=f"no NVRTC: {nvrtc.unavailable_reason()}")
def test_warmup_fills_the_kernel_cache_in_parallel(demo_dir, tmp_path, monkeypatch):
    env = {"SHARDSMITH_KERNEL_CACHE": str(tmp_path)}
    args = ("warmup", "--arch", "sm_90", "--jobs", "4", f"source.paths=[{demo_dir}/*.parquet]")
    proc = cli(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("warmup: 4 kernel source(s) x 1 architecture(s) (sm_90) in ")
    assert ": 4 compiled, 0 already cached" in proc.stdout and "(4 at a time)" in proc.stdout
    want = {f"{s.sha256[:32]}-sm_90.cubin" for s in plan_sources(_plan(demo_dir))}
    assert {p.name for p in tmp_path.glob("*.cubin")} == want
    again = cli(*args, env=env)
    assert ": 0 compiled, 4 already cached" in again.stdout
    monkeypatch.setenv("SHARDSMITH_KERNEL_CACHE", str(tmp_path))  # where a GPU worker then finds them
    src = next(s for s in plan_sources(_plan(demo_dir)) if s.name == "xxhash64.cu")
    assert gpu.ensure_cubin(src, "sm_90") == (tmp_path / f"{src.sha256[:32]}-sm_90.cubin", False)


def test_warmup_errors_are_one_line(demo_dir):
    src = f"source.paths=[{demo_dir}/*.parquet]"
    for args, fragment in ((("--arch", "90"), "--arch: expected an architecture like sm_90, got '90'"),
                           (("engine.float_mode=fastest",), "engine.float_mode: expected one of exact, fast")):
        proc = cli("warmup", *args, src)
        lines = [x for x in proc.stderr.splitlines() if x.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {fragment}"), proc.stderr
    if gpu_unavailable_reason() is not None:
        proc = cli("warmup", src)
        assert proc.returncode == 2 and "no GPU is visible here" in proc.stderr
