"""The serving row path: a transform program applied to a batch of a few rows (shardsmith/serve.py)
without an Arrow table per step. A one-row call through the lowerings is about 400 calls into
pyarrow and NumPy, each with a fixed cost of microseconds; here a row's values stay Python values
and small NumPy arrays until the output table is built once.

Each op keeps its one meaning: fused elementwise groups run the NumPy reference
(lowering.fused_values, the same function the batch path runs), hashes the backend's own hash,
and a ``categorify`` lookup a dict from each vocabulary value to its position, made once per
vocabulary (the ids of kernels/lookup.py: FIRST_ID + position, OOV_ID when absent, NULL_ID for a
null). Only the ops listed in ``ROW_OPS`` and plain input types have a row form; a program with
anything else is served by the lowerings (``RowProgram.of`` returns None), as is a batch whose
values are not plain Python values of the column's type (``RowProgram.columns`` returns None).
tests/test_serve_rows.py checks the row forms against the lowerings bit for bit, on awkward values
too, and tests/test_serve.py both paths against the compiled shards for every op.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from shardsmith.backends.cpu.arrays import from_float, numeric_values
from shardsmith.backends.cpu.lowering import fused_plan, fused_values
from shardsmith.ir import Fused, Step
from shardsmith.ir.dtypes import ARROW_TYPES
from shardsmith.kernels import xxhash64 as xx
from shardsmith.kernels.lookup import FIRST_ID, NULL_ID, OOV_ID
from shardsmith.ops.categorical import Categorify, HashBucket, HashedCross
from shardsmith.ops.rows import Drop, Rename

ARRAYISH = (list, tuple, np.ndarray, pa.Array, pa.ChunkedArray)
_MISSING = object()  # a missing column: no check takes it
ROW_OPS = (Categorify, HashBucket, HashedCross, Rename, Drop)  # and every fused elementwise group


def _plain_check(t: pa.DataType | None) -> tuple | None:
    """What the row path takes for a column of type ``t``: (the Python types of its values, the
    range an int must lie in), or None when the type has no row form. A float column takes a
    float or an int it holds exactly (Arrow refuses the others); None is null everywhere."""
    if t is None:
        return None
    if t == pa.float32() or t == pa.float64():
        limit = 2 ** 24 if t == pa.float32() else 2 ** 53
        return (float, int, type(None)), (-limit, limit)
    if pa.types.is_integer(t):
        bits = t.bit_width
        lo, hi = (0, 2 ** bits - 1) if pa.types.is_unsigned_integer(t) else (-2 ** (bits - 1), 2 ** (bits - 1) - 1)
        return (int, type(None)), (lo, hi)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return (str, type(None)), None
    return None


def _plain(values: list, check: tuple) -> bool:
    kinds, bounds = check
    for v in values:
        k = type(v)
        if k not in kinds or (k is int and not bounds[0] <= v <= bounds[1]):
            return False
    return True


class RowProgram:
    """A transform program's row form over the input columns ``types`` (name: Arrow type), giving
    tables of the output ``schema`` (the graph's)."""

    def __init__(self, program: tuple, states: dict, types: dict, be, schema):
        self.program, self.states, self.types, self.be = program, states, types, be
        self.checks = {name: _plain_check(t) for name, t in types.items()}
        self.vocabs: dict = {}  # (step key, column): {value: position}
        self.plans: dict = {}  # id(fused group): lowering.fused_plan
        self.names = [c.name for c in schema.columns]
        self.out_types = [ARROW_TYPES.get(c.dtype) for c in schema.columns]

    @classmethod
    def of(cls, program: tuple, states: dict, types: dict, be, schema) -> RowProgram | None:
        """The row form of ``program``, or None when an item or an input type has none."""
        rows = cls(program, states, types, be, schema)
        if any(check is None for check in rows.checks.values()):
            return None
        for item in program:
            if isinstance(item, Fused):
                continue
            if not (isinstance(item, Step) and isinstance(item.op, ROW_OPS)):
                return None
            if isinstance(item.op, Categorify) and not rows._vocabularies(item):
                return None
        return rows

    def _vocabularies(self, step) -> bool:
        """Each column's vocabulary as a dict, when the column and its vocabulary are both integers
        or both strings (what equality of Python values decides as the lowerings do)."""
        before = _types_before(self.program, step, self.types)
        for c, _ in step.op.pairs():
            vocab = self.states[step.key][c]["vocab"]
            kinds = {_kind(before.get(c)), _kind(vocab.schema.field("value").type)}
            if len(kinds) != 1 or None in kinds:
                return False
            values = vocab["value"].to_pylist()
            self.vocabs[(step.key, c)] = {v: i for i, v in enumerate(values)}
        return True

    def columns(self, batch: dict) -> tuple[dict, int] | None:
        """A dict of scalars (one row) or of lists as {column: list of values} and the row count,
        or None when a value is not a plain one of its column's type or the lists differ in
        length (the caller then converts the batch with Arrow, which reports what is wrong)."""
        one = not any(isinstance(v, ARRAYISH) for v in batch.values())  # as serve.py's Arrow path reads it
        cols = {}
        for name, check in self.checks.items():
            v = batch.get(name, _MISSING)
            values = [v] if one else v
            if type(values) is not list or not _plain(values, check):
                return None
            cols[name] = values
        lengths = {len(v) for v in cols.values()}
        return (cols, lengths.pop() if lengths else 0) if len(lengths) <= 1 else None

    def __call__(self, cols: dict, n: int) -> pa.Table:
        """The program's output table for input ``cols`` of ``n`` rows."""
        frame = _Row(cols, dict(self.types), n)
        for item in self.program:
            if isinstance(item, Fused):
                self._fused(item, frame)
            else:
                getattr(self, "_" + type(item.op).__name__.lower())(item, frame)
        return frame.table(self.names, self.out_types)

    def _fused(self, node: Fused, frame: _Row) -> None:
        for group in node.groups:
            plan = self.plans.get(id(group))
            if plan is None:
                plan = self.plans[id(group)] = fused_plan(node, group, self.states)
            outs = fused_values(node, group, frame.float_block(group.srcs), frame.n, self.states, plan)
            frame.put_block(group.outs, outs, group.chains[0].dtypes[-1])

    def _categorify(self, step, frame: _Row) -> None:
        ids, outs = [], []
        missing, absent = NULL_ID - FIRST_ID, OOV_ID - FIRST_ID
        for c, o in step.op.pairs():
            pos = self.vocabs[(step.key, c)]
            ids.append([missing if v is None else pos.get(v, absent) for v in frame.values(c)])
            outs.append(o)
        frame.put_block(outs, np.array(ids, dtype=np.int32).reshape(len(outs), frame.n) + np.int32(FIRST_ID),
                        pa.int32())

    def _hashbucket(self, step, frame: _Row) -> None:
        op = step.op
        for c, o in op.pairs():
            frame.put(o, xx.to_buckets(self.be.hash(frame.arrow(c), op.seed), op.num_buckets))

    def _hashedcross(self, step, frame: _Row) -> None:
        op = step.op
        h = self.be.hash(frame.arrow(op.cols[0]), op.seed)
        for c in op.cols[1:]:
            h = self.be.hash(frame.arrow(c), h)
        frame.put(op.output(), xx.to_buckets(h, op.num_buckets))

    def _rename(self, step, frame: _Row) -> None:
        for old, new in step.op.mapping.items():
            if old in frame.cols:
                frame.cols[new], frame.types[new] = frame.cols.pop(old), frame.types.pop(old)

    def _drop(self, step, frame: _Row) -> None:
        for c in step.op.cols:
            if c in frame.cols:
                del frame.cols[c], frame.types[c]


class _Row:
    """The columns of a row batch, each in one of four forms, converted as the lowerings would
    when an op needs another: a list of Python values (None: null) of its Arrow type; a row of a
    ``_Block``; a NumPy array without nulls (buckets); an Arrow array."""

    def __init__(self, cols: dict, types: dict, n: int):
        self.cols, self.types, self.n = cols, types, n

    def put(self, name: str, values, dtype=None) -> None:
        self.cols[name] = values
        self.types[name] = dtype if dtype is not None else pa.from_numpy_dtype(values.dtype)

    def put_block(self, names: list, values: np.ndarray, dtype) -> None:
        block = _Block(values, dtype)
        for i, name in enumerate(names):
            self.put(name, (block, i), dtype)

    def float_block(self, names) -> list | np.ndarray:
        """float64-readable values, NaN for missing (arrays.numeric_values), of each column: a list
        of arrays, or one (columns, rows) array for input columns of one float type."""
        cols = [self.cols[c] for c in names]
        t = self.types[names[0]] if names else None
        if all(type(v) is list for v in cols) and all(self.types[c] == t for c in names) and pa.types.is_floating(t):
            # As Arrow converts a Python float to the column's type (a C cast); NumPy widens it later.
            with np.errstate(over="ignore"):
                return np.array([[np.nan if x is None else x for x in v] for v in cols],
                                dtype=t.to_pandas_dtype()).reshape(len(cols), self.n)
        return [self._floats(c) for c in names]

    def _floats(self, name: str) -> np.ndarray:
        v, t = self.cols[name], self.types[name]
        if type(v) is tuple and isinstance(t, str) and t in ("float32", "float64"):
            return v[0].values[v[1]]  # a fused group's results: NaN already stands for missing
        return numeric_values(self.arrow(name))

    def values(self, name: str) -> list:
        v = self.cols[name]
        return v if type(v) is list else self.arrow(name).to_pylist()

    def arrow(self, name: str) -> pa.Array:
        v, t = self.cols[name], self.types[name]
        if type(v) is list:
            return pa.array(v, type=t)
        if type(v) is tuple:
            return v[0].column(v[1], self.n)
        if isinstance(v, np.ndarray):
            return pa.array(v, type=t)
        return v

    def table(self, names: list, types: list) -> pa.Table:
        """The output columns ``names`` in the Arrow ``types`` (None: as they are), as the
        backend's ``conform`` casts them."""
        arrays = []
        for name, want in zip(names, types):
            a = self.arrow(name)
            declared = self.types[name]
            if want is not None and (ARROW_TYPES[declared] if type(declared) is str else declared) != want:
                a = a.cast(want)
            arrays.append(a)
        return pa.Table.from_arrays(arrays, names=names)


class _Block:
    """Columns made together, as a (columns, rows) NumPy array: a fused group's results (``dtype``
    a dtype name, NaN for missing) or ids (an Arrow type). Made into one Arrow array, by the
    conversion the lowerings use, whose slices are the columns: one conversion, not one each."""

    def __init__(self, values: np.ndarray, dtype):
        self.values, self.dtype, self.flat = values, dtype, None

    def column(self, i: int, n: int) -> pa.Array:
        if self.flat is None:
            flat = self.values.reshape(-1)
            self.flat = from_float(flat, self.dtype) if isinstance(self.dtype, str) else pa.array(flat, type=self.dtype)
        return self.flat.slice(i * n, n)


def _kind(t: pa.DataType | None) -> str | None:
    if t is not None and pa.types.is_integer(t):
        return "int"
    if t is not None and (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return "str"
    return None


def _types_before(program: tuple, step, types: dict) -> dict:
    """The Arrow types of the columns as ``step`` gets them (the input types, then each item's
    output schema)."""
    out = dict(types)
    for item in program:
        if item is step:
            return out
        out = {c.name: ARROW_TYPES.get(c.dtype, out.get(c.name)) for c in item.schema.columns}
    return out
