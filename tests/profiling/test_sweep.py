"""Hydra multirun sweeps through ``shardsmith compile -m``: every job compiles into its own
directory and leaves its profile in its run directory; ``report --compare`` reads them; Hydra's
Optuna sweeper minimises the cost that jobs return."""

from __future__ import annotations

import json
import math
import os

import pytest

from shardsmith.cli import main
from shardsmith.profiling import report, sweep


def _jobs(sweep_dir) -> list[dict]:
    out = []
    for name in sorted(os.listdir(sweep_dir), key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0)):
        path = os.path.join(sweep_dir, name, "profile.json")
        if name.isdigit() and os.path.exists(path):
            out.append(json.load(open(path)))
    return out


def _shas(dataset_dir: str) -> list[str]:
    m = json.load(open(os.path.join(dataset_dir, "manifest.json")))
    return [s["sha256"] for split in m["splits"].values() for s in split["shards"]]


def test_multirun_jobs_each_compile_into_their_own_directory(demo_data, tmp_path, capsys):
    sweep_dir = tmp_path / "mr"
    rc = main(["compile", "-m", "engine=inprocess", "engine.partition_bytes=1MB,32MB",
               f"source.paths=[{demo_data}/*.parquet]", f"hydra.sweep.dir={sweep_dir}", "profiling.cost_per_hour=1.0"])
    assert rc == 0
    jobs = _jobs(sweep_dir)
    assert [j["hydra"]["job_num"] for j in jobs] == [0, 1]
    assert [j["engine"]["partition_bytes"] for j in jobs] == ["1MB", "32MB"]
    assert jobs[0]["engine"]["partitions"] > jobs[1]["engine"]["partitions"]
    for j in jobs:
        run_dir = j["hydra"]["run_dir"]
        assert j["dataset"] == os.path.join(run_dir, "shards", "criteo_synthetic")
        assert "engine.partition_bytes=" in " ".join(j["hydra"]["overrides"])
        assert j["cost"]["run"] == pytest.approx(j["wall_s"] / 3600)
    # Both really compiled (neither found the other's dataset up to date), to the same bytes.
    assert _shas(jobs[0]["dataset"]) == _shas(jobs[1]["dataset"])

    capsys.readouterr()
    assert main(["report", "--compare", str(sweep_dir), "--no-html"]) == 0
    out = capsys.readouterr().out
    cheapest = min(jobs, key=lambda j: j["cost"]["run"])
    assert f"cheapest setting: engine.partition_bytes={cheapest['engine']['partition_bytes']} " in out


def test_jobs_sharing_an_absolute_output_dir_say_they_measured_nothing(demo_data, tmp_path, capsys):
    """Same config apart from the engine: the second job finds the first one's dataset up to date."""
    sweep_dir, shared = tmp_path / "mr", tmp_path / "shared"
    rc = main(["compile", "-m", "engine=inprocess", "engine.partition_bytes=1MB,32MB",
               f"source.paths=[{demo_data}/*.parquet]", f"hydra.sweep.dir={sweep_dir}", f"output.dir={shared}"])
    assert rc == 0
    assert [j["hydra"]["job_num"] for j in _jobs(sweep_dir)] == [0]
    logged = "".join(capsys.readouterr())  # Hydra's job logging writes to the console
    assert "multirun job 1: " in logged and "so this job measured nothing" in logged
    runs = report.load_runs(str(sweep_dir))
    assert [r["status"] for r in runs] == ["ok", "no profile (the job failed or measured nothing)"]


@pytest.mark.slow
def test_the_sweep_from_the_issue_runs_on_local_clusters(demo_data, tmp_path, capsys):
    sweep_dir = tmp_path / "mr"
    # The issue's sweep, over worker processes so that each job's profile has a row per worker.
    rc = main(["compile", "-m", "engine.partition_bytes=64MB,256MB,1GB", "engine.n_workers=1,2",
               "engine.processes=true", f"source.paths=[{demo_data}/*.parquet]", f"hydra.sweep.dir={sweep_dir}",
               "profiling.cost_per_hour=2.5"])
    assert rc == 0
    jobs = _jobs(sweep_dir)
    assert len(jobs) == 6
    settings = [(j["engine"]["partition_bytes"], j["engine"]["workers"]) for j in jobs]
    assert settings == [(b, n) for b in ("64MB", "256MB", "1GB") for n in (1, 2)]
    assert all(j["engine"]["executor"] == "dask" for j in jobs)
    assert all(len([w for w in j["workers"] if w["role"] == "worker"]) == j["engine"]["workers"] for j in jobs)
    capsys.readouterr()
    slowest = max(j["wall_s"] for j in jobs)
    assert main(["report", "--compare", str(sweep_dir), "--deadline", f"{slowest + 1}s"]) == 0
    out = capsys.readouterr().out
    assert out.count("met deadline") == 6 and os.path.isfile(sweep_dir / "compare.html")


def test_objective_is_the_cost_when_priced_else_the_wall_time():
    class R:
        timings = {"wall": 3.0}
        up_to_date = False

    assert sweep.objective({"cost": {"run": 0.25}, "wall_s": 9.0}, R()) == 0.25
    assert sweep.objective({"cost": {"run": None}, "wall_s": 9.0}, R()) == 9.0
    assert sweep.objective(None, R()) == 3.0
    R.up_to_date = True
    assert math.isnan(sweep.job_finish(R()))


def test_optuna_sweeper_minimises_the_cost(demo_data, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="hydra-optuna-sweeper is not installed")
    from omegaconf import OmegaConf

    sweep_dir = tmp_path / "opt"
    rc = main(["compile", "-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1",
               "hydra.sweeper.direction=minimize", "hydra.sweeper.sampler.seed=1",
               "engine.partition_bytes=choice(1MB,8MB)", "engine=inprocess", f"source.paths=[{demo_data}/*.parquet]",
               f"hydra.sweep.dir={sweep_dir}", "profiling.cost_per_hour=3.6"])
    assert rc == 0
    jobs = _jobs(sweep_dir)
    assert len(jobs) == 3
    best = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    cheapest = min(jobs, key=lambda j: j["cost"]["run"])
    assert best.best_value == pytest.approx(cheapest["cost"]["run"])
    assert best.best_value == pytest.approx(cheapest["wall_s"] / 1000)
    assert best.best_params["engine.partition_bytes"] == cheapest["engine"]["partition_bytes"]
    assert report.choose(report.load_runs(str(sweep_dir)), None)["path"].startswith(cheapest["hydra"]["run_dir"])


def test_a_single_run_leaves_its_profile_in_the_hydra_run_directory(demo_data, tmp_path, capsys):
    run_dir, out = tmp_path / "run", tmp_path / "ds"
    assert main(["compile", "engine=inprocess", f"source.paths=[{demo_data}/*.parquet]", f"output.dir={out}",
                 f"hydra.run.dir={run_dir}"]) == 0
    copy = json.load(open(run_dir / "profile.json"))
    original = json.load(open(out / "profile.json"))
    assert copy["hydra"]["mode"] == "run" and copy["hydra"]["job_num"] is None
    assert f"output.dir={out}" in copy["hydra"]["overrides"]
    assert {k: v for k, v in copy.items() if k != "hydra"} == original
    assert f"see 'shardsmith report {out}'" in "".join(capsys.readouterr())
