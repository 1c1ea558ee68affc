"""The expression language (ir/expr.py): its parser and type rules (errors name the key and the
column in the text, and never escape as tracebacks), and the engines' evaluator
(backends/evaluate.py through the CPU adapter) against a row-at-a-time Python reference
(tests/exprref.py) on random data and random expressions."""

from __future__ import annotations

import datetime
import importlib.util
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from shardsmith.backends.cpu.expr import ArrowColumns, derive_column, filter_mask
from shardsmith.backends.evaluate import evaluate
from shardsmith.errors import ConfigError
from shardsmith.inputs.scan import to_schema
from shardsmith.ir.expr import MAX_DEPTH, parse_expression, parse_predicate
from shardsmith.ir.expr_types import infer

_spec = importlib.util.spec_from_file_location("exprref", Path(__file__).with_name("exprref.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)


def engine_values(v, n) -> list:
    """The evaluator's Val as Python values per row (None for null; NaN kept)."""
    if v.kind == "string":
        data = v.data if not isinstance(v.data, str) else pa.array([v.data] * n)
        return data.to_pylist()
    if v.kind == "null":
        return [None] * n
    data = np.broadcast_to(np.asarray(v.data), (n,))
    valid = np.ones(n, bool) if v.valid is None else np.broadcast_to(v.valid, (n,))
    conv = {"int": int, "float": float, "bool": bool, "date": lambda x: ("date", int(x)),
            "timestamp": lambda x: ("ts", int(x))}[v.kind]
    return [conv(x) if ok else None for x, ok in zip(data.tolist(), valid)]


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return a == b and type(a) is type(b)


def _checked(text, schema, what="expression"):
    node = parse_expression(text, "t") if what == "expression" else parse_predicate(text, "t")
    return node, infer(node, schema, "t")


@pytest.mark.parametrize("seed", range(12))
def test_random_expressions_match_the_reference(seed):
    rng = np.random.default_rng(seed)
    t = ref.table(rng)
    schema = ref.SCHEMA = to_schema(t.schema, {})
    data = ref.rows(t)
    checked = 0
    for _ in range(50):
        text = ref.num_expr(rng) if rng.random() < 0.5 else ref.pred(rng)
        try:
            node, _ = _checked(text, schema)
        except ConfigError as exc:
            assert "date" in str(exc) or "timestamp" in str(exc) or "date" in text or "is_null" in text, (text, exc)
            continue
        got = engine_values(evaluate(node, ArrowColumns(t)), t.num_rows)
        want = [ref.evaluate(node, r) for r in data]
        for i, (g, w) in enumerate(zip(got, want)):
            assert same(g, w), f"{text}: row {i}: engine {g!r}, reference {w!r} (row {data[i]})"
        checked += 1
    assert checked >= 40


@pytest.mark.parametrize("seed", range(6))
def test_random_predicates_keep_the_reference_rows(seed):
    rng = np.random.default_rng(100 + seed)
    t = ref.table(rng)
    schema = ref.SCHEMA = to_schema(t.schema, {})
    data = ref.rows(t)
    for _ in range(40):
        text = ref.pred(rng)
        node, kind = _checked(text, schema, "predicate")
        assert kind == "bool"
        got = np.flatnonzero(filter_mask(t, node)).tolist()
        assert got == [i for i, r in enumerate(data) if ref.evaluate(node, r) is True], text


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_date_parts_agree_with_python_in_every_unit(unit):
    rng = np.random.default_rng(7)
    per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    lo, hi = (-(2**62), 2**62) if unit == "ns" else (-10**11 * per_second // 10, 10**11 * per_second // 10)
    raw = np.concatenate([rng.integers(lo, hi, 2000), [0, -1, 1, 86_400 * per_second - 1]])
    t = pa.table({"x": pa.array(raw).view(pa.timestamp(unit))})
    for fn in ("year", "month", "day", "hour", "minute", "day_of_week", "day_of_year", "epoch_seconds"):
        v = evaluate(parse_expression(f"{fn}(x)", "t"), ArrowColumns(t))
        for r, got in zip(raw.tolist(), v.data.tolist()):
            micros = r * (10**6 // per_second) if unit != "ns" else r // 1000
            when = datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=micros) \
                if abs(micros) < 2**62 // 1000 * 1000 else None
            if when is None or not 1 <= when.year <= 9999:
                continue
            want = {"year": when.year, "month": when.month, "day": when.day, "hour": when.hour,
                    "minute": when.minute, "day_of_week": when.weekday(),
                    "day_of_year": when.timetuple().tm_yday, "epoch_seconds": micros // 10**6}[fn]
            assert got == want, (fn, unit, r)


def test_a_derived_column_converts_to_its_dtype():
    t = pa.table({"x": pa.array([0.5, 1.5, 2.5, -0.5, None, float("nan"), 1e20, 127.4])})
    node = parse_expression("x", "t")
    assert derive_column(t, node, "int8").to_pylist() == [0, 2, 2, 0, None, None, None, 127]
    assert derive_column(t, node, "float64").to_pylist()[:5] == [0.5, 1.5, 2.5, -0.5, None]
    assert derive_column(t, node, "float64").null_count == 2  # null and NaN are written as null
    assert derive_column(t, parse_expression("x > 1", "t"), "bool").to_pylist() == \
        [False, True, True, False, None, False, True, True]
    d = pa.table({"ts": pa.array([86_400_000_000 * 3 + 5], pa.timestamp("us"))})
    assert derive_column(d, parse_expression("ts", "t"), "timestamp").to_pylist()[0] == \
        datetime.datetime(1970, 1, 4, 0, 0, 0, 5)


# --- parsing and checking ------------------------------------------------------------------------------
SCHEMA = to_schema(pa.schema([("I1", pa.float32()), ("C1", pa.string()), ("t", pa.timestamp("ms")),
                              ("d", pa.date32()), ("i", pa.int8()), ("raw", pa.binary())]), {})


@pytest.mark.parametrize("text, message", [
    ("-'a'", "cannot apply unary - to string 'a' at column 1"),
    ("-1j", "'1j' is not a number (integers and decimals only; no complex numbers) at column 2"),
    ("I1 = 3", "unexpected character '=' (use == to compare) at column 4"),
    ("I1 > ", "unexpected end of the text at column 6"),
    ("foo(I1)", "unknown function foo() (did you mean 'floor'?) at column 1"),
    ("round(I1, 1, 2)", "round() takes 1 or 2 arguments, got 3 at column 1"),
    ("C1 > 3", "cannot compare string with number in (C1 > 3) at column 4"),
    ("hour(d) > 3", "hour() needs a timestamp, got a date: d at column 1"),
    ("t > '2024-13-01'", "cannot read '2024-13-01' as a timestamp"),
    ("i + true > 0", "arithmetic ('+') needs numbers, got a bool: true at column 5"),
    ("C1 == null", "a comparison with null is always null: use is_null() or not_null()"),
    ("I1 in (1, 'a')", "cannot test a number column against 'a'"),
    ("substr(C1, -1) == 'x'", "substr() takes its start as an integer literal >= 0, got -1 at column 12"),
    ("lower(raw) == 'x'", "lower() needs a string column, 'raw' is binary"),
    ("'" + "x" * 100, "unterminated string at column 1 (near 'xxxxxxxxxxxxxxxxxxxxxxx"),
    ("(" * 60 + "I1 > 0" + ")" * 60, f"nests deeper than {MAX_DEPTH} levels"),
    ("not " * 80 + "I1 > 0", f"nests deeper than {MAX_DEPTH} levels"),
    (" + ".join(f"I1 * {k}" if k % 2 else f"I1 - {k}" for k in range(200)) + " > 0", "nests deeper than"),
    ("9223372036854775808 > I1", "the integer 9223372036854775808 does not fit in 64 bits"),
])
def test_bad_expressions_name_the_key_and_the_column(text, message):
    with pytest.raises(ConfigError) as err:
        _checked(text, SCHEMA, "predicate")
    assert str(err.value).startswith("t: ") and message in str(err.value), str(err.value)
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


def test_thousands_of_terms_are_one_node():
    """A 3,000-term predicate (and a 3,000-term sum) parse, check and run without deep recursion."""
    t = pa.table({"I1": pa.array(np.arange(10, dtype=np.float32))})
    schema = to_schema(t.schema, {})
    text = " or ".join(f"I1 == {k}" for k in range(0, 6000, 2))
    node, _ = _checked(text, schema, "predicate")
    assert np.flatnonzero(filter_mask(t, node)).tolist() == [0, 2, 4, 6, 8]
    node, _ = _checked(" + ".join(["I1"] * 3000) + " > 3000", schema, "predicate")
    assert np.flatnonzero(filter_mask(t, node)).tolist() == list(range(2, 10))
    assert _checked("-9223372036854775808 < I1", schema, "predicate")[1] == "bool"


def test_a_3000_term_filter_compiles_and_bad_literals_are_one_line(demo_dir, tmp_path):
    """Issue 9: a 3,000-term filter compiles (pushed into the reader, row groups pruned, and run),
    keeping exactly the rows it selects; ``-'a'`` and ``-1j`` in a filter are one error line, exit 2."""
    import pyarrow.parquet as pq

    from tests.conftest import cli, run_compile

    text = " and ".join(f"I2 != {k}" for k in range(1, 3001))
    res = run_compile(f"{demo_dir}/*.parquet", tmp_path / "out", f"graph=[{{op: filter, expr: '{text}'}}]",
                      "fit.cache=off")
    i2 = pa.concat_tables([pq.read_table(p, columns=["I2"]) for p in sorted(Path(demo_dir).glob("*.parquet"))])["I2"]
    values = i2.to_numpy(zero_copy_only=False).astype(np.float64)  # null as NaN: missing, which filter drops
    kept = int(np.sum(~np.isnan(values) & ~np.isin(values, np.arange(1, 3001))))
    assert 0 < kept < len(values) and res.manifest["rows"]["filtered"] == len(values) - kept
    for bad, what in (("-'a' > 0", "cannot apply unary - to string 'a' at column 1"),
                      ("I1 > -1j", "'1j' is not a number (integers and decimals only; no complex numbers)")):
        proc = cli("plan", f"source.paths=[{demo_dir}/*.parquet]", f"graph=[{{op: filter, expr: \"{bad}\"}}]")
        assert proc.returncode == 2 and proc.stdout == "", proc.stderr
        assert proc.stderr.count("\n") == 1 and what in proc.stderr, proc.stderr
        assert proc.stderr.startswith("error: graph[0].expr: cannot parse predicate: ")
