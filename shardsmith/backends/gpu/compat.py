"""The one place that tries the optional GPU imports."""

from __future__ import annotations

import functools


@functools.cache
def unavailable_reason() -> str | None:
    try:
        import cupy
    except Exception as exc:  # noqa: BLE001 - any import failure means no GPU engine
        return f"CuPy does not import ({type(exc).__name__}: {exc}); install shardsmith[gpu-cu12] or [gpu-cu13]"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA device is visible (check CUDA_VISIBLE_DEVICES and the driver)"
    except Exception as exc:  # noqa: BLE001
        return f"no usable CUDA device ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    try:
        import cudf  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return f"cuDF does not import ({type(exc).__name__}: {exc}); install shardsmith[gpu-cu12] or [gpu-cu13]"
    return None
