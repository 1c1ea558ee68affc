"""Never lose a user's data: what output.overwrite may replace (only a shardsmith dataset or an
empty directory; never the input, the current directory or a parent of either), the lock that lets
one compile at a time write an output, and what a resumed compile takes from a killed one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from shardsmith.errors import ConfigError, ShardsmithError
from shardsmith.runtime import tasks
from shardsmith.runtime.lock import FileLock
from shardsmith.runtime.staging import Output
from shardsmith.runtime.target import foreign_files
from shardsmith.shards.manifest import read_manifest, verify
from tests.conftest import cli, run_compile
from tests.test_cli import assert_one_line_error, compile_args

ONE_SPLIT = ("~split.fractions.valid", "~split.fractions.test", "split.fractions.train=1.0")


def snapshot(root) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (what must survive a refused compile)."""
    out = {}
    for d, _, files in os.walk(root):
        for name in files:
            path = os.path.join(d, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


@pytest.fixture()
def user_dir(tmp_path):
    """A folder of the user's own files, one of them nested."""
    d = tmp_path / "mine"
    (d / "notes").mkdir(parents=True)
    (d / "thesis.tex").write_bytes(b"\\documentclass{article}\n" * 100)
    (d / "notes" / "todo.txt").write_bytes(os.urandom(4096))
    return d


@pytest.fixture()
def small_input(tmp_path, demo_dir):
    """A folder with one demo Parquet file (the input of these compiles)."""
    d = tmp_path / "raw"
    d.mkdir()
    src = os.path.join(demo_dir, "part-00000.parquet")
    (d / "part-00000.parquet").write_bytes(open(src, "rb").read())
    return d


@pytest.mark.parametrize("overwrite", ["true", "false"])
def test_a_folder_of_user_files_is_never_replaced(small_input, user_dir, overwrite):
    before = snapshot(user_dir)
    with pytest.raises(ConfigError) as exc:
        run_compile(f"{small_input}/*.parquet", user_dir, f"output.overwrite={overwrite}")
    assert "holds no shardsmith dataset" in str(exc.value) and "output.dir" in str(exc.value)
    assert "overwrite=true" not in str(exc.value)  # the refusal no longer suggests the destructive fix
    assert snapshot(user_dir) == before
    assert not [p for p in os.listdir(user_dir.parent) if ".partial-" in p or p.endswith(".lock")]


def test_the_input_folder_and_its_parents_are_never_replaced(small_input):
    before = snapshot(small_input.parent)
    for out in (small_input, small_input.parent):
        with pytest.raises(ConfigError, match="holds the input file"):
            run_compile(f"{small_input}/*.parquet", out, "output.overwrite=true")
    assert snapshot(small_input.parent) == before


def test_a_dataset_with_a_users_file_in_it_is_not_replaced(small_input, tmp_path):
    out = tmp_path / "ds"
    run_compile(f"{small_input}/*.parquet", out, "output.shard_rows=2000")
    (out / "my-notes.md").write_bytes(b"results of the run\n")
    before = snapshot(out)
    with pytest.raises(ConfigError, match="also 'my-notes.md'"):
        run_compile(f"{small_input}/*.parquet", out, "output.shard_rows=3000", "output.overwrite=true")
    assert snapshot(out) == before


def test_overwrite_replaces_a_dataset_and_an_empty_dir(small_input, tmp_path):
    out = tmp_path / "ds"
    out.mkdir()  # empty: it may be written
    first = run_compile(f"{small_input}/*.parquet", out, "output.shard_rows=2000")
    with pytest.raises(ConfigError, match="built from another config") as exc:
        run_compile(f"{small_input}/*.parquet", out, "output.shard_rows=3000")
    assert "output.overwrite=true" in str(exc.value)  # ours: replacing it is offered
    second = run_compile(f"{small_input}/*.parquet", out, "output.shard_rows=3000", "output.overwrite=true")
    assert second.manifest["dataset_key"] != first.manifest["dataset_key"]
    assert verify(read_manifest(str(out))) == []
    assert foreign_files(snapshot(out), second.manifest) == []
    assert not [p for p in os.listdir(tmp_path) if ".old-" in p or ".partial-" in p]


def test_output_dir_dot_or_a_parent_of_the_cwd_deletes_nothing(small_input, tmp_path):
    work = tmp_path / "project"
    (work / "src").mkdir(parents=True)
    (work / "src" / "train.py").write_bytes(b"print('hi')\n")
    before = snapshot(tmp_path)
    for out in (".", "..", str(work)):
        proc = cli("compile", f"source.paths=[{small_input}/*.parquet]", f"output.dir={out}", "engine=inprocess",
                   "output.overwrite=true", f"hydra.run.dir={tmp_path}/hydra", cwd=work)
        assert_one_line_error(proc, "output.dir", "current directory or one of its parents")
    assert snapshot(tmp_path) == before  # not even Hydra's run directory: refused before Hydra starts


def test_an_output_dir_that_is_a_file_or_under_one(small_input, tmp_path):
    f = tmp_path / "results.csv"
    f.write_bytes(b"a,b\n1,2\n")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        run_compile(f"{small_input}/*.parquet", f, "output.overwrite=true")
    with pytest.raises(ConfigError, match="which is a file"):
        run_compile(f"{small_input}/*.parquet", f / "sub" / "ds")
    assert f.read_bytes() == b"a,b\n1,2\n"


# --- one writer at a time ---------------------------------------------------------------------------
def test_a_second_compile_refuses_naming_the_first(tmp_path):
    """Two real compiles into one output: the second exits 2 with one line naming the first's pid;
    the first finishes, and its dataset holds exactly what its manifest lists."""
    from shardsmith.demo import generate

    generate(200_000, str(tmp_path / "raw"), files=2, row_group_rows=8192)
    out = tmp_path / "out"
    args = compile_args(f"{tmp_path}/raw/*.parquet", out, "output.shard_rows=4000", "engine.partition_bytes=1MB")
    first = subprocess.Popen([sys.executable, "-m", "shardsmith", *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    lock = tmp_path / "out.lock"
    deadline = time.time() + 120
    while time.time() < deadline and first.poll() is None and not (lock.exists() and lock.read_text()):
        time.sleep(0.05)
    assert first.poll() is None, first.stderr.read()
    holder = json.loads(lock.read_text())
    assert holder["pid"] == first.pid
    second = cli(*args)
    assert_one_line_error(second, "output.dir", "another compile is writing", f"pid {first.pid}")
    assert first.wait(timeout=600) == 0
    m = read_manifest(str(out))
    assert verify(m) == [] and foreign_files(snapshot(out), m) == []
    assert not lock.exists()


def test_a_lock_of_a_killed_holder_is_free(tmp_path):
    """flock dies with its holder: a kill -9 never leaves a lock that blocks the rerun."""
    final = str(tmp_path / "out")
    code = (f"import sys, time; sys.path.insert(0, {os.getcwd()!r}); from shardsmith.runtime.lock import FileLock; "
            f"FileLock({final!r}).acquire(); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(ShardsmithError, match=f"pid {proc.pid}"):
        FileLock(final).acquire()
    proc.kill()
    proc.wait()
    lock = FileLock(final)
    lock.acquire()
    assert json.loads(open(final + ".lock").read())["pid"] == os.getpid()
    lock.release()
    assert not os.path.exists(final + ".lock")


# --- what a resumed compile takes from a killed one ---------------------------------------------------
def _crash_after(monkeypatch, n_shards: int):
    """Make the next compile die (as a kill would: nothing cleaned up) after ``n_shards`` shards."""
    written, real_write = [], tasks.write_shard_task

    def crashing_write(*a, **k):
        if len(written) == n_shards:
            raise SystemExit("simulated crash")
        written.append(a[3])
        return real_write(*a, **k)

    monkeypatch.setattr(tasks, "write_shard_task", crashing_write)
    monkeypatch.setattr(Output, "abandon", lambda self: None)


def _hashes(result) -> dict:
    return {s["path"]: s["sha256"] for sp in result.manifest["splits"].values() for s in sp["shards"]}


@pytest.fixture()
def crashed(demo_dir, tmp_path, monkeypatch):
    """A compile killed after 5 shards: its staging directory, and the args to rerun it."""
    args = (f"{demo_dir}/*.parquet",)
    opts = ("output.shard_rows=2000", "engine.partition_bytes=100KB", *ONE_SPLIT)
    _crash_after(monkeypatch, 5)
    with pytest.raises(SystemExit):
        run_compile(*args, tmp_path / "out", *opts)
    monkeypatch.undo()
    staging = tmp_path / next(d for d in os.listdir(tmp_path) if d.startswith("out.partial-"))
    return args, opts, staging


def test_resume_rewrites_a_truncated_journaled_shard(crashed, tmp_path):
    args, opts, staging = crashed
    journaled = [json.loads(line) for line in open(staging / "journal.jsonl") if '"shard"' in line]
    victim = staging / journaled[1]["info"]["files"]["parquet"]["path"]
    with open(victim, "r+b") as f:
        f.truncate(1000)
    logs = []
    from shardsmith.compiler.config import compose
    from shardsmith.runtime import compile_dataset

    cfg = compose([f"source.paths=[{args[0]}]", f"output.dir={tmp_path / 'out'}", "engine=inprocess", *opts])
    resumed = compile_dataset(cfg, log=logs.append)
    clean = run_compile(*args, tmp_path / "clean", *opts)
    assert _hashes(resumed) == _hashes(clean)
    assert verify(read_manifest(str(tmp_path / "out"))) == []
    assert any("has 1000 bytes, the journal says" in line and "written again" in line for line in logs), logs


def test_stray_tmp_files_of_a_killed_run_are_never_committed(crashed, tmp_path):
    args, opts, staging = crashed
    strays = [staging / "train" / "part-00002.parquet.tmp-0123456789ab", staging / "train" / "part-00099.parquet",
              staging / "manifest.json.tmp", staging / "state" / "state.json.tmp"]
    for p in strays:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half a file")
    resumed = run_compile(*args, tmp_path / "out", *opts)
    files = snapshot(tmp_path / "out")
    assert not [f for f in files if ".tmp" in f or f.endswith("part-00099.parquet")], sorted(files)
    assert foreign_files(files, resumed.manifest) == []
    assert verify(read_manifest(str(tmp_path / "out"))) == []


def test_file_urls_are_local_paths(small_input, tmp_path):
    res = run_compile(f"file://{small_input}/*.parquet", f"file://{tmp_path}/ds", "output.shard_rows=4000")
    assert res.path == f"{tmp_path}/ds/manifest.json"
    assert verify(read_manifest(str(tmp_path / "ds"))) == []
    with pytest.raises(ConfigError, match="holds the input file"):
        run_compile(f"file://{small_input}/*.parquet", f"file://{small_input}", "output.overwrite=true")


def test_a_users_file_named_like_the_lock_is_left_alone(small_input, tmp_path):
    (tmp_path / "out.lock").write_bytes(b"my padlock inventory\n")
    with pytest.raises(ShardsmithError, match="out.lock' exists and is not a shardsmith lock"):
        run_compile(f"{small_input}/*.parquet", tmp_path / "out")
    assert (tmp_path / "out.lock").read_bytes() == b"my padlock inventory\n"
    assert not (tmp_path / "out").exists()


def test_local_files_answer_as_fsspecs_local_file_system(tmp_path):
    """The output checks' local file system (storage.LocalFiles, which spares a local compile the
    fsspec import) lists, finds and reads what fsspec's does: nested files, a link to a directory
    (listed, not followed, unless it is the root), a dangling link, an empty directory, a file given
    as the root, nothing at all."""
    import fsspec

    from shardsmith.storage import LocalFiles

    root = tmp_path / "ds"
    (root / "train").mkdir(parents=True)
    (root / "train" / "part-00000.parquet").write_bytes(b"PAR1")
    (root / "manifest.json").write_text("{}")
    (root / "empty").mkdir()
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "note.txt").write_text("x")
    (root / "linked").symlink_to(other, target_is_directory=True)
    (root / "dangling").symlink_to(tmp_path / "missing")
    ours, theirs = LocalFiles(), fsspec.filesystem("file")
    for path in (root, root / "train", root / "manifest.json", root / "empty", root / "linked", tmp_path / "absent"):
        assert ours.exists(str(path)) == theirs.exists(str(path)), path
        assert ours.isfile(str(path)) == theirs.isfile(str(path)), path
        if theirs.exists(str(path)):
            for withdirs in (False, True):
                assert ours.find(str(path), withdirs) == sorted(theirs.find(str(path), withdirs=withdirs)), path
    assert ours.find(str(tmp_path / "absent")) == []
    assert ours.cat_file(str(root / "manifest.json")) == theirs.cat_file(str(root / "manifest.json")) == b"{}"
    assert ours.find(str(root)) == [f"{root}/{p}" for p in ("dangling", "linked", "manifest.json",
                                                           "train/part-00000.parquet")]
