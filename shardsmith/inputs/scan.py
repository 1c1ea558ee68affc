"""Finding the input files and reading what the planner needs from them without reading data:
Parquet footers (schema, row groups), the first block of CSV / JSON lines (schema), and a cheap
fingerprint of every file."""

from __future__ import annotations

import glob
import hashlib
import os

import pyarrow as pa
import pyarrow.parquet as pq

from shardsmith.errors import InputError
from shardsmith.inputs.read import open_text
from shardsmith.ir import Column, FileInfo, Schema
from shardsmith.ir.dtypes import dtype_of

FINGERPRINT_SPAN = 1 << 20


def expand_paths(patterns: list[str]) -> list[str]:
    """Each entry is a file or a glob; the result is sorted per entry, without duplicates."""
    out: list[str] = []
    for i, pattern in enumerate(patterns):
        key = f"source.paths[{i}]"
        if any(ch in pattern for ch in "*?["):
            matches = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
            if not matches:
                raise InputError(f"no file matches the pattern '{pattern}'", key)
        elif os.path.isdir(pattern):
            matches = sorted(os.path.join(pattern, f) for f in os.listdir(pattern)
                             if os.path.isfile(os.path.join(pattern, f)) and not f.startswith((".", "_")))
            if not matches:
                raise InputError(f"the directory '{pattern}' holds no files", key)
        elif os.path.isfile(pattern):
            matches = [pattern]
        else:
            raise InputError("no such file or directory", f"{key} '{pattern}'")
        out.extend(m for m in matches if m not in out)
    return out


def fingerprint(path: str, size: int) -> str:
    """sha256 over the size, the first and the last MiB: cheap at terabyte scale, and it sees any
    change to a Parquet footer (statistics, row counts) or to a text file's ends."""
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(FINGERPRINT_SPAN))
        if size > FINGERPRINT_SPAN:
            f.seek(max(FINGERPRINT_SPAN, size - FINGERPRINT_SPAN))
            h.update(f.read())
    return h.hexdigest()


def scan(paths: list[str], fmt: str, dtypes: dict[str, str]) -> tuple[tuple[FileInfo, ...], pa.Schema]:
    """Read every file's metadata; all files must share one schema."""
    files, first, first_path = [], None, None
    for path in expand_paths(paths):
        info, schema = _scan_one(path, fmt, dtypes)
        if first is None:
            first, first_path = schema, path
        else:
            _same_schema(first, first_path, schema, path)
        files.append(info)
    return tuple(files), first


def _scan_one(path: str, fmt: str, dtypes: dict[str, str]) -> tuple[FileInfo, pa.Schema]:
    size = os.path.getsize(path)
    try:
        if fmt == "parquet":
            md = pq.ParquetFile(path).metadata
            schema = md.schema.to_arrow_schema().remove_metadata()
            groups, col_bytes = [], [0] * md.num_columns
            for i in range(md.num_row_groups):
                rg = md.row_group(i)
                groups.append((rg.num_rows, rg.total_byte_size))
                for j in range(rg.num_columns):
                    col_bytes[j] += rg.column(j).total_uncompressed_size
            info = FileInfo(path, size, md.num_rows, fingerprint(path, size), tuple(groups), tuple(col_bytes))
            return info, schema
        reader = open_text(path, fmt, dtypes)
        return FileInfo(path, size, -1, fingerprint(path, size)), reader.schema
    except (pa.ArrowException, OSError, ValueError) as exc:
        what = {"parquet": "a readable Parquet file", "csv": "a readable CSV file", "jsonl": "readable JSON lines"}[fmt]
        raise InputError(f"not {what}: {first_line(exc)}", path) from None


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


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
