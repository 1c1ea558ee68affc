"""The GPU backend's code on an emulated GPU (tests/fakegpu.py: CuPy, pylibcudf, cuDF and dask-cuda
stand-ins on host memory, kernels run by their host builds): the GPU half of the parity suite and
the device tests, in a child process, so that the backend's glue is exercised in CI too."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shardsmith.kernels import hostcc

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(hostcc.compiler() is None, reason="the emulation runs the kernels' host builds: no C++ compiler")
def test_the_gpu_backend_on_an_emulated_gpu():
    env = dict(os.environ, SHARDSMITH_FAKE_GPU="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                           "tests/parity", "tests/gpu/test_gpu_device.py", "tests/gpu/test_gpu_identity.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    tail = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed and int(passed.group(1)) >= 43, tail
