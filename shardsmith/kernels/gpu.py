"""Compiling and launching the kernels on a GPU (CuPy).

Sources are compiled with NVRTC (the same call and flags as the CI check in kernels/nvrtc.py: exact
IEEE arithmetic, no flush-to-zero, no FMA contraction) into a CUBIN for the device's architecture,
cached on disk and in the process by the source's sha256, and loaded with ``cupy.RawModule``.
CuPy's own compile path is not used because it always adds ``-ftz=true``, which would flush float32
subnormals that the CPU engine keeps.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import numpy as np

from shardsmith.kernels import nvrtc
from shardsmith.kernels.sources import KernelSource, static_source

BLOCK = 256
_MAX_GRID_X = 65535 * 16  # blocks per launch; the kernels loop over the rest (grid-stride)
_lock = threading.Lock()
_modules: dict[tuple[str, str], object] = {}
_functions: dict[tuple[str, str, str], object] = {}


def cache_dir() -> Path:
    base = os.environ.get("SHARDSMITH_KERNEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "shardsmith", "kernels")
    return Path(base)


def device_arch() -> str:
    import cupy as cp  # lazy: CuPy is optional (the gpu extras); sources render without it

    return f"sm_{cp.cuda.Device().compute_capability}"


def function(src: KernelSource, entry: str):
    """The compiled entry point ``entry`` of ``src`` on the current device (compiled once)."""
    import cupy as cp  # lazy: CuPy is optional (the gpu extras); sources render without it

    arch = device_arch()
    fkey = (src.sha256, arch, entry)
    fn = _functions.get(fkey)
    if fn is not None:
        return fn
    with _lock:
        module = _modules.get(fkey[:2])
        if module is None:
            module = cp.RawModule(path=str(_cubin(src, arch)))
            _modules[fkey[:2]] = module
        fn = _functions[fkey] = module.get_function(entry)
    return fn


def _cubin(src: KernelSource, arch: str) -> Path:
    return ensure_cubin(src, arch)[0]


def ensure_cubin(src: KernelSource, arch: str) -> tuple[Path, bool]:
    """The cached CUBIN of ``src`` for ``arch``, compiled now if absent (then True). Needs no GPU:
    ``shardsmith warmup`` fills the cache ahead (runtime/warmup.py)."""
    name = f"{src.sha256[:32]}-{arch}.cubin"
    for directory in (cache_dir(), Path(tempfile.gettempdir()) / f"shardsmith-kernels-{os.getuid()}"):
        path = directory / name
        if path.exists():
            return path, False
        try:  # an unwritable cache (another user's home in a container) falls back to /tmp
            directory.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(nvrtc.compile_source(src, arch))
            os.replace(tmp, path)
            return path, True
        except PermissionError:
            continue
    raise PermissionError(f"no writable kernel cache (set SHARDSMITH_KERNEL_CACHE): {cache_dir()}")


def grid_for(n: int) -> int:
    return max(1, min(-(-n // BLOCK), _MAX_GRID_X))


def launch(src: KernelSource, entry: str, n: int, args: tuple, grid_y: int = 1) -> None:
    """Launch ``entry`` over ``n`` rows (``grid_y`` blocks in y: one per column of a group)."""
    if n == 0:
        return
    function(src, entry)((grid_for(n), grid_y), (BLOCK,), args)


def ptr(array) -> np.uint64:
    """A kernel argument for a pointer: a device array's address, or 0 for None."""
    return np.uint64(0 if array is None else array.data.ptr)


def hash_source() -> KernelSource:
    return static_source("xxhash64.cu")


def lookup_source() -> KernelSource:
    return static_source("lookup.cu")
