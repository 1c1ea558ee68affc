"""The README's "Use" section, run as written, in order, in a fresh directory (with 20,000 rows
instead of millions, and a temporary directory for /tmp/out): every command must succeed."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests.conftest import cli

README = Path(__file__).resolve().parent.parent / "README.md"
ROWS = "20000"


def use_commands() -> list[list[str]]:
    """The command lines of the README's Use section, comments dropped."""
    text = README.read_text()
    block = text.split("## Use", 1)[1].split("```", 2)[1]
    return [shlex.split(line.split("  #", 1)[0]) for line in block.splitlines() if line.startswith("shardsmith ")]


def small(argv: list[str], tmp: Path) -> list[str]:
    """A README command on small data: the same words, fewer rows, /tmp/out in the test's directory."""
    argv = [ROWS if w == "2000000" else w.replace("/tmp/out", str(tmp / "out")) for w in argv]
    return argv + ["--rows", ROWS] if argv == ["shardsmith", "demo"] else argv


def test_the_use_section_lists_the_commands_it_did():
    first = [c[:2] for c in use_commands()]
    assert first == [["shardsmith", c] for c in ("demo", "demo-data", "compile", "compile", "compile", "plan",
                                                  "compile", "plan", "inspect", "verify", "lineage", "drift", "diff",
                                                  "warmup", "demo-data", "compile")]


@pytest.mark.slow
def test_the_use_section_runs_in_order_on_a_fresh_directory(tmp_path):
    outputs = []
    for argv in use_commands():
        argv = small(argv, tmp_path)
        proc = cli(*argv[1:], cwd=str(tmp_path))
        assert proc.returncode == 0, (argv, proc.stderr[-3000:])  # drift too: the same rows, one vocabulary
        assert "Traceback" not in proc.stderr + proc.stdout, argv
        outputs.append(proc.stdout)
    assert "rows: in 20,000 = out 20,000" in outputs[0] and (tmp_path / "shards" / "demo" / "manifest.json").exists()
    # A multirun puts a relative output.dir into each job's directory (profiling/sweep.py).
    assert len(list(tmp_path.glob("multirun/*/*/[0-3]/sweep/[0-3]/manifest.json"))) == 4
    assert outputs[5].startswith("engine: cpu (engine.kind=cpu)") and "== after fuse_elementwise" in outputs[7]
    assert (tmp_path / "shards" / "next" / "manifest.json").exists()
    assert "rows: in 20,000 = out 20,000 + filtered 0 + quarantined 0" in outputs[8]
    assert outputs[9].startswith("ok: ") and "C1" in outputs[10]
    drift = outputs[11].splitlines()  # the same data, one fitted state: no distance moved
    assert drift[1] == "rows: 20,000 -> 20,000 (+0.00%)"
    rows = [line.split() for line in drift[4:] if line.split()[1:2] in (["continuous"], ["categorical"])]
    assert len(rows) > 30 and all(r[2:4] == ["0.0000", "0.0000"] for r in rows), drift
