"""The runtime: runs a prepared plan on an executor (driver, fit passes, the transform pass and
shard writer, tasks, clusters), stages and commits the output, and assembles the manifest.

>>> from shardsmith.runtime import compile_dataset  # the entry point of a compile
"""

from shardsmith.runtime.driver import Prepared, Result, compile_dataset, prepare

__all__ = ["Prepared", "Result", "compile_dataset", "prepare"]
