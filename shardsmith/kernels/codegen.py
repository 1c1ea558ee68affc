"""The fusion code generator: one CUDA kernel per column group of a ``Fused`` node.

A column group (ir/fusion.py) is a set of columns that go through the same chain of
elementwise ops with the same dtypes. Its kernel is rendered from the ops' ``cuda()`` templates
(ops/numeric.py): one C statement per stage, each followed by the rounding to that stage's dtype,
in a device function ``ss_chain`` that maps one float64 value (NaN for missing) to its result.
Around it, the kernel loads a column's value (null and +-inf -> NaN: infinities are missing),
stores the result (NaN -> null, through a warp ballot into the output's validity bitmask) and
counts the nulls it wrote.

Parameters are not rendered into the source: every column's constants and fitted values travel in
arrays (``P``: one row of scalars per column; ``B`` / ``BO``: the boundaries of array-valued
parameters such as bucketize's, with an (offset, length) pair per column). So the source depends
only on the chain's op kinds and dtypes, one compiled kernel serves every dataset and refit, and the
sources of a pipeline can be kept as golden files.

The kernel's meaning is defined by :func:`reference` (the NumPy code that the CPU engine runs); the
tests compare the host build of every generated source with it.

``engine.float_mode: fast`` renders the chains whose input and every stage are float32 with float32
arithmetic instead (:func:`is_fast`): values and parameters are floats, and the per-op rounding to
float32 is then implied. It is faster on GPUs, whose float64 throughput is a fraction of their
float32 throughput, and it is *not* bit-identical with the CPU engine: its meaning is
:func:`reference_fast` (NumPy in float32), within :data:`FAST_TOLERANCE` of the exact results.
Every other chain, and every chain in exact mode (the default), renders exactly as before.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np

from shardsmith.ir.dtypes import DTYPES, INT_DTYPES
from shardsmith.kernels.rounding import missing_inf, round_to
from shardsmith.kernels.sources import KernelSource, inline

# dtype -> (C storage type, load expression of {x}, store expression of {v}, rounding function)
_NON_INT = {"float64": ("{x}", "{v}", "ss_round_f64"), "float32": ("(double){x}", "(float){v}", "ss_round_f32"),
            "float16": ("ss_f16_to_f64({x})", "ss_f64_to_f16({v})", "ss_round_f16"),
            "bool": ("({x} != 0 ? 1.0 : 0.0)", "(ss_u8)({v} != 0.0)", "ss_round_int")}
C_TYPES: dict[str, tuple[str, str, str, str]] = {
    **{d: (DTYPES[d].c_type, *forms) for d, forms in _NON_INT.items()},
    **{d: (DTYPES[d].c_type, "(double){x}", f"({DTYPES[d].c_type}){{v}}", "ss_round_int") for d in INT_DTYPES},
}
BLOCK = 256
FLOAT_MODES = ("exact", "fast")
# How far a fast-mode result may be from the exact one (float64 per op, rounded to float32): a few
# float32 rounding errors, times what normalize's subtraction and division amplify them by. Checked
# on the demo pipeline's chain in tests/gpu/test_kernels_host.py; `shardsmith diff` uses it for
# the floats of a dataset made in fast mode.
FAST_TOLERANCE = (1e-5, 1e-5)  # (relative, absolute): |fast - exact| <= atol + rtol * |exact|


@dataclass(frozen=True)
class ParamLayout:
    """Where each op's parameters live: scalars in ``P`` slots, arrays as ``BO`` pairs."""

    scalars: tuple[tuple[tuple[str, int], ...], ...]  # per op: (name, slot in a column's P row)
    arrays: tuple[tuple[tuple[str, int], ...], ...]  # per op: (name, index of its BO pair)

    @property
    def n_scalars(self) -> int:
        return sum(len(s) for s in self.scalars)

    @property
    def n_arrays(self) -> int:
        return sum(len(a) for a in self.arrays)


def layout_of(params: list[dict]) -> ParamLayout:
    """The layout of one column's per-op parameter dicts (every column of a group has the same)."""
    scalars, arrays, slot, pair = [], [], 0, 0
    for p in params:
        s, a = [], []
        for name, value in p.items():
            if np.ndim(value):
                a.append((name, pair))
                pair += 1
            else:
                s.append((name, slot))
                slot += 1
        scalars.append(tuple(s))
        arrays.append(tuple(a))
    return ParamLayout(tuple(scalars), tuple(arrays))


def chain_params(node, group, states: dict) -> list[list[dict]]:
    """Per column of ``group``, per stage: the parameters of that column's own op instance."""
    out = []
    for chain in group.chains:
        per_stage = []
        for pos, col in chain.stages:
            step = node.steps[pos]
            per_stage.append(step.op.params(states.get(step.key, {}), col))
        out.append(per_stage)
    return out


def pack(layout: ParamLayout, columns: list[list[dict]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The arrays ``P`` (columns x scalars), ``B`` (all boundaries) and ``BO`` (columns x 2 per array)."""
    n = len(columns)
    P = np.zeros((n, max(1, layout.n_scalars)), dtype=np.float64)
    BO = np.zeros((n, max(1, 2 * layout.n_arrays)), dtype=np.int64)
    pieces, at = [], 0
    for c, per_stage in enumerate(columns):
        for j, p in enumerate(per_stage):
            for name, slot in layout.scalars[j]:
                P[c, slot] = float(p[name])
            for name, pair in layout.arrays[j]:
                arr = np.asarray(p[name], dtype=np.float64).ravel()
                BO[c, 2 * pair : 2 * pair + 2] = (at, len(arr))
                pieces.append(arr)
                at += len(arr)
    B = np.concatenate(pieces) if pieces else np.zeros(1, dtype=np.float64)
    return P, (B if len(B) else np.zeros(1, dtype=np.float64)), BO


def is_fast(float_mode: str, src_dtype: str, dtypes) -> bool:
    """Whether a chain computes in float32 arithmetic: in fast mode, when its input and every
    stage's result are float32 (integers, booleans, float16 and float64 keep exact arithmetic)."""
    return float_mode == "fast" and all(d == "float32" for d in (src_dtype, *dtypes))


def render(ops, layout: ParamLayout, src_dtype: str, dtypes, float_mode: str = "exact") -> KernelSource:
    """The kernel source for a chain of elementwise ``ops`` whose results have ``dtypes``."""
    if float_mode not in FLOAT_MODES:
        raise ValueError(f"unknown float mode {float_mode!r}")
    return _render(tuple(ops), layout, src_dtype, tuple(dtypes), is_fast(float_mode, src_dtype, dtypes))


@functools.lru_cache(maxsize=256)
def _render(ops: tuple, layout: ParamLayout, src_dtype: str, dtypes: tuple[str, ...], fast: bool) -> KernelSource:
    """Rendered once per process and chain: ops are frozen, hashable dataclasses."""
    for d in (src_dtype, *dtypes):
        if d not in C_TYPES:
            raise ValueError(f"no CUDA type for dtype {d}")
    body = _fast_chain_function(ops, layout, dtypes) if fast else _chain_function(ops, layout, dtypes)
    signature = (src_dtype, dtypes[-1], body)
    name = "ss_fused_" + hashlib.sha256(repr(signature).encode()).hexdigest()[:16]
    src_t, load, _, _ = C_TYPES[src_dtype]
    dst_t, _, store, _ = C_TYPES[dtypes[-1]]
    common = f"// ---- launch.cuh\n{inline('launch.cuh')}// ---- end launch.cuh"
    text = _TEMPLATE.format(
        common=common, chain=body, name=name, ops=" -> ".join(op.op_name for op in ops),
        src_dtype=src_dtype, dst_dtype=dtypes[-1], src_t=src_t, dst_t=dst_t, np=max(1, layout.n_scalars),
        nb=max(1, 2 * layout.n_arrays), load=load.format(x="src[i]"), store=store.format(v="v"), block=BLOCK)
    return KernelSource(f"{name}.cu", text, (name,))


def _stage_names(layout: ParamLayout, j: int, scalar: str) -> dict[str, str]:
    """Stage ``j``'s parameter names as CUDA expressions: scalars through ``scalar`` (a format of
    their slot in ``p``), arrays as pointers into ``B`` with their lengths from ``bo``."""
    names = {name: scalar.format(slot) for name, slot in layout.scalars[j]}
    for name, pair in layout.arrays[j]:
        names[name] = f"(B + bo[{2 * pair}])"
        names[f"{name}_len"] = f"bo[{2 * pair + 1}]"
    return names


def _chain_function(ops, layout: ParamLayout, dtypes: tuple[str, ...]) -> str:
    lines = ["SS_DEV double ss_chain(double v, const double* p, const double* B, const ss_i64* bo) {"]
    for j, (op, dtype) in enumerate(zip(ops, dtypes)):
        names = _stage_names(layout, j, "p[{}]")
        lines.append(f"  // stage {j}: {op.op_name} -> {dtype}")
        lines.append(f"  v = {op.cuda('v', names)};")
        lines.append(f"  v = {C_TYPES[dtype][3]}(v);")
    lines.append("  return v;")
    lines.append("}")
    return "\n".join(lines)


def _fast_chain_function(ops, layout: ParamLayout, dtypes: tuple[str, ...]) -> str:
    """ss_chain in float32 arithmetic: the value and the scalar parameters as floats (the input is
    float32, so the conversions in and out are exact; each op's result is a float already)."""
    lines = ["SS_DEV double ss_chain(double x, const double* p, const double* B, const ss_i64* bo) {",
             "  // engine.float_mode fast: float32 arithmetic, not bit-identical with the CPU engine",
             "  float v = (float)x;"]
    for j, (op, dtype) in enumerate(zip(ops, dtypes)):
        names = _stage_names(layout, j, "((float)p[{}])")
        lines.append(f"  // stage {j}: {op.op_name} -> {dtype}")
        lines.append(f"  v = {op.cuda('v', names)};")
        lines.append("  v = (float)ss_no_inf((double)v);  // an infinite result is missing, as in exact mode")
    lines.append("  return (double)v;")
    lines.append("}")
    return "\n".join(lines)


_TEMPLATE = """\
// Generated by shardsmith/kernels/codegen.py: {ops} ({src_dtype} -> {dst_dtype}).
// Do not edit; tests/golden/ keeps the sources of the demo pipeline.
{common}
#define SS_NP {np}
#define SS_NB {nb}
typedef {src_t} ss_src_t;
typedef {dst_t} ss_dst_t;

{chain}

// One element: its input (null and +-inf -> NaN), the chain, and whether the result is present.
SS_DEV double ss_element(const ss_src_t* src, const ss_u32* mask, ss_i64 moff, ss_i64 i,
                         const double* p, const double* B, const ss_i64* bo) {{
  double v = ss_valid(mask, moff + i) ? ss_no_inf({load}) : CUDART_NAN;
  return ss_chain(v, p, B, bo);
}}

SS_DEV ss_dst_t ss_store(double v) {{ return {store}; }}

// Column c = blockIdx.y of the group: src_ptr[c] (already offset to the column's first row) with
// its validity mask src_mask[c] (0: none) at bit offset src_moff[c]; results to dst_ptr[c], a fresh
// bitmask dst_mask[c], and the number of nulls written added to dst_nulls[c].
#ifdef __CUDACC__
extern "C" __global__ void __launch_bounds__({block}) {name}(
    const ss_u64* src_ptr, const ss_u64* src_mask, const ss_i64* src_moff, const ss_u64* dst_ptr,
    const ss_u64* dst_mask, ss_u64* dst_nulls, const double* P, const double* B, const ss_i64* BO,
    ss_i64 n) {{
  // __restrict__: no output aliases an input or a parameter, so parameters stay in registers.
  const int c = blockIdx.y;
  const ss_src_t* __restrict__ src = (const ss_src_t*)src_ptr[c];
  const ss_u32* __restrict__ mask = (const ss_u32*)src_mask[c];
  const ss_i64 moff = src_moff[c];
  ss_dst_t* __restrict__ dst = (ss_dst_t*)dst_ptr[c];
  ss_u32* __restrict__ out_mask = (ss_u32*)dst_mask[c];
  const double* __restrict__ p = P + (ss_i64)c * SS_NP;
  const ss_i64* __restrict__ bo = BO + (ss_i64)c * SS_NB;
  const ss_i64 n32 = (n + 31) & ~31LL;  // whole warps, so that every lane takes part in the ballot
  const ss_i64 stride = (ss_i64)gridDim.x * blockDim.x;
  ss_u64 nulls = 0;
  for (ss_i64 i = (ss_i64)blockIdx.x * blockDim.x + threadIdx.x; i < n32; i += stride) {{
    const bool in = i < n;
    const double v = in ? ss_element(src, mask, moff, i, p, B, bo) : CUDART_NAN;
    const bool ok = in && !ss_isnan(v);
    if (in) dst[i] = ok ? ss_store(v) : (ss_dst_t)0;
    const ss_u32 word = __ballot_sync(0xFFFFFFFFu, ok);
    if ((threadIdx.x & 31) == 0) {{  // lane 0 holds a multiple of 32, below n
      out_mask[i >> 5] = word;
      const ss_i64 rows = n - i < 32 ? n - i : 32;
      nulls += (ss_u64)(rows - __popc(word));
    }}
  }}
  if ((threadIdx.x & 31) == 0 && nulls) atomicAdd(dst_nulls + c, nulls);
}}
#else
// The host build (tests): the same per-element code, the bitmask built word by word.
SS_HOST_EXPORT void {name}(
    const ss_u64* src_ptr, const ss_u64* src_mask, const ss_i64* src_moff, const ss_u64* dst_ptr,
    const ss_u64* dst_mask, ss_u64* dst_nulls, const double* P, const double* B, const ss_i64* BO,
    ss_i64 n, int ncols) {{
  for (int c = 0; c < ncols; ++c) {{
    const ss_src_t* src = (const ss_src_t*)src_ptr[c];
    const ss_u32* mask = (const ss_u32*)src_mask[c];
    ss_dst_t* dst = (ss_dst_t*)dst_ptr[c];
    ss_u32* out_mask = (ss_u32*)dst_mask[c];
    for (ss_i64 i = 0; i < n; ++i) {{
      const double v = ss_element(src, mask, src_moff[c], i, P + (ss_i64)c * SS_NP, B, BO + (ss_i64)c * SS_NB);
      const bool ok = !ss_isnan(v);
      dst[i] = ok ? ss_store(v) : (ss_dst_t)0;
      if ((i & 31) == 0) out_mask[i >> 5] = 0;
      if (ok) out_mask[i >> 5] |= 1u << (i & 31);
      else dst_nulls[c] += 1;
    }}
  }}
}}
#endif
"""


def group_source(node, group, states: dict, float_mode: str = "exact") -> tuple[KernelSource, list, ParamLayout]:
    """The kernel of one column group of a Fused node in ``float_mode``, with its columns'
    parameters and layout."""
    ops = tuple(node.steps[pos].op for pos, _ in group.chains[0].stages)
    params = chain_params(node, group, states)
    layout = layout_of(params[0])
    return render(ops, layout, group.src_dtype, tuple(group.chains[0].dtypes), float_mode), params, layout


def reference(ops, params: list[list[dict]], dtypes: tuple[str, ...], x: np.ndarray) -> np.ndarray:
    """What a fused kernel computes, in NumPy: ``x`` (rows x columns, float64, NaN for missing,
    +-inf missing too) through each op with per-column parameters, rounded to each stage's dtype
    after each op (the CPU engine's blocked pass, backends/cpu/lowering.py). NaN in the result
    means null."""
    x = missing_inf(np.array(x, dtype=np.float64))
    for j, (op, dtype) in enumerate(zip(ops, dtypes)):
        per_col = [p[j] for p in params]
        p = {k: (np.array([q[k] for q in per_col]) if not np.ndim(per_col[0][k]) else [q[k] for q in per_col])
             for k in per_col[0]}
        x = round_to(op.apply(x, p, np), dtype)
    return x


def reference_fast(ops, params: list[list[dict]], dtypes: tuple[str, ...], x: np.ndarray) -> np.ndarray:
    """What a fast-mode kernel computes (a float32 chain, :func:`is_fast`), in NumPy: ``x`` and
    every scalar parameter as float32, each op in float32 arithmetic; +-inf, in the input or a
    result, is missing as in exact mode. NaN means null."""
    x = missing_inf(np.array(x, dtype=np.float32))
    for j, op in enumerate(ops):
        per_col = [p[j] for p in params]
        p = {k: np.array([q[k] for q in per_col], dtype=np.float32) for k in per_col[0]}
        with np.errstate(invalid="ignore", divide="ignore"):
            x = missing_inf(np.array(op.apply(x, p, np), dtype=np.float32))
    return x.astype(np.float64)
