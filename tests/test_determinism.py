"""Same input and config: byte-identical shards, whatever the workers, partitions or executor."""

from __future__ import annotations

import pytest

from tests.conftest import run_compile


def shard_hashes(res) -> dict:
    return {s["path"]: s["sha256"] for split in res.manifest["splits"].values() for s in split["shards"]}


@pytest.mark.slow
def test_workers_and_partition_sizes_do_not_change_a_byte(demo_dir, tmp_path):
    common = ("output.shard_rows=7000", "fit.cache=off")  # every compile fits: no fit cache shared
    runs = {
        "dask-1-small": run_compile(f"{demo_dir}/*.parquet", tmp_path / "a", *common, "engine.n_workers=1",
                                    "engine.partition_bytes=3MB", engine="cpu"),
        "dask-2-processes-big": run_compile(f"{demo_dir}/*.parquet", tmp_path / "b", *common, "engine.n_workers=2",
                                            "engine.processes=true", "engine.partition_bytes=1GB", engine="cpu"),
        "inprocess-small": run_compile(f"{demo_dir}/*.parquet", tmp_path / "c", *common,
                                       "engine.partition_bytes=100KB"),
    }
    partitions = {k: r.manifest["plan"]["partitions"] for k, r in runs.items()}
    assert len(set(partitions.values())) == 3, partitions  # three different partitionings
    hashes = [shard_hashes(r) for r in runs.values()]
    assert hashes[0] == hashes[1] == hashes[2]
    assert len(hashes[0]) >= 5  # several shards per split, cut across partition boundaries
    stats = [r.manifest["stats"] for r in runs.values()]
    assert stats[0] == stats[1] == stats[2]


def test_compiled_cpu_kernels_do_not_change_a_byte(demo_dir, tmp_path, monkeypatch):
    """engine.cpu_kernels numba, numpy and auto (which switches from NumPy to compiled kernels as
    they become ready) write the same shards, in process and on two threads of a local cluster."""
    from shardsmith.kernels import cpujit

    monkeypatch.setattr(cpujit, "AUTO_MIN_ROWS", 0)  # auto compiles for this little input too

    settings = ["numpy", "auto"] + (["numba"] if cpujit.available() else [])
    runs = {k: run_compile(f"{demo_dir}/*.parquet", tmp_path / k, "output.shard_rows=7000",
                           f"engine.cpu_kernels={k}") for k in settings}
    if cpujit.available():
        runs["cluster"] = run_compile(f"{demo_dir}/*.parquet", tmp_path / "cluster", "output.shard_rows=7000",
                                      "engine.cpu_kernels=numba", "engine.n_workers=1", "engine.threads_per_worker=2",
                                      "engine.partition_bytes=300KB", engine="cpu")
    hashes = {k: shard_hashes(r) for k, r in runs.items()}
    assert all(h == hashes["numpy"] for h in hashes.values()), hashes
    assert runs["numpy"].manifest["stats"] == runs[settings[-1]].manifest["stats"]


def test_seed_changes_the_split(demo_dir, tmp_path):
    a = run_compile(f"{demo_dir}/*.parquet", tmp_path / "a", "split.seed=1")
    b = run_compile(f"{demo_dir}/*.parquet", tmp_path / "b", "split.seed=2")
    ra = {k: v["rows"] for k, v in a.manifest["splits"].items()}
    rb = {k: v["rows"] for k, v in b.manifest["splits"].items()}
    assert sum(ra.values()) == sum(rb.values()) == 30_000
    assert ra != rb
    for rows in (ra, rb):  # 90/5/5 within a few standard deviations
        assert abs(rows["train"] - 27_000) < 300 and abs(rows["valid"] - 1_500) < 200


def test_rerun_is_up_to_date_and_overwrite_rebuilds(demo_dir, tmp_path):
    a = run_compile(f"{demo_dir}/*.parquet", tmp_path / "a")
    again = run_compile(f"{demo_dir}/*.parquet", tmp_path / "a", "engine.partition_bytes=1MB")
    assert again.up_to_date and shard_hashes(again) == shard_hashes(a)
    from shardsmith.errors import ConfigError

    with pytest.raises(ConfigError, match="output.dir: .* holds a dataset built from another config"):
        run_compile(f"{demo_dir}/*.parquet", tmp_path / "a", "split.seed=9")
    rebuilt = run_compile(f"{demo_dir}/*.parquet", tmp_path / "a", "split.seed=9", "output.overwrite=true")
    assert not rebuilt.up_to_date and shard_hashes(rebuilt) != shard_hashes(a)


@pytest.mark.slow
def test_an_existing_scheduler_gives_the_same_shards(demo_dir, tmp_path):
    from distributed import LocalCluster

    local = run_compile(f"{demo_dir}/*.parquet", tmp_path / "local", "output.shard_rows=7000")
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster:
        remote = run_compile(f"{demo_dir}/*.parquet", tmp_path / "remote", "output.shard_rows=7000",
                             f"engine.scheduler={cluster.scheduler_address}", engine="cpu")
        assert len(cluster.scheduler_info["workers"]) == 2
    assert remote.manifest["engine"]["workers"] == 2
    assert shard_hashes(remote) == shard_hashes(local)


def test_an_unreachable_scheduler_names_the_key(demo_dir, tmp_path):
    from shardsmith.errors import ShardsmithError

    with pytest.raises(ShardsmithError, match="engine.scheduler: cannot reach the Dask scheduler tcp://127.0.0.1:9"):
        run_compile(f"{demo_dir}/*.parquet", tmp_path / "x", "engine.scheduler=tcp://127.0.0.1:9", engine="cpu")
    assert not (tmp_path / "x").exists()


def test_code_identity_is_the_deciding_source(tmp_path):
    """The dataset key's code part hashes the sources that decide the shards: an edit to an op
    changes it, an edit to the report does not; the version comes from the package metadata."""
    import importlib.metadata
    import shutil

    from shardsmith.runtime import identity

    pkg = tmp_path / "shardsmith"
    shutil.copytree(identity.PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    before = identity.tree_sha256(pkg)
    assert before == identity.code_sha256()
    (pkg / "profiling" / "plots.py").write_text((pkg / "profiling" / "plots.py").read_text() + "\n# edited\n")
    assert identity.tree_sha256(pkg) == before
    (pkg / "ops" / "numeric.py").write_text((pkg / "ops" / "numeric.py").read_text() + "\n# edited\n")
    assert identity.tree_sha256(pkg) != before
    assert identity.code_version() == importlib.metadata.version("shardsmith")


def test_changed_op_code_never_returns_stale_shards(demo_dir, tmp_path):
    """A rerun with the same config and inputs but edited op code is not 'up to date' (here it
    refuses to replace the old dataset without output.overwrite, instead of returning it)."""
    import shutil

    from shardsmith.compiler.config import config_dir
    from shardsmith.runtime import identity
    from tests.conftest import cli

    out = tmp_path / "out"
    args = ["compile", f"source.paths=[{demo_dir}/*.parquet]", f"output.dir={out}", "engine=inprocess",
            "output.overwrite=false", f"hydra.run.dir={tmp_path / 'run'}"]
    assert cli(*args, cwd=tmp_path).returncode == 0
    again = cli(*args, cwd=tmp_path)
    assert again.returncode == 0 and "up to date" in again.stdout + again.stderr
    pkg = tmp_path / "edited" / "shardsmith"
    shutil.copytree(identity.PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(config_dir(), pkg.parent / "configs")
    numeric = pkg / "ops" / "numeric.py"
    numeric.write_text(numeric.read_text() + "\n# a changed op: the key must change with it\n")
    edited = cli(*args, cwd=tmp_path, env={"PYTHONPATH": str(pkg.parent)})
    assert "up to date" not in edited.stdout + edited.stderr
    assert "holds a dataset built from another config" in edited.stderr  # refuses to overwrite, so not stale
