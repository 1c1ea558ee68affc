"""Reusing fitted state: fit.from applies a finished dataset's state to new input (same values as
the parent for the same rows; a graph that does not match fails at plan time naming the step), and
the fit cache skips the fit pass when nothing the fit depends on changed."""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shardsmith.runtime import fitsource
from shardsmith.shards import state as state_files
from tests.conftest import cli, read_split, run_compile

ONE_SPLIT = ("~split.fractions.valid", "~split.fractions.test", "split.fractions.train=1.0")
# The demo pipeline (configs/pipeline/criteo_synthetic.yaml) with its clip's lower bound and a last step as given.
DEMO = ("graph=[{{op: fill_missing, cols: ['I*'], value: 0}}, {{op: clip, cols: ['I*'], lower: {lower}}},"
        " {{op: log1p, cols: ['I*']}}, {{op: normalize, cols: ['I*']}},"
        " {{op: hashed_cross, cols: [C1, C2], num_buckets: 100000, out: C1_x_C2}},"
        " {{op: categorify, cols: ['C?', 'C??'], freq_threshold: 3}}{last}]")


def files(demo_dir):
    return sorted(glob.glob(f"{demo_dir}/*.parquet"))


@pytest.fixture(scope="module")
def parent(demo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("parent") / "out"
    return run_compile(f"{demo_dir}/*.parquet", out, *ONE_SPLIT, "fit.cache=off")


def test_fit_from_gives_the_parents_values_for_the_same_rows(demo_dir, parent, tmp_path):
    first = files(demo_dir)[0]
    child = run_compile(first, tmp_path / "child", *ONE_SPLIT, f"fit.from={parent.path}")
    assert child.manifest["parent"] == {"path": parent.path, "dataset_key": parent.manifest["dataset_key"],
                                        "name": parent.manifest["name"]}
    assert child.manifest["fit"]["source"] == "parent" and child.manifest["plan"]["fit_passes"] == 0
    assert f"fitted state from the parent dataset {parent.path}" in cli("inspect", child.path).stdout
    mine, theirs = read_split(child), read_split(parent)
    n = pq.ParquetFile(first).metadata.num_rows
    assert mine.num_rows == n and mine.equals(theirs.slice(0, n))  # the first file's rows come first
    assert child.manifest["schema"] == parent.manifest["schema"]  # cardinalities from the parent's vocabularies
    root, proot = os.path.dirname(child.path), os.path.dirname(parent.path)
    vocab = "state/graph-5/C7/vocab.parquet"
    assert pq.read_table(os.path.join(root, vocab)).equals(pq.read_table(os.path.join(proot, vocab)))
    # A fit of its own on these rows would differ: the reuse is real.
    own = run_compile(first, tmp_path / "own", *ONE_SPLIT, "fit.cache=off")
    assert not read_split(own).equals(mine)


def test_fit_from_maps_moved_steps_and_keys_the_dataset_by_its_parent(demo_dir, parent, tmp_path):
    """A filter inserted in front moves every step key by one: the states follow their steps."""
    graph = ("graph=[{op: filter, expr: 'label >= 0'}, {op: fill_missing, cols: ['I*'], value: 0},"
             " {op: clip, cols: ['I*'], lower: 0}, {op: log1p, cols: ['I*']}, {op: normalize, cols: [I1, I2]},"
             " {op: categorify, cols: [C3], freq_threshold: 3}, {op: drop, cols: ['C??', C1, C2, 'I[3-9]', 'I1?']}]")
    child = run_compile(files(demo_dir)[0], tmp_path / "child", *ONE_SPLIT, graph, f"fit.from={parent.path}")
    steps = {c: [s["step"] for s in v["steps"]] for c, v in child.manifest["lineage"]["columns"].items()}
    assert steps["I1"] == ["graph[1]", "graph[2]", "graph[3]", "graph[4]"] and steps["C3"] == ["graph[5]"]
    n = child.manifest["rows"]["out"]
    np.testing.assert_array_equal(read_split(child)["I2"], read_split(parent)["I2"].slice(0, n))
    np.testing.assert_array_equal(read_split(child)["C3"], read_split(parent)["C3"].slice(0, n))


@pytest.mark.parametrize("graph, step, what", [
    ("[{op: normalize, cols: [I1]}]", "graph[0]",
     "its graph[3] normalize([I1, I2, I3, ... 13 in all]) fits column 'I1' with other parameters, or after other"),
    ("[{op: categorify, cols: [C1], freq_threshold: 5}]", "graph[0]", "freq_threshold=3) fits column 'C1'"),
    ("[{op: fill_missing, cols: [I1], strategy: median}]", "graph[0]", "the parent fits no fill_missing step"),
])
def test_a_graph_that_does_not_match_the_parent_fails_at_plan_time(demo_dir, parent, tmp_path, graph, step, what):
    proc = cli("plan", f"source.paths=[{demo_dir}/*.parquet]", f"output.dir={tmp_path}/x", f"fit.from={parent.path}",
               f"graph={graph}")
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert line.startswith(f"error: {step}: fit.from: no fitted step of the parent dataset") and what in line, line
    bad = cli("plan", f"source.paths=[{demo_dir}/*.parquet]", f"fit.from={tmp_path}/nothing/manifest.json")
    assert bad.returncode == 2 and "no such manifest" in bad.stderr


def _plan_fit_line(demo_dir, out, *overrides) -> str:
    proc = cli("plan", f"source.paths=[{demo_dir}/*.parquet]", f"output.dir={out}", *overrides)
    assert proc.returncode == 0, proc.stderr
    return next(line for line in proc.stdout.splitlines() if line.startswith("fit:"))


def test_the_fit_cache_hits_when_the_fit_did_not_change(demo_dir, tmp_path):
    sweep = tmp_path / "sweep"
    cache = sweep / fitsource.CACHE_DIR
    first = run_compile(f"{demo_dir}/*.parquet", sweep / "0", "output.shard_rows=5000")
    entry = first.manifest["fit"]["cache"]
    assert first.manifest["fit"]["source"] == "fit" and os.path.dirname(entry) == str(cache)
    assert sorted(os.listdir(cache)) == [os.path.basename(entry)]  # no temporary left behind
    assert json.load(open(os.path.join(entry, fitsource.ENTRY_FILE)))["steps"] == ["graph[3]", "graph[5]"]
    # Another shard size, another partition size, a step after the fitted ones: a hit.
    later = DEMO.format(lower=0, last=", {op: clip, cols: [I1], upper: 2}")
    for i, extra in enumerate([("output.shard_rows=7000", "engine.partition_bytes=100KB"), (later,)]):
        assert _plan_fit_line(demo_dir, sweep / f"h{i}", *extra) == f"fit: cached from {entry} (no fit pass)"
        hit = run_compile(f"{demo_dir}/*.parquet", sweep / f"h{i}", *extra)
        fit = hit.manifest["fit"]
        assert (fit["source"], fit["from"], fit["key"]) == ("cache", entry, first.manifest["fit"]["key"])
        assert "cache" not in fit and hit.manifest["plan"]["fit_passes"] == 0
        ours, theirs = read_split(hit), read_split(first)
        assert ours["C1"].equals(theirs["C1"]) and ours["I2"].equals(theirs["I2"])
    # What the fit sees changed (a step before normalize; another split): a miss, and a new entry.
    for i, extra in enumerate([DEMO.format(lower=1, last=""), "split.seed=5"]):
        assert _plan_fit_line(demo_dir, sweep / f"m{i}", extra).startswith("fit: fitted here; cached in ")
        miss = run_compile(f"{demo_dir}/*.parquet", sweep / f"m{i}", extra)
        assert miss.manifest["fit"]["source"] == "fit" and miss.manifest["fit"]["cache"] != entry
    assert len(os.listdir(cache)) == 3


def _state_files(directory) -> dict:
    """The Parquet files of a state directory by relative path, with their bytes."""
    return {os.path.relpath(f, directory): open(f, "rb").read()
            for f in glob.glob(os.path.join(directory, "**", "*.parquet"), recursive=True)}


def test_the_fit_cache_copies_the_state_files_it_was_given(demo_dir, tmp_path, monkeypatch):
    """The cache entry is the compile's own state files copied (each table encoded once, not again
    for the cache), and a hit's dataset has the entry's files (none encoded): the same bytes in all
    three places, and the same state.json entries for the fitted steps."""
    encoded = []
    write_table = state_files._write_table
    monkeypatch.setattr(state_files, "_write_table", lambda t, full: (encoded.append(full), write_table(t, full)))
    first = run_compile(f"{demo_dir}/*.parquet", tmp_path / "a")
    entry = first.manifest["fit"]["cache"]
    assert sorted(f.split(os.sep + "state" + os.sep, 1)[1] for f in encoded) == sorted(_state_files(entry))
    encoded.clear()
    hit = run_compile(f"{demo_dir}/*.parquet", tmp_path / "b", "output.shard_rows=7000")
    assert hit.manifest["fit"]["source"] == "cache" and encoded == []
    own, cached, reused = (_state_files(d) for d in (tmp_path / "a" / "state", entry, tmp_path / "b" / "state"))
    assert cached and own == cached == reused
    docs = [json.load(open(os.path.join(d, "state.json"))) for d in (tmp_path / "a" / "state", entry)]
    assert {k: docs[0][k] for k in docs[1]} == docs[1]
    vocab = pq.ParquetFile(os.path.join(entry, "graph-5", "C1", "vocab.parquet")).metadata.row_group(0)
    encodings = {vocab.column(i).path_in_schema: vocab.column(i).encodings for i in range(vocab.num_columns)}
    assert "RLE_DICTIONARY" not in encodings["count"]  # numbers plain: distinct keys, per-row values


def test_the_fit_cache_location_and_off(demo_dir, tmp_path):
    res = run_compile(files(demo_dir)[0], tmp_path / "a", f"fit.cache={tmp_path}/mycache")
    assert os.path.dirname(res.manifest["fit"]["cache"]) == f"{tmp_path}/mycache"
    off = run_compile(files(demo_dir)[0], tmp_path / "b", "fit.cache=off")
    assert "cache" not in off.manifest["fit"] and not (tmp_path / fitsource.CACHE_DIR).exists()
    assert _plan_fit_line(demo_dir, tmp_path / "c", "fit.cache=off") == "fit: fitted here (fit cache off)"


def test_concurrent_stores_leave_one_whole_entry(tmp_path):
    states = {"graph[0]": {"C1": {"vocab": pa.table({"value": ["a", "b"], "count": [3, 2]}), "cardinality": 5}}}
    source = fitsource.FitSource("fit", key="k" * 64, entry=str(tmp_path / "cache" / ("k" * 32)))
    logs: list[str] = []
    fitsource.store(source, states, logs.append)
    fitsource.store(source, {"graph[0]": {"C1": {"vocab": pa.table({"value": ["z"], "count": [1]})}}}, logs.append)
    assert os.listdir(tmp_path / "cache") == ["k" * 32]  # the second store lost the race and left nothing
    got = fitsource.cached_states(fitsource.FitSource("cache", path=source.entry))
    assert got["graph[0]"]["C1"]["vocab"].equals(states["graph[0]"]["C1"]["vocab"])
    assert logs == [f"fit: cached in {source.entry}"]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "state.json").write_text('{"graph[0]": {"C1": {"vocab": {"$parquet": "gone.parquet"}}}}')
    with pytest.raises(Exception, match="cannot read this fit cache entry"):
        fitsource.cached_states(fitsource.FitSource("cache", path=str(broken)))


def test_drift_against_the_parent_is_on_one_scale(demo_dir, tmp_path):
    """NEW compiled with fit.from=BASE: ids and scales mean the same, so the OOV rate is exact."""
    base = run_compile(files(demo_dir)[0], tmp_path / "base", *ONE_SPLIT, "fit.cache=off")
    new = run_compile(files(demo_dir)[1], tmp_path / "new", *ONE_SPLIT, f"fit.from={base.path}")
    proc = cli("drift", base.path, new.path, "--json", "--no-html")
    cols = {c["name"]: c for c in json.loads(proc.stdout)["columns"]}
    for c in ("C3", "C20"):
        shares = [(read_split(d)[c].to_numpy() == 1).mean() for d in (base, new)]
        assert cols[c]["oov_rates"] == pytest.approx(shares, rel=1e-12) and cols[c]["notes"] == []
        assert cols[c]["oov_rate"] == pytest.approx(shares[1] - shares[0], rel=1e-9)
    assert cols["I1"]["notes"] == [] and cols["I1"]["psi"] < 0.05  # two thirds of one distribution


def test_the_fit_cache_misses_when_a_side_table_changes(tmp_path):
    """A fitted step after a join fits the joined values: the side tables' files key the cache."""
    from shardsmith.demo import generate_events

    generate_events(3000, str(tmp_path / "ev"), files=1)
    items = pq.read_table(glob.glob(f"{tmp_path}/ev/items/*.parquet")[0])
    (tmp_path / "items2").mkdir()
    pq.write_table(items.set_column(items.column_names.index("price"), "price",
                                    pa.compute.multiply(items["price"], pa.scalar(2.0, items["price"].type))),
                   tmp_path / "items2" / "items.parquet")

    def compile_with(items_glob: str, out: str):
        return run_compile(f"{tmp_path}/ev/events/*.parquet", tmp_path / "sweep" / out, "pipeline=events",
                           f"tables.users.paths=[{tmp_path}/ev/users/*.parquet]", f"tables.items.paths=[{items_glob}]",
                           "profiling.enabled=false").manifest["fit"]

    first = compile_with(f"{tmp_path}/ev/items/*.parquet", "a")
    changed = compile_with(f"{tmp_path}/items2/*.parquet", "b")
    again = compile_with(f"{tmp_path}/ev/items/*.parquet", "c")
    assert first["source"] == "fit" and changed["source"] == "fit" and changed["cache"] != first["cache"]
    assert (again["source"], again["from"]) == ("cache", first["cache"])


def test_saving_states_encodes_what_it_cannot_copy(tmp_path):
    """A state file gone from the directory it was to be copied from (a cache entry removed while a
    compile read it) is encoded again from the values in memory: the saved states are whole."""
    states = {"graph[0]": {"C1": {"vocab": pa.table({"value": ["a", "b"], "count": [3, 2]}), "cardinality": 5}},
              "graph[1]": {"C2": {"vocab": pa.table({"value": [7, 9], "count": [4, 1]})}}}
    state_files.save_states(str(tmp_path / "a"), states)
    os.remove(tmp_path / "a" / "graph-0" / "C1" / "vocab.parquet")
    state_files.save_states(str(tmp_path / "b"), states, {k: str(tmp_path / "a") for k in states})
    got = state_files.load_states(str(tmp_path / "b"))
    for key, cols in states.items():
        for col, entry in cols.items():
            assert got[key][col]["vocab"].equals(entry["vocab"])
    assert got["graph[0]"]["C1"]["cardinality"] == 5
    assert not glob.glob(str(tmp_path / "b" / "**" / "*.tmp"), recursive=True)
