"""Finding the input files and reading what the planner needs from them without reading data:
Parquet footers (schema, row groups), the first block of CSV / JSON lines (schema), and a cheap
fingerprint of every file."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os

import pyarrow as pa

from shardsmith import storage
from shardsmith.errors import InputError
from shardsmith.inputs import salvage
from shardsmith.inputs.read import open_text, parquet_file
from shardsmith.inputs.rows import first_line
from shardsmith.ir import Column, FileInfo, Schema
from shardsmith.ir.dtypes import dtype_of

FINGERPRINT_SPAN = 1 << 20


def expand_paths(patterns: list[str], storage_options: dict | None = None,
                 where: str = "source.paths") -> list[str]:
    """Each entry is a file, a directory (its files) or a glob, local or a URL; the result is sorted
    per entry, without duplicates. Errors name ``where[i]``."""
    out: list[str] = []
    for i, pattern in enumerate(patterns):
        key = f"{where}[{i}]"
        if storage.is_url(pattern):
            matches = _expand_remote(pattern, key, storage_options)
        else:
            matches = _expand_local(storage.local(pattern), key)
        out.extend(m for m in matches if m not in out)
    return out


def _expand_local(pattern: str, key: str) -> list[str]:
    if any(ch in pattern for ch in "*?["):
        matches = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        if not matches:
            raise InputError(f"no file matches the pattern '{pattern}'", key)
        return matches
    if os.path.isdir(pattern):
        matches = sorted(os.path.join(pattern, f) for f in os.listdir(pattern)
                         if os.path.isfile(os.path.join(pattern, f)) and not f.startswith((".", "_")))
        if not matches:
            raise InputError(f"the directory '{pattern}' holds no files", key)
        return matches
    if os.path.isfile(pattern):
        return [pattern]
    raise InputError("no such file or directory", f"{key} '{pattern}'")


def _expand_remote(url: str, key: str, storage_options: dict | None) -> list[str]:
    """The same rules on an object store: a glob, a prefix (its objects), or one object."""
    fs, path = storage.filesystem(url, storage_options)
    try:
        if any(ch in path for ch in "*?["):
            found = fs.glob(path, detail=True)
            matches = sorted(p for p, info in found.items() if info.get("type") == "file")
            if not matches:
                raise InputError(f"no object matches the pattern '{url}'", key)
        elif fs.isdir(path):
            matches = sorted(info["name"] for info in fs.ls(path, detail=True) if info.get("type") == "file"
                             and not os.path.basename(info["name"]).startswith((".", "_")))
            if not matches:
                raise InputError(f"the prefix '{url}' holds no objects", key)
        elif fs.isfile(path):
            matches = [path]
        else:
            raise InputError("no such object or prefix", f"{key} '{url}'")
    except OSError as exc:
        raise InputError(f"cannot list '{url}': {first_line(exc)}", key) from None
    return [storage.unstrip(fs, p) for p in matches]


def fingerprint(path: str, size: int, storage_options: dict | None = None) -> str:
    """sha256 over the size, the first and the last MiB: cheap at terabyte scale, and it sees any
    change to a Parquet footer (statistics, row counts) or to a text file's ends."""
    h = hashlib.sha256(str(size).encode())
    with storage.open_read(path, storage_options) as f:
        h.update(f.read(FINGERPRINT_SPAN))
        if size > FINGERPRINT_SPAN:
            f.seek(max(FINGERPRINT_SPAN, size - FINGERPRINT_SPAN))
            h.update(f.read())
    return h.hexdigest()


def scan(paths: list[str], fmt: str, dtypes: dict[str, str], storage_options: dict | None = None,
         on_error: str = "fail", where: str = "source.paths") -> tuple[tuple[FileInfo, ...], pa.Schema]:
    """Read every file's metadata; all files must share one schema. Errors name ``where``."""
    files, first, first_path = [], None, None
    for path in expand_paths(paths, storage_options, where):
        info, schema = _scan_one(path, fmt, dtypes, storage_options, on_error)
        if first is None:
            first, first_path = schema, path
        else:
            _same_schema(first, first_path, schema, path)
        files.append(info)
    return tuple(files), first


def _scan_one(path: str, fmt: str, dtypes: dict[str, str], opts: dict | None, on_error: str):
    try:
        size = _size(path, opts)
        if fmt == "parquet":
            with parquet_file(path, opts) as pf:
                md = pf.metadata
            schema = md.schema.to_arrow_schema().remove_metadata()
            groups, col_bytes = [], [0] * md.num_columns
            for i in range(md.num_row_groups):
                rg = md.row_group(i)
                groups.append((rg.num_rows, rg.total_byte_size))
                for j in range(rg.num_columns):
                    col_bytes[j] += rg.column(j).total_uncompressed_size
            info = FileInfo(path, size, md.num_rows, fingerprint(path, size, opts), tuple(groups), tuple(col_bytes))
            return info, schema
        return FileInfo(path, size, -1, fingerprint(path, size, opts)), _text_schema(path, fmt, dtypes, opts, on_error)
    except (pa.ArrowException, OSError, ValueError) as exc:
        what = {"parquet": "a readable Parquet file", "csv": "a readable CSV file", "jsonl": "readable JSON lines"}[fmt]
        raise InputError(f"not {what}: {first_line(exc)}", path) from None


def _size(path: str, opts: dict | None) -> int:
    if not storage.is_url(path):
        return os.path.getsize(storage.local(path))
    fs, p = storage.filesystem(path, opts)
    return int(fs.size(p))


def _text_schema(path: str, fmt: str, dtypes: dict[str, str], opts: dict | None, on_error: str) -> pa.Schema:
    """The column types the reader infers from the first block; when a line there does not parse,
    an error naming it (or, to quarantine it, the types of the lines that do)."""
    try:
        with contextlib.ExitStack() as stack:
            return open_text(storage.readable(path, opts, stack), fmt, dtypes).schema
    except pa.ArrowInvalid:
        with storage.open_read(path, opts) as f:
            block = salvage.head(f.read(salvage.FIRST_BLOCK + 1))
        return salvage.first_block_schema(block, path, fmt, dtypes, on_error)


def _same_schema(a: pa.Schema, a_path: str, b: pa.Schema, b_path: str) -> None:
    if a.names != b.names:
        missing = [n for n in a.names if n not in b.names]
        extra = [n for n in b.names if n not in a.names]
        detail = (f"lacks column '{missing[0]}'" if missing else f"has an extra column '{extra[0]}'" if extra
                  else "orders its columns differently")
        raise InputError(f"schema differs from {a_path}: this file {detail}", b_path)
    for fa, fb in zip(a, b):
        if dtype_of(fa.type) != dtype_of(fb.type):
            raise InputError(f"schema differs from {a_path}: column '{fa.name}' is {dtype_of(fb.type)} here "
                             f"and {dtype_of(fa.type)} there", b_path)


def to_schema(arrow: pa.Schema, roles: dict[str, str]) -> Schema:
    return Schema(tuple(Column(f.name, dtype_of(f.type), roles.get(f.name, "other")) for f in arrow))
