"""The command line as users run it: subprocesses, exit codes, one-line errors, no partial output."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import cli


def compile_args(src, out, *extra):
    return ["compile", f"source.paths=[{src}]", f"output.dir={out}", "engine=inprocess",
            f"hydra.run.dir={os.path.dirname(str(out))}/hydra", *extra]


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for frag in fragments:
        assert frag in lines[0], lines[0]


@pytest.fixture()
def bad_inputs(tmp_path, demo_dir):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet")
    good = pq.read_table(os.path.join(demo_dir, "part-00000.parquet")).slice(0, 100)
    pq.write_table(good, d / "a.parquet")
    pq.write_table(good.set_column(1, "I1", good["I1"].cast(pa.string())), d / "b.parquet")
    return d


def test_bad_inputs_fail_with_one_line_and_leave_nothing(tmp_path, demo_dir, bad_inputs):
    out = tmp_path / "out"
    cases = [
        ([f"{tmp_path}/nothing/here.parquet"], ("source.paths[0]", "no such file")),
        ([f"{tmp_path}/nothing/*.parquet"], ("no file matches the pattern",)),
        ([f"{bad_inputs}/corrupt.parquet"], ("corrupt.parquet", "not a readable Parquet file")),
        ([f"{bad_inputs}/a.parquet", f"{bad_inputs}/b.parquet"],
         ("b.parquet", "column 'I1' is string here and float32 there")),
    ]
    for paths, fragments in cases:
        proc = cli("compile", f"source.paths=[{','.join(paths)}]", f"output.dir={out}", "engine=inprocess",
                   f"hydra.run.dir={tmp_path}/hydra")
        assert_one_line_error(proc, *fragments)
        assert not out.exists()
        assert not any(p.name.startswith("out.partial") for p in tmp_path.iterdir())
    src = f"{demo_dir}/*.parquet"
    for override, fragments in [
        ("graph=[{op: normalise, cols: [I1]}]", ("graph[0].op: unknown op 'normalise'",)),
        ("graph=[{op: clip, cols: [I14], lower: 0}]", ("graph[0].cols: column 'I14'", "did you mean")),
        ("graph=[{op: log1p, cols: [C2]}]", ("graph[0].cols: column 'C2' is string",)),
        ("engine.n_workers=two", ("engine.n_workers",)),
        ("output.dirr=x", ("output.dirr",)),
    ]:
        proc = cli(*compile_args(src, out, override))
        assert_one_line_error(proc, *fragments)
        assert not out.exists()


def test_compile_plan_inspect_verify(tmp_path, demo_dir):
    out = tmp_path / "out"
    proc = cli(*compile_args(f"{demo_dir}/*.parquet", out, "split.seed=7", "output.shard_rows=10000"))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["resolved"]["split"]["seed"] == 7
    assert manifest["rows"]["in"] == 30_000 == manifest["rows"]["out"]
    total = sum(s["rows"] for s in manifest["splits"].values())
    assert total == 30_000

    proc = cli("plan", f"source.paths=[{demo_dir}/*.parquet]", "--passes")
    assert proc.returncode == 0, proc.stderr
    assert "== after fuse_elementwise" in proc.stdout and "passes over the data: 2" in proc.stdout
    assert not (tmp_path / "shards").exists()

    proc = cli("inspect", str(out / "manifest.json"))
    assert proc.returncode == 0 and "rows: in 30,000 = out 30,000 + filtered 0 + quarantined 0" in proc.stdout
    assert "C1_x_C2" in proc.stdout and "cardinality" in proc.stdout
    assert f"content digest {manifest['content']['digest']} (shardsmith-content-1); Parquet written by arrow" \
        in proc.stdout

    proc = cli("verify", str(out))
    assert proc.returncode == 0 and proc.stdout.startswith("ok:")
    shard = out / manifest["splits"]["train"]["shards"][0]["path"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    proc = cli("verify", str(out))
    assert proc.returncode == 1 and "mismatch" in proc.stderr and shard.name in proc.stderr

    proc = cli("inspect", str(tmp_path / "missing.json"))
    assert_one_line_error(proc, "missing.json", "no such manifest")


def test_demo_data_is_deterministic(tmp_path):
    for d in ("a", "b"):
        proc = cli("demo-data", "--rows", "5000", "--out", str(tmp_path / d), "--files", "2")
        assert proc.returncode == 0, proc.stderr
    for name in ("part-00000.parquet", "part-00001.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    t = pq.read_table(tmp_path / "a")
    assert t.num_rows == 5000
    assert t.schema.names == ["label", *[f"I{i}" for i in range(1, 14)], *[f"C{i}" for i in range(1, 27)]]
    assert 0.15 < np.mean(t["label"].to_numpy()) < 0.35
    assert 0.01 < t["I1"].null_count / 5000 < 0.35
    assert t["C1"].type == pa.string() and t["C4"].type == pa.int64()


@pytest.mark.slow
def test_multirun_sweep(tmp_path, demo_dir):
    proc = cli("compile", "-m", f"source.paths=[{demo_dir}/*.parquet]", "engine=inprocess",
               "output.dir=" + str(tmp_path) + "/sweep/${engine.partition_bytes}",
               "engine.partition_bytes=200KB,10MB", f"hydra.sweep.dir={tmp_path}/multirun")
    assert proc.returncode == 0, proc.stderr
    a = json.loads((tmp_path / "sweep" / "200KB" / "manifest.json").read_text())
    b = json.loads((tmp_path / "sweep" / "10MB" / "manifest.json").read_text())
    assert a["plan"]["partitions"] > b["plan"]["partitions"]
    shas = [[s["sha256"] for s in m["splits"]["train"]["shards"]] for m in (a, b)]
    assert shas[0] == shas[1]
    assert (tmp_path / "multirun" / "0" / ".hydra" / "config.yaml").exists()


def test_demo_end_to_end(tmp_path):
    proc = cli("demo", "--rows", "20000", "--data", str(tmp_path / "raw"), f"output.dir={tmp_path}/shards",
               "engine=inprocess", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "rows: in 20,000 = out 20,000" in proc.stdout
    assert (tmp_path / "shards" / "manifest.json").exists()


def test_a_single_compile_runs_as_hydra_main_runs_it(tmp_path, demo_dir):
    """A single compile composes its config once for the early check and Hydra's run; its run
    directory holds what ``hydra.main`` writes (which composes it twice more). A config that only
    resolves inside a run (``${hydra:...}``) takes ``hydra.main`` itself: the two runs' saved
    configs differ only where they must."""
    import yaml

    def run(tag, *extra):
        proc = cli("compile", f"source.paths=[{demo_dir}/*.parquet]", "engine=inprocess", "fit.cache=off",
                   f"output.dir={tmp_path}/{tag}", f"hydra.run.dir={tmp_path}/run-{tag}", *extra)
        assert proc.returncode == 0, proc.stderr
        saved = {f: yaml.safe_load((tmp_path / f"run-{tag}" / ".hydra" / f).read_text())
                 for f in ("config.yaml", "hydra.yaml", "overrides.yaml")}
        assert "wrote " in (tmp_path / f"run-{tag}" / "compile.log").read_text()
        return saved

    once = run("once")
    main = run("main", "name=${hydra:job.name}")  # resolved only in Hydra's run: hydra.main runs it
    assert once["hydra.yaml"]["hydra"]["job"]["name"] == "compile"
    assert json.loads((tmp_path / "main" / "manifest.json").read_text())["name"] == "compile"
    assert once["hydra.yaml"]["hydra"]["overrides"]["hydra"] == [f"hydra.run.dir={tmp_path}/run-once", "hydra.mode=RUN"]
    for doc in (once, main):  # what the two runs were told differently
        doc["config.yaml"].pop("name"), doc["config.yaml"]["output"].pop("dir")
        doc["overrides.yaml"] = [o for o in doc["overrides.yaml"] if not o.startswith(("output.dir=", "name="))]
        h = doc["hydra.yaml"]["hydra"]
        h["run"].pop("dir"), h["runtime"].pop("output_dir"), h["job"].pop("override_dirname")
        h["overrides"]["task"] = [o for o in h["overrides"]["task"] if not o.startswith(("output.dir=", "name="))]
        h["overrides"]["hydra"] = [o for o in h["overrides"]["hydra"] if not o.startswith("hydra.run.dir=")]
    assert once == main
