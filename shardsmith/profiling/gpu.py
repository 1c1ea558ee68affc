"""GPU time and memory, for the GPU engine only: imported when the driver has chosen the GPU
backend (so ``backends.gpu.compat`` already found CuPy and a device); never imported on CPU runs.

Stage times come from CUDA events recorded on the current stream around each stage and read once
at the end of the task, so profiling adds no synchronisation between stages.
"""

from __future__ import annotations


class EventTimer:
    def __init__(self):
        import cupy  # lazy: CuPy is optional; this module runs only on the GPU engine

        self._cp = cupy
        self._pending: list = []

    def start(self):
        event = self._cp.cuda.Event()
        event.record()
        return event

    def stop(self, span: dict, start) -> None:
        end = self._cp.cuda.Event()
        end.record()
        self._pending.append((span, start, end))

    def resolve(self) -> None:
        for span, start, end in self._pending:
            end.synchronize()
            span["gpu"] = self._cp.cuda.get_elapsed_time(start, end) / 1000.0
        self._pending.clear()


def device_memory_used() -> int | None:
    """Bytes in use on this process's current device (all allocators, pools included)."""
    try:
        import cupy  # lazy: CuPy is optional; this module runs only on the GPU engine

        free, total = cupy.cuda.runtime.memGetInfo()
        return int(total - free)
    except Exception:  # noqa: BLE001 - a sampler must never take a worker down
        return None


def device_names() -> list[dict]:
    """Name and memory of every visible device, through CuPy."""
    import cupy  # lazy: CuPy is optional; this module runs only on the GPU engine

    out = []
    for i in range(cupy.cuda.runtime.getDeviceCount()):
        props = cupy.cuda.runtime.getDeviceProperties(i)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        out.append({"name": name, "memory_bytes": int(props["totalGlobalMem"])})
    return out
