"""Names MosaicML Streaming imports at start-up; using them fails."""


class VisionDataset:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("torchvision is a stand-in in the loader benchmark (see torchvision/__init__.py)")


CIFAR10 = VisionDataset
