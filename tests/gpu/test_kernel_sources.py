"""Every CUDA source compiles with NVRTC for sm_90 and sm_80 (no GPU needed), and the sources
generated for the demo pipeline are kept as golden files: a change to code generation shows up in
review. Regenerate them with ``SHARDSMITH_UPDATE_GOLDEN=1 python -m pytest tests/gpu/test_kernel_sources.py``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from shardsmith.ir import Fused
from shardsmith.kernels import codegen, nvrtc
from shardsmith.kernels.sources import KernelSource, static_sources
from shardsmith.ops.base import ElementwiseOp
from shardsmith.ops.numeric import Bucketize, Clip, FillMissing, Log1p, Normalize, NormalizeMinmax

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
needs_nvrtc = pytest.mark.skipif(nvrtc.unavailable_reason() is not None, reason=str(nvrtc.unavailable_reason()))


@needs_nvrtc
@pytest.mark.parametrize("arch", nvrtc.ARCHS)
@pytest.mark.parametrize("src", static_sources(), ids=lambda s: s.name)
def test_static_sources_compile(src, arch):
    cubin = nvrtc.compile_source(src, arch)
    for entry in src.entries:  # extern "C": every entry point is in the CUBIN under its own name
        assert entry.encode() in cubin


@needs_nvrtc
def test_a_broken_source_fails_with_nvrtcs_log():
    bad = KernelSource("broken.cu", 'extern "C" __global__ void k(double* x) {\n  x[0] = undefined_thing(x[1]);\n}\n',
                       ("k",))
    with pytest.raises(nvrtc.CudaCompileError) as err:
        nvrtc.compile_source(bad, "sm_90")
    text = str(err.value)
    assert "broken.cu(2)" in text and "undefined_thing" in text and "sm_90" in text


@needs_nvrtc
def test_a_broken_op_template_fails_the_check():
    class Broken(Log1p):
        def cuda(self, x, p):
            return f"log1p({x}"  # a missing parenthesis

    src = codegen.render([Broken(cols=("a",))], codegen.layout_of([{}]), "float32", ("float32",))
    with pytest.raises(nvrtc.CudaCompileError, match=src.name):
        nvrtc.compile_source(src, "sm_90")


def _one_op_each():
    """Every elementwise op with parameters of each kind it takes."""
    return [
        (FillMissing(cols=("a",), value=0.0), {"fill": 0.0}),
        (Clip(cols=("a",), lower=0.0, upper=1.0), {"lo": 0.0, "hi": 1.0}),
        (Clip(cols=("a",), lower=0.0), {"lo": 0.0}),
        (Clip(cols=("a",), upper=1.0), {"hi": 1.0}),
        (Log1p(cols=("a",)), {}),
        (Normalize(cols=("a",)), {"mean": 0.0, "std": 1.0}),
        (NormalizeMinmax(cols=("a",)), {"min": 0.0, "range": 1.0}),
        (Bucketize(cols=("a",), boundaries=(0.0, 1.0)), {"boundaries": np.array([0.0, 1.0])}),
    ]


def test_every_registered_elementwise_op_is_covered():
    from shardsmith.ops import registered_ops

    covered = {type(op) for op, _ in _one_op_each()}
    elementwise = {cls for cls in registered_ops().values()
                   if issubclass(cls, ElementwiseOp) and cls.__module__.startswith("shardsmith.")}  # not plugins
    assert elementwise <= covered, f"add these ops to the NVRTC checks: {elementwise - covered}"


@needs_nvrtc
@pytest.mark.parametrize("arch", nvrtc.ARCHS)
@pytest.mark.parametrize("op_params", _one_op_each(), ids=lambda t: t[0].describe())
def test_every_elementwise_op_compiles(op_params, arch):
    op, params = op_params
    src = codegen.render([op], codegen.layout_of([params]), "float32", (op.out_dtype("float32"),))
    nvrtc.compile_source(src, arch)


@needs_nvrtc
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "int8", "int16", "int32", "int64", "uint8",
                                   "uint16", "uint32", "uint64", "bool"])
def test_a_chain_of_every_op_compiles_for_every_input_dtype(dtype):
    ops, params, dtypes, d = [], [], [], dtype
    for op, p in _one_op_each():
        d = op.out_dtype(d)
        ops.append(op)
        params.append(p)
        dtypes.append(d)
    src = codegen.render(ops, codegen.layout_of(params), dtype, tuple(dtypes))
    nvrtc.compile_source(src, "sm_90")


# --- the demo pipeline's generated kernels -----------------------------------------------------------
@pytest.fixture(scope="module")
def demo_sources(tmp_path_factory):
    """The kernels of the demo pipeline (fit programs and transform), fitted on a little demo data."""
    from shardsmith.compiler.build import build
    from shardsmith.compiler.config import compose
    from shardsmith.compiler.passes import optimize
    from shardsmith.compiler.planner import physical_plan
    from shardsmith.demo import generate
    from shardsmith.runtime import compile_dataset
    from shardsmith.shards.state import load_states

    d = tmp_path_factory.mktemp("demo")
    generate(3000, str(d / "raw"), files=2)
    cfg = compose([f"source.paths=[{d}/raw/*.parquet]", f"output.dir={d}/out", "engine=inprocess"])
    compile_dataset(cfg, log=lambda *a: None)
    states = load_states(str(d / "out" / "state"))
    plan = physical_plan(optimize(build(cfg)), cfg.engine)
    nodes = [n for program in (*plan.fit_programs, plan.transform) for n in program if isinstance(n, Fused)]
    sources = {}
    for node in nodes:
        for group in node.groups:
            src, _, _ = codegen.group_source(node, group, states)
            sources[src.name] = src
    return sources


def test_demo_pipeline_kernels_match_the_golden_files(demo_sources):
    if os.environ.get("SHARDSMITH_UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        for old in GOLDEN.glob("ss_fused_*.cu"):
            old.unlink()
        for name, src in demo_sources.items():
            (GOLDEN / name).write_text(src.text)
    golden = {p.name: p.read_text() for p in GOLDEN.glob("ss_fused_*.cu")}
    assert sorted(golden) == sorted(demo_sources), "code generation changed: review, then regenerate the golden " \
        "files with SHARDSMITH_UPDATE_GOLDEN=1"
    for name, src in demo_sources.items():
        assert src.text == golden[name], f"{name} differs from tests/golden/{name}"


def test_demo_pipeline_kernels_are_the_fit_and_transform_chains(demo_sources):
    """The fit pass runs fill -> clip -> log1p to collect normalize's moments; the transform runs
    the whole chain: two kernels, each over all 13 continuous columns."""
    heads = sorted(src.text.splitlines()[0].split(": ", 1)[1] for src in demo_sources.values())
    assert heads == ["fill_missing -> clip -> log1p (float32 -> float32).",
                     "fill_missing -> clip -> log1p -> normalize (float32 -> float32)."]


@needs_nvrtc
@pytest.mark.parametrize("arch", nvrtc.ARCHS)
def test_demo_pipeline_kernels_compile(demo_sources, arch):
    for src in demo_sources.values():
        cubin = nvrtc.compile_source(src, arch)
        assert src.entries[0].encode() in cubin


# --- engine.float_mode: fast ----------------------------------------------------------------------------
def _demo_chain(mode: str, src_dtype: str = "float32"):
    ops = [FillMissing(cols=("a",), value=0.0), Clip(cols=("a",), lower=0.0), Log1p(cols=("a",)),
           Normalize(cols=("a",))]
    layout = codegen.layout_of([{"fill": 0.0}, {"lo": 0.0}, {}, {"mean": 1.0, "std": 2.0}])
    dtypes, d = [], src_dtype
    for op in ops:
        d = op.out_dtype(d)
        dtypes.append(d)
    return codegen.render(ops, layout, src_dtype, tuple(dtypes), mode)


F64_ARITHMETIC = re.compile(r"^\s+(add|sub|mul|div|fma|rcp|sqrt)\.[a-z.]*f64\b", re.MULTILINE)


@needs_nvrtc
@pytest.mark.parametrize("arch", nvrtc.ARCHS)
def test_fast_mode_kernels_compile_and_compute_in_float32(arch):
    fast, exact = _demo_chain("fast"), _demo_chain("exact")
    assert fast.entries[0].encode() in nvrtc.compile_source(fast, arch)
    virtual = arch.replace("sm_", "compute_")
    assert F64_ARITHMETIC.search(nvrtc.compile_ptx(exact, virtual))  # exact: float64 per op
    assert not F64_ARITHMETIC.search(nvrtc.compile_ptx(fast, virtual)), "fast mode left float64 arithmetic"


def test_fast_mode_changes_only_float32_chains():
    assert _demo_chain("fast").name != _demo_chain("exact").name
    assert "float v = (float)x;" in _demo_chain("fast").text
    for src_dtype in ("float64", "int32", "float16"):  # other chains render exactly as in exact mode
        assert _demo_chain("fast", src_dtype).text == _demo_chain("exact", src_dtype).text
    ints = [Bucketize(cols=("a",), boundaries=(0.0, 1.0))]
    layout = codegen.layout_of([{"boundaries": np.array([0.0, 1.0])}])
    assert codegen.render(ints, layout, "float32", ("int32",), "fast").text == \
        codegen.render(ints, layout, "float32", ("int32",)).text
