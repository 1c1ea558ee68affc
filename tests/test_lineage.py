"""Column lineage: what each op says it depends on, the manifest's lineage section, `shardsmith
lineage` as text, and its OpenLineage run event checked with the openlineage-python client's models."""

from __future__ import annotations

import json
import os

import pytest

from shardsmith.ops.categorical import Categorify, HashedCross
from shardsmith.ops.numeric import Cast, Log1p
from shardsmith.ops.rows import Drop, Filter, Rename
from tests.conftest import cli, run_compile

GRAPH = ("graph=[{op: filter, expr: 'is_null(I2) or I2 >= 0'}, {op: fill_missing, cols: [I1], strategy: median},"
         " {op: log1p, cols: [I1], out: [L1]}, {op: hashed_cross, cols: [C1, C2], num_buckets: 100, out: X},"
         " {op: categorify, cols: [C1, C3]}, {op: rename, mapping: {C3: CC}},"
         " {op: filter, expr: 'L1 > 0'}, {op: drop, cols: ['C??', 'I[2-9]', 'I1?', C2, C4, C5, C6, C7, C8, C9]}]")


def test_each_op_says_what_its_outputs_depend_on():
    assert Log1p(cols=("a", "b"), out=("x", "y")).depends_on() == {"x": ("a",), "y": ("b",)}
    assert Categorify(cols=("c",)).depends_on() == {"c": ("c",)}
    assert Cast(cols=("c",), dtype="int32").depends_on() == {"c": ("c",)}
    assert Rename(mapping={"a": "b", "b": "a"}).depends_on() == {"b": ("a",), "a": ("b",)}
    assert HashedCross(cols=("a", "b"), num_buckets=4, out="ab").depends_on() == {"ab": ("a", "b")}
    assert Filter(expr="a > 0").depends_on() == {} and Drop(cols=("a",)).depends_on() == {}


@pytest.fixture(scope="module")
def dataset(demo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("lineage") / "out"
    return run_compile(f"{demo_dir}/*.parquet", out, GRAPH, "split.key=C4")


def test_the_manifest_records_inputs_steps_and_state_files(dataset):
    lin = dataset.manifest["lineage"]
    root = os.path.dirname(dataset.path)
    assert set(lin["columns"]) == {c["name"] for c in dataset.manifest["schema"]} == {"label", "I1", "L1", "X",
                                                                                       "C1", "CC"}
    l1 = lin["columns"]["L1"]
    assert l1["inputs"] == ["I1"] and l1["dtypes"] == {"I1": "float32"} and l1["tables"] == []
    assert [(s["step"], s["op"]) for s in l1["steps"]] == [("graph[1]", "fill_missing"), ("graph[2]", "log1p")]
    assert l1["steps"][0]["params"] == {"value": None, "strategy": "median"}
    assert l1["steps"][0]["state"]["entries"] == ["graph[1]/I1"]
    cc = lin["columns"]["CC"]
    assert cc["inputs"] == ["C3"] and [s["op"] for s in cc["steps"]] == ["categorify", "rename"]
    vocab = cc["steps"][0]["state"]["files"]
    assert vocab == ["state/graph-4/C3/vocab.parquet"] and os.path.isfile(os.path.join(root, vocab[0]))
    x = lin["columns"]["X"]
    assert x["inputs"] == ["C1", "C2"] and x["steps"][0]["via"] == ["C1", "C2"]
    assert lin["columns"]["label"] == {"inputs": ["label"], "dtypes": {"label": "int8"}, "tables": [], "steps": []}
    filters = lin["rows"]["filters"]
    assert [(f["steps"], f["where"], f["inputs"]) for f in filters] == [
        (["graph[0]"], "pushed into the reader", ["I2"]), (["graph[6]"], "graph", ["I1"])]
    assert lin["rows"]["split"]["key"] == "C4"


def test_lineage_command_text_and_errors(dataset):
    proc = cli("lineage", dataset.path, "L1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1] == "L1 (float32, continuous) <- input I1 (float32)"
    assert lines[2].split()[:3] == ["graph[1]", "fill_missing", "strategy=median"]
    assert "state: state/state.json#graph[1]/I1" in lines[2]
    assert lines[-3:] == ["rows: filter((is_null(I2) or (I2 >= 0))) (graph[0], pushed into the reader)",
                          "rows: filter((L1 > 0)) (graph[6])", "rows: split train, valid, test by hash of 'C4', seed 0"]
    bad = cli("lineage", dataset.path, "L2")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: COLUMN: no output column 'L2' (did you mean 'L1'?)"


def _client_event(ev: dict):
    """The event rebuilt from the openlineage-python client's models: every field must be one the
    models know, of the type they expect (their validators run)."""
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import column_lineage_dataset as cl
    from openlineage.client.facet_v2 import dataset_version_dataset, job_type_job, processing_engine_run
    from openlineage.client.facet_v2 import schema_dataset as sd

    def field(x):
        return cl.InputField(namespace=x["namespace"], name=x["name"], field=x["field"],
                             transformations=[cl.Transformation(**t) for t in x["transformations"]])

    build = {
        "schema": lambda f: sd.SchemaDatasetFacet(fields=[sd.SchemaDatasetFacetFields(**x) for x in f["fields"]]),
        "version": lambda f: dataset_version_dataset.DatasetVersionDatasetFacet(**f),
        "columnLineage": lambda f: cl.ColumnLineageDatasetFacet(
            fields={k: cl.Fields(inputFields=[field(x) for x in v["inputFields"]]) for k, v in f["fields"].items()},
            dataset=[field(x) for x in f["dataset"]]),
        "processing_engine": lambda f: processing_engine_run.ProcessingEngineRunFacet(**f),
        "jobType": lambda f: job_type_job.JobTypeJobFacet(**f),
    }

    def facets(d: dict) -> dict:
        out = {}
        for name, f in d.items():
            plain = {k: v for k, v in f.items() if not k.startswith("_")}
            out[name] = build[name](plain)
            out[name]._producer = f["_producer"]
        return out

    def datasets(cls, items):
        return [cls(namespace=d["namespace"], name=d["name"], facets=facets(d["facets"])) for d in items]

    job = ev["job"]
    return RunEvent(eventType=RunState(ev["eventType"]), eventTime=ev["eventTime"], producer=ev["producer"],
                    run=Run(runId=ev["run"]["runId"], facets=facets(ev["run"]["facets"])),
                    job=Job(namespace=job["namespace"], name=job["name"], facets=facets(job["facets"])),
                    inputs=datasets(InputDataset, ev["inputs"]), outputs=datasets(OutputDataset, ev["outputs"]))


def _without_empty(obj):
    if isinstance(obj, dict):
        return {k: _without_empty(v) for k, v in obj.items() if v not in ({}, [])}
    if isinstance(obj, list):
        return [_without_empty(v) for v in obj]
    return obj


def test_openlineage_event_is_valid_for_the_client_models(dataset):
    pytest.importorskip("openlineage.client")
    from openlineage.client.serde import Serde

    proc = cli("lineage", dataset.path, "--format", "openlineage")
    assert proc.returncode == 0, proc.stderr
    ev = json.loads(proc.stdout)
    # Nothing unknown, nothing mistyped, the same schema URLs (the client adds empty maps and lists).
    assert _without_empty(Serde.to_dict(_client_event(ev))) == _without_empty(ev)
    assert [d["facets"]["version"]["datasetVersion"] for d in ev["inputs"]] == \
        [i["fingerprint"] for i in dataset.manifest["inputs"]]
    out = ev["outputs"][0]
    assert out["name"] == os.path.dirname(os.path.abspath(dataset.path))
    x = out["facets"]["columnLineage"]["fields"]["X"]["inputFields"]
    assert {(f["name"], f["field"]) for f in x} == {(i["name"], c) for i in ev["inputs"] for c in ("C1", "C2")}
    indirect = out["facets"]["columnLineage"]["dataset"]
    assert {(f["field"], f["transformations"][0]["subtype"]) for f in indirect} == {
        ("I2", "FILTER"), ("I1", "FILTER"), ("C4", "CONDITIONAL")}


def test_joined_and_derived_columns(demo_dir, tmp_path):
    """A side-table lookup and a derived column (stand-ins for join and derive: tests/plugins/lineage_ops.py)
    carry their tables and every input into the lineage and the OpenLineage event."""
    res = run_compile(f"{demo_dir}/part-00000.parquet", tmp_path / "out", "plugins=[tests.plugins.lineage_ops]",
                      "graph=[{op: lookup_country, cols: [C4], out: country}, {op: ratio, cols: [I1, I2], out: r},"
                      " {op: categorify, cols: [country]}, {op: drop, cols: ['I*', 'C*']}]")
    cols = res.manifest["lineage"]["columns"]
    assert cols["country"]["inputs"] == ["C4"]
    assert cols["country"]["tables"] == [["countries", "code"], ["countries", "name"]]
    assert [s["op"] for s in cols["country"]["steps"]] == ["lookup_country", "categorify"]
    assert cols["r"]["inputs"] == ["I1", "I2"] and [s["op"] for s in cols["r"]["steps"]] == ["ratio"]
    text = cli("lineage", res.path, "country")
    assert "country (int32, categorical) <- input C4 (int64) + table countries.code, countries.name" in text.stdout
    ev = json.loads(cli("lineage", res.path, "--format", "openlineage").stdout)
    assert {"namespace": "shardsmith", "name": "table/countries", "facets": {}} in ev["inputs"]
    fields = ev["outputs"][0]["facets"]["columnLineage"]["fields"]["country"]["inputFields"]
    assert {(f["name"], f["field"]) for f in fields} == {
        (ev["inputs"][0]["name"], "C4"), ("table/countries", "code"), ("table/countries", "name")}


def test_events_pipeline_lineage_names_the_sources_of_joined_derived_and_keyed_columns(tmp_path):
    """configs/pipeline/events.yaml: join, derive, target_encode, groupby_features and lag say what
    they compute from, so the manifest, `shardsmith lineage` and the fit signatures name the sources."""
    from shardsmith.demo import generate_events

    generate_events(3000, str(tmp_path / "ev"), files=1)
    res = run_compile(f"{tmp_path}/ev/events/*.parquet", tmp_path / "out", "pipeline=events",
                      f"tables.users.paths=[{tmp_path}/ev/users/*.parquet]",
                      f"tables.items.paths=[{tmp_path}/ev/items/*.parquet]", "profiling.enabled=false")
    cols = res.manifest["lineage"]["columns"]

    def of(name):
        return cols[name]["inputs"], cols[name]["tables"], [s["op"] for s in cols[name]["steps"]]

    assert of("user_age") == (["user_id"], [["users", "user_id"], ["users", "age"]], ["join", "fill_missing"])
    assert of("tenure_days") == (["ts", "user_id"], [["users", "user_id"], ["users", "signup"]],
                                 ["join", "derive", "fill_missing"])
    assert of("weight") == (["device"], [], ["derive"])
    assert of("user_id_te") == (["user_id", "click"], [], ["target_encode"])
    assert of("item_id_te") == (["item_id", "click"], [], ["target_encode"])
    assert of("user_price_mean") == (["user_id", "item_id"], [["items", "item_id"], ["items", "price"]],
                                     ["join", "groupby_features"])
    assert of("user_count") == (["user_id"], [], ["groupby_features"])
    assert of("ts_diff1") == (["user_id", "ts"], [], ["lag", "fill_missing"])
    assert of("category")[1] == [["items", "item_id"], ["items", "category"]]
    sigs = res.manifest["fit"]["steps"]
    assert set(sigs) >= {"graph.te", "graph.user_stats", "graph.lags", "graph.cats"}
    text = cli("lineage", res.path, "user_age").stdout
    assert "user_age (" in text and "<- input user_id (int64) + table users.user_id, users.age" in text
