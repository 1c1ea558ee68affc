"""``shardsmith diff``: datasets compared by content digests. The same content (other worker counts,
partition sizes, writers) is the same; a one-value change is found and located; schemas and
splits that differ are named; bad inputs fail with one line."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shardsmith.backends.arrow import table_digests
from shardsmith.kernels import digest as D
from shardsmith.runtime.tasks import content_record
from shardsmith.shards.diff import compare
from shardsmith.shards.manifest import read_manifest
from tests.conftest import cli, run_compile

COMMON = ("output.shard_rows=7000",)


@pytest.fixture(scope="module")
def base(tmp_path_factory, demo_dir):
    return read_manifest(run_compile(f"{demo_dir}/*.parquet", tmp_path_factory.mktemp("diff") / "a", *COMMON).path)


def test_the_same_content_across_workers_and_partitions(base, demo_dir, tmp_path):
    other = run_compile(f"{demo_dir}/*.parquet", tmp_path / "b", *COMMON, "engine.n_workers=2",
                        "engine.partition_bytes=3MB", engine="cpu")
    small = run_compile(f"{demo_dir}/*.parquet", tmp_path / "c", *COMMON, "engine.partition_bytes=300KB")
    plans = {base["plan"]["partitions"], other.manifest["plan"]["partitions"], small.manifest["plan"]["partitions"]}
    assert len(plans) == 3
    for res in (other, small):
        proc = cli("diff", base["_dir"], os.path.dirname(res.path))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.startswith("same: identical content, 6 shard(s) in 3 split(s)")
        assert base["content"]["digest"] == res.manifest["content"]["digest"]


def test_the_recorded_digests_are_those_of_the_files_values(base):
    """Read back by pyarrow, every shard's values give the digests its manifest records."""
    schema = {c["name"]: c["dtype"] for c in base["schema"]}
    for split in base["splits"].values():
        for entry in split["shards"]:
            table = pq.read_table(os.path.join(base["_dir"], entry["path"]))
            assert content_record(table_digests(table, schema)) == entry["content"]
            assert entry["writer"] == "arrow"
    digests = {n: [D.from_hex(e["content"]["digest"]) for e in s["shards"]] for n, s in base["splits"].items()}
    assert D.hex_digest(D.dataset_digest(digests)) == base["content"]["digest"]


def test_a_one_value_change_is_found_and_located(base, demo_dir, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(demo_dir, raw)
    table = pq.read_table(raw / "part-00001.parquet")
    labels = table["label"].to_numpy().copy()
    labels[1234] = 7  # the label passes through: no fitted statistic or split moves
    table = table.set_column(table.column_names.index("label"), "label", pa.array(labels, table["label"].type))
    pq.write_table(table, raw / "part-00001.parquet", row_group_size=4096)
    changed = read_manifest(run_compile(f"{raw}/*.parquet", tmp_path / "b", *COMMON).path)
    where = _find(changed, "label", 7)
    proc = cli("diff", base["_dir"], changed["_dir"])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    first = proc.stdout.splitlines()[0]
    split, shard, row, split_row = where
    assert first.startswith(f"different: split {split}, shard {shard} ({split}/part-{shard:05d}.parquet), "
                            f"column label, row {row} (row {split_row:,} of the split): A "), first
    assert first.endswith(", B 7"), first
    assert "more of" not in proc.stdout  # one shard differs, and only it was read


def _find(manifest, column, value):
    """(split, shard, row in shard, row in split) of the one row where ``column == value``."""
    for name, split in manifest["splits"].items():
        offset = 0
        for i, entry in enumerate(split["shards"]):
            col = pq.read_table(os.path.join(manifest["_dir"], entry["path"]), columns=[column])[column].to_numpy()
            hits = np.flatnonzero(col == value)
            if len(hits):
                return name, i, int(hits[0]), offset + int(hits[0])
            offset += entry["rows"]
    raise AssertionError("not found")


def _variant(base, tmp_path, name, edit) -> str:
    """A copy of the base dataset's manifest with ``edit(doc)`` applied (its shards stay where they are)."""
    src = os.path.join(base["_dir"], "manifest.json")
    doc = json.load(open(src))
    edit(doc)
    d = tmp_path / name
    shutil.copytree(base["_dir"], d)
    (d / "manifest.json").write_text(json.dumps(doc))
    return str(d)


def test_schemas_and_splits_that_differ_are_named(base, tmp_path):
    def drop_and_retype(doc):
        doc["schema"] = [c for c in doc["schema"] if c["name"] != "C26"]
        next(c for c in doc["schema"] if c["name"] == "I1")["dtype"] = "float64"

    proc = cli("diff", base["_dir"], _variant(base, tmp_path, "schema", drop_and_retype))
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0] == "different: schema: column C26 only in A; column I1 is float32 in A, " \
                                          "float64 in B"

    def rename_split(doc):
        doc["splits"] = {("eval" if k == "valid" else k): v for k, v in doc["splits"].items()}

    proc = cli("diff", base["_dir"], _variant(base, tmp_path, "splits", rename_split))
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0] == "different: splits: A has train, valid, test; B has train, eval, test"

    def reorder(doc):
        doc["schema"] = doc["schema"][1:] + doc["schema"][:1]

    proc = cli("diff", base["_dir"], _variant(base, tmp_path, "order", reorder))
    assert proc.returncode == 1 and "the columns are in another order" in proc.stdout


def _perturb(base, tmp_path, name, column, factor) -> str:
    """A copy of the dataset with one float of the first train shard multiplied by ``factor``, its
    manifest updated as if a writer had made it so."""
    d = tmp_path / name
    shutil.copytree(base["_dir"], d)
    doc = json.load(open(d / "manifest.json"))
    entry = doc["splits"]["train"]["shards"][0]
    table = pq.read_table(d / entry["path"])
    x = table[column].to_numpy(zero_copy_only=False).copy()
    x[5] = np.float32(x[5] * factor)
    table = table.set_column(table.column_names.index(column), column, pa.array(x, pa.float32()))
    pq.write_table(table, d / entry["path"], row_group_size=4096)
    entry["content"] = content_record(table_digests(table, {c["name"]: c["dtype"] for c in doc["schema"]}))
    (d / "manifest.json").write_text(json.dumps(doc))
    return str(d)


def test_floats_exact_by_default_within_tolerance_when_asked(base, tmp_path):
    near = _perturb(base, tmp_path, "near", "I2", 1 + 3e-7)
    proc = cli("diff", base["_dir"], near)
    assert proc.returncode == 1 and "column I2, row 5 (row 5 of the split)" in proc.stdout.splitlines()[0]
    proc = cli("diff", base["_dir"], near, "--rtol", "1e-6")
    assert proc.returncode == 0, proc.stdout
    assert "floats: 1 column(s) of shards differ in bits but agree within rtol=1e-06, atol=0" in proc.stdout
    far = _perturb(base, tmp_path, "far", "I2", 1.01)
    assert cli("diff", base["_dir"], far, "--rtol", "1e-6").returncode == 1
    # Between engines the documented tolerance applies by default; --exact asks for bits.
    other = read_manifest(near)
    other["engine"]["kind"] = "gpu"
    assert compare(base, other).same and not compare(base, other, (0.0, 0.0)).same
    other["engine"]["float_mode"] = "fast"
    assert compare(base, other).same


def test_bad_inputs_fail_with_one_line(base, tmp_path):
    def one_line(proc, *fragments):
        lines = [x for x in proc.stderr.splitlines() if x.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
        for f in fragments:
            assert f in lines[0], lines[0]

    one_line(cli("diff", base["_dir"], str(tmp_path / "nothing")), "nothing", "no such manifest")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    one_line(cli("diff", str(bad), base["_dir"]), "not a readable manifest")
    old = _variant(base, tmp_path, "old", lambda doc: doc.pop("content"))
    one_line(cli("diff", base["_dir"], old), "no content digests")
    gone = _perturb(base, tmp_path, "gone", "I2", 2.0)
    os.remove(os.path.join(gone, "train", "part-00000.parquet"))
    one_line(cli("diff", base["_dir"], gone), "part-00000.parquet", "shard file missing")
    one_line(cli("diff", base["_dir"], base["_dir"], "--rtol", "-1"), "--rtol")
