"""The CPU engine's compiled path (``engine.cpu_kernels``): Arrow columns into and out of the Numba
kernels, fused elementwise groups (kernels/numba_fused.py) and the row hash
(kernels/numba_xxhash64.py), reading Arrow's buffers in place (values, validity bitmaps, string
offsets and bytes) and writing Arrow's layout back.

Each function returns None when its kernel cannot run (not built yet under ``auto``, or a chain
that only NumPy computes exactly): the caller then runs the NumPy reference, which gives the same
bits. Kernels are built on a background thread (kernels/cpujit.py) and specialised by Numba on the
exact array types they get, so every input here is read-only and C-contiguous, as Arrow's buffers
are, and a kernel warmed on empty arrays of those types never compiles again when real data comes.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from shardsmith.backends.cpu.arrays import float_values, from_float, int_values, plain
from shardsmith.ir.dtypes import ARROW_TYPES
from shardsmith.kernels import codegen, cpujit
from shardsmith.kernels import numba_fused as NF

FLOAT_OUT = {"float32": np.float32, "float64": np.float64}


def _readonly(a: np.ndarray) -> np.ndarray:
    a = a.view()
    a.flags.writeable = False
    return a


NO_BYTES = _readonly(np.zeros(0, dtype=np.uint8))  # no validity bitmap (every row valid), or no string bytes


# --- fused elementwise groups ---------------------------------------------------------------------
def fused_group(how: str, node, group, frame: pa.Table, states: dict, each=None) -> dict | None:
    """Every column of ``group`` through its chain's compiled kernel: {output name: Arrow array}.
    ``each(columns, fn)``, when given, runs ``fn`` over the columns' positions (side by side:
    lowering.each_column); else one after another."""
    plan = chain_plan(node, group, states)
    if plan is None:
        return None
    ops, layout, dtypes, P, B, BO = plan
    inputs = [_kernel_input(frame[c]) for c in group.srcs]
    out_np = FLOAT_OUT.get(dtypes[-1], np.float64)  # integer results convert as the NumPy path's do
    kern = _fused_kernel(how, ops, layout, dtypes, inputs[0][0].dtype, out_np)
    if kern is None:
        return None

    def column(c: int) -> pa.Array:
        return _fused_column(kern, *inputs[c], P[c], B, BO[c], dtypes[-1], out_np)

    positions = list(range(len(group.outs)))
    return dict(zip(group.outs, each(positions, column) if each is not None else map(column, positions)))


def _fused_kernel(how: str, ops, layout, dtypes, src_np, out_np):
    text = NF.render(ops, layout, dtypes)

    def build():
        if cpujit.import_numba().config.USING_SVML and "log1p" in text:
            return None  # Numba would vectorise log1p with SVML: not the C library's bits
        kern = NF.kernel(ops, layout, dtypes)
        NF.run(kern, _readonly(np.zeros(0, src_np)), NO_BYTES, 0, np.zeros(1), np.zeros(1),
               np.zeros(2, np.int64), out_np)
        return kern

    return cpujit.compiled(how, ("fused", text, np.dtype(src_np).str, np.dtype(out_np).str), build)


def warm_fused(node, group) -> bool:
    """Start building, without waiting, the kernel that ``fused_group`` will ask for ``group``,
    when its parameters need no fitted state (a compile's first pass: fill, clip, log1p): the
    kernel is then ready for the first partitions instead of a second or so into the pass.
    Whether a build was asked for."""
    try:
        plan = chain_plan(node, group, {})
    except Exception:  # noqa: BLE001  (fitted parameters, or a plugin op's own: built when first run)
        return False
    if plan is None:
        return False
    ops, layout, dtypes = plan[:3]
    t = ARROW_TYPES.get(group.src_dtype)
    src_np = np.dtype(np.float64) if t is None else _kernel_dtype(t)
    _fused_kernel("auto", ops, layout, dtypes, src_np, FLOAT_OUT.get(dtypes[-1], np.float64))
    return True


def chain_plan(node, group, states: dict) -> tuple | None:
    """What a group's compiled kernels need, made once per call (or once for good: the serving row
    path keeps it): its ops, parameter layout, dtypes and packed parameters ``P``, ``B``, ``BO``;
    None for a chain only NumPy computes exactly."""
    ops = tuple(node.steps[pos].op for pos, _ in group.chains[0].stages)
    dtypes = tuple(group.chains[0].dtypes)
    if NF.unsupported(ops, dtypes) is not None:
        return None
    params = codegen.chain_params(node, group, states)
    layout = codegen.layout_of(params[0])
    return ops, layout, dtypes, *codegen.pack(layout, params)


def fused_block(how: str, plan: tuple, src: np.ndarray) -> np.ndarray | None:
    """A group's results over ``src``, a (columns, rows) block that reads as float64 with NaN for
    missing (lowering.fused_values' input and output form, the same bits), by the chain's compiled
    ``block``; None when it is not built yet (``auto``) or the chain's results are integers."""
    ops, layout, dtypes, P, B, BO = plan
    out_np = FLOAT_OUT.get(dtypes[-1])
    if out_np is None:  # integer results: lowering.fused_values' float64 form, not built here
        return None
    src = np.ascontiguousarray(src, dtype=src.dtype if src.dtype in (np.float32, np.float64) else np.float64)
    text = NF.render(ops, layout, dtypes)

    def build():
        if cpujit.import_numba().config.USING_SVML and "log1p" in text:
            return None  # as _fused_kernel
        kern = NF.block_kernel(ops, layout, dtypes)
        kern(np.zeros((1, 0), src.dtype), P, B, BO, np.zeros((1, 0), out_np))
        return kern

    kern = cpujit.compiled(how, ("fused-block", text, src.dtype.str, np.dtype(out_np).str), build)
    if kern is None:
        return None
    out = np.empty(src.shape, dtype=out_np)
    kern(src, P, B, BO, out)
    return out


def _fused_column(kern, values, valid, voff: int, p, B, bo, dtype: str, out_np) -> pa.Array:
    out, out_valid, nulls = NF.run(kern, values, valid, voff, p, B, bo, out_np)
    if dtype not in FLOAT_OUT:
        return from_float(out, dtype)
    buffers = [pa.py_buffer(out_valid) if nulls else None, pa.py_buffer(out)]
    return pa.Array.from_buffers(ARROW_TYPES[dtype], len(out), buffers, null_count=nulls)


def _kernel_input(column) -> tuple[np.ndarray, np.ndarray, int]:
    """(values, validity bitmap bytes, its bit offset) of a numeric column, in place where Numba
    reads the type (booleans are bits and float16 has no Numba type: those come as float64 with
    NaN for null, the NumPy path's conversion)."""
    arr = plain(column)
    if _as_float64(arr.type):
        return _readonly(float_values(arr)), NO_BYTES, 0
    return _values(arr, _kernel_dtype(arr.type)), *_validity(arr)


def _as_float64(t: pa.DataType) -> bool:
    """Whether a column of type ``t`` reaches the fused kernel converted to float64: booleans
    (bits) and float16 (no Numba type); other numbers come in place."""
    return pa.types.is_boolean(t) or pa.types.is_float16(t)


def _kernel_dtype(t: pa.DataType) -> np.dtype:
    """The NumPy dtype a column of type ``t`` reaches the fused kernel in: what it is specialised
    on, so what ``warm_fused`` must ask for."""
    return np.dtype(np.float64) if _as_float64(t) else np.dtype(t.to_pandas_dtype())


def _values(arr: pa.Array, dtype: np.dtype) -> np.ndarray:
    buf = arr.buffers()[1]
    if buf is None:  # an all-null array may have no data buffer
        return _readonly(np.zeros(len(arr), dtype))
    return np.frombuffer(buf, dtype=dtype, count=arr.offset + len(arr))[arr.offset:]


def _validity(arr: pa.Array) -> tuple[np.ndarray, int]:
    if arr.null_count == 0:
        return NO_BYTES, 0
    return np.frombuffer(arr.buffers()[0], dtype=np.uint8), arr.offset


# --- the row hash ------------------------------------------------------------------------------------
def hash_column(how: str, column, seed) -> np.ndarray | None:
    """The shardsmith hash of every value of ``column`` (kernels/xxhash64.py), ``seed`` a scalar or
    one per row; None when the kernel is not ready."""
    arr = plain(column)
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t) or pa.types.is_large_binary(t):
        name, args = "hash_strings", _string_buffers(arr)
    elif pa.types.is_floating(t):
        values = _values(arr, np.dtype(t.to_pandas_dtype()))
        name, args = "hash_floats", (values if values.dtype != np.float16 else _readonly(values.astype(np.float64)),)
    elif pa.types.is_integer(t):
        name, args = "hash_ints", (_values(arr, np.dtype(t.to_pandas_dtype())),)
    else:  # booleans, dates, timestamps: as the NumPy path converts them
        name, args = "hash_ints", (_readonly(int_values(arr)),)
    seeds = np.asarray(seed, dtype=np.uint64).reshape(-1)
    kern = _hash_kernel(how, name, args)
    if kern is None:
        return None
    out = np.empty(len(arr), dtype=np.uint64)
    kern(*args, *_validity(arr), seeds, out)
    return out


def _string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    large = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64 if large else np.int32,
                            count=arr.offset + len(arr) + 1)[arr.offset:]
    data = arr.buffers()[2]
    return offsets, np.frombuffer(data, dtype=np.uint8) if data is not None else NO_BYTES


def _hash_kernel(how: str, name: str, args: tuple):
    """``name`` of kernels/numba_xxhash64.py, warmed for the types of ``args`` (the column's arrays)."""
    types = tuple(a.dtype.str for a in args)

    def build():
        cpujit.import_numba()
        from shardsmith.kernels import numba_xxhash64 as K  # lazy: importing it imports Numba

        kern = getattr(K, name)
        kern(*(_readonly(np.zeros(1 if name == "hash_strings" and i == 0 else 0, t)) for i, t in enumerate(types)),
             NO_BYTES, 0, np.zeros(1, np.uint64), np.zeros(0, np.uint64))
        return kern

    return cpujit.compiled(how, (name, types), build)


def split_ids(how: str, h: np.ndarray, thresholds) -> np.ndarray | None:
    """Each hash's split: the number of thresholds <= its top 53 bits."""

    def build():
        cpujit.import_numba()
        from shardsmith.kernels import numba_xxhash64 as K  # lazy: importing it imports Numba

        K.split_ids(np.zeros(0, np.uint64), np.zeros(1, np.int64), np.zeros(0, np.int8))
        return K.split_ids

    kern = cpujit.compiled(how, ("split_ids",), build)
    if kern is None:
        return None
    out = np.empty(len(h), dtype=np.int8)
    kern(h, np.asarray(thresholds, dtype=np.int64), out)
    return out


# --- categorify's lookup ----------------------------------------------------------------------------
def categorify_ids(how: str, column, vocab: pa.Table) -> np.ndarray | None:
    """categorify's int32 ids of an integer column against a vocabulary table (value, count), by
    a compiled hash table built once per vocabulary; None when it cannot run (other types stay on
    the NumPy / Arrow path)."""
    arr = plain(column)
    if not (pa.types.is_integer(arr.type) and pa.types.is_integer(vocab.schema.field("value").type)):
        return None
    values = _values(arr, np.dtype(arr.type.to_pandas_dtype()))
    kern = _lookup_kernel(how, values.dtype)
    table = _vocabulary_table(how, vocab) if kern is not None else None
    if table is None:
        return None
    out = np.empty(len(values), np.int32)
    kern(values, *_validity(arr), table, _shift(table), out)
    return out


_TABLES: dict = {}


def _vocabulary_table(how: str, vocab: pa.Table) -> np.ndarray | None:
    """The vocabulary's hash table, built once per vocabulary table and process (the fitted state
    lives as long as the compile)."""
    cached = _TABLES.get(id(vocab))
    if cached is not None and cached[0] is vocab:
        return cached[1]
    build = _lookup_kernel(how, None)
    if build is None:
        return None
    values = vocab["value"].combine_chunks()
    keys = _values(values, np.dtype(values.type.to_pandas_dtype()))
    keys = keys.view(np.int64) if keys.dtype == np.uint64 else keys.astype(np.int64)  # as the kernel reads values
    if len(_TABLES) > 256:
        _TABLES.clear()
    _TABLES[id(vocab)] = (vocab, build(keys))
    return _TABLES[id(vocab)][1]


def _shift(table: np.ndarray) -> np.uint64:
    return np.uint64(64 - ((len(table) // 2).bit_length() - 1))


def _lookup_kernel(how: str, dtype: np.dtype | None):
    """kernels/numba_categorify.py's lookup warmed for ``dtype`` values, or (None) its table builder."""

    def build():
        cpujit.import_numba()
        from shardsmith.kernels import numba_categorify as K  # lazy: importing it imports Numba

        table = K.build_index(np.zeros(0, np.int64))
        if dtype is None:
            return K.build_index
        K.lookup(_readonly(np.zeros(0, dtype)), NO_BYTES, 0, table, _shift(table), np.zeros(0, np.int32))
        return K.lookup

    return cpujit.compiled(how, ("categorify", dtype.str if dtype is not None else "table"), build)


def warm() -> None:
    """Start building, without waiting, the kernels that every partition's read needs: the hash of
    its row numbers and the split."""
    _hash_kernel("auto", "hash_ints", (_readonly(np.zeros(0, np.int64)),))
    split_ids("auto", np.zeros(0, np.uint64), ())
