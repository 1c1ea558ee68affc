"""Shards: writers (Parquet, WebDataset), the manifest, fitted state on disk, and the PyTorch loader.

``ShardDataset`` and ``ShardLoader`` import torch, so they load on first use; everything else here
works without torch.
"""

from shardsmith.shards import webdataset as _webdataset  # noqa: F401  (registers the "webdataset" writer)

__all__ = ["ShardDataset", "ShardLoader"]


def __getattr__(name):
    if name in __all__:
        from shardsmith.shards import loader  # lazy: torch takes seconds to import, and writing needs none

        return getattr(loader, name)
    raise AttributeError(f"module 'shardsmith.shards' has no attribute {name!r}")
