"""Build a kernel source for the host with a C++ compiler and load it with ctypes.

The kernels are written so that their per-element logic (and, through ``SS_KERNEL`` /
``SS_FOR_EACH`` in ``cuda/launch.cuh``, most kernels whole) also compiles as plain C++. The tests
run that host build against the NumPy references on many random inputs: logic errors in a kernel
show up on a machine without a GPU. Only the GPU-specific parts (thread indexing, warp ballots,
atomics) are left to the GPU tests.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
import tempfile

import numpy as np

from shardsmith.kernels.sources import KernelSource

# IEEE arithmetic exactly as written: no contraction into fused multiply-adds, no fast math.
CXX_FLAGS = ("-O2", "-std=c++17", "-shared", "-fPIC", "-ffp-contract=off", "-fno-fast-math",
             "-Wall", "-Werror", "-Wno-unused-function")


class HostCompileError(Exception):
    pass


def compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")


@functools.lru_cache(maxsize=64)
def _build(text: str, sha: str, name: str) -> ctypes.CDLL:
    cxx = compiler()
    if cxx is None:
        raise HostCompileError("no C++ compiler (g++ or clang++) found; set CXX")
    out_dir = os.path.join(tempfile.gettempdir(), f"shardsmith-hostcc-{os.getuid()}")
    os.makedirs(out_dir, exist_ok=True)
    lib = os.path.join(out_dir, f"{sha[:20]}.so")
    if not os.path.exists(lib):
        src = os.path.join(out_dir, f"{sha[:20]}.cpp")
        with open(src, "w") as f:
            f.write(text)
        tmp = f"{lib}.{os.getpid()}.tmp"
        proc = subprocess.run([cxx, *CXX_FLAGS, "-x", "c++", src, "-o", tmp], capture_output=True, text=True)
        if proc.returncode != 0:
            raise HostCompileError(f"{name}: host build failed\n{proc.stderr}")
        os.replace(tmp, lib)
    return ctypes.CDLL(lib)


def build(src: KernelSource) -> ctypes.CDLL:
    """The host build of ``src`` (cached by its hash), its entry points callable through ctypes."""
    return _build(src.text, src.sha256, src.name)


def ptr(array) -> ctypes.c_void_p:
    """A NumPy array's data pointer (None stays a null pointer). The caller must hold the array in a
    name until the call returns: the pointer keeps no reference to it."""
    return ctypes.c_void_p(0 if array is None else array.ctypes.data)


def bitmask(valid) -> np.ndarray:
    """A bool array as Arrow / cuDF validity words (uint32, bit i of word i // 32, LSB first)."""
    packed = np.packbits(np.asarray(valid, dtype=np.uint8), bitorder="little")
    words = np.zeros(max(1, (len(packed) + 3) // 4), dtype=np.uint32)
    words.view(np.uint8)[: len(packed)] = packed
    return words


def unpack(words, n: int, offset: int = 0) -> np.ndarray:
    bits = np.arange(offset, offset + n)
    return ((words[bits >> 5] >> (bits & 31).astype(np.uint32)) & 1).astype(bool)


def run_fused(src: KernelSource, inputs, valids, dst_dtype, P, B, BO, offsets=None):
    """Run a generated fused kernel's host build: ``inputs`` (NumPy arrays of the source dtype) with
    ``valids`` (bool arrays or None) at bit ``offsets``; returns (values, validity, null counts)."""
    n, k = len(inputs[0]), len(inputs)
    offsets = offsets or [0] * k
    masks = [None if v is None else bitmask(np.concatenate([np.zeros(o, bool), v])) for v, o in zip(valids, offsets)]
    dsts = [np.zeros(n, dtype=dst_dtype) for _ in range(k)]
    out_masks = [np.zeros((n + 31) // 32 + 1, dtype=np.uint32) for _ in range(k)]
    nulls = np.zeros(k, dtype=np.uint64)
    arr = lambda xs: np.array([0 if x is None else x.ctypes.data for x in xs], dtype=np.uint64)  # noqa: E731
    args = [arr(inputs), arr(masks), np.array(offsets, dtype=np.int64), arr(dsts), arr(out_masks)]
    P, B, BO = (np.ascontiguousarray(a) for a in (P, B, BO))
    lib = build(src)
    getattr(lib, src.entries[0])(*(ptr(a) for a in args), ptr(nulls), ptr(P), ptr(B), ptr(BO),
                                 ctypes.c_longlong(n), ctypes.c_int(k))
    return dsts, [unpack(m, n) for m in out_masks], nulls
