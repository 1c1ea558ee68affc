"""Compiled fused kernels for the CPU engine: one Numba loop per chain of elementwise ops, rendered
from the ops' formulas (kernels/formula.py), the definition that the NumPy reference and the GPU's
CUDA kernels (kernels/codegen.py) come from.

A column group's chain becomes one module (kernels/cpujit.py caches it on disk) with a function,
``kernel``, that runs over one column: each value is loaded as float64 (null -> NaN, through the
Arrow validity bitmap; +-inf -> NaN: infinities are missing), goes through every stage, each
stage's result rounded to that stage's dtype exactly as the NumPy path's ``round_to`` does (float32
by a cast, integers half to even with ``rint``, an infinite result NaN), and is stored with a fresh
validity bitmap (NaN -> null). Parameters are not in the
source: as on the GPU, they travel in the arrays ``codegen.pack`` makes (``p``: the column's
scalars, ``B``/``bo``: array parameters), so one compiled kernel serves every column, dataset and
refit. A chain being a pure function of its input, ``kernel`` remembers a column's results by the
input's bits (a direct-mapped table of MEMO_SLOTS, given up once MEMO_TRIAL values or more have
missed more than half the time): a column of few distinct values (counts, codes) runs each
through the stages once, 2x-5x faster on the demo's columns (log1p alone costs ~18 ns a value).
Numba specialises the kernel on the input's dtype, and caches each specialisation. The module's
second function, ``block``, runs the same stages over a (columns, rows) block of float64 values
with NaN for missing: the serving row path's few rows, one call for the group.

Where a chain cannot be compiled bit-exactly, the group stays on the NumPy path (:func:`unsupported`
says why): float16 stages (Numba has no float16 arithmetic), ops without a formula (a user's op
with its own ``apply``), and ``log1p`` where NumPy's differs from the C library's, which Numba
calls (NumPy uses Intel's SVML on CPUs with AVX512_SKX).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from shardsmith.kernels import cpujit
from shardsmith.kernels import formula as F

# The rounding after a stage, by the stage's dtype (backends/cpu/lowering.py round_to's rule).
_ROUND_FLOAT32 = "v = np.float64(np.float32(v))"
_ROUND_INT = "v = np.rint(v)"
ROUNDING = {"float64": None, "float32": _ROUND_FLOAT32, "bool": _ROUND_INT,
            **{d: _ROUND_INT for d in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")}}
# After the rounding, as round_to: an infinite result is missing (ops/numeric.py).
_NO_INF = "v = nan if isinf(v) else v"


def unsupported(ops, dtypes) -> str | None:
    """Why this chain must run on the NumPy path, or None when it compiles bit-exactly."""
    for op, dtype in zip(ops, dtypes):
        if not op.compiles():
            return f"op '{op.op_name}' has no formula"
        if dtype not in ROUNDING:
            return f"no exact {dtype} rounding in Numba"
        if "log1p" in F.functions(op.formula(F.VALUE, F.PARAMS)) and not numpy_log1p_is_libm():
            return "NumPy's log1p here is not the C library's"
    return None


@functools.cache
def numpy_log1p_is_libm() -> bool:
    """Whether ``np.log1p`` gives the C library's results (Python's ``math.log1p`` and Numba call
    that). NumPy dispatches to SVML on AVX512_SKX CPUs; elsewhere a sample must agree bit for bit."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__  # lazy: a private NumPy module, by version
    except ImportError:  # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_features__  # lazy: as above
    if __cpu_features__.get("AVX512_SKX"):
        return False
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-1, 1, 2048), np.exp(rng.uniform(-700, 700, 2048))])
    want = np.array([math.log1p(v) for v in x])
    return bool(np.array_equal(np.log1p(x).view(np.uint64), want.view(np.uint64)))


def kernel(ops, layout, dtypes):
    """The compiled kernel of a chain (rendered, cached on disk and loaded once per process)."""
    return cpujit.load_source("ss_fused", render(tuple(ops), layout, tuple(dtypes))).kernel


@functools.lru_cache(maxsize=256)
def render(ops: tuple, layout, dtypes: tuple[str, ...]) -> str:
    """The module's source: the stages as statements inside the kernel's loop."""
    lines = []
    for j, (op, dtype) in enumerate(zip(ops, dtypes)):
        expr = F.to_python(op.formula(F.VALUE, F.PARAMS), "v", _names(layout, j))
        lines += [f"# stage {j}: {op.op_name} -> {dtype}", f"v = {expr}"]
        lines += [ROUNDING[dtype]] if ROUNDING[dtype] else []
        lines += [_NO_INF]
    stages = "\n".join(" " * 12 + line for line in lines)
    return _TEMPLATE.format(ops=" -> ".join(op.op_name for op in ops), dtypes=", ".join(dtypes), stages=stages,
                            stages_nan="\n".join(" " * 20 + line for line in lines),
                            stages_memo="\n".join(" " * 24 + line for line in lines))


def block_kernel(ops, layout, dtypes):
    """The chain's ``block`` function: a (columns, rows) block in one call (``kernel``'s module)."""
    return cpujit.load_source("ss_fused", render(tuple(ops), layout, tuple(dtypes))).block


def _names(layout, j: int) -> dict[str, str]:
    """Stage ``j``'s parameters as Python expressions over the kernel's ``p``, ``B`` and ``bo``."""
    names = {name: f"p[{slot}]" for name, slot in layout.scalars[j]}
    for name, pair in layout.arrays[j]:
        names[name] = f"B[bo[{2 * pair}]:bo[{2 * pair}] + bo[{2 * pair + 1}]]"
    return names


def run(kern, values, valid, voff: int, p, B, bo, out_dtype) -> tuple[np.ndarray, np.ndarray, int]:
    """One column through ``kern``: ``values`` (any numeric dtype), its validity bitmap ``valid``
    (bytes, empty for none) starting at bit ``voff``; the results in ``out_dtype`` (NaN where
    missing), their validity bitmap and the number of nulls."""
    n = len(values)
    out = np.empty(n, dtype=out_dtype)
    out_valid = np.empty((n + 7) // 8, dtype=np.uint8)
    nulls = kern(values, valid, voff, p, B, bo, out, out_valid)
    return out, out_valid, int(nulls)


_TEMPLATE = '''\
# Generated by shardsmith/kernels/numba_fused.py from the ops' formulas:
# {ops} (stage dtypes: {dtypes}).
# Do not edit: the file is named by the sha256 of its text; Numba caches its machine code beside it.
from math import inf, isinf, isnan, log1p, nan  # noqa: F401  (what formulas may call)

import numpy as np
from numba import njit

OPTIONS = dict(nogil=True, cache=True, error_model="numpy", boundscheck=False)


@njit(**OPTIONS)
def bucketize(x, b):
    # The number of boundaries <= x, as NumPy's searchsorted(side="right"); NaN stays NaN.
    if isnan(x):
        return x
    lo, hi = 0, b.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if b[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return float(lo)


# A chain is a pure function of its input value: a column's results are remembered in a small
# direct-mapped table keyed by the input's bits (NaN inputs, rare, are always computed), so that a
# column of few distinct values (counts, codes, prices in cents) computes each once. After
# MEMO_TRIAL lookups, a column that has missed more than half of them stops using it.
MEMO_SLOTS = 4096
MEMO_SHIFT = np.uint64(64 - 12)
MEMO_MIN_ROWS = 512
MEMO_TRIAL = 2048
NO_KEY = np.uint64(0x7FF8000000000001)  # a NaN's bits: never a key
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@njit(**OPTIONS)
def kernel(src, valid, voff, p, B, bo, dst, out_valid):
    # Rows in bytes of 8, so that each byte of the output validity bitmap is written once: first
    # remembering results (while that pays), then the plain loop for the rest. The two loops load
    # and store alike on purpose: a shared inlined helper measured 1.4x-4x slower (Numba 0.68).
    n = dst.shape[0]
    masked = valid.shape[0] > 0
    nulls = 0
    words = (n + 7) >> 3
    w = 0
    use_memo = n >= MEMO_MIN_ROWS
    if use_memo:
        memo_in = np.full(MEMO_SLOTS, NO_KEY, dtype=np.uint64)
        memo_out = np.empty(MEMO_SLOTS, dtype=np.float64)
        cell = np.empty(1, dtype=np.float64)
        cell_bits = cell.view(np.uint64)
        seen = 0
        misses = 0
        while w < words and use_memo:
            bits = 0
            for k in range(min(8, n - 8 * w)):
                i = 8 * w + k
                j = voff + i
                v = nan
                if not masked or (valid[j >> 3] >> (j & 7)) & 1:
                    v = np.float64(src[i])
                    v = nan if isinf(v) else v  # infinities are missing
                if isnan(v):  # NaN inputs (missing): computed, not remembered
{stages_nan}
                else:
                    seen += 1
                    cell[0] = v
                    key = cell_bits[0]
                    slot = np.int64((key * GOLDEN) >> MEMO_SHIFT)
                    if memo_in[slot] == key:
                        v = memo_out[slot]
                    else:
{stages_memo}
                        memo_in[slot] = key
                        memo_out[slot] = v
                        misses += 1
                if isnan(v):
                    nulls += 1
                else:
                    bits |= 1 << k
                dst[i] = v
            out_valid[w] = bits
            w += 1
            if seen >= MEMO_TRIAL and 2 * misses > seen:
                use_memo = False
    for w in range(w, words):
        bits = 0
        for k in range(min(8, n - 8 * w)):
            i = 8 * w + k
            j = voff + i
            v = nan
            if not masked or (valid[j >> 3] >> (j & 7)) & 1:
                v = np.float64(src[i])
                v = nan if isinf(v) else v  # infinities are missing
{stages}
            if isnan(v):
                nulls += 1
            else:
                bits |= 1 << k
            dst[i] = v
        out_valid[w] = bits
    return nulls


@njit(**OPTIONS)
def block(src, P, B, BO, dst):
    # A (columns, rows) block of values that read as float64, NaN for missing (the NumPy reference's
    # input: backends/cpu/lowering.py fused_values), column c with the parameters P[c], BO[c]; dst
    # gets the results, NaN where missing. The serving row path's form: one call for a few rows.
    for c in range(src.shape[0]):
        p = P[c]
        bo = BO[c]
        for i in range(src.shape[1]):
            v = np.float64(src[c, i])
            v = nan if isinf(v) else v  # infinities are missing
{stages}
            dst[c, i] = v
'''
