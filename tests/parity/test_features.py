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


# --- splits ----------------------------------------------------------------------------------------------
@pytest.fixture
def events():
    rng = np.random.default_rng(11)
    n = 3000
    seconds = rng.integers(1_700_000_000, 1_700_000_000 + 90 * 86_400, n)
    return pa.table({"id": pa.array(np.arange(n)),
                     "ts": pa.array(seconds * 1000, mask=rng.random(n) < 0.05).view(pa.timestamp("ms")),
                     "day": pa.array((seconds // 86_400).astype(np.int32)).view(pa.date32()),
                     "score": pa.array(rng.normal(0, 1, n), mask=rng.random(n) < 0.05),
                     "region": pa.array(rng.choice(["eu", "us", "apac", "latam"], n), mask=rng.random(n) < 0.05)})


CUTS = ["2023-12-01", "2024-01-01T12:00:00"]


def _time_split(ts_micros, cuts_micros):
    return None if ts_micros is None else sum(ts_micros >= c for c in cuts_micros)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_time_split_by_timestamp_in_any_unit(tmp_path, backend, events, unit):
    """A time split and a hash split by a timestamp key give the same rows whatever its stored unit."""
    from shardsmith.ir.expr_types import time_literal

    ms = events["ts"].cast(pa.int64())
    scale = {"s": (1, 1000), "ms": (1, 1), "us": (1000, 1), "ns": (10**6, 1)}[unit]
    raw = pa.compute.divide(pa.compute.multiply(ms, scale[0]), scale[1])
    table = events.set_column(1, "ts", raw.cast(pa.int64()).combine_chunks().view(pa.timestamp(unit)))
    split = {"by": "time", "key": "ts", "cuts": CUTS, "default": "valid", "fit_on": "train"}
    got, manifest, _ = compile_table(tmp_path, table, [], backend, split=split, files=3, name=f"t{unit}")
    micros = [None if v is None else (v // 1000 * 1000 if unit == "s" else v) * 1000 for v in ms.to_pylist()]
    cuts = [time_literal(c, "timestamp") for c in CUTS]
    want = [_time_split(m, cuts) for m in micros]
    for i, name in enumerate(["train", "valid", "test"]):
        ids = [k for k, w in enumerate(want) if (w if w is not None else 1) == i]
        assert _col(got[name], "id") == ids, name
    hashed = {"key": "ts", "seed": 3, "fractions": {"a": 0.5, "b": 0.5}, "fit_on": None}
    got, _, _ = compile_table(tmp_path, table, [], backend, split=hashed, name=f"h{unit}")
    want_a = [k for k, v in enumerate(micros) if (parity._xxh(v, 3) >> 11) < 2**52]
    assert _col(got["a"], "id") == want_a


def test_time_split_by_date_and_by_number(tmp_path, backend, events):
    split = {"by": "time", "key": "day", "cuts": ["2023-11-20"], "names": ["early", "late"], "fit_on": "early"}
    got, _, _ = compile_table(tmp_path, events, [], backend, split=split, name="bydate")
    cut = (datetime.date(2023, 11, 20) - datetime.date(1970, 1, 1)).days
    days = [(d - datetime.date(1970, 1, 1)).days for d in _col(events, "day")]
    assert _col(got["late"], "id") == [k for k, d in enumerate(days) if d >= cut]
    split = {"by": "time", "key": "score", "cuts": [-0.5, 0.5], "default": "test", "fit_on": None}
    got, _, _ = compile_table(tmp_path, events, [], backend, split=split, name="bynum")
    scores = _col(events, "score")
    assert _col(got["valid"], "id") == [k for k, s in enumerate(scores) if s is not None and -0.5 <= s < 0.5]
    assert _col(got["test"], "id") == [k for k, s in enumerate(scores) if s is None or s >= 0.5]


def test_column_split(tmp_path, backend, events):
    split = {"by": "column", "key": "region", "values": {"train": ["eu", "us"], "valid": ["apac"]},
             "default": "valid", "fit_on": "train"}
    got, manifest, _ = compile_table(tmp_path, events, [{"op": "normalize", "cols": ["score"]}], backend,
                                     split=split, name="bycol", files=2)
    regions = _col(events, "region")
    assert _col(got["train"], "id") == [k for k, r in enumerate(regions) if r in ("eu", "us")]
    assert _col(got["valid"], "id") == [k for k, r in enumerate(regions) if r not in ("eu", "us")]
    assert manifest["rows"]["out"] == events.num_rows


def test_a_null_key_without_a_default_names_the_row(tmp_path, backend, events):
    from shardsmith.errors import InputError

    split = {"by": "time", "key": "ts", "cuts": CUTS, "fit_on": None}
    first_null = _col(events, "ts").index(None)
    with pytest.raises(InputError, match=rf"split.key 'ts' is null in row {first_null}; set split.default"):
        compile_table(tmp_path, events, [], backend, split=split, name="nulls")
    split = {"by": "column", "key": "region", "values": {"a": ["eu"], "b": ["us", "apac"]}, "fit_on": None}
    first = next(k for k, r in enumerate(_col(events, "region")) if r == "latam")
    first = min(first, _col(events, "region").index(None))
    with pytest.raises(InputError, match=rf"split.key 'region' is .* in row {first}"):
        compile_table(tmp_path, events, [], backend, split=split, name="unlisted")
    filtered = [{"op": "filter", "expr": "not_null(region) and region != 'latam'"}]  # rows filtered out need no split
    got, _, _ = compile_table(tmp_path, events, filtered, backend, split=split, name="filtered")
    assert got["a"].num_rows + got["b"].num_rows == sum(r in ("eu", "us", "apac") for r in _col(events, "region"))


# --- tables and join ------------------------------------------------------------------------------------
def _write(path, table):
    import pyarrow.parquet as pq

    pq.write_table(table, path, row_group_size=200)
    return str(path)


@pytest.fixture
def users(tmp_path):
    rng = np.random.default_rng(3)
    n = 400
    ids = rng.permutation(np.arange(0, 2 * n, 2))  # even ids only: odd ones never match
    return pa.table({"uid": pa.array(ids, pa.int32()), "site": pa.array(rng.choice(["a", "b", "c"], n)),
                     "age": pa.array(rng.integers(18, 90, n).astype(np.int16), mask=rng.random(n) < 0.1),
                     "since": pa.array(rng.integers(0, 2 * 10**9, n) * 1000).view(pa.timestamp("ms")),
                     "score": pa.array(rng.normal(0, 1, n))})


@pytest.fixture
def clicks():
    rng = np.random.default_rng(4)
    n = 5000
    return pa.table({"id": pa.array(np.arange(n)), "user": pa.array(rng.integers(0, 820, n), mask=rng.random(n) < 0.05),
                     "site": pa.array(rng.choice(["a", "b", "c", "d"], n)), "x": pa.array(rng.normal(0, 1, n))})


def _by_key(table, keys):
    out = {}
    for r in table.to_pylist():
        out.setdefault(tuple(r[k] for k in keys), r)
    return out


@pytest.mark.parametrize("how", ["left", "inner"])
def test_join(tmp_path, backend, users, clicks, how):
    side = _write(tmp_path / "users.parquet", users)
    graph = [{"op": "join", "table": "users", "on": {"user": "uid", "site": "site"}, "how": how,
              "cols": ["age", "since", "score"], "prefix": "u_"},
             {"op": "filter", "expr": "x > -1.5"}]
    got, manifest, _ = compile_table(tmp_path, clicks, graph, backend, name=f"j{how}", files=3,
                                     tables={"users": {"paths": [side]}})
    lookup = _by_key(users, ["uid", "site"])
    want = []
    for r in clicks.to_pylist():
        match = lookup.get((r["user"], r["site"])) if r["user"] is not None else None
        if r["x"] > -1.5 and (match is not None or how == "left"):
            want.append((r["id"], *(match[c] if match else None for c in ("age", "since", "score"))))
    t = got["train"]
    assert list(zip(*(_col(t, c) for c in ("id", "u_age", "u_since", "u_score")))) == want  # input order kept
    assert t.schema.field("u_age").type == pa.int16() and t.schema.field("u_since").type == pa.timestamp("ms")
    dropped = sum(1 for r in clicks.to_pylist() if r["x"] <= -1.5)
    inner = clicks.num_rows - dropped - len(want)
    expected = {"graph[1]": dropped, **({"graph[0]": inner} if how == "inner" else {})}
    assert manifest["filtered_by"] == expected and manifest["rows"]["filtered"] == dropped + inner
    assert manifest["tables"]["users"][0]["path"] == side and manifest["tables"]["users"][0]["rows"] == 400


def test_join_keys_by_value_across_types_and_units(tmp_path, backend):
    """int8 against int64 keys, timestamp[s] against [ns] keys, dates: matched by value."""
    rng = np.random.default_rng(8)
    n = 1000
    side = pa.table({"k": pa.array(np.arange(100), pa.int64()),
                     "t": pa.array(np.arange(100) * 10**9 * 3600).view(pa.timestamp("ns")),
                     "d": pa.array(np.arange(100, dtype=np.int32)).view(pa.date32()),
                     "v": pa.array([f"v{i}" for i in range(100)])})
    main = pa.table({"k": pa.array(rng.integers(0, 120, n).astype(np.int8)),
                     "t": pa.array(rng.integers(0, 100, n) * 3600).view(pa.timestamp("s")),
                     "d": pa.array(rng.integers(0, 120, n).astype(np.int32)).view(pa.date32())})
    path = _write(tmp_path / "side.parquet", side)
    graph = [{"op": "join", "table": "s", "on": ["k"], "cols": ["v"], "prefix": "by_k_"},
             {"op": "join", "table": "s", "on": ["t"], "cols": ["v"], "prefix": "by_t_"},
             {"op": "join", "table": "s", "on": ["d"], "cols": ["v"], "prefix": "by_d_"}]
    got, _, _ = compile_table(tmp_path, main, graph, backend, tables={"s": {"paths": [path]}})
    t = got["train"]
    assert _col(t, "by_k_v") == [f"v{k}" if k < 100 else None for k in _col(main, "k")]
    hours = [int(v.timestamp()) // 3600 for v in _col(main, "t")]
    assert _col(t, "by_t_v") == [f"v{h}" for h in hours]
    days = [(v - datetime.date(1970, 1, 1)).days for v in _col(main, "d")]
    assert _col(t, "by_d_v") == [f"v{d}" if d < 100 else None for d in days]


def test_join_duplicates(tmp_path, backend, users, clicks):
    from shardsmith.errors import InputError

    dup = pa.concat_tables([users, users.slice(5, 1).set_column(2, "age", pa.array([None], pa.int16()))])
    side = _write(tmp_path / "dup.parquet", dup)
    graph = [{"op": "join", "table": "users", "on": {"user": "uid"}, "cols": ["age"]}]
    uid = users["uid"][5].as_py()
    with pytest.raises(InputError, match=rf"table 'users' has 2 rows with uid = {uid}: graph\[0\] needs one row per "
                                         r"key \(set on_duplicate: first"):
        compile_table(tmp_path, clicks, graph, backend, tables={"users": {"paths": [side]}}, name="dup")
    graph[0]["on_duplicate"] = "first"
    got, _, _ = compile_table(tmp_path, clicks, graph, backend, tables={"users": {"paths": [side]}}, name="first")
    ages = dict(zip(_col(users, "uid"), _col(users, "age")))
    assert _col(got["train"], "age") == [ages.get(u) for u in _col(clicks, "user")]


# --- fitted per-key features ------------------------------------------------------------------------------
FOLD_SALT = 0x7F4A7C159E3779B9


@pytest.fixture
def labelled():
    rng = np.random.default_rng(21)
    n = 4000
    key = rng.integers(0, 60, n) ** 2  # skewed
    y = (rng.random(n) < 0.2 + 0.006 * (key % 100)).astype(np.int8)
    amount = np.round(rng.exponential(20, n), 2)
    amount[rng.random(n) < 0.05] = np.nan
    return pa.table({"id": pa.array(np.arange(n)), "user": pa.array(key.astype(np.int32), mask=rng.random(n) < 0.03),
                     "city": pa.array(rng.choice(["x", "y", "z", "w"], n)),
                     "part": pa.array(rng.choice(["a", "a", "a", "b"], n)),
                     "y": pa.array(y), "amount": pa.array(amount, mask=rng.random(n) < 0.03)})


SPLIT_BY_PART = {"by": "column", "key": "part", "values": {"train": ["a"], "valid": ["b"]}, "fit_on": "train"}


def _folds(files_rows, seed, folds):
    """Each row's fold: XXH64 of its row number in its file under a seed from the file's name."""
    import xxhash

    out = []
    for name, rows in files_rows:
        fseed = xxhash.xxh64_intdigest(name.encode(), seed ^ FOLD_SALT)
        out += [xxhash.xxh64_intdigest(r.to_bytes(8, "little"), fseed) % folds for r in range(rows)]
    return out


def _file_rows(n, files):
    bounds = np.linspace(0, n, files + 1).astype(int)
    return [(f"part-{i}.parquet", int(bounds[i + 1] - bounds[i])) for i in range(files)]


def test_target_encode(tmp_path, backend, labelled):
    folds, smoothing, seed = 4, 10.0, 7
    graph = [{"op": "target_encode", "cols": ["user", "city"], "target": "y", "smoothing": smoothing, "folds": folds,
              "seed": seed}]
    got, manifest, _ = compile_table(tmp_path, labelled, graph, backend, split=SPLIT_BY_PART, files=3)
    rows = labelled.to_pylist()
    fold = _folds(_file_rows(len(rows), 3), seed, folds)
    for col in ("user", "city"):
        fit = [(r[col], r["y"], f) for r, f in zip(rows, fold) if r["part"] == "a" and r[col] is not None]
        n_all, s_all = len(fit), sum(y for _, y, _ in fit)
        prior = s_all / n_all
        stats = {}
        for k, y, f in fit:
            st = stats.setdefault(k, [0, 0, [0] * folds, [0] * folds])
            st[0] += 1
            st[1] += y
            st[2][f] += 1
            st[3][f] += y
        fold_n = [sum(1 for _, _, f in fit if f == g) for g in range(folds)]
        fold_s = [sum(y for _, y, f in fit if f == g) for g in range(folds)]
        want = []
        for r, f in zip(rows, fold):
            st = stats.get(r[col]) if r[col] is not None else None
            if r["part"] == "a":
                p = (s_all - fold_s[f]) / (n_all - fold_n[f])
                want.append(p if st is None else (st[1] - st[3][f] + smoothing * p) / (st[0] - st[2][f] + smoothing))
            else:
                want.append(prior if st is None else (st[1] + smoothing * prior) / (st[0] + smoothing))
        have = _col(got["train"], f"{col}_te") + _col(got["valid"], f"{col}_te")
        order = [i for i, r in enumerate(rows) if r["part"] == "a"]
        order += [i for i, r in enumerate(rows) if r["part"] != "a"]
        for i, h in zip(order, have):
            assert math.isclose(h, want[i], rel_tol=1e-6), (col, i, h, want[i])
    assert {c["name"]: c["dtype"] for c in manifest["schema"]}["user_te"] == "float32"


def test_groupby_features(tmp_path, backend, labelled):
    graph = [{"op": "groupby_features", "keys": ["user", "city"], "cols": ["amount", "y"],
              "stats": ["count", "sum", "mean", "std", "min", "max"], "prefix": "uc_"}]
    got, _, _ = compile_table(tmp_path, labelled, graph, backend, split=SPLIT_BY_PART, files=2)
    rows = labelled.to_pylist()
    groups = {}
    for r in rows:
        if r["part"] == "a" and r["user"] is not None:
            groups.setdefault((r["user"], r["city"]), []).append(r)
    out = pa.concat_tables([got["train"], got["valid"]])
    order = [r for r in rows if r["part"] == "a"] + [r for r in rows if r["part"] != "a"]
    for r, have in zip(order, out.to_pylist()):
        g = groups.get((r["user"], r["city"])) if r["user"] is not None else None
        assert have["uc_count"] == (len(g) if g else None)
        for c in ("amount", "y"):
            xs = [v[c] for v in g or [] if v[c] is not None and not math.isnan(v[c])]
            if not xs:
                assert all(have[f"uc_{c}_{s}"] is None for s in ("sum", "mean", "std", "min", "max"))
                continue
            mean = sum(xs) / len(xs)
            want = {"sum": sum(xs), "mean": mean, "std": math.sqrt(max(sum(x * x for x in xs) / len(xs) - mean**2, 0)),
                    "min": min(xs), "max": max(xs)}
            for s, w in want.items():
                assert math.isclose(have[f"uc_{c}_{s}"], w, rel_tol=1e-6, abs_tol=1e-4), (c, s, have, w)


def test_lag_whatever_the_input_order(tmp_path, backend):
    """Rows in shuffled time order across files and partitions: each row's previous rows of its key."""
    rng = np.random.default_rng(31)
    n = 3000
    ts = rng.permutation(n) * 60 + rng.integers(0, 3, n) * 60  # some ties, broken by input order
    table = pa.table({"id": pa.array(np.arange(n)), "user": pa.array(rng.integers(0, 40, n), mask=rng.random(n) < 0.02),
                      "ts": pa.array(ts * 1000, mask=rng.random(n) < 0.02).view(pa.timestamp("ms")),
                      "price": pa.array(rng.normal(10, 3, n).round(2), mask=rng.random(n) < 0.05),
                      "qty": pa.array(rng.integers(1, 9, n).astype(np.int16)),
                      "tag": pa.array(rng.choice(["p", "q"], n))})
    graph = [{"op": "lag", "keys": ["user"], "order_by": "ts", "cols": ["price", "qty", "ts"], "shifts": [1, 3],
              "output": "both"}, {"op": "lag", "keys": ["user"], "order_by": "ts", "cols": ["tag"], "output": "value"}]
    got, manifest, _ = compile_table(tmp_path, table, graph, backend, files=3, split={
        "by": "column", "key": "tag", "values": {"train": ["p"], "test": ["q"]}, "fit_on": "train"})
    rows = table.to_pylist()
    seqs = {}
    for i, r in enumerate(rows):
        if r["user"] is not None and r["ts"] is not None:
            seqs.setdefault(r["user"], []).append(i)
    prev = {}
    for ids in seqs.values():
        ids.sort(key=lambda i: (rows[i]["ts"], i))  # one file per third of the rows: input order is i
        for pos, i in enumerate(ids):
            prev[i] = ids[:pos]
    out = {r["id"]: r for t in got.values() for r in t.to_pylist()}
    for i, r in enumerate(rows):
        have = out[i]
        for k in (1, 3):
            p = prev.get(i, [])
            e = rows[p[-k]] if len(p) >= k else None
            assert have[f"tag_lag{k}" if k == 1 else "price_lag3"] == (
                (e["tag"] if k == 1 else e["price"]) if e else None)
            for c in ("price", "qty", "ts"):
                want = None
                if e is not None and r[c] is not None and e[c] is not None:
                    want = (r[c] - e[c]).total_seconds() if c == "ts" else r[c] - e[c]
                h = have[f"{c}_diff{k}"]
                assert (h is None and want is None) or math.isclose(h, want, abs_tol=1e-9), (i, c, k, h, want)
    schema = {c["name"]: c["dtype"] for c in manifest["schema"]}
    assert (schema["qty_diff1"], schema["ts_diff1"], schema["ts_lag1"], schema["tag_lag1"]) == \
        ("int64", "float64", "timestamp", "string")


def test_fitted_features_do_not_depend_on_partitioning(tmp_path, backend, labelled, users):
    """One row group per partition against one partition per file: the same shards, byte for byte
    (one writer, Arrow's, whatever the engine)."""
    side = _write(tmp_path / "users.parquet", users.rename_columns(["user", "site", "age", "since", "score"]))
    graph = [{"op": "join", "table": "u", "on": ["user"], "cols": ["age", "score"]},
             {"op": "target_encode", "cols": ["user", "city"], "target": "y", "folds": 3},
             {"op": "groupby_features", "keys": ["city"], "cols": ["amount", "score"],
              "stats": ["count", "mean", "std"]},
             {"op": "derive", "out": "t", "expr": "id * 60"},
             {"op": "lag", "keys": ["user"], "order_by": "t", "cols": ["amount"], "shifts": [1, 2]},
             {"op": "categorify", "cols": ["city"]}]
    shas, partitions = [], []
    runs = [(backend, "64MB"), (backend, "2KB")] + ([("cpu", "64MB")] if backend != "cpu" else [])
    for engine, size in runs:  # and on another engine, the CPU engine's bytes
        _, manifest, _ = compile_table(tmp_path, labelled, graph, engine, split=SPLIT_BY_PART, files=2,
                                       tables={"u": {"paths": [side]}}, name=f"p{size}", partition_bytes=size,
                                       writer="arrow")
        shas.append([(s["path"], s["sha256"]) for split in manifest["splits"].values() for s in split["shards"]])
        partitions.append(manifest["plan"]["partitions"])
    assert all(s == shas[0] for s in shas)
    assert partitions[:2] == [2, 8]  # 4,000 rows in 2 files of 4 row groups


# --- the events demo pipeline ---------------------------------------------------------------------------
def test_events_pipeline_matches_the_cpu_engine(tmp_path, backend):
    """configs/pipeline/events.yaml (every op of issue 11, named steps, a time split) on the engine
    under test: the same shard bytes as the CPU engine (with the same writer, Arrow's)."""
    from shardsmith.compiler.config import compose
    from shardsmith.demo import generate_events
    from shardsmith.runtime import compile_dataset

    generate_events(5000, str(tmp_path / "ev"), files=2)
    shas = []
    for engine in dict.fromkeys(("cpu", backend)):
        cfg = compose(["pipeline=events", f"source.paths=[{tmp_path}/ev/events/*.parquet]",
                       f"tables.users.paths=[{tmp_path}/ev/users/*.parquet]",
                       f"tables.items.paths=[{tmp_path}/ev/items/*.parquet]", f"output.dir={tmp_path}/out-{engine}",
                       f"engine.kind={engine}", "engine.cluster=inprocess", "engine.partition_bytes=64KB",
                       "profiling.enabled=false", "output.writer=arrow"])
        manifest = compile_dataset(cfg, log=lambda *a: None).manifest
        shas.append([(s["path"], s["sha256"]) for split in manifest["splits"].values() for s in split["shards"]])
    assert shas[-1] == shas[0] and manifest["plan"]["partitions"] == 2
