"""Issue 11's features as users run them, from the command line: the events demo pipeline (every new
op, named steps, a time split), overriding and sweeping a named step, and bad inputs (a missing
table, wrong key types, duplicate keys, expression errors, split keys), each one line and exit 2
with nothing left behind."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shardsmith.demo import generate_events
from tests.conftest import cli


@pytest.fixture(scope="module")
def events(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("events")
    generate_events(6000, str(d), files=2)
    return str(d)


def pipeline(events: str, out, *extra) -> list[str]:
    return ["pipeline=events", f"source.paths=[{events}/events/*.parquet]",
            f"tables.users.paths=[{events}/users/*.parquet]", f"tables.items.paths=[{events}/items/*.parquet]",
            f"output.dir={out}", "engine=inprocess", "profiling.enabled=false", *extra]


def one_line_error(proc, *fragments):
    assert proc.returncode == 2, (proc.args[3:], proc.stdout + proc.stderr)
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]


def test_the_events_pipeline(tmp_path, events):
    out = tmp_path / "out"
    proc = cli("compile", *pipeline(events, out), "graph.cats.freq_threshold=10", f"hydra.run.dir={tmp_path}/h")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    roles = {c["name"]: c["role"] for c in manifest["schema"]}
    assert roles["click"] == "label" and roles["weight"] == "weight" and roles["category"] == "categorical"
    assert manifest["config"]["resolved"]["graph"]["cats"]["freq_threshold"] == 10
    assert set(manifest["tables"]) == {"users", "items"}
    assert list(manifest["filtered_by"]) == ["graph.item"]  # the inner join drops events of unknown items
    assert manifest["rows"]["in"] == 6000 and manifest["rows"]["filtered"] == manifest["filtered_by"]["graph.item"]
    train = pa.concat_tables([pq.read_table(out / s["path"]) for s in manifest["splits"]["train"]["shards"]])
    for col in ("user_id_te", "item_id_te", "user_count", "ts_diff1", "hour", "tenure_days"):
        assert col in train.column_names
    assert all(manifest["splits"][s]["rows"] > 0 for s in ("train", "valid", "test"))


def test_a_named_step_is_swept(tmp_path, events):
    proc = cli("compile", "-m", *pipeline(events, f"{tmp_path}/sweep/${{hydra:job.num}}"), "graph.te.smoothing=1,50",
               f"hydra.sweep.dir={tmp_path}/multirun")
    assert proc.returncode == 0, proc.stderr
    encodings = []
    for k in (0, 1):
        manifest = json.loads((tmp_path / "sweep" / str(k) / "manifest.json").read_text())
        assert manifest["config"]["resolved"]["graph"]["te"]["smoothing"] == [1, 50][k]
        shard = manifest["splits"]["valid"]["shards"][0]["path"]
        encodings.append(pq.read_table(tmp_path / "sweep" / str(k) / shard)["user_id_te"].to_pylist())
    assert encodings[0] != encodings[1]


@pytest.fixture()
def tables(tmp_path, events):
    """Side tables with faults: users with a duplicate id, users keyed by strings, items with float ids."""
    users = pq.read_table(f"{events}/users/users.parquet")
    pq.write_table(pa.concat_tables([users, users.slice(3, 1)]), tmp_path / "dup.parquet")
    pq.write_table(users.set_column(0, "user_id", users["user_id"].cast(pa.string())), tmp_path / "str.parquet")
    items = pq.read_table(f"{events}/items/items.parquet")
    pq.write_table(items.set_column(0, "item_id", items["item_id"].cast(pa.float64())), tmp_path / "float.parquet")
    return tmp_path, int(users["user_id"][3].as_py())


def test_bad_inputs_give_one_line(tmp_path, events, tables):
    d, dup_id = tables
    out = tmp_path / "out"
    plan_cases = [
        (["graph.user.table=people"], ("graph.user.table: unknown table 'people' (declared: users, items)",)),
        ([f"tables.users.paths=[{d}/str.parquet]"],
         ("graph.user.on: key 'user_id' is int64 here but 'user_id' is string in table 'users'",)),
        ([f"tables.items.paths=[{d}/float.parquet]"], ("graph.item.on: key 'item_id' is float64 in table 'items'",)),
        ([f"tables.users.paths=[{d}/nothing.parquet]"], ("tables.users.paths[0]", "no such file")),
        (["graph.hour.expr='hour(ts) + device'"], ("graph.hour.expr: arithmetic ('+') needs numbers, got a string: "
                                                   "device at column 12",)),
        (["graph.weight.expr=\"-'a'\""],
         ("graph.weight.expr: cannot parse expression: cannot apply unary - to string",)),
        (["graph.weight.expr=-1j"], ("graph.weight.expr", "'1j' is not a number")),
        (["graph.tenure.expr='year(user_signup) + hour(user_signup)'"], ("hour() needs a timestamp, got a date",)),
        (["split.cuts=[2024-03-01,March]"], ("split.cuts[1]: expected a timestamp in ISO form",)),
        (["graph.te.target=device"], ("graph.te.target: column 'device' is string; target_encode's target needs",)),
        (["graph.lags.keys=[dwell]"], ("graph.lags.keys: key 'dwell' is float32",)),
        (["+graph.cats.freq_treshold=3"], ("graph.cats.freq_treshold: unknown parameter for op 'categorify' "
                                           "(did you mean 'freq_threshold'?)",)),
    ]
    for overrides, fragments in plan_cases:
        one_line_error(cli("plan", *pipeline(events, out, *overrides)), *fragments)
    filt = " and ".join(f"position != {k}" for k in range(3000))  # long, flat: it runs
    proc = cli("plan", *pipeline(events, out), f"+graph.pos={{op: filter, expr: '{filt}'}}")
    assert proc.returncode == 0, proc.stderr
    run_cases = [
        ([f"tables.users.paths=[{d}/dup.parquet]"],
         (f"tables.users: table 'users' has 2 rows with user_id = {dup_id}: graph.user needs one row per key",)),
        (["tables.items.max_bytes=100B"], ("tables.items: the 3 column(s) that graph.item uses", "max_bytes")),
    ]
    for overrides, fragments in run_cases:
        one_line_error(cli("compile", *pipeline(events, out, *overrides), f"hydra.run.dir={tmp_path}/h"), *fragments)
        assert not out.exists() and not any(p.name.startswith("out.partial") for p in tmp_path.iterdir())
    events_with_gap = tmp_path / "gap"
    os.makedirs(events_with_gap)
    ev = pq.read_table(f"{events}/events/part-00000.parquet")
    ev = ev.set_column(ev.column_names.index("ts"), "ts", pa.array([None] + ev["ts"].to_pylist()[1:], ev["ts"].type))
    pq.write_table(ev, events_with_gap / "part-00000.parquet")
    args = pipeline(events, out) + [f"source.paths=[{events_with_gap}/*.parquet]"]
    one_line_error(cli("compile", *args, f"hydra.run.dir={tmp_path}/h"),
                   "part-00000.parquet: split.key 'ts' is null in row 0; set split.default")
    assert not out.exists()
