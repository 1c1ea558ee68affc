"""Where files live: local paths or fsspec URLs (``s3://``, ``gs://``, ...). ``file://`` URLs are
local paths. The compile's inputs and output and the loader's shards all go through here, so that
one rule decides what is remote.

>>> is_url("s3://bucket/data"), is_url("file:///tmp/x"), is_url("data/raw")
(True, False, False)
>>> local("file:///tmp/x"), join("s3://b/ds", "train", "part-00000.parquet")
('/tmp/x', 's3://b/ds/train/part-00000.parquet')
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath

from shardsmith.errors import InputError


def is_url(path) -> bool:
    """A remote location: a URL with a protocol other than ``file://``."""
    return "://" in str(path) and not str(path).startswith("file://")


def local(path) -> str:
    """A local path, with a ``file://`` prefix removed."""
    return str(path).removeprefix("file://")


def local_cache(*parts: str) -> str:
    """A directory of this machine's shardsmith cache: ``$SHARDSMITH_CACHE``, else
    ``$XDG_CACHE_HOME/shardsmith`` or ``~/.cache/shardsmith`` (what a remote output keeps locally)."""
    base = os.environ.get("SHARDSMITH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "shardsmith")
    return os.path.join(base, *parts)


def join(root: str, *parts: str) -> str:
    return posixpath.join(root, *parts)


def filesystem(url: str, storage_options: dict | None = None):
    """(file system, path without protocol) for a URL; credentials come from the environment
    unless ``storage_options`` gives them."""
    import fsspec  # lazy: a tenth of a second that local paths (plan, most compiles) never need

    return fsspec.core.url_to_fs(url, **(storage_options or {}))


class LocalFiles:
    """This machine's files through the calls the output checks make of a file system (runtime/
    target.py: ``exists``, ``isfile``, ``find``, ``cat_file``), answered as fsspec's local file
    system answers them, without importing fsspec: a tenth of a second of every local compile's
    start-up (fsspec imports asyncio and importlib.metadata)."""

    @staticmethod
    def exists(path: str) -> bool:
        return os.path.exists(path)

    @staticmethod
    def isfile(path: str) -> bool:
        return os.path.isfile(path)

    @staticmethod
    def cat_file(path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    @staticmethod
    def find(path: str, withdirs: bool = False) -> list[str]:
        """Every file under ``path`` as sorted '/'-separated absolute paths (a link is listed, not
        followed, as fsspec does; ``withdirs``: directories too, ``path`` itself included);
        ``[path]`` for a file, ``[]`` for nothing."""
        root = os.path.abspath(path)
        if not os.path.isdir(root):
            return [root] if os.path.exists(root) else []
        found, todo = [root] if withdirs else [], [root]
        while todo:
            with os.scandir(todo.pop()) as entries:
                for e in entries:
                    if e.is_dir(follow_symlinks=False):
                        todo.append(e.path)
                        if not withdirs:
                            continue
                    found.append(e.path)
        return sorted(p.replace(os.sep, "/") for p in found)


def unstrip(fs, path: str) -> str:
    """A file system's protocol-less path as a URL again (``data/x`` -> ``s3://data/x``)."""
    return fs.unstrip_protocol(path)


@contextlib.contextmanager
def open_read(path: str, storage_options: dict | None = None):
    """A binary file open for reading, local or remote; a missing file is an InputError naming it."""
    try:
        if not is_url(path):
            f = open(local(path), "rb")
        else:
            fs, p = filesystem(path, storage_options)
            f = fs.open(p, "rb")
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    with f:
        yield f


def readable(path: str, storage_options: dict | None, stack: contextlib.ExitStack):
    """What pyarrow reads best: a local path as it is (native I/O), a URL as an fsspec file that
    ``stack`` closes."""
    if not is_url(path):
        return local(path)
    return stack.enter_context(open_read(path, storage_options))


def file_sha256(f) -> tuple[int, str]:
    """(bytes, sha256) of what is left to read in the binary file ``f``."""
    h, size = hashlib.sha256(), 0
    for block in iter(lambda: f.read(1 << 22), b""):
        h.update(block)
        size += len(block)
    return size, h.hexdigest()
