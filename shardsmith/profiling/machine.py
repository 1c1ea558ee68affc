"""The machine a compile ran on and the versions of what it ran, for the profile."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess

PACKAGES = ("shardsmith", "numpy", "pyarrow", "pandas", "dask", "distributed", "hydra-core", "omegaconf",
            "psutil", "cudf-cu12", "cudf-cu13", "cupy-cuda12x", "cupy-cuda13x", "dask-cuda", "rmm-cu12",
            "rmm-cu13", "nvtx")


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
        from shardsmith.profiling.gpu import device_names

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
    import psutil

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
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "shardsmith_code": code_version}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out
