"""What a dataset is made from: the dataset key (config, inputs, code), the code's version from
the package metadata, and a content hash of the code that decides the shards.

Two compiles with the same key write the same shards; a compile whose key matches a finished
dataset's is a no-op. The code hash makes a changed op (or kernel, or writer) a new key, so an
edited checkout never returns shards made by the code before the edit.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
from pathlib import Path

from shardsmith import __version__
from shardsmith.shards import manifest as mf

PACKAGE = Path(__file__).resolve().parent.parent
# Code that cannot change a shard's content: reporting, the command line, the loader's reading side.
NOT_DECIDING = ("profiling/", "cli/", "demo.py", "__main__.py", "serve.py", "shards/loader/", "shards/readers.py",
                "shards/order.py", "shards/drift.py")
SUFFIXES = (".py", ".cu", ".cuh")


def code_version() -> str:
    """The installed distribution's version (the package's own when not installed)."""
    from importlib import metadata  # lazy: only a manifest needs it, and plan writes none

    try:
        return metadata.version("shardsmith")
    except metadata.PackageNotFoundError:
        return __version__


@functools.cache
def code_sha256() -> str:
    """The content hash of this installation's deciding code (computed once per process)."""
    return tree_sha256(PACKAGE)


def tree_sha256(root: Path) -> str:
    """sha256 over the relative paths and bytes of the package's source files that decide the
    output (ops, kernels, backends, writers, the runtime that cuts shards)."""
    h = hashlib.sha256()
    for parts in sorted(_source_files(str(root))):  # tuples of parts: the order Path objects sort in
        rel = "/".join(parts)
        if rel.startswith(NOT_DECIDING):
            continue
        with open(os.path.join(root, *parts), "rb") as f:
            h.update(rel.encode() + b"\0" + f.read() + b"\0")
    return h.hexdigest()


def _source_files(root: str):
    """The source files under ``root`` (not in ``__pycache__``) as tuples of path parts. os.walk,
    not Path.rglob: a tenth of the time, which every plan and compile pays once."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        rel = os.path.relpath(dirpath, root)
        prefix = () if rel == "." else tuple(rel.split(os.sep))
        yield from (prefix + (name,) for name in filenames if os.path.splitext(name)[1] in SUFFIXES)


def plugin_sha256(modules: list[str]) -> str | None:
    """sha256 of the source files of the user's op modules (``plugins:``), None without any."""
    if not modules:
        return None
    h = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        h.update(name.encode() + b"\0" + (Path(origin).read_bytes() if origin and Path(origin).is_file() else b""))
    return h.hexdigest()


def dataset_key(resolved: dict, inputs: list[tuple], plugins: list[str], parent: str | None = None,
                writer: str = "arrow", float_mode: str = "exact") -> str:
    """What the shards depend on: the config minus engine and bookkeeping keys, the inputs
    (path, bytes, fingerprint), the code (ours and the plugins'), the dataset key of the
    parent whose fitted state is reused (``fit.from``; the fit cache changes nothing), and what
    of the engine changes the files: the Parquet ``writer`` that the plan chose, and float_mode
    fast."""
    relevant = {k: v for k, v in resolved.items() if k not in ("engine", "profiling", "drift", "fit")}
    relevant["output"] = {k: v for k, v in resolved["output"].items()
                          if k not in ("overwrite", "dir", "storage_options")}
    relevant["source"] = {k: v for k, v in resolved["source"].items() if k != "storage_options"}
    relevant["output"]["writer"] = writer  # resolved: auto on the CPU is arrow, the same files
    if float_mode != "exact":
        relevant["float_mode"] = float_mode
    code = {"shardsmith": code_sha256(), "plugins": plugin_sha256(plugins)}
    doc = {"config": relevant, "inputs": inputs, "code": code}
    if parent is not None:
        doc["parent"] = parent
    return mf.sha256_json(doc)


SECRET = re.compile(r"key|secret|token|password|passwd|credential|session|signature", re.IGNORECASE)


def redact(resolved: dict) -> dict:
    """The resolved config as the manifest records it: secrets in ``storage_options`` replaced.

    >>> redact({"source": {"storage_options": {"secret": "s3cr3t", "endpoint_url": "http://x"}}})
    {'source': {'storage_options': {'secret': '<redacted>', 'endpoint_url': 'http://x'}}}
    """
    def hide(obj):
        if isinstance(obj, dict):
            return {k: "<redacted>" if SECRET.search(str(k)) and not isinstance(v, dict) else hide(v)
                    for k, v in obj.items()}
        return obj

    out = dict(resolved)
    for section in ("source", "output"):
        if isinstance(out.get(section), dict) and "storage_options" in out[section]:
            out[section] = {**out[section], "storage_options": hide(out[section]["storage_options"])}
    return out
