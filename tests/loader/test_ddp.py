"""A real multi-process DDP run (gloo on CPU, DataLoader workers in every rank), stopped mid-epoch
and resumed on 1 and 3 ranks; the same over batched WebDataset samples, resumed on another layout."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from .conftest import row_keys

HERE = os.path.dirname(os.path.abspath(__file__))
BS = 1000
pytestmark = pytest.mark.slow
pytest.importorskip("torch")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp(tmp_path, dataset_dir, name, world, workers, phases, **extra):
    out = tmp_path / name
    out.mkdir()
    cfg = {"dataset": dataset_dir, "world": world, "workers": workers, "batch_size": BS, "seed": 21,
           "port": free_port(), "out": str(out), "phases": phases, **extra}
    (out / "config.json").write_text(json.dumps(cfg))
    proc = subprocess.run([sys.executable, os.path.join(HERE, "ddp_job.py"), str(out / "config.json")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {}
    for phase in phases:
        ranks = []
        for r in range(world):
            stem = out / f"{phase['name']}-rank-{r}"
            info = json.loads(stem.with_suffix(".json").read_text())
            mat = np.load(stem.with_suffix(".npy"))
            ranks.append((info, row_keys({i: mat[:, i] for i in range(mat.shape[1])}) if len(mat) else []))
        results[phase["name"]] = ranks
    return results


def keys_set(ranks):
    return [k for _, keys in ranks for k in (keys.tolist() if len(keys) else [])]


def test_ddp_epoch_stop_and_resume_on_other_world_sizes(tmp_path, dataset_dir, reference):
    cols = reference["columns"]
    everything = set(row_keys({i: cols[n] for i, n in enumerate(sorted(cols))}).tolist())
    assert len(everything) == len(reference["keys"])

    run = ddp(tmp_path, dataset_dir, "first", world=2, workers=2,
              phases=[{"name": "full", "epoch": 0}, {"name": "stop", "epoch": 1, "stop": 4}])
    full, stopped = run["full"], run["stop"]
    counts = [info["batches"] for info, _ in full]
    assert counts[0] == counts[1] == full[0][0]["len"] == 11  # 21.6K rows, 22 batches, 11 per rank
    rows = keys_set(full)
    assert len(rows) == len(everything) and set(rows) == everything  # every sample exactly once
    for step in range(counts[0]):  # the all-reduce really summed both ranks' batches, step by step
        both = zip(full[0][0]["local"][step], full[1][0]["local"][step])
        assert full[0][0]["reduced"][step] == full[1][0]["reduced"][step] == [a + b for a, b in both]

    assert stopped[0][0]["state"] == stopped[1][0]["state"]  # every rank saves the same state
    seen = keys_set(stopped)
    assert len(seen) == 8 * BS and len(set(seen)) == len(seen)
    state_path = tmp_path / "state.json"
    state_path.write_text(json.dumps(stopped[0][0]["state"]))
    remaining = everything - set(seen)

    for world in (1, 3):
        later = ddp(tmp_path, dataset_dir, f"resume-{world}", world=world, workers=2, state=str(state_path),
                    phases=[{"name": "rest"}])["rest"]
        assert len({info["batches"] for info, _ in later}) == 1
        got = keys_set(later)
        assert set(got) == remaining, world  # exactly the remaining samples, none seen before
        if world == 1:
            assert len(got) == len(remaining)  # no padding on one rank: each row once
        else:
            assert len(got) - len(remaining) <= BS  # 14 batches on 3 ranks: one batch repeated as padding


def test_ddp_reads_batched_tar_samples_exactly_once_and_resumes_on_another_layout(tmp_path, layouts, reference):
    """2 ranks x 2 workers over zstd tars of 300-row samples (which straddle the 1,000-row units);
    stopped mid-epoch and resumed on 3 ranks x 2 workers reading the per-row tars of the same input."""
    cols = reference["columns"]
    everything = set(row_keys({i: cols[n] for i, n in enumerate(sorted(cols))}).tolist())
    run = ddp(tmp_path, layouts["batched-zstd"], "tar", world=2, workers=2, format="webdataset",
              phases=[{"name": "full", "epoch": 0}, {"name": "stop", "epoch": 1, "stop": 4}])
    full, stopped = run["full"], run["stop"]
    assert [info["batches"] for info, _ in full] == [11, 11]
    rows = keys_set(full)
    assert len(rows) == len(everything) and set(rows) == everything  # every sample exactly once
    for step in range(11):
        both = zip(full[0][0]["local"][step], full[1][0]["local"][step])
        assert full[0][0]["reduced"][step] == full[1][0]["reduced"][step] == [a + b for a, b in both]
    assert stopped[0][0]["state"] == stopped[1][0]["state"]
    seen = keys_set(stopped)
    assert len(seen) == 8 * BS and len(set(seen)) == len(seen)
    state_path = tmp_path / "tar-state.json"
    state_path.write_text(json.dumps(stopped[0][0]["state"]))
    later = ddp(tmp_path, layouts["per-row"], "resume-per-row", world=3, workers=2, format="webdataset",
                state=str(state_path), phases=[{"name": "rest"}])["rest"]
    got = keys_set(later)
    assert len({info["batches"] for info, _ in later}) == 1
    assert set(got) == everything - set(seen) and len(got) - len(set(got)) <= BS  # at most one padding batch
