"""The CPU backend: pyarrow tables as frames, NumPy (and compiled loops) for arithmetic, pyarrow
compute for strings, hash tables and filters."""

from shardsmith.backends.cpu.backend import CpuBackend, set_threads
from shardsmith.backends.cpu.lowering import LOWERINGS

__all__ = ["CpuBackend", "LOWERINGS", "set_threads"]
