"""Shards: writers, the manifest, fitted state on disk, and (later) the PyTorch loader."""
