"""The op formulas (kernels/formula.py): the CUDA rendering is the templates the GPU kernels were
generated from, and the NumPy rendering computes what the ops' hand-written ``apply`` did."""

from __future__ import annotations

import numpy as np
import pytest

from shardsmith.kernels import formula as F
from shardsmith.ops.numeric import Bucketize, Clip, FillMissing, Log1p, Normalize, NormalizeMinmax

NAMES = {"fill": "p[0]", "lo": "p[0]", "hi": "p[1]", "mean": "p[0]", "std": "p[1]", "min": "p[0]", "range": "p[1]",
         "boundaries": "(B + bo[0])", "boundaries_len": "bo[1]"}
CUDA = [
    (FillMissing(cols=("a",), value=0.0), "(isnan(v) ? p[0] : v)"),
    (Clip(cols=("a",), lower=0.0, upper=1.0), "((v < p[0] ? p[0] : v) > p[1] ? p[1] : (v < p[0] ? p[0] : v))"),
    (Clip(cols=("a",), lower=0.0), "(v < p[0] ? p[0] : v)"),
    (Clip(cols=("a",), upper=1.0), "(v > p[1] ? p[1] : v)"),
    (Log1p(cols=("a",)), "log1p(v)"),
    (Normalize(cols=("a",)), "((v - p[0]) / p[1])"),
    (NormalizeMinmax(cols=("a",)), "((v - p[0]) / p[1])"),
    (Bucketize(cols=("a",), boundaries=(0.0, 1.0)), "bucketize(v, (B + bo[0]), bo[1])"),
]


@pytest.mark.parametrize("op,text", CUDA, ids=lambda v: v.describe() if hasattr(v, "describe") else "")
def test_cuda_rendering_is_the_kernel_template(op, text):
    assert op.cuda("v", NAMES) == text


def test_constants_render_exactly():
    f = F.where(F.VALUE > 0.1, float("inf"), F.where(F.isnan(F.VALUE), float("nan"), -float("inf")))
    assert F.to_cuda(f, "v", {}) == "(v > 0.1 ? CUDART_INF : (isnan(v) ? CUDART_NAN : (-CUDART_INF)))"
    assert F.to_python(f, "v", {}) == "(inf if v > 0.1 else (nan if isnan(v) else (-inf)))"
    assert F.to_python(F.bucketize(F.VALUE * 2, F.PARAMS["b"]), "v", {"b": "B[0:3]"}) == "bucketize((v * 2.0), B[0:3])"


def _old_apply(op, x, p):
    """The ops' NumPy code before formulas, kept here as the reference the formulas must equal."""
    if isinstance(op, FillMissing):
        return np.where(np.isnan(x), p["fill"], x)
    if isinstance(op, Clip):
        x = np.where(x < p["lo"], p["lo"], x) if "lo" in p else x
        return np.where(x > p["hi"], p["hi"], x) if "hi" in p else x
    if isinstance(op, Log1p):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.log1p(x)
    if isinstance(op, Normalize):
        return (x - p["mean"]) / p["std"]
    if isinstance(op, NormalizeMinmax):
        return (x - p["min"]) / p["range"]
    out = np.stack([np.searchsorted(b, x[:, j], side="right") for j, b in enumerate(p["boundaries"])], axis=1)
    return np.where(np.isnan(x), np.nan, out)


PARAMS = {"fill": [2.5, -0.0], "lo": [-1.0, 0.0], "hi": [1e3, 3.0], "mean": [0.25, -7.0], "std": [3.0, 1e-300],
          "min": [-5.0, 0.0], "range": [7.0, 1e300]}
STATE = {"a": {"fill": 0.0, "mean": 0.0, "std": 1.0, "min": 0.0, "max": 1.0}}


@pytest.mark.parametrize("op", [op for op, _ in CUDA], ids=lambda op: op.describe())
def test_numpy_rendering_equals_the_hand_written_reference(op):
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal((500, 2)) * 10.0 ** rng.integers(-300, 300, (500, 2)),
                        np.array([[np.nan, -0.0], [np.inf, -np.inf], [-1.0, 5e-324], [1.7976931348623157e308, 0.0]])])
    p = {k: np.array(v) for k, v in PARAMS.items() if k in op.params(STATE, "a")}
    if isinstance(op, Bucketize):
        p = {"boundaries": [np.array([0.0, 1.0]), np.array([-1e300, -0.0, 2.0])]}
    with np.errstate(over="ignore"):
        got, want = op.apply(x, p, np), _old_apply(op, x, p)
    assert got.dtype == want.dtype and np.array_equal(got.view(np.uint64), want.view(np.uint64))

