"""What the GPU machine has: versions of every piece the GPU engine uses, and whether it can run.
Exits 3 when the GPU engine cannot run here (the reason is printed)."""

from __future__ import annotations

import importlib
import platform
import subprocess
import sys

PIECES = ("numpy", "pyarrow", "pandas", "cupy", "cudf", "pylibcudf", "rmm", "dask", "distributed", "dask_cuda",
          "hydra", "cuda.bindings", "pynvml", "pytest", "pytest_timeout", "xxhash")


def main() -> int:
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=15).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        smi = f"unavailable ({exc})"
    print("gpu            ", smi or "none")
    print("python         ", platform.python_version(), "on", platform.machine())
    for name in PIECES:
        try:
            module = importlib.import_module(name)
            print(f"{name:15s} {getattr(module, '__version__', 'present')}")
        except Exception as exc:  # noqa: BLE001 - an optional piece may be missing: say so, go on
            print(f"{name:15s} MISSING ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})")
    from shardsmith.kernels import nvrtc

    print("nvrtc          ", nvrtc.unavailable_reason() or "{}.{}".format(*nvrtc.version()))
    from shardsmith.backends import gpu_unavailable_reason

    reason = gpu_unavailable_reason()
    print("RESULT GPU engine:", "usable" if reason is None else f"NOT usable: {reason}")
    return 0 if reason is None else 3


if __name__ == "__main__":
    sys.exit(main())
