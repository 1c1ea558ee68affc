"""Infinities are missing values to every elementwise op and statistic, on every engine (ops/numeric.py):
an infinite input is filled by fill_missing and stays missing (null) through the others, an infinite
result is missing too, the fitted statistics skip them, and a column no op touches keeps them,
counted in the manifest's statistics. The ``backend`` fixture runs this on the CPU engine and on
the GPU engine (a real one, or the emulation in tests/gpu/test_emulated_gpu.py); on the CPU engine
with both its kernels: the NumPy reference and the compiled (Numba) loops."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from tests.parity.test_parity import _close, _f32, compile_table

INF = math.inf


@pytest.fixture(params=["numpy", "numba"])
def kernels(request, backend):
    """engine.cpu_kernels on the CPU engine (the GPU engine has its own)."""
    if backend == "gpu" and request.param == "numba":
        pytest.skip("engine.cpu_kernels is a CPU setting")
    return {"cpu_kernels": request.param} if backend == "cpu" else {}


@pytest.fixture
def with_infinities():
    x = [1.0, INF, 2.0, -INF, None, math.nan, 4.0, 1e30, -1.0, 0.5] * 30
    return pa.table({"x": pa.array(x, type=pa.float32()), "z": pa.array(x, type=pa.float64()),
                     "keep": pa.array(x, type=pa.float64())})


def _finite(values):
    return [v for v in values if v is not None and math.isfinite(v)]


def test_normalize_skips_infinities_in_the_fit_and_writes_them_as_null(tmp_path, backend, kernels,
                                                                          with_infinities):
    graph = [{"op": "normalize", "cols": ["x"]}]
    tables, manifest, _ = compile_table(tmp_path, with_infinities, graph, backend, engine=kernels)
    x = with_infinities["x"].to_pylist()
    finite = _finite(x)
    mean = sum(finite) / len(finite)
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / len(finite))
    want = [None if v is None or not math.isfinite(v) else _f32((v - mean) / std) for v in x]
    _close(tables["train"]["x"].to_pylist(), want)
    assert tables["train"]["x"].null_count == 4 * 30  # +inf, -inf, null, NaN of every ten
    stats = manifest["stats"]["train"]["x"]
    assert stats["nulls"] == 4 * 30 and stats["count"] == 6 * 30 and "nonfinite" not in stats


def test_fill_missing_replaces_infinities_and_other_ops_keep_them_missing(tmp_path, backend, kernels,
                                                                           with_infinities):
    graph = [{"op": "fill_missing", "cols": ["x"], "value": -7},
             {"op": "clip", "cols": ["z"], "lower": 0}, {"op": "log1p", "cols": ["z"]},
             {"op": "bucketize", "cols": ["keep"], "boundaries": [0, 3]}]
    tables, manifest, _ = compile_table(tmp_path, with_infinities, graph, backend, engine=kernels)
    t = tables["train"]
    x = with_infinities["x"].to_pylist()
    assert t["x"].to_pylist() == [-7.0 if v is None or not math.isfinite(v) else _f32(v) for v in x]
    want_z = [None if v is None or not math.isfinite(v) else math.log1p(max(v, 0.0)) for v in x]
    _close(t["z"].to_pylist(), want_z)
    want_keep = [None if v is None or not math.isfinite(v) else int(np.searchsorted([0, 3], v, "right")) for v in x]
    assert t["keep"].to_pylist() == want_keep


def test_an_infinite_result_is_missing(tmp_path, backend, kernels):
    # log1p(-1) = -inf; (1e308 - mean) / 1 overflows float64 (the std overflows too and counts as 1):
    # both missing, the finite results kept.
    table = pa.table({"a": pa.array([-1.0, 0.0, 3.0] * 10), "b": pa.array(([1e308] + [-1e308] * 9) * 3)})
    graph = [{"op": "log1p", "cols": ["a"]}, {"op": "normalize", "cols": ["b"]}]
    tables, _, _ = compile_table(tmp_path, table, graph, backend, engine=kernels)
    t = tables["train"]
    _close(t["a"].to_pylist(), [_f32(v) if v is not None else None for v in [None, 0.0, math.log1p(3.0)] * 10])
    _close(t["b"].to_pylist(), ([None] + [-1e308 + 0.8e308] * 9) * 3)


def test_a_column_no_op_touches_keeps_its_infinities_and_the_manifest_counts_them(tmp_path, backend, kernels,
                                                                                    with_infinities):
    graph = [{"op": "log1p", "cols": ["x"]}]
    tables, manifest, _ = compile_table(tmp_path, with_infinities, graph, backend, engine=kernels)
    assert tables["train"]["keep"].to_pylist()[:4] == [1.0, INF, 2.0, -INF]
    stats = manifest["stats"]["train"]["keep"]
    assert stats["nonfinite"] == 3 * 30 and stats["nulls"] == 30 and stats["count"] == 6 * 30
    assert stats["max"] == 1e30 and stats["min"] == -1.0
