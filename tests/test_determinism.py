"""Same input and config: byte-identical shards, whatever the workers, partitions or executor."""

from __future__ import annotations

import pytest

from tests.conftest import run_compile


def shard_hashes(res) -> dict:
    return {s["path"]: s["sha256"] for split in res.manifest["splits"].values() for s in split["shards"]}


@pytest.mark.slow
def test_workers_and_partition_sizes_do_not_change_a_byte(demo_dir, tmp_path):
    common = ("output.shard_rows=7000",)
    runs = {
        "dask-1-small": run_compile(f"{demo_dir}/*.parquet", tmp_path / "a", *common, "engine.n_workers=1",
                                    "engine.partition_bytes=1MB", engine="cpu"),
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


def test_code_version_reads_checkouts_and_worktrees(tmp_path):
    from shardsmith import __version__
    from shardsmith.compiler.executor import code_version

    common = tmp_path / "repo" / ".git"
    (common / "refs" / "heads").mkdir(parents=True)
    (common / "HEAD").write_text("ref: refs/heads/main\n")
    (common / "refs" / "heads" / "main").write_text("a" * 40 + "\n")
    assert code_version(str(tmp_path / "repo")) == f"{__version__}+gaaaaaaaaaa"
    # A worktree: .git is a file naming its git dir, whose commondir holds packed refs.
    wt_git = common / "worktrees" / "wt"
    wt_git.mkdir(parents=True)
    (wt_git / "HEAD").write_text("ref: refs/heads/feature\n")
    (wt_git / "commondir").write_text("../..\n")
    (common / "packed-refs").write_text("# pack-refs\n" + "b" * 40 + " refs/heads/feature\n")
    (tmp_path / "wt").mkdir()
    (tmp_path / "wt" / ".git").write_text(f"gitdir: {wt_git}\n")
    assert code_version(str(tmp_path / "wt")) == f"{__version__}+gbbbbbbbbbb"
    assert code_version(str(tmp_path / "nowhere")) == __version__
