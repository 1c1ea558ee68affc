"""The per-op rounding rule of elementwise ops: every op computes in float64 and its result is
rounded to what the op's output dtype can hold (floats by casting, integers half to even), NaN
kept. The CPU engine applies it after each op; generated CUDA kernels do the same
(``ss_round_*`` in cuda/common.cuh)."""

from __future__ import annotations

import numpy as np

from shardsmith.ir.dtypes import INT_DTYPES


def round_to(x: np.ndarray, dtype: str) -> np.ndarray:
    """Round float64 values to what ``dtype`` can hold, keeping NaN."""
    if dtype == "float32":
        return x.astype(np.float32).astype(np.float64)
    if dtype == "float16":
        return x.astype(np.float16).astype(np.float64)
    if dtype in INT_DTYPES or dtype == "bool":
        return np.rint(x)
    return x
