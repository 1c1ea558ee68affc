"""The manifest: what a compiled dataset holds, where it came from, and how to check it.

It is written last, atomically, and is the commit point of a compile: a directory without one is
not a dataset. Paths inside it are relative to its own directory.
"""

from __future__ import annotations

import hashlib
import json
import os

from shardsmith.errors import InputError

FORMAT = "shardsmith-manifest"
VERSION = 1
MANIFEST = "manifest.json"


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def sha256_json(obj) -> str:
    return hashlib.sha256(canonical_json(obj)).hexdigest()


def dumps(manifest: dict) -> bytes:
    """The manifest as written: indented JSON, no NaN."""
    return json.dumps(manifest, indent=1, allow_nan=False, default=str).encode()


def write_manifest(directory: str, manifest: dict) -> str:
    path = os.path.join(directory, MANIFEST)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(dumps(manifest))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def parse_manifest(data: bytes, where: str) -> dict:
    """A manifest from its bytes, checked as :func:`check_manifest` does; errors name ``where``."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise InputError(f"not a readable manifest: {exc}", where) from None
    check_manifest(doc, where)
    return doc


def read_manifest(path: str) -> dict:
    """Read a manifest (a file, or a directory holding manifest.json); errors name the path."""
    if os.path.isdir(path):
        path = os.path.join(path, MANIFEST)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InputError("no such manifest", path) from None
    except OSError as exc:
        raise InputError(f"not a readable manifest: {exc}", path) from None
    doc = parse_manifest(data, path)
    doc["_dir"] = os.path.dirname(os.path.abspath(path))
    return doc


def check_manifest(doc, path: str) -> None:
    """Fail, naming ``path``, unless ``doc`` is a manifest this version reads whose shard paths
    stay inside its directory."""
    fmt = doc.get("format") if isinstance(doc, dict) else None
    if fmt != FORMAT:
        raise InputError(f"not a shardsmith manifest (format is {fmt!r})", path)
    if doc.get("version") != VERSION:
        raise InputError(f"manifest version {doc.get('version')} is not supported (this shardsmith reads {VERSION})",
                         path)
    try:
        shards = [shard for _, shard in iter_shards(doc)]
    except (AttributeError, KeyError, TypeError):
        raise InputError("the manifest's splits are not a mapping of shard lists", path) from None
    for shard in shards:
        check_inside(shard.get("path") if isinstance(shard, dict) else None, path)


def check_inside(rel, where: str) -> None:
    """A shard path in a manifest must stay inside the dataset: relative, without '..'.

    >>> check_inside("train/part-00000.parquet", "m.json")
    >>> check_inside("../x.parquet", "m.json")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    shardsmith.errors.InputError: m.json: shard path '../x.parquet' leaves the dataset directory ...
    """
    text = rel.replace("\\", "/") if isinstance(rel, str) else ""
    if not text or text.startswith("/") or "://" in text or ".." in text.split("/") or text[1:2] == ":":
        raise InputError(f"shard path {rel!r} leaves the dataset directory (paths must be relative, without '..')",
                         where)


def iter_shards(manifest: dict):
    """(stream, shard entry) for every shard file: the splits' and the quarantine's."""
    for name, split in manifest["splits"].items():
        for shard in split["shards"]:
            yield name, shard
    for shard in manifest.get("quarantine", {}).get("shards", []):
        yield "quarantine", shard


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def verify(manifest: dict) -> list[str]:
    """Re-hash every shard; the problems found, as lines naming the file (empty: all good)."""
    problems = []
    root = manifest["_dir"]
    for _, shard in iter_shards(manifest):
        path = os.path.join(root, shard["path"])
        if not os.path.exists(path):
            problems.append(f"{path}: missing")
            continue
        size = os.path.getsize(path)
        if size != shard["bytes"]:
            problems.append(f"{path}: {size} bytes, the manifest says {shard['bytes']}")
            continue
        digest = file_sha256(path)
        if digest != shard["sha256"]:
            problems.append(f"{path}: sha256 {digest[:16]}..., the manifest says {shard['sha256'][:16]}...")
    return problems


def summary_lines(manifest: dict) -> list[str]:
    """What ``shardsmith inspect`` prints."""
    rows = manifest["rows"]
    lines = [
        f"dataset {manifest['name']} (created {manifest['created']}, shardsmith {manifest['code_version']})",
        f"config sha256 {manifest['config']['sha256'][:16]}..., {len(manifest['inputs'])} input file(s), "
        f"{sum(i['bytes'] for i in manifest['inputs']):,} bytes",
        f"rows: in {rows['in']:,} = out {rows['out']:,} + filtered {rows['filtered']:,} "
        f"+ quarantined {rows['quarantined']:,}",
    ]
    if "content" in manifest:  # identity by content (kernels/digest.py); older manifests have none
        writers = sorted({s.get("writer", "arrow") for sp in manifest["splits"].values() for s in sp["shards"]
                          if s["format"] == "parquet"})
        lines.append(f"content digest {manifest['content']['digest']} ({manifest['content']['spec']})"
                     + (f"; Parquet written by {', '.join(writers)}" if writers else ""))
    if manifest.get("parent"):
        lines.append(f"fitted state from the parent dataset {manifest['parent']['path']}")
    quality = manifest.get("quality")
    if quality:
        c = quality["counts"]
        lines.append(f"expectations: {quality['checked']} checked, {c['passed']} passed, {c['warned']} warned, "
                     f"{c['quarantined']} quarantined ({quality['quarantined_rows']:,} rows)")
    lines.append("splits:")
    for name, split in manifest["splits"].items():
        nbytes = sum(s["bytes"] for s in split["shards"])
        fmts = sorted({s["format"] for s in split["shards"]})
        lines.append(f"  {name:<8} {split['rows']:>12,} rows  {len(split['shards']):>4} shard file(s)  "
                     f"{nbytes:>14,} bytes  {', '.join(fmts)}")
    lines.append("schema:")
    stats = manifest.get("stats", {})
    first = next(iter(stats.values()), {})
    for col in manifest["schema"]:
        extra = ""
        if col.get("cardinality"):
            extra = f"  cardinality {col['cardinality']:,}, embedding {col.get('embedding_dim')}"
        s = first.get(col["name"], {})
        if "mean" in s:
            extra += f"  mean {s['mean']:.4g} std {s['std']:.4g}"
        if s.get("nulls"):
            extra += f"  nulls {s['nulls']:,}"
        if s.get("nonfinite"):
            extra += f"  NaN or inf {s['nonfinite']:,}"
        lines.append(f"  {col['name']:<14} {col['dtype']:<8} {col['role']:<12}{extra}")
    return lines
