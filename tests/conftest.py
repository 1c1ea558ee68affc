"""Shared test fixtures: the ``backend`` fixture of the cross-backend suites, and the clean skip of
``@pytest.mark.gpu`` tests where the GPU engine cannot run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

if os.environ.get("SHARDSMITH_FAKE_GPU"):  # the emulated GPU (tests/fakegpu.py), before anything imports CuPy
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import fakegpu

    fakegpu.install()

from shardsmith.backends import gpu_unavailable_reason


def _backends():
    reason = gpu_unavailable_reason()
    gpu = pytest.param("gpu", marks=[pytest.mark.gpu] + ([pytest.mark.skip(reason=f"no GPU engine here: {reason}")]
                                                         if reason else []))
    return ["cpu", gpu]


@pytest.fixture(params=_backends())
def backend(request) -> str:
    """The engine kind under test: ``cpu`` always, ``gpu`` where CuPy, cuDF and a device are usable."""
    return request.param


@pytest.fixture(autouse=True)
def _skip_gpu_tests_without_gpu(request):
    if request.node.get_closest_marker("gpu") is not None:
        reason = gpu_unavailable_reason()
        if reason:
            pytest.skip(f"no GPU engine here: {reason}")
