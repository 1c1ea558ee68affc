"""What ``output.dir`` may name, checked before a compile writes anything, and what a commit may
replace. We never delete or change a file we did not write:

- never the current directory or one of its parents, never a directory that holds an input;
- a file (or a path under one) is not a directory;
- an existing directory is replaced only when it is empty or holds a shardsmith dataset (a
  manifest of ours) and nothing else than what shardsmith writes into one: the manifest, the
  shards it lists, ``state/``, ``profile.json``, the reports, and our temporary files.
"""

from __future__ import annotations

import os
import re

from shardsmith import storage
from shardsmith.errors import ConfigError, InputError
from shardsmith.shards import manifest as mf

KEY = "output.dir"
# What a dataset directory holds besides its shards: the manifest, the profile, `shardsmith report`'s pages.
TOP_FILES = {mf.MANIFEST, "profile.json", "report.html", "compare.html"}
TMP = re.compile(r"\.tmp(-[0-9a-f]+)?$")  # atomic_write's and write_manifest's temporary names


def is_tmp(name: str) -> bool:
    return bool(TMP.search(name))


def check_output(sink_dir: str, inputs) -> None:
    """:func:`check_location` of a config's ``output.dir`` as the compile's output will see it
    (an object-store prefix, or a local path with ``file://`` removed): for the command line's early
    check, so that a refused location fails before Hydra makes a run directory."""
    final = sink_dir.rstrip("/") if storage.is_url(sink_dir) else os.path.normpath(storage.local(sink_dir))
    check_location(final, inputs)


def check_location(final: str, inputs) -> None:
    """Refuse, naming the reason, an output location that may never be written or replaced."""
    if storage.is_url(final):
        return _check_inputs(final, [p for p in inputs if storage.is_url(p)], lambda p: p.rstrip("/"), "/")
    real = os.path.realpath(final)
    cwd = os.path.realpath(os.getcwd())
    if real == cwd or cwd.startswith(real.rstrip(os.sep) + os.sep):
        raise ConfigError(f"'{final}' is the current directory or one of its parents; name a directory of the "
                          "dataset's own, e.g. shards/<name>", KEY)
    _check_inputs(real, [p for p in inputs if not storage.is_url(p)], lambda p: os.path.realpath(storage.local(p)),
                  os.sep)
    _check_not_a_file(final)


def _check_inputs(root: str, inputs, resolve, sep: str) -> None:
    for path in inputs:
        if resolve(path) == root or resolve(path).startswith(root.rstrip(sep) + sep):
            raise ConfigError(f"'{root}' holds the input file '{path}'; write the dataset to a directory of "
                              "its own", KEY)


def _check_not_a_file(final: str) -> None:
    if os.path.exists(final) and not os.path.isdir(final):
        raise ConfigError(f"'{final}' is a file, not a directory", KEY)
    parent = os.path.dirname(os.path.abspath(final))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(f"'{final}' is under '{parent}', which is a file, not a directory", KEY)


def existing_dataset(fs, root: str, shown: str) -> dict | None:
    """The manifest of the dataset at ``root`` (on ``fs``); None when nothing or an empty directory
    is there. Anything else is refused: it is not ours to replace."""
    if fs.isfile(root):
        raise ConfigError(f"'{shown}' is a file, not a directory", KEY)
    files = list_files(fs, root)
    if not files:
        return None
    if mf.MANIFEST in files:
        try:
            doc = mf.parse_manifest(fs.cat_file(storage.join(root, mf.MANIFEST)), shown)
        except InputError:
            doc = None
        if doc is not None:
            return doc
    example = sorted(files)[0]
    raise ConfigError(f"'{shown}' is not empty and holds no shardsmith dataset (it has '{example}'); "
                      "output.overwrite replaces only a shardsmith dataset or an empty directory: choose "
                      "another output.dir", KEY)


def check_replaceable(fs, root: str, shown: str, manifest: dict) -> None:
    """Refuse to replace a dataset directory that holds files shardsmith did not write."""
    foreign = foreign_files(list_files(fs, root), manifest)
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise ConfigError(f"'{shown}' holds a shardsmith dataset and also '{foreign[0]}'{more}, which shardsmith "
                          "did not write; move it away or choose another output.dir", KEY)


def foreign_files(files, manifest: dict) -> list[str]:
    """The files of a dataset directory that its manifest does not account for."""
    listed = {s["path"] for _, s in mf.iter_shards(manifest)}
    state = str(manifest.get("fitted_state") or "state/").rstrip("/") + "/"
    return sorted(f for f in files if f not in listed and f not in TOP_FILES and not f.startswith(state)
                  and not is_tmp(f))


def list_files(fs, root: str) -> list[str]:
    """Every file under ``root``, as paths relative to it ('/'-separated); empty if it is absent."""
    if not fs.exists(root):
        return []
    base = root.rstrip("/") + "/"
    return [p[len(base):] for p in fs.find(root, withdirs=False) if p.startswith(base)]
