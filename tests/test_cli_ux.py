"""The first hour at the command line: Hydra's errors with their reason, deletions and config
directories honoured by every command, the engine chosen and why, every command's --help, a closed
pipe, and a local cluster that listens on this machine only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from shardsmith.backends import gpu_unavailable_reason
from shardsmith.cli import COMMANDS, main
from shardsmith.cli.common import split_options
from shardsmith.cli.config_help import KEYS, config_keys
from shardsmith.compiler.composition import normalize_overrides
from shardsmith.compiler.config import EngineConfig, compose
from shardsmith.runtime.cluster import executor_for
from tests.conftest import cli, run_compile
from tests.test_cli import assert_one_line_error, compile_args


def run_main(capsys, *args) -> tuple[int, str, str]:
    """The command line in this process (a traceback fails the test as an exception)."""
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's --help
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_error(capsys, args, *fragments):
    code, _, err = run_main(capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for frag in fragments:
        assert frag in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("command", ["plan", "compile"])
@pytest.mark.parametrize("override,fragments", [
    ("engine.n_worker=2", ["error: engine.n_worker: unknown key (did you mean 'n_workers'?)"]),
    ("engine.n_workers=two", ["error: engine.n_workers: expected an integer, got 'two'"]),
    ("pipeline=typo", ["error: pipeline: no config 'typo' in group 'pipeline'",
                       "available: criteo_hashed, criteo_synthetic"]),
    ("engine=gpuu", ["engine: no config 'gpuu'", "(did you mean 'gpu'?)", "available: auto, cpu, gpu, inprocess ("]),
    ("engine.dashboard=maybe", ["engine.dashboard: expected true or false, got 'maybe'"]),
    ("split.fractions.train=lots", ["split.fractions.train: expected a number, got 'lots'"]),
    ("roles=[a]", ["roles: expected a mapping like {a: 1}, got a list"]),
    ("graph=3", ["graph: expected a list of steps or a mapping of named steps, got 3"]),
    ("output=3", ["error: output: expected a section of keys like {key: value}, got a number (3)"]),
    ("split.seed=null", ["error: split.seed: expected a value, got null"]),
    ("source.paths=[a, null]", ["error: source.paths[1]: expected a string, got null"]),
    ("nme=x", ["nme: unknown key (did you mean 'name'?)"]),
    ("x=[", ["x=[: cannot parse this override"]),
    ("hydra.searchpath=[file:///no/such/dir]", ["hydra.searchpath: no such config directory"]),
    ("~split.fractions.nope", ["Could not delete from config. 'split.fractions.nope' does not exist."]),
    ("split.fractions={train: 0.5, test: 0.5}", ["split.fractions: fractions must sum to 1, they sum to 1.05",
                                                 "~split.fractions.NAME"]),
])
def test_hydra_errors_name_the_key_and_say_why(capsys, tmp_path, demo_dir, command, override, fragments):
    args = [command, f"source.paths=[{demo_dir}/*.parquet]", override]
    if command == "compile":
        args += [f"output.dir={tmp_path}/out", f"hydra.run.dir={tmp_path}/hydra"]
    line = assert_error(capsys, args, *fragments)
    assert "schema" not in line
    assert not os.listdir(tmp_path)  # no run directory, no output


@pytest.mark.parametrize("sweep,fragment", [
    ("engine.n_worker=1,2", "error: engine.n_worker: unknown key (did you mean 'n_workers'?)"),
    ("engine.n_workers=1,two", "error: engine.n_workers: expected an integer, got 'two'"),
    ("graph=[{op: log1p, cols: [I1]}],[{op: log1p, cols: [nope]}]", "error: graph[0].cols: "),
])
def test_a_sweep_is_checked_before_its_first_job(capsys, tmp_path, demo_dir, sweep, fragment):
    """Every value of every swept key is checked (not only the first job's) before Hydra makes a
    sweep directory or launches a job."""
    assert_error(capsys, ["compile", "-m", f"source.paths=[{demo_dir}/*.parquet]", "engine=inprocess",
                          f"hydra.sweep.dir={tmp_path}/multi", f"output.dir={tmp_path}/out", sweep], fragment)
    assert not os.listdir(tmp_path)


def test_a_single_value_for_a_list_key_is_a_list_of_one(demo_dir):
    cfg = compose([f"source.paths={demo_dir}/part-00000.parquet", "output.format=webdataset",
                   "plugins=tests.plugins.my_ops"])
    assert cfg.output.format == ["webdataset"] and cfg.plugins == ["tests.plugins.my_ops"]
    assert cfg.source.paths == [f"{demo_dir}/part-00000.parquet"]
    # A sweep's values each become a list of one; lists, quoted values and interpolations are kept.
    assert normalize_overrides(["output.format=parquet,webdataset", "output.format=[parquet]",
                                "+plugins='a,b'", "name=x,y"]) == \
        ["output.format=[parquet],[webdataset]", "output.format=[parquet]", "+plugins='a,b'", "name=x,y"]


def test_compile_honours_deletions_and_a_single_output_format(tmp_path, demo_dir):
    out = tmp_path / "out"
    proc = cli(*compile_args(f"{demo_dir}/*.parquet", out, "~split.fractions.valid", "~split.fractions.test",
                             "split.fractions.train=1.0", "output.format=parquet"))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["splits"]) == ["train"] and manifest["splits"]["train"]["rows"] == 30_000
    assert "engine: cpu (engine.kind=cpu)" in proc.stdout + proc.stderr  # Hydra logs to stdout


@pytest.fixture()
def my_configs(tmp_path, demo_dir):
    """A config directory outside the package: a pipeline with its own two splits, and a primary config."""
    d = tmp_path / "my-configs"
    (d / "pipeline").mkdir(parents=True)
    (d / "pipeline" / "mine.yaml").write_text(textwrap.dedent(f"""\
        # @package _global_
        name: mine
        source:
          paths: [{demo_dir}/*.parquet]
        graph:
          - {{op: log1p, cols: [I1]}}
        split:
          fractions: {{train: 0.75, test: 0.25}}
        output:
          dir: {tmp_path}/out-mine
        """))
    (d / "myconfig.yaml").write_text("defaults:\n  - shardsmith_schema\n  - pipeline: mine\n  - engine: inprocess\n"
                                     "  - _self_\n")
    return d


def test_a_pipeline_config_sets_its_splits_completely(my_configs):
    cfg = compose(["pipeline=mine"], extra_dir=str(my_configs))
    assert cfg.split.fractions == {"train": 0.75, "test": 0.25}  # no 'valid' merged in from a default
    assert compose(["source.paths=[x]"]).split.fractions == {"train": 0.9, "valid": 0.05, "test": 0.05}
    cfg = compose([f"hydra.searchpath=[file://{my_configs}]", "pipeline=mine", "~split.fractions.test",
                   "split.fractions.train=1.0"])
    assert cfg.split.fractions == {"train": 1.0}


def test_plan_takes_config_dirs_and_search_paths(capsys, my_configs):
    for args in (["--config-dir", str(my_configs), "pipeline=mine"], [f"hydra.searchpath=[file://{my_configs}]",
                                                                      "pipeline=mine"],
                 ["-cd", str(my_configs), "--config-name", "myconfig"]):
        code, out, err = run_main(capsys, "plan", *args)
        assert code == 0, err
        assert "split train, test by hash" in out and "log1p" in out
    assert_error(capsys, ["plan", "--config-dir", str(my_configs / "nope"), "pipeline=mine"],
                 "error: --config-dir: no such config directory")
    assert_error(capsys, ["plan", "--config-dir", str(my_configs), "--config-name", "nope"],
                 "error: --config-name: no config 'nope'")
    assert_error(capsys, ["plan", "pipeline=mine"], "error: pipeline: no config 'mine'", "--config-dir DIR")


def test_compile_takes_config_dirs_and_search_paths(tmp_path, my_configs):
    proc = cli("compile", f"hydra.searchpath=[file://{my_configs}]", "pipeline=mine", "engine=inprocess",
               f"hydra.run.dir={tmp_path}/hydra-a")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "out-mine" / "manifest.json").read_text())
    assert list(manifest["splits"]) == ["train", "test"] and manifest["name"] == "mine"
    proc = cli("compile", "--config-dir", str(my_configs), "--config-name", "myconfig", "output.overwrite=true",
               f"output.dir={tmp_path}/out-b", f"hydra.run.dir={tmp_path}/hydra-b")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "out-b" / "manifest.json").read_text())["rows"]["out"] == 30_000
    proc = cli("compile", "--config-path", str(my_configs), "pipeline=mine")
    assert_one_line_error(proc, "--config-path: give the directory with --config-dir")


def test_plan_says_which_engine_and_why(capsys, demo_dir):
    src = f"source.paths=[{demo_dir}/*.parquet]"
    reason = gpu_unavailable_reason()
    _, out, _ = run_main(capsys, "plan", src, "engine=auto")
    if reason:
        assert out.splitlines()[0] == f"engine: cpu (engine.kind=auto, and the GPU engine cannot run here: {reason})"
    else:
        assert out.splitlines()[0] == "engine: gpu (engine.kind=auto, and the GPU engine can run here)"
    code, out, _ = run_main(capsys, "plan", src, "engine=gpu")
    assert code == 0
    if reason:
        assert out.splitlines()[0] == (f"engine: gpu (engine.kind=gpu; the GPU engine cannot run here ({reason}), so "
                                       "a compile here would stop)")
    else:
        assert out.splitlines()[0] == "engine: gpu (engine.kind=gpu; the GPU engine can run here)"
    _, out, _ = run_main(capsys, "plan", src)
    assert out.splitlines()[0] == "engine: cpu (engine.kind=cpu)"


def test_every_command_has_a_help_with_descriptions_and_defaults(capsys):
    for command in COMMANDS:
        code, out, err = run_main(capsys, command, "--help")
        assert code == 0 and not err, (command, err)
        assert out.startswith(f"usage: shardsmith {command}"), out[:200]
        description = out.split("\n\n")[1]
        assert len(description) > 60, (command, description)
    _, out, _ = run_main(capsys, "demo-data", "--help")
    assert "--rows ROWS rows in all; events for --kind events (default: 2000000)" in " ".join(out.split())
    _, out, _ = run_main(capsys, "compile", "--help")
    groups = out.split("config groups")[1].split("keys (value")[0]
    assert "options: auto, cpu, gpu, inprocess\n" in groups and "schema" not in groups
    assert "engine.n_workers" in out and "engine.host" in out and "= 127.0.0.1" in out
    assert "--config-dir" in out and "hydra.searchpath" in out
    _, out, _ = run_main(capsys, "plan", "--help", "engine=gpu")
    assert "--config-dir DIR" in out and "engine.kind" in out and "= gpu" in out


def test_every_config_key_is_described():
    assert set(config_keys()) <= set(KEYS), set(config_keys()) - set(KEYS)
    assert "engine.n_workers" in config_keys()


def test_usage_errors_are_one_line(capsys):
    assert_error(capsys, ["plan", "--bogus"], "error: shardsmith plan: unrecognized arguments: --bogus")
    assert_error(capsys, ["compile", "--bogus"], "error: shardsmith compile: unrecognized arguments: --bogus")
    assert_error(capsys, ["demo-data", "--files", "0"], "error: --files: expected 1 .. --rows files")
    assert_error(capsys, ["inspect"], "error: shardsmith inspect: the following arguments are required: manifest")


@pytest.mark.parametrize("command", ["compile --help", "inspect"])
def test_a_closed_pipe_ends_quietly(tmp_path, demo_dir, command):
    """``shardsmith ... | head``: the reader goes away; no traceback, the exit of a command killed by SIGPIPE."""
    args = command.split()
    if args == ["inspect"]:
        args.append(run_compile(f"{demo_dir}/*.parquet", tmp_path / "out").path)
    proc = subprocess.Popen([sys.executable, "-m", "shardsmith", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=os.environ.copy())
    proc.stdout.close()  # before the command writes: its first write meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == "", err


def test_a_compile_whose_log_reader_leaves_finishes_quietly(tmp_path, demo_dir):
    """``shardsmith compile | head -1``: Hydra logs to stdout; the lines after the reader left are
    dropped (no 'Logging error' traceback per line) and the compile finishes."""
    args = compile_args(f"{demo_dir}/*.parquet", tmp_path / "out")[1:]
    proc = subprocess.Popen([sys.executable, "-m", "shardsmith", "compile", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=os.environ.copy())
    first = proc.stdout.readline().decode()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=600) in (0, 141), err
    assert "engine: cpu" in first and err == "", err
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["rows"]["out"] == 30_000


def _bound_hosts(ex) -> set[str]:
    scheduler = ex.client.cluster.scheduler
    hosts = {sock.getsockname()[0] for sock in scheduler.http_server._sockets.values()}
    for address in [scheduler.address, *ex.client.scheduler_info()["workers"]]:
        if address.startswith("tcp://"):
            hosts.add(address[len("tcp://"):].rsplit(":", 1)[0])
    return hosts


@pytest.mark.parametrize("processes", [False, True])
def test_a_local_cluster_listens_on_this_machine_only(processes):
    engine = EngineConfig(n_workers=1, threads_per_worker=1, processes=processes, dashboard=True)
    lines = []
    with executor_for(engine, "cpu", lines.append) as ex:
        assert _bound_hosts(ex) == {"127.0.0.1"}
        if ex.dashboard:  # bokeh installed: the link names the interface it listens on
            assert ex.dashboard.startswith("http://127.0.0.1:")
    assert "no dashboard" in lines[0] or "dashboard http://127.0.0.1:" in lines[0]
    with executor_for(EngineConfig(n_workers=1), "cpu", lines.append) as ex:
        assert _bound_hosts(ex) == {"127.0.0.1"}
    assert lines[-1] == "started a local CPU cluster: 1 worker(s)"  # no dashboard asked for: not a word of one


@pytest.mark.parametrize("processes", [False, True])
def test_a_local_cluster_has_the_cores_this_process_may_use(monkeypatch, processes):
    """A job held to one core (a Slurm cpuset, taskset) gets one worker thread or process, as its
    plan says, not one per core of the machine."""
    if os.cpu_count() == 1:
        pytest.skip("needs a machine with more than one core")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    with executor_for(EngineConfig(processes=processes), "cpu") as ex:
        assert sorted(ex.client.nthreads().values()) == [1]


def test_engine_host_is_checked(capsys, demo_dir):
    assert_error(capsys, ["plan", f"source.paths=[{demo_dir}/*.parquet]", "engine.host='a b'"],
                 "error: engine.host: expected an address")


def test_options_and_overrides_are_told_apart():
    opts, overrides = split_options(["--config-dir=/x", "~split.fractions.valid", "--passes", "a=1", "-cd", "/y",
                                     "~b"], flags=("--passes",))
    assert opts == ["--config-dir=/x", "--passes", "-cd", "/y"]
    assert overrides == ["~split.fractions.valid", "a=1", "~b"]
