"""The serving row path: a transform program applied to a batch of a few rows (shardsmith/serve.py)
without an Arrow table per step. A one-row call through the lowerings is about 400 calls into
pyarrow and NumPy, each with a fixed cost of microseconds; here a row's values stay Python values
and small NumPy arrays until the output table is built once.

Each op keeps its one meaning: a fused elementwise group runs as one call of its compiled
``block`` (kernels/numba_fused.py, the stages the batch path's kernels run) once built, else the
NumPy reference (lowering.fused_values, the same function the batch path's NumPy path runs); a
hash of plain values is kernels/xxhash64.py's one-value form of the shardsmith hash, of other
columns the backend's own; and a ``categorify`` lookup a dict from each vocabulary value to its
id, made once per vocabulary (the ids of kernels/lookup.py: FIRST_ID + position, OOV_ID when
absent, NULL_ID for a null). Only the ops listed in ``ROW_OPS`` and plain input types have a row
form; a program with anything else is served by the lowerings (``RowProgram.of`` returns None),
as is a batch whose values are not plain Python values of the column's type
(``RowProgram.columns`` returns None).
tests/test_serve_rows.py checks the row forms against the lowerings bit for bit, on awkward values
too, and tests/test_serve.py both paths against the compiled shards for every op.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from shardsmith.backends.cpu import compiled
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
        self.scalar_checks = [(name, (kinds, bounds or (0, 0))) for name, (kinds, bounds) in self.checks.items()] \
            if all(self.checks.values()) else []
        self.vocabs: dict = {}  # (step key, column): {value: id} (None: NULL_ID)
        self.lookups: dict = {}  # step key: ([(column, its vocabs dict)], [output column])
        self.plans: dict = {}  # id(fused group): (lowering.fused_plan, compiled.chain_plan)
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
            pos = {v: i + FIRST_ID for i, v in enumerate(vocab["value"].to_pylist())}
            pos[None] = NULL_ID  # a null is NULL_ID whatever the vocabulary holds
            self.vocabs[(step.key, c)] = pos
        return True

    def columns(self, batch: dict) -> tuple[dict, int] | None:
        """A dict of scalars (one row) or of lists as {column: list of values} and the row count,
        or None when a value is not a plain one of its column's type or the lists differ in
        length (the caller then converts the batch with Arrow, which reports what is wrong)."""
        one = not any(isinstance(v, ARRAYISH) for v in batch.values())  # as serve.py's Arrow path reads it
        cols = {}
        if one and self.scalar_checks:  # a request's row: each value checked in place
            for name, (kinds, (lo, hi)) in self.scalar_checks:
                v = batch.get(name, _MISSING)
                k = type(v)
                if k not in kinds or (k is int and not lo <= v <= hi):
                    return None
                cols[name] = [v]
            return cols, 1
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
            plans = self.plans.get(id(group))
            if plans is None:
                compiled_plan = compiled.chain_plan(node, group, self.states) if self.be.kernels != "numpy" else None
                plans = self.plans[id(group)] = (fused_plan(node, group, self.states), compiled_plan)
            src = frame.float_block(group.srcs)
            outs = compiled.fused_block(self.be.kernels, plans[1], _as_block(src)) if plans[1] is not None else None
            if outs is None:
                outs = fused_values(node, group, src, frame.n, self.states, plans[0])
            frame.put_block(group.outs, outs, group.chains[0].dtypes[-1])

    def _categorify(self, step, frame: _Row) -> None:
        lookup = self.lookups.get(step.key)
        if lookup is None:
            pairs = step.op.pairs()
            lookup = self.lookups[step.key] = ([(c, self.vocabs[(step.key, c)]) for c, _ in pairs],
                                               [o for _, o in pairs])
        pairs, outs = lookup
        values = frame.values
        if frame.n == 1:
            ids = [pos.get(values(c)[0], OOV_ID) for c, pos in pairs]
        else:
            ids = [[pos.get(v, OOV_ID) for v in values(c)] for c, pos in pairs]
        frame.put_block(outs, np.array(ids, dtype=np.int32).reshape(len(pairs), frame.n), pa.int32())

    def _hashbucket(self, step, frame: _Row) -> None:
        op = step.op
        for c, o in op.pairs():
            frame.put(o, xx.to_buckets(self._hash(frame, c, op.seed), op.num_buckets))

    def _hashedcross(self, step, frame: _Row) -> None:
        op = step.op
        h = self._hash(frame, op.cols[0], op.seed)
        for c in op.cols[1:]:
            h = self._hash(frame, c, h)
        frame.put(op.output(), xx.to_buckets(h, op.num_buckets))

    def _hash(self, frame: _Row, name: str, seed) -> np.ndarray:
        """The shardsmith hash of each value of column ``name`` (``seed`` an int or one per row):
        a value at a time where the column holds plain values (kernels/xxhash64.py's one-value
        forms: a microsecond, where an array call costs tens), else the backend's hash of the
        Arrow column."""
        try:
            values, hash_one = frame.hashable(name)
        except UnicodeEncodeError:  # a lone surrogate: Arrow's conversion says what is wrong
            hash_one = None
        if hash_one is None:
            return self.be.hash(frame.arrow(name), seed)
        seeds = [int(seed)] * frame.n if np.ndim(seed) == 0 else seed.tolist()
        return np.array([hash_one(v, s) for v, s in zip(values, seeds)], dtype=np.uint64)

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

    def hashable(self, name: str) -> tuple[list, object]:
        """The column's values and the scalar hash that takes them as the lowerings' hash takes
        the Arrow column (kernels/xxhash64.py), or (None, None) for a form without one."""
        v, t = self.cols[name], self.types[name]
        if type(v) is tuple and not isinstance(t, str) and pa.types.is_integer(t):
            v = v[0].values[v[1]].tolist()  # ids: never null
        elif isinstance(v, np.ndarray) and v.dtype.kind in "iu":
            v = v.tolist()
        elif type(v) is not list or isinstance(t, str):
            return None, None
        if pa.types.is_integer(t):
            return v, xx.hash_int
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return [None if x is None else x.encode() for x in v], xx.hash_bytes
        if t == pa.float64():
            return [None if x is None else float(x) for x in v], xx.hash_float
        if t == pa.float32():  # as Arrow stores a Python value in a float32 column: a C cast
            with np.errstate(over="ignore"):
                return [None if x is None else float(np.float32(x)) for x in v], xx.hash_float
        return None, None

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
        arrays, n = [], self.n
        for name, want in zip(names, types):
            v = self.cols[name]
            if type(v) is tuple:  # the commonest form: a slice of a block's one Arrow array
                block, i = v
                a, have = block.array().slice(i * n, n), block.arrow_type
            else:
                a = self.arrow(name)
                have = a.type
            if want is not None and have is not want and have != want:
                a = a.cast(want)
            arrays.append(a)
        return pa.Table.from_arrays(arrays, names=names)


class _Block:
    """Columns made together, as a (columns, rows) NumPy array: a fused group's results (``dtype``
    a dtype name, NaN for missing) or ids (an Arrow type). Made into one Arrow array, by the
    conversion the lowerings use, whose slices are the columns: one conversion, not one each."""

    def __init__(self, values: np.ndarray, dtype):
        self.values, self.dtype, self.flat = values, dtype, None
        self.arrow_type = ARROW_TYPES[dtype] if isinstance(dtype, str) else dtype

    def array(self) -> pa.Array:
        if self.flat is None:
            flat = self.values.reshape(-1)
            self.flat = from_float(flat, self.dtype) if isinstance(self.dtype, str) else pa.array(flat, type=self.dtype)
        return self.flat

    def column(self, i: int, n: int) -> pa.Array:
        return self.array().slice(i * n, n)


def _as_block(src) -> np.ndarray:
    """``_Row.float_block``'s values as one (columns, rows) array (float64 where they were arrays
    of several types: every value reads the same)."""
    return src if isinstance(src, np.ndarray) else np.array(src, dtype=np.float64)


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
