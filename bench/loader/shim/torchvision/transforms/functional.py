"""Names MosaicML Streaming imports at start-up; using them fails."""


def to_tensor(*args, **kwargs):
    raise RuntimeError("torchvision is a stand-in in the loader benchmark (see torchvision/__init__.py)")
