"""The per-op rounding rule of elementwise ops: every op computes in float64 and its result is
rounded to what the op's output dtype can hold (floats by casting, integers half to even), NaN
kept; an infinite result (log1p(-1), an overflow of float32) is missing, NaN, like an infinite
input (:func:`missing_inf`). The CPU engine applies it after each op; generated CUDA kernels do
the same (``ss_round_*`` and ``ss_no_inf`` in cuda/common.cuh).

>>> round_to(np.array([1.5, np.inf, 1e300]), "float32").tolist()
[1.5, nan, nan]
"""

from __future__ import annotations

import numpy as np

from shardsmith.ir.dtypes import INT_DTYPES


def round_to(x: np.ndarray, dtype: str) -> np.ndarray:
    """Round float64 values to what ``dtype`` can hold, keeping NaN; infinities become NaN."""
    if dtype == "float32":
        x = x.astype(np.float32).astype(np.float64)
    elif dtype == "float16":
        x = x.astype(np.float16).astype(np.float64)
    elif dtype in INT_DTYPES or dtype == "bool":
        x = np.rint(x)
    return missing_inf(x)


def missing_inf(x: np.ndarray) -> np.ndarray:
    """``x`` with +-inf replaced by NaN (missing), in place when ``x`` is writable."""
    inf = np.isinf(x)
    if inf.any():
        if not x.flags.writeable:
            x = x.copy()
        x[inf] = np.nan
    return x
