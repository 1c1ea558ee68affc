"""The runtime: runs a prepared plan on an executor (driver, fit passes, the transform pass and
shard writer, tasks, clusters), stages and commits the output, and assembles the manifest.

>>> from shardsmith.runtime import compile_dataset  # the entry point of a compile
"""

__all__ = ["Prepared", "Result", "compile_dataset", "prepare"]


def __getattr__(name: str):
    """The driver's names, imported when first asked for: ``shardsmith plan`` imports submodules
    (``runtime.explain``) and must not pay for the driver's executors, writers and profiling."""
    if name in __all__:
        from shardsmith.runtime import driver  # lazy: see above

        return getattr(driver, name)
    raise AttributeError(f"module 'shardsmith.runtime' has no attribute '{name}'")
