"""Backends by name. ``cpu`` always exists; ``gpu`` needs cuDF, CuPy and a visible CUDA device
(gpu/compat.py is the one place that tries those imports).

>>> lowerings_for("cpu").backend_name
'cpu'
"""

from __future__ import annotations

import functools
import os

from shardsmith.backends import cpu
from shardsmith.backends.base import Backend, Lowerings, TaskContext, register_lowering
from shardsmith.backends.gpu import lowering as gpu_lowering
from shardsmith.backends.gpu.compat import device_memory_bytes
from shardsmith.backends.gpu.compat import unavailable_reason as gpu_unavailable_reason
from shardsmith.errors import PlanError

__all__ = ["Backend", "Lowerings", "TaskContext", "register_lowering", "get_backend", "lowerings_for",
           "resolve_kind", "engine_choice", "gpu_unavailable_reason", "device_memory_bytes"]
_LOWERINGS = {"cpu": cpu.LOWERINGS, "gpu": gpu_lowering.LOWERINGS}


def get_backend(name: str, cpu_kernels: str = "auto") -> Backend:
    """The backend ``name``, one per process (the CPU's, one per ``engine.cpu_kernels`` setting)."""
    return _backend(name, cpu_kernels if name == "cpu" else "auto")


@functools.cache
def _backend(name: str, cpu_kernels: str) -> Backend:
    if name == "cpu":
        threads = os.environ.get("SHARDSMITH_ARROW_THREADS")  # set for the workers of a local cluster
        if threads:
            cpu.set_threads(max(1, int(threads)))
        return cpu.CpuBackend(cpu_kernels)
    if name == "gpu":
        reason = gpu_unavailable_reason()
        if reason:
            raise PlanError(f"the GPU engine cannot run here: {reason}", "engine.kind")
        from shardsmith.backends.gpu.backend import GpuBackend  # lazy: it imports cuDF and CuPy

        return GpuBackend()
    raise PlanError(f"unknown backend '{name}'", "engine.kind")


def lowerings_for(name: str) -> Lowerings:
    if name not in _LOWERINGS:
        raise PlanError(f"unknown backend '{name}'", "engine.kind")
    return _LOWERINGS[name]


def resolve_kind(kind: str) -> str:
    """``auto`` picks the GPU when it is usable, else the CPU."""
    return engine_choice(kind)[0]


def engine_choice(kind: str) -> tuple[str, str]:
    """The engine that ``engine.kind`` gives on this machine, and why, in words for ``plan`` and
    ``compile``.

    >>> engine_choice("cpu")
    ('cpu', 'engine.kind=cpu')
    """
    if kind not in ("auto", "gpu"):
        return kind, f"engine.kind={kind}"
    reason = gpu_unavailable_reason()
    if kind == "auto":
        if reason is None:
            return "gpu", "engine.kind=auto, and the GPU engine can run here"
        return "cpu", f"engine.kind=auto, and the GPU engine cannot run here: {reason}"
    if reason is None:
        return "gpu", "engine.kind=gpu; the GPU engine can run here"
    return "gpu", f"engine.kind=gpu; the GPU engine cannot run here ({reason}), so a compile here would stop"
