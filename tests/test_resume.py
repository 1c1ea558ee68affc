"""A crashed compile resumes: fitted state and written shards are reused, the result is identical."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from shardsmith.backends.cpu import CpuBackend
from shardsmith.runtime import tasks
from shardsmith.runtime.staging import Output
from tests.conftest import run_compile


def hashes(res):
    return {s["path"]: s["sha256"] for sp in res.manifest["splits"].values() for s in sp["shards"]}


def test_resume_after_a_crash_reuses_state_and_shards(demo_dir, tmp_path, monkeypatch):
    args = (f"{demo_dir}/*.parquet",)
    opts = ("output.shard_rows=2000", "engine.partition_bytes=100KB",
            "~split.fractions.valid", "~split.fractions.test", "split.fractions.train=1.0")
    clean = run_compile(*args, tmp_path / "clean", *opts)

    written = []
    real_write = tasks.write_shard_task

    def crashing_write(*a):
        if len(written) == 6:
            raise SystemExit("simulated crash")
        written.append(a[3])
        return real_write(*a)

    monkeypatch.setattr(tasks, "write_shard_task", crashing_write)
    monkeypatch.setattr(Output, "abandon", lambda self: None)  # a crash cleans nothing up
    with pytest.raises(SystemExit):
        run_compile(*args, tmp_path / "out", *opts)
    staging = [d for d in os.listdir(tmp_path) if d.startswith("out.partial-")]
    assert staging and not os.path.exists(tmp_path / "out")
    monkeypatch.undo()

    reads = []
    real_read = CpuBackend.read
    monkeypatch.setattr(CpuBackend, "read", lambda self, *a: reads.append(a[0].index) or real_read(self, *a))
    resumed = run_compile(*args, tmp_path / "out", *opts)
    assert hashes(resumed) == hashes(clean)
    assert resumed.manifest["rows"] == clean.manifest["rows"]
    parts = clean.manifest["plan"]["partitions"]
    assert 0 < len(reads) < parts  # no fit pass again, and the partitions of finished shards are skipped
    assert not os.path.exists(tmp_path / staging[0])


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path):
    from shardsmith.demo import generate

    generate(300_000, str(tmp_path / "raw"), files=3, row_group_rows=16384)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "shardsmith", "compile", f"source.paths=[{tmp_path}/raw/*.parquet]",
           f"output.dir={out}", "engine=inprocess", "output.shard_rows=5000", "engine.partition_bytes=1MB",
           f"hydra.run.dir={tmp_path}/hydra"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = None
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        found = [d for d in os.listdir(tmp_path) if d.startswith("out.partial-")]
        if found and os.path.exists(tmp_path / found[0] / "journal.jsonl"):
            journal = tmp_path / found[0] / "journal.jsonl"
            if sum(1 for line in open(journal) if '"shard"' in line) >= 5:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the compile finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()
    done_before = sum(1 for line in open(journal) if '"shard"' in line)
    subprocess.run(cmd, check=True, capture_output=True)
    manifest = json.load(open(out / "manifest.json"))
    clean_cmd = [c.replace(str(out), str(tmp_path / "clean")) for c in cmd]
    subprocess.run(clean_cmd, check=True, capture_output=True)
    clean = json.load(open(tmp_path / "clean" / "manifest.json"))
    assert done_before >= 5
    assert {s["path"]: s["sha256"] for sp in manifest["splits"].values() for s in sp["shards"]} == \
        {s["path"]: s["sha256"] for sp in clean["splits"].values() for s in sp["shards"]}
