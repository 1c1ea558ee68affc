"""Shared test fixtures: small demo datasets and a compile helper that goes through the real config
composition, optimiser and executor; the ``backend`` fixture of the cross-backend suites, and the
clean skip of ``@pytest.mark.gpu`` tests where the GPU engine cannot run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

if os.environ.get("SHARDSMITH_FAKE_GPU"):  # the emulated GPU (tests/fakegpu.py), before anything imports CuPy
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import fakegpu

    fakegpu.install()

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from shardsmith.backends import gpu_unavailable_reason  # noqa: E402
from shardsmith.compiler.config import compose  # noqa: E402
from shardsmith.demo import generate  # noqa: E402
from shardsmith.runtime import compile_dataset  # noqa: E402


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> str:
    """30,000 demo rows in 3 files of 4,096-row row groups (several partitions per file)."""
    d = tmp_path_factory.mktemp("demo")
    generate(30_000, str(d), files=3, row_group_rows=4096)
    return str(d)


def run_compile(source_glob: str, out_dir, *overrides, engine: str = "inprocess", passes=None):
    cfg = compose([f"source.paths=[{source_glob}]", f"output.dir={out_dir}", f"engine={engine}", *overrides])
    return compile_dataset(cfg, log=lambda *_: None, passes=passes)


def write_table(path, table: pa.Table, row_group_rows: int = 1000) -> str:
    pq.write_table(table, path, row_group_size=row_group_rows)
    return str(path)


def read_split(result, split: str = "train") -> pa.Table:
    root = os.path.dirname(result.path)
    shards = [s for s in result.manifest["splits"][split]["shards"] if s["format"] == "parquet"]
    return pa.concat_tables([pq.read_table(os.path.join(root, s["path"])) for s in shards]) if shards else None


def cli(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess."""
    return subprocess.run([sys.executable, "-m", "shardsmith", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


def _backends():
    reason = gpu_unavailable_reason()
    gpu = pytest.param("gpu", marks=[pytest.mark.gpu] + ([pytest.mark.skip(reason=f"no GPU engine here: {reason}")]
                                                         if reason else []))
    return ["cpu", gpu]


def _cpu_kernels():
    from shardsmith.kernels import cpujit

    return [pytest.param("numba", marks=pytest.mark.skipif(not cpujit.available(), reason="numba is not installed")),
            "numpy"]


@pytest.fixture(params=_cpu_kernels())
def cpu_kernels(request) -> str:
    """``engine.cpu_kernels`` under test: the compiled loops, and the NumPy reference."""
    return request.param


@pytest.fixture(params=_backends())
def backend(request) -> str:
    """The engine kind under test: ``cpu`` always, ``gpu`` where CuPy, cuDF and a device are usable."""
    return request.param


def _cuda_unavailable_reason():
    """Why torch sees no CUDA device (the loader's device path needs torch alone), or None."""
    try:
        import torch  # lazy: only the loader's GPU tests need it
    except ImportError:
        return "torch is not installed"
    return None if torch.cuda.is_available() else "torch sees no CUDA device"


@pytest.fixture(autouse=True)
def _skip_gpu_tests_without_gpu(request):
    marker = request.node.get_closest_marker("gpu")
    if marker is not None:
        # gpu(needs="cuda"): a CUDA device for torch is enough (no CuPy, no cuDF).
        if marker.kwargs.get("needs") == "cuda":
            reason = _cuda_unavailable_reason()
            if reason:
                pytest.skip(f"no CUDA device here: {reason}")
            return
        reason = gpu_unavailable_reason()
        if reason:
            pytest.skip(f"no GPU engine here: {reason}")
