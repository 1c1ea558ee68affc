"""Backends by name. ``cpu`` always exists; ``gpu`` needs cuDF, CuPy and a visible CUDA device."""

from __future__ import annotations

import functools

from shardsmith.errors import PlanError


def get_backend(name: str, cpu_kernels: str = "auto"):
    """The backend ``name``, one per process (the CPU's, one per ``engine.cpu_kernels`` setting)."""
    return _backend(name, cpu_kernels if name == "cpu" else "auto")


@functools.cache
def _backend(name: str, cpu_kernels: str):
    if name == "cpu":
        import os

        from shardsmith.backends.cpu import CpuBackend

        threads = os.environ.get("SHARDSMITH_ARROW_THREADS")  # set for the workers of a local cluster
        if threads:
            import pyarrow as pa

            pa.set_cpu_count(max(1, int(threads)))
        return CpuBackend(cpu_kernels)
    if name == "gpu":
        reason = gpu_unavailable_reason()
        if reason:
            raise PlanError(f"the GPU engine cannot run here: {reason}", "engine.kind")
        from shardsmith.backends.gpu import GpuBackend

        return GpuBackend()
    raise PlanError(f"unknown backend '{name}'", "engine.kind")


def lowerings_for(name: str):
    if name == "cpu":
        from shardsmith.backends.cpu import LOWERINGS
    elif name == "gpu":
        from shardsmith.backends.gpu.lowering import LOWERINGS
    else:
        raise PlanError(f"unknown backend '{name}'", "engine.kind")
    return LOWERINGS


def gpu_unavailable_reason() -> str | None:
    """None when the GPU engine can run; else why not, in words."""
    from shardsmith.backends.gpu.compat import unavailable_reason

    return unavailable_reason()


def resolve_kind(kind: str) -> str:
    """``auto`` picks the GPU when it is usable, else the CPU."""
    if kind == "auto":
        return "gpu" if gpu_unavailable_reason() is None else "cpu"
    return kind
