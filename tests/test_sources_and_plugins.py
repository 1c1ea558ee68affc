"""CSV and JSON-lines sources, and user ops registered by plugin module and by entry point."""

from __future__ import annotations

import json
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shardsmith.compiler.config import from_dict
from shardsmith.errors import ConfigError, InputError
from shardsmith.runtime import compile_dataset


def run(tmp_path, paths, fmt, graph, **extra):
    raw = {"name": "t", "source": {"paths": paths, "format": fmt, **extra.pop("source", {})}, "graph": graph,
           "split": {"fractions": {"train": 1.0}, "fit_on": None}, "output": {"dir": str(tmp_path / "out")},
           "engine": {"cluster": "inprocess"}, **extra}
    res = compile_dataset(from_dict(raw), log=lambda *_: None)
    root = os.path.dirname(res.path)
    return pa.concat_tables([pq.read_table(os.path.join(root, s["path"]))
                             for s in res.manifest["splits"]["train"]["shards"]]), res


def test_csv_and_jsonl_sources(tmp_path):
    rows = [{"id": i, "v": float(i) / 4 if i % 5 else None, "tag": f"t{i % 3}"} for i in range(50)]
    (tmp_path / "a.csv").write_text("id,v,tag\n" + "".join(
        f"{r['id']},{'' if r['v'] is None else r['v']},{r['tag']}\n" for r in rows[:30]))
    (tmp_path / "b.csv").write_text("id,v,tag\n" + "".join(
        f"{r['id']},{'' if r['v'] is None else r['v']},{r['tag']}\n" for r in rows[30:]))
    graph = [{"op": "fill_missing", "cols": ["v"], "value": -1}, {"op": "categorify", "cols": ["tag"]}]
    out, res = run(tmp_path, [str(tmp_path / "*.csv")], "csv", graph)
    assert out["id"].to_pylist() == list(range(50))
    assert out["v"].to_pylist() == [-1.0 if r["v"] is None else r["v"] for r in rows]
    assert res.manifest["rows"]["in"] == 50 and [i["rows"] for i in res.manifest["inputs"]] == [30, 20]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out2, _ = run(tmp_path / "j", [str(tmp_path / "c.jsonl")], "jsonl", graph)
    assert out2["v"].to_pylist() == out["v"].to_pylist()
    assert out2["tag"].to_pylist() == out["tag"].to_pylist()


def test_csv_dtype_overrides_and_disagreeing_files(tmp_path):
    (tmp_path / "a.csv").write_text("id,v\n1,2\n")
    (tmp_path / "b.csv").write_text("id,v\n1,2.5\n")
    with pytest.raises(InputError, match="b.csv: schema differs from .*a.csv: column 'v' is float64 here and int64"):
        run(tmp_path, [str(tmp_path / "*.csv")], "csv", [])
    out, _ = run(tmp_path, [str(tmp_path / "*.csv")], "csv", [], source={"schema": {"v": "float32"}})
    assert out["v"].type == pa.float32() and out["v"].to_pylist() == [2.0, 2.5]
    with pytest.raises(ConfigError, match="source.schema.w: column 'w'"):
        run(tmp_path, [str(tmp_path / "*.csv")], "csv", [], source={"schema": {"v": "float32", "w": "float32"}})


def test_plugin_module_ops(tmp_path, demo_dir, monkeypatch):
    from shardsmith.ops import base

    # Start from a registry without the plugin's ops (doctest collection may have imported it).
    for name in ("square", "strlen"):
        monkeypatch.delitem(base._REGISTRY, name, raising=False)
    monkeypatch.delitem(sys.modules, "tests.plugins.my_ops", raising=False)
    graph = [{"op": "square", "cols": ["I1"], "out": ["I1sq"]}, {"op": "strlen", "cols": ["C1"], "out": "c1len"}]
    with pytest.raises(ConfigError, match="graph\\[0\\].op: unknown op 'square'"):
        run(tmp_path / "x", [f"{demo_dir}/part-00000.parquet"], "parquet", graph)
    out, _ = run(tmp_path, [f"{demo_dir}/part-00000.parquet"], "parquet", graph, plugins=["tests.plugins.my_ops"])
    i1 = out["I1"].to_pylist()
    assert out["I1sq"].to_pylist() == [None if v is None else float(pa.scalar(v * v, pa.float32()).as_py())
                                        for v in i1]
    assert out["c1len"].to_pylist() == [len(v) for v in out["C1"].to_pylist()]
    with pytest.raises(ConfigError, match="plugins\\[0\\]: cannot import plugin module 'no.such.module'"):
        run(tmp_path / "y", [f"{demo_dir}/part-00000.parquet"], "parquet", [], plugins=["no.such.module"])


def test_entry_point_ops(tmp_path, monkeypatch):
    from shardsmith.ops import base

    dist = tmp_path / "site" / "myops-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myops\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[shardsmith.ops]\ncube = myops_mod:Cube\n")
    (tmp_path / "site" / "myops_mod.py").write_text(
        "from dataclasses import dataclass\nfrom shardsmith.ops import ElementwiseOp\n"
        "@dataclass(frozen=True)\nclass Cube(ElementwiseOp):\n    op_name = 'cube'\n"
        "    def apply(self, x, p, xp):\n        return x * x * x\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(base, "_ENTRY_POINTS_LOADED", False)
    assert "cube" in base.registered_ops()
    monkeypatch.delitem(base._REGISTRY, "cube")
    sys.modules.pop("myops_mod", None)
