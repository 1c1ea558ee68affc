"""Start-up (issue 10, item 5): what ``shardsmith plan`` imports, and the garbage collector that
the command line keeps off while a command starts (BENCHMARKS.md "Start-up")."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

import pytest

import shardsmith.cli.compile as compile_cli
from shardsmith.cli import main

# What a run needs and a plan does not: the driver and its executors, writers and profiler, the
# object-store layer (a local input), Dask.
RUN_ONLY = ("shardsmith.runtime.driver", "shardsmith.runtime.cluster", "shardsmith.runtime.writing",
            "shardsmith.profiling.profile", "fsspec", "dask", "distributed", "numba", "torch", "webdataset")


def test_plan_imports_nothing_of_a_run(demo_dir):
    code = ("import json, sys; from shardsmith.cli import main; "
            f"code = main(['plan', 'source.paths=[{demo_dir}/*.parquet]']); "
            f"print(json.dumps([code, sorted(m for m in {list(RUN_ONLY)!r} if m in sys.modules)]), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == [0, []]


def test_a_local_compile_imports_no_fsspec(tmp_path, demo_dir):
    """fsspec (with asyncio and importlib.metadata, a tenth of a second) is for URLs: a compile
    from local files into a local directory checks and stages its output without it."""
    out = tmp_path / "out"
    code = ("import json, sys; from shardsmith.cli import main; "
            f"code = main(['compile', 'source.paths=[{demo_dir}/*.parquet]', 'output.dir={out}', "
            f"'hydra.run.dir={tmp_path}/hydra', 'fit.cache=off']); "
            "print(json.dumps([code, 'fsspec' in sys.modules]), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == [0, False]
    rows = json.loads((out / "manifest.json").read_text())["rows"]
    assert rows["out"] == rows["in"] > 0


@pytest.mark.parametrize("collecting", [True, False])
def test_the_command_line_leaves_the_collector_as_it_found_it(capsys, demo_dir, collecting):
    (gc.enable if collecting else gc.disable)()
    try:
        assert main(["plan", f"source.paths=[{demo_dir}/*.parquet]"]) == 0
        assert gc.isenabled() is collecting
        assert main(["plan", "nme=x"]) == 2  # an error on the way out too
        assert gc.isenabled() is collecting
    finally:
        gc.enable()
    assert "error: nme: unknown key (did you mean 'name'?)" in capsys.readouterr().err


def test_a_compile_collects_garbage_while_it_works(tmp_path, demo_dir, monkeypatch):
    seen = []
    monkeypatch.setattr(compile_cli, "compile_dataset", lambda cfg, log: seen.append(gc.isenabled()))
    monkeypatch.setattr(compile_cli, "job_finish", lambda result, log: None)
    assert main(["compile", f"source.paths=[{demo_dir}/*.parquet]", f"output.dir={tmp_path}/out",
                 f"hydra.run.dir={tmp_path}/hydra"]) == 0
    assert seen == [True]


def _entry(tmp_path, before: str, argv: list[str]) -> subprocess.CompletedProcess:
    """``cli.entry`` (what the shardsmith command runs) in a fresh process after ``before``."""
    code = (f"import atexit, sys, threading, time; from shardsmith.cli import entry; {before}; "
            f"sys.argv = ['shardsmith', *{argv!r}]; entry()")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_the_command_ends_after_running_exit_handlers_and_flushing_its_output(tmp_path):
    """entry() skips the interpreter's teardown, not what comes before it: atexit handlers run, a
    piped stdout's buffer reaches its reader, the exit code is main()'s."""
    before = "atexit.register(lambda: open('handler-ran', 'w').write('yes')); sys.stdout.write('x' * 100_000)"
    done = _entry(tmp_path, before, ["--help"])
    assert done.returncode == 0 and (tmp_path / "handler-ran").read_text() == "yes"
    assert done.stdout.startswith("x" * 100_000) and "usage: shardsmith <command>" in done.stdout
    wrong = _entry(tmp_path, "pass", ["complie"])
    assert wrong.returncode == 2 and "did you mean 'compile'" in wrong.stderr


def test_the_command_waits_for_a_thread_still_running(tmp_path):
    before = ("threading.Thread(target=lambda: (time.sleep(0.5), open('thread-done', 'w').write('yes'))).start()")
    done = _entry(tmp_path, before, ["--help"])
    assert done.returncode == 0 and (tmp_path / "thread-done").read_text() == "yes"


def test_a_profiled_command_exits_through_python_so_the_profile_is_written(tmp_path):
    """``python -m cProfile -o F -m shardsmith ...`` (bench/compile/run.py --profile) writes F at
    Python's exit, which the skipped teardown would skip too."""
    out = tmp_path / "run.pstats"
    done = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), "-m", "shardsmith", "--help"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0 and "usage: shardsmith <command>" in done.stdout
    assert out.stat().st_size > 0


@pytest.mark.parametrize("own_process", [True, False])
def test_the_start_up_objects_are_frozen_only_in_the_commands_own_process(monkeypatch, own_process):
    from shardsmith.cli import common

    monkeypatch.setattr(common, "FREEZE_STARTUP", own_process)
    gc.unfreeze()
    try:
        common.startup_over()
        assert gc.isenabled() and (gc.get_freeze_count() > 0) is own_process
    finally:
        gc.unfreeze()
