"""A naive, row-at-a-time reference of the expression language's meaning (shardsmith/ir/expr.py),
in plain Python: the engines' evaluator (backends/evaluate.py) must give the same values.

Values: None (null), bool, int (kept in int64 by wrapping), float (Python floats are IEEE doubles,
so + - * / are exactly rounded as on the engines), str, and ("date", days) / ("ts", micros)."""

from __future__ import annotations

import datetime
import math

import numpy as np
import pyarrow as pa

from shardsmith.ir.expr import Col, Lit
from shardsmith.ir.expr_types import infer, time_literal

SCHEMA = None  # the schema the expressions are typed against (set by the tests)

EPOCH = datetime.date(1970, 1, 1)


def wrap(v: int) -> int:
    return (v + 2**63) % 2**64 - 2**63


def is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _num(v):
    return v[1] if isinstance(v, tuple) else v


def evaluate(node, row: dict):
    if isinstance(node, Col):
        return row[node.name]
    if isinstance(node, Lit):
        return node.value
    fn, args = node.fn, node.args
    if fn in ("and", "or"):
        out = evaluate(args[0], row)
        for a in args[1:]:
            out = _kleene(fn, out, evaluate(a, row))
        return out
    if fn == "is_in":
        return _is_in(evaluate(args[0], row), args[1])
    vals = [evaluate(a, row) for a in args]
    if fn in ("add", "sub", "mul", "div", "floordiv", "mod"):
        out = vals[0]
        for b in vals[1:]:
            out = _arith(fn, out, b)
        return out
    if fn in ("eq", "ne", "lt", "le", "gt", "ge"):
        return _compare(fn, *vals)
    return FUNCS[fn](node, vals)


def _kleene(fn, a, b):
    if fn == "and":
        if a is False or b is False:
            return False
        return None if a is None or b is None else True
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def _arith(fn, a, b):
    if a is None or b is None:
        return None
    if fn == "div" or isinstance(a, float) or isinstance(b, float):
        a, b = float(a), float(b)
        if fn == "div":
            return _fdiv(a, b)
        if fn == "floordiv":
            return _int_part(math.floor, _fdiv(a, b))
        if fn == "mod":
            if b == 0 or math.isinf(a) or math.isnan(a) or math.isnan(b):
                return math.nan
            r = math.fmod(a, b)
            return r + b if r != 0 and (r < 0) != (b < 0) else r
        return {"add": a + b, "sub": a - b, "mul": a * b}[fn]
    if fn in ("floordiv", "mod"):
        if b == 0:
            return None
        q = a // b
        return wrap(q) if fn == "floordiv" else a - b * q
    return wrap({"add": a + b, "sub": a - b, "mul": a * b}[fn])


def _fdiv(a, b):
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _to_time(v, other):
    """Both operands of a time comparison as comparable ints."""
    kind = "ts" if "ts" in (v[0] if isinstance(v, tuple) else None, other[0] if isinstance(other, tuple) else None) \
        else "date"
    if isinstance(v, str):
        return time_literal(v, "timestamp" if kind == "ts" else "date")
    return v[1] * 86_400_000_000 if kind == "ts" and v[0] == "date" else v[1]


def _compare(fn, a, b):
    if a is None or b is None:
        return None
    if isinstance(a, tuple) or isinstance(b, tuple):
        a, b = _to_time(a, b), _to_time(b, a)
    elif isinstance(a, str):
        a, b = a.encode(), b.encode()
    return {"eq": a == b, "ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[fn]


def _is_in(x, values):
    if is_missing(x):
        return None
    if isinstance(x, tuple):
        return x[1] in [time_literal(v, "timestamp" if x[0] == "ts" else "date") for v in values]
    if isinstance(x, bool):
        return any(isinstance(v, bool) and v == x for v in values)
    return any(x == v for v in values)


def _unify(vals, nodes=()):
    kinds = {type(v) for v in vals if v is not None}
    if any(infer(n, SCHEMA, "ref") == "float" for n in nodes):
        kinds.add(float)
    if float in kinds:
        return [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in vals]
    tuples = [v for v in vals if isinstance(v, tuple)]
    static = {infer(n, SCHEMA, "ref") for n in nodes}
    if tuples or static & {"date", "timestamp"}:
        kind = "ts" if any(t[0] == "ts" for t in tuples) or "timestamp" in static else "date"
        out = []
        for v in vals:
            if isinstance(v, str):
                v = (kind, time_literal(v, "timestamp" if kind == "ts" else "date"))
            elif isinstance(v, tuple) and v[0] != kind:
                v = (kind, v[1] * 86_400_000_000)
            out.append(v)
        return out
    return vals


def _if_else(node, vals):
    c, a, b = vals[0], *_unify(vals[1:], node.args[1:])
    if c is None:
        return None
    return a if c else b


def _coalesce(node, vals):
    for v in _unify(vals, node.args):
        if not is_missing(v):
            return v
    return None


def _least(node, vals):
    present = [v for v in _unify(vals, node.args) if not is_missing(v)]
    if not present:
        return None
    key = (lambda v: v[1]) if isinstance(present[0], tuple) else (lambda v: v)
    return (min if node.fn == "least" else max)(present, key=key)


def _round(node, vals):
    x = vals[0]
    n = node.args[1].value if len(node.args) > 1 else 0
    if x is None:
        return None
    if isinstance(x, float):
        if n == 0:
            return _rint(x)
        s = 10.0 ** abs(n)
        return _rint(x * s) / s if n > 0 else _rint(x / s) * s
    if n >= 0:
        return x
    m = 10 ** (-n)
    q, r = divmod(x, m)
    up = 2 * r > m or (2 * r == m and q % 2)
    return wrap((q + up) * m)


def _rint(x):
    return _int_part(round, x)  # Python's round() is half to even


def _int_part(fn, x):
    """floor / ceil / round of a float as IEEE gives it: non-finite values kept, a zero keeps the sign."""
    if not math.isfinite(x):
        return x
    r = float(fn(x))
    return math.copysign(r, x) if r == 0 else r


def _time_part(node, vals):
    v = vals[0]
    if v is None:
        return None
    kind, value = v
    micros = value if kind == "ts" else value * 86_400_000_000
    days, rem = divmod(micros, 86_400_000_000)
    d = EPOCH + datetime.timedelta(days=days)
    return {"year": d.year, "month": d.month, "day": d.day, "hour": rem // 3_600_000_000,
            "minute": rem // 60_000_000 % 60, "day_of_week": d.weekday(),
            "day_of_year": d.timetuple().tm_yday, "epoch_seconds": micros // 1_000_000}[node.fn]


def _simple(s, case):
    """One code point to one, as utf8proc maps them (Python's own is the full mapping: ß -> SS)."""
    special = {"ß": "ẞ"} if case is str.upper else {}
    return "".join(special.get(c) or (m if len(m := case(c)) == 1 else c) for c in s)


def _str(fn):
    def f(node, vals):
        s = vals[0]
        if s is None:
            return None
        params = [a.value for a in node.args[1:]]
        if fn == "substr":
            start = params[0]
            return s[start : start + params[1]] if len(params) > 1 else s[start:]
        return {"lower": lambda: _simple(s, str.lower), "upper": lambda: _simple(s, str.upper),
                "length": lambda: len(s), "starts_with": lambda: s.startswith(params[0]),
                "contains": lambda: params[0] in s}[fn]()
    return f


FUNCS = {
    "not": lambda node, v: None if v[0] is None else not v[0],
    "neg": lambda node, v: None if v[0] is None else (-v[0] if isinstance(v[0], float) else wrap(-v[0])),
    "is_null": lambda node, v: is_missing(v[0]),
    "not_null": lambda node, v: not is_missing(v[0]),
    "abs": lambda node, v: None if v[0] is None else (abs(v[0]) if isinstance(v[0], float) else wrap(abs(v[0]))),
    "floor": lambda node, v: _int_part(math.floor, v[0]) if isinstance(v[0], float) else v[0],
    "ceil": lambda node, v: _int_part(math.ceil, v[0]) if isinstance(v[0], float) else v[0],
    "round": _round, "if_else": _if_else, "coalesce": _coalesce, "least": _least, "greatest": _least,
    **{f: _time_part for f in ("year", "month", "day", "hour", "minute", "day_of_week", "day_of_year",
                               "epoch_seconds")},
    **{f: _str(f) for f in ("lower", "upper", "length", "substr", "starts_with", "contains")},
}


# --- random data and expressions for the tests ------------------------------------------------------
def table(rng, n=300) -> pa.Table:
    def nulls(p=0.15):
        return rng.random(n) < p

    f = rng.normal(0, 4, n).round(2)
    f[rng.random(n) < 0.08] = np.nan
    f[rng.random(n) < 0.03] = -0.0
    ts = rng.integers(-2 * 10**15, 4 * 10**15, n)  # microseconds: 1906 .. 2096
    return pa.table({
        "i8": pa.array(rng.integers(-128, 128, n).astype(np.int8), mask=nulls()),
        "i32": pa.array(rng.integers(-7, 8, n).astype(np.int32), mask=nulls()),
        "i64": pa.array(rng.choice([-(2**63), 2**63 - 1, -1, 0, 3, 10**12], n), mask=nulls()),
        "u8": pa.array(rng.integers(0, 256, n).astype(np.uint8)),
        "f32": pa.array(rng.normal(0, 3, n).astype(np.float32), mask=nulls()),
        "f": pa.array(f, mask=nulls()),
        "b": pa.array(rng.random(n) < 0.5, mask=nulls()),
        "s": pa.array([rng.choice(["", "a", "Ab", "éß", "xyz", "a b", "ÉCOLE"]) for _ in range(n)], mask=nulls()),
        "d": pa.array(rng.integers(-40_000, 60_000, n).astype(np.int32), mask=nulls()).view(pa.date32()),
        "t": pa.array(ts, mask=nulls()).view(pa.timestamp("us")),
        "tn": pa.array(rng.integers(-(2**62), 2**62, n), mask=nulls()).view(pa.timestamp("ns")),
        "ts": pa.array(rng.integers(-(10**10), 10**10, n), mask=nulls()).view(pa.timestamp("s")),
    })


def rows(t: pa.Table) -> list[dict]:
    out = []
    cols = {}
    for name in t.column_names:
        arr = t[name].combine_chunks()
        if pa.types.is_date32(arr.type):
            cols[name] = [None if v is None else ("date", v) for v in arr.cast(pa.int32()).to_pylist()]
        elif pa.types.is_timestamp(arr.type):
            per = {"s": 10**6, "ms": 10**3, "us": 1, "ns": None}[arr.type.unit]
            raw = arr.cast(pa.int64()).to_pylist()
            cols[name] = [None if v is None else ("ts", v // 1000 if per is None else v * per) for v in raw]
        elif pa.types.is_floating(arr.type):
            cols[name] = [None if v is None else float(v) for v in arr.to_pylist()]
        else:
            cols[name] = arr.to_pylist()
    for i in range(t.num_rows):
        out.append({k: v[i] for k, v in cols.items()})
    return out


# --- random expressions ------------------------------------------------------------------------------
NUM = ["i8", "i32", "i64", "u8", "f32", "f", "0", "1", "-3", "2.5", "0.1", "7", "1e300"]


def num_expr(rng, depth=0) -> str:
    r = rng.random()
    if depth < 3 and r < 0.3:
        op = rng.choice(["+", "-", "*", "/", "//", "%"])
        return f"({num_expr(rng, depth + 1)} {op} {num_expr(rng, depth + 1)})"
    if depth < 3 and r < 0.5:
        fn = rng.choice(["abs", "floor", "ceil", "round", "round2", "round-1", "neg", "least", "greatest",
                         "coalesce", "if_else", "part", "length"])
        a = num_expr(rng, depth + 1)
        if fn == "round2":
            return f"round({a}, 2)"
        if fn == "round-1":
            return f"round({a}, -1)"
        if fn == "neg":
            return f"-{a}"
        if fn in ("least", "greatest", "coalesce"):
            return f"{fn}({a}, {num_expr(rng, depth + 1)}, {num_expr(rng, depth + 1)})"
        if fn == "if_else":
            return f"if_else({pred(rng, depth + 1)}, {a}, {num_expr(rng, depth + 1)})"
        if fn == "part":
            part = rng.choice(["year", "month", "day", "day_of_week", "day_of_year", "epoch_seconds"])
            return f"{part}({rng.choice(['d', 't', 'tn', 'ts'])})"
        if fn == "length":
            return rng.choice(["length(s)", "length(substr(s, 1, 2))", "length(upper(s))"])
        return f"{fn}({a})"
    return str(rng.choice(NUM))


def pred(rng, depth=0) -> str:
    r = rng.random()
    if depth < 3 and r < 0.25:
        joiner = rng.choice([" and ", " or "])
        return "(" + joiner.join(pred(rng, depth + 1) for _ in range(int(rng.integers(2, 4)))) + ")"
    if depth < 3 and r < 0.32:
        return f"not {pred(rng, depth + 1)}"
    kind = int(rng.integers(0, 9))
    if kind == 0:
        return f"is_null({rng.choice(['i8', 'f', 's', 'b', 't', 'd'])})"
    if kind == 1:
        return f"s {rng.choice(['==', '!=', '<', '>='])} '{rng.choice(['a', 'Ab', 'éß', ''])}'"
    if kind == 2:
        vals = ", ".join(rng.choice(["1", "-3", "0.1", "2.5", "0", "127"], 3))
        return f"{rng.choice(['i8', 'i32', 'f32', 'f', 'u8'])} {rng.choice(['in', 'not in'])} ({vals})"
    if kind == 3:
        return rng.choice(["starts_with(s, 'a')", "contains(lower(s), 'b')", "b", "b == false",
                           "s in ('a', 'xyz')", "hour(t) >= 12", "minute(tn) < 30"])
    if kind == 4:
        col = rng.choice(['d', 't', 'tn', 'ts'])
        values = ['1970-01-01', '2000-02-29']
        if col != 'd':
            values += ['1999-12-31T23:59:59.5', '2001-01-01T00:00:00Z']
        return f"{col} {rng.choice(['<', '>=', '=='])} '{rng.choice(values)}'"
    if kind == 5:
        return f"{rng.choice(['d', 't'])} < {rng.choice(['tn', 'ts', 'd'])}"
    return f"{num_expr(rng)} {rng.choice(['==', '!=', '<', '<=', '>', '>='])} {num_expr(rng)}"


