"""NVTX ranges, so that Nsight Systems shows shardsmith's stages by name. The ``nvtx`` package is
optional (it comes with the GPU extras); without it every call is a no-op."""

from __future__ import annotations

import contextlib
import functools

DOMAIN = "shardsmith"


@functools.cache
def _module():
    try:
        import nvtx  # lazy: NVTX ranges are optional (the gpu extras)
    except ImportError:
        return None
    return nvtx


def available() -> bool:
    return _module() is not None


def push(name: str) -> None:
    m = _module()
    if m is not None:
        m.push_range(message=name, domain=DOMAIN)


def pop() -> None:
    m = _module()
    if m is not None:
        m.pop_range(domain=DOMAIN)


@contextlib.contextmanager
def annotate(name: str, enabled: bool = True):
    """A range around a block; nothing when ``enabled`` is false or nvtx is absent."""
    if not enabled:
        yield
        return
    push(name)
    try:
        yield
    finally:
        pop()
