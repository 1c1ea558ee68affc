"""The profile document (``profile.json``): its format, and reading and writing it. See
profile.py for its layout."""

from __future__ import annotations

import datetime
import json
import os
import uuid

from shardsmith.errors import InputError

FORMAT = "shardsmith-profile"
VERSION = 1
PROFILE = "profile.json"
MAX_SPANS = 50_000  # beyond this the waterfall keeps the longest spans only


def write_json(path: str, doc: dict) -> None:
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, allow_nan=False, default=_json_default)
    os.replace(tmp, path)


def _json_default(obj):
    if hasattr(obj, "item"):  # NumPy scalars
        return obj.item()
    return str(obj)


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read_profile(path: str) -> dict:
    """A profile from its file, a dataset directory or a (Hydra) run directory; errors name the path."""
    found = _find_profile(path)
    try:
        with open(found) as f:
            doc = json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError(f"not a readable profile: {exc}", found) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError("not a shardsmith profile", found)
    if doc.get("version") != VERSION:
        raise InputError(f"profile version {doc.get('version')} is not supported (this shardsmith reads {VERSION})",
                         found)
    doc["_path"] = os.path.abspath(found)
    return doc


def _find_profile(path: str) -> str:
    if not os.path.isdir(path):
        if not os.path.isfile(path):
            raise InputError("no such file or directory", path)
        return path
    if os.path.isfile(os.path.join(path, PROFILE)):
        return os.path.join(path, PROFILE)
    found = find_profiles(path)
    if len(found) == 1:
        return found[0]
    if not found:
        raise InputError("no profile.json here (a dataset directory, a run directory or a profile.json path)",
                         path)
    raise InputError(f"{len(found)} profiles under this directory: name one, or compare them with "
                     f"'shardsmith report --compare {path}'", path)


def find_profiles(root: str, depth: int = 3) -> list[str]:
    """profile.json files at most ``depth`` directories below ``root``, in path order; the search
    stops at the first one on each path (a job's copy, not the dataset's inside the job directory)."""
    out = []
    root = os.path.abspath(root)
    base = root.rstrip(os.sep).count(os.sep)
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if PROFILE in files and here != root:
            out.append(os.path.join(here, PROFILE))
            dirs[:] = []
        if here.count(os.sep) - base >= depth:
            dirs[:] = []
    return sorted(out)
