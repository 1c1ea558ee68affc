"""The feature ops of issue 11 on every engine (the ``backend`` fixture: cpu always, gpu where usable
or emulated): derive, join, time and column splits, target_encode, groupby_features, lag. Each is
compiled through the real driver and checked value by value against a naive reference written
here (or tests/exprref.py for expressions); integer and categorical outputs must be identical."""

from __future__ import annotations

import datetime
import importlib.util
import io
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

HERE = Path(__file__).resolve().parent


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


parity = _load("_parity_helpers", HERE / "test_parity.py")
ref = _load("_exprref", HERE.parent / "exprref.py")
compile_table = parity.compile_table


def _col(t, name):
    return t[name].to_pylist()


# --- derive --------------------------------------------------------------------------------------------
@pytest.fixture
def mixed():
    rng = np.random.default_rng(5)
    t = ref.table(rng, 1500)
    return t.drop_columns(["tn"])  # cuDF timestamps in ns cannot hold the years this column spans


DERIVED = {
    "mins": ("i32 // 2 * 60 + i32 % 7", None),
    "ratio": ("f / (f32 + 1)", None),
    "ratio32": ("round(f * 3, 1)", "float32"),
    "late": ("if_else(f > 0.5, 1, 0)", "int8"),
    "hour": ("hour(t) * 60 + minute(t)", "int16"),
    "dow": ("day_of_week(d) + day_of_year(ts)", None),
    "name": ("if_else(b, upper(s), substr(s, 1))", None),
    "n": ("length(coalesce(s, 'none')) + greatest(i8, u8, 3)", None),
    "flag": ("starts_with(lower(s), 'a') or contains(s, 'y')", None),
    "when": ("coalesce(d, '2000-01-01')", None),
    "wrap": ("abs(i64) + least(i64, -5) * 2", None),
}


def test_derive(tmp_path, backend, mixed):
    graph = [{"op": "derive", "out": k, "expr": e, **({"dtype": d} if d else {})} for k, (e, d) in DERIVED.items()]
    got, manifest, _ = compile_table(tmp_path, mixed, graph, backend)
    schema = {c["name"]: c for c in manifest["schema"]}
    assert [schema[k]["dtype"] for k in DERIVED] == ["int64", "float64", "float32", "int8", "int16", "int64",
                                                      "string", "int64", "bool", "date", "int64"]
    assert schema["ratio"]["role"] == "continuous" and schema["late"]["role"] == "other"
    ref.SCHEMA = parity_schema = _schema(mixed)
    rows = ref.rows(mixed)
    for name, (text, dtype) in DERIVED.items():
        node = _parse(text)
        want = [_as_dtype(ref.evaluate(node, r), dtype) for r in rows]
        have = _col(got["train"], name)
        if name == "when":
            have = [None if v is None else ("date", (v - datetime.date(1970, 1, 1)).days) for v in have]
        for i, (h, w) in enumerate(zip(have, want)):
            assert h == w or (isinstance(w, float) and h is not None and math.isclose(h, w, rel_tol=1e-7)), \
                f"{name} row {i}: {h!r} != {w!r}"
    assert parity_schema is not None


def _parse(text):
    from shardsmith.ir.expr import parse_expression

    return parse_expression(text, "t")


def _schema(table):
    from shardsmith.inputs.scan import to_schema

    return to_schema(table.schema, {})


def _as_dtype(v, dtype):
    """A reference value as the derived column holds it (NaN written as null; dtype conversions)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if dtype == "float32":
        return float(np.float32(v))
    if dtype and dtype.startswith("int"):
        r = round(v)
        info = np.iinfo(dtype)
        return r if info.min <= r <= info.max else None
    return v


def test_derive_replaces_a_column_and_keeps_its_place(tmp_path, backend):
    table = pa.table({"a": pa.array([1, 2, None], pa.int32()), "d": pa.array([3, None, 5], pa.int32()).cast(
        pa.date32()), "z": pa.array([0.5, 1.5, 2.5])})
    graph = [{"op": "derive", "out": "a", "expr": "coalesce(a, 0) * 10"},
             {"op": "derive", "out": "d", "expr": "year(d) * 0 + day(d)"},
             {"op": "derive", "out": "z", "expr": "z", "dtype": "int32"}]
    got, _, _ = compile_table(tmp_path, table, graph, backend)
    t = got["train"]
    assert t.column_names == ["a", "d", "z"]
    assert _col(t, "a") == [10, 20, 0] and _col(t, "d") == [4, None, 6] and _col(t, "z") == [0, 2, 2]


# --- roles ---------------------------------------------------------------------------------------------
def test_roles_name_derived_columns(tmp_path, backend):
    """roles.label on a derived column: the manifest, the WebDataset layout and the loader follow it."""
    import tarfile

    import pyarrow.parquet as pq

    from shardsmith.compiler.config import from_dict
    from shardsmith.runtime import compile_dataset
    from shardsmith.shards.readers import ShardSource
    from shardsmith.shards.webdataset import sample_layout

    rng = np.random.default_rng(2)
    table = pa.table({"delay": pa.array(rng.normal(10, 20, 500)), "x": pa.array(rng.normal(0, 1, 500))})
    raw = tmp_path / "raw"
    raw.mkdir()
    pq.write_table(table, raw / "a.parquet")
    cfg = from_dict({"name": "roles", "source": {"paths": [str(raw / "a.parquet")]},
                     "graph": [{"op": "derive", "out": "late", "expr": "delay > 15"},
                               {"op": "derive", "out": "w", "expr": "if_else(late, 2.0, 1.0)"},
                               {"op": "rename", "mapping": {"x": "feature"}}],
                     "roles": {"late": "label", "w": "weight", "x": "continuous"},
                     "split": {"fractions": {"train": 1.0}, "fit_on": None},
                     "output": {"dir": str(tmp_path / "out"), "format": ["parquet", "webdataset"], "shard_rows": 1000},
                     "engine": {"kind": backend, "cluster": "inprocess"}})
    manifest = compile_dataset(cfg, log=lambda *a: None).manifest
    roles = {c["name"]: c["role"] for c in manifest["schema"]}
    assert roles == {"delay": "other", "feature": "continuous", "late": "label", "w": "weight"}
    tar = next(s for s in manifest["splits"]["train"]["shards"] if s["format"] == "webdataset")
    with tarfile.open(tmp_path / "out" / tar["path"]) as tf:
        members = tf.getmembers()
        names = [m.name.split(".", 1)[1] for m in members[:6]]
        labels = np.load(io.BytesIO(tf.extractfile(members[0]).read()))
    assert names == ["label.npy", "continuous.npy", "weight.npy", "other.npy", "row.npy", "json"], names
    assert labels.reshape(-1).tolist() == [v > 15 for v in _col(table, "delay")]
    manifest["_dir"] = str(tmp_path / "out")
    layout = sample_layout(ShardSource(manifest, [], []).schema, batched=True)  # how the loader reads the tar
    assert [(m.ext, m.columns) for m in layout][:2] == [("label.npy", ("late",)), ("continuous.npy", ("feature",))]


def test_a_role_for_a_column_that_is_not_there(tmp_path):
    import pyarrow.parquet as pq

    from shardsmith.compiler.config import from_dict
    from shardsmith.errors import ConfigError
    from shardsmith.runtime.driver import prepare

    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "a.parquet")
    cfg = from_dict({"source": {"paths": [str(tmp_path / "a.parquet")]}, "roles": {"lable": "label"},
                     "graph": [{"op": "derive", "out": "label", "expr": "a > 1"}],
                     "output": {"dir": str(tmp_path / "o")}})
    with pytest.raises(ConfigError, match=r"roles.lable: column 'lable' is not an output column \(did you mean "
                                          r"'label'\?\)"):
        prepare(cfg)
