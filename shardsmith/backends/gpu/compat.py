"""The one place that tries the optional GPU imports."""

from __future__ import annotations

import functools
import os


@functools.cache
def unavailable_reason() -> str | None:
    try:
        import cupy  # lazy: the one place that tries the optional GPU imports
    except Exception as exc:  # noqa: BLE001 - any import failure means no GPU engine
        return f"CuPy does not import ({type(exc).__name__}: {exc}); install shardsmith[gpu-cu12] or [gpu-cu13]"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA device is visible (check CUDA_VISIBLE_DEVICES and the driver)"
    except Exception as exc:  # noqa: BLE001
        return f"no usable CUDA device ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    try:
        import cudf  # noqa: F401  # lazy: the one place that tries the optional GPU imports
    except Exception as exc:  # noqa: BLE001
        return f"cuDF does not import ({type(exc).__name__}: {exc}); install shardsmith[gpu-cu12] or [gpu-cu13]"
    return None


FALLBACK_DEVICE_MEMORY = 8 * 1024**3  # what dask-cudf assumes when it cannot ask NVML either


@functools.cache
def device_memory_bytes() -> int:
    """Total memory of the smallest GPU this process sees (CUDA_VISIBLE_DEVICES respected), asked of
    NVML so that no CUDA context is created in the driver; 8 GiB when no GPU can be asked (a driver
    without GPUs in front of a remote cluster: set engine.partition_bytes there)."""
    sizes = _nvml_sizes()
    if not sizes:
        try:
            import cupy  # lazy: the one place that tries the optional GPU imports

            sizes = [cupy.cuda.runtime.getDeviceProperties(i)["totalGlobalMem"]
                     for i in range(cupy.cuda.runtime.getDeviceCount())]
        except Exception:  # noqa: BLE001 - no GPU here: fall back, as dask-cudf does
            sizes = []
    return min(sizes) if sizes else FALLBACK_DEVICE_MEMORY


def _nvml_handles():
    """NVML and its handles of the GPUs this process sees (CUDA_VISIBLE_DEVICES respected)."""
    import pynvml  # lazy: NVML is optional

    pynvml.nvmlInit()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return pynvml, [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    return pynvml, [pynvml.nvmlDeviceGetHandleByUUID(v.encode()) if v.startswith(("GPU-", "MIG-"))
                    else pynvml.nvmlDeviceGetHandleByIndex(int(v)) for v in visible.split(",") if v.strip()]


def _nvml_sizes() -> list[int]:
    try:
        pynvml, handles = _nvml_handles()
        return [int(pynvml.nvmlDeviceGetMemoryInfo(h).total) for h in handles]
    except Exception:  # noqa: BLE001 - NVML missing or refusing: the caller falls back
        return []


def device_archs() -> list[str]:
    """The CUDA architectures (``sm_90``) of the GPUs this process sees, asked of NVML (no CUDA
    context is created), else of CuPy; empty when there is no GPU to ask."""
    try:
        pynvml, handles = _nvml_handles()
        caps = [pynvml.nvmlDeviceGetCudaComputeCapability(h) for h in handles]
        if caps:
            return sorted({f"sm_{major}{minor}" for major, minor in caps})
    except Exception:  # noqa: BLE001 - NVML missing or refusing: ask CuPy
        pass
    if unavailable_reason() is not None:
        return []
    import cupy  # lazy: the one place that tries the optional GPU imports

    return sorted({f"sm_{cupy.cuda.Device(i).compute_capability}" for i in range(cupy.cuda.runtime.getDeviceCount())})
