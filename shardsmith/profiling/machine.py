"""The machine a compile ran on and the versions of what it ran, for the profile."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys

import psutil

from shardsmith import __version__
from shardsmith.profiling.gpu import device_names

# Distribution name -> the module whose __version__ it is. Only modules this process imported are
# listed (a GPU run imports the GPU ones): looking installed packages up in their metadata costs
# tens of milliseconds per run.
PACKAGES = {"numpy": "numpy", "pyarrow": "pyarrow", "pandas": "pandas", "polars": "polars", "dask": "dask",
            "distributed": "distributed", "hydra-core": "hydra", "omegaconf": "omegaconf", "psutil": "psutil",
            "cudf": "cudf", "cupy": "cupy", "dask-cuda": "dask_cuda", "rmm": "rmm", "nvtx": "nvtx"}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpus(backend: str) -> list[dict]:
    """Visible GPUs: through CuPy on the GPU engine, else nvidia-smi where it exists."""
    if backend == "gpu":
        return device_names()
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=5, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [line.rsplit(",", 1) for line in out.strip().splitlines() if "," in line]
    return [{"name": name.strip(), "memory_bytes": int(float(mib)) * 2**20} for name, mib in rows]


def machine(backend: str) -> dict:
    return {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu_model": cpu_model(),
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_bytes": psutil.virtual_memory().total,
        "gpus": gpus(backend),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def versions(code_version: str) -> dict:
    out = {"python": platform.python_version(), "shardsmith": __version__, "shardsmith_code": code_version}
    for dist, module in PACKAGES.items():
        version = getattr(sys.modules.get(module), "__version__", None)
        if version is not None:
            out[dist] = str(version)
    return out
