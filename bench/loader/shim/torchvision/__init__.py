"""A stand-in for torchvision in the loader benchmark's venv, and nothing more.

MosaicML Streaming imports ``torchvision.datasets.VisionDataset`` and
``torchvision.transforms.functional.to_tensor`` when it starts (for its image datasets). No CPU
build of torchvision for torch 2.13 can be installed here (the one on PyPI links CUDA libraries),
and tabular MDS reading never calls into torchvision, so bench/loader puts this package on the path
to satisfy that import. Anything that really uses it fails loudly.
"""

__version__ = "0.0.0+shardsmith-bench-shim"
