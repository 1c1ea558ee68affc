"""What reading an input gives (:class:`Rows`), the quarantine records of rows that could not be
read, and the UTF-8 check of strings (CSV's reader checks UTF-8, JSON's and Parquet's do not)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from shardsmith.errors import InputError

# What the quarantine records of a row: its file and row number, the step (or "source"), the
# column, the value as text, and the reason.
QUARANTINE_COLUMNS = ("_file", "_row", "_step", "_column", "_value", "_reason")
SOURCE_STEP = "source"
VALUE_CHARS = 1000  # a quarantined line's text is kept up to this many characters


@dataclass
class Rows:
    """What a read gives: the rows that read, each one's row number in its file, the quarantined
    ones (QUARANTINE_COLUMNS, or None), and how many rows were read in all (both kinds)."""

    table: pa.Table
    rows: np.ndarray
    quarantine: pa.Table | None
    count: int


def without_invalid_utf8(got: Rows, path: str, on_error: str) -> Rows:
    """``got`` unchanged when every string is valid UTF-8; else an error naming the first bad row,
    or (``quarantine``) the bad rows moved to the quarantine."""
    bad = invalid_utf8(got.table)
    if not bad:
        return got
    if on_error != "quarantine":
        index, column = min(bad)
        raise InputError(f"row {got.rows[index]} (counted from 0): column '{column}' is not valid UTF-8", path)
    drop = np.zeros(got.table.num_rows, dtype=bool)
    drop[[i for i, _ in bad]] = True
    first = {}
    for i, column in sorted(bad):
        first.setdefault(i, column)
    quarantine = quarantine_table(path, got.rows[sorted(first)], SOURCE_STEP, list(first.values()),
                                  [_hex(got.table[c][i].as_buffer())[:VALUE_CHARS] for i, c in first.items()],
                                  [f"column '{c}' is not valid UTF-8" for c in first.values()])
    keep = pa.array(~drop)
    return Rows(got.table.filter(keep), got.rows[~drop], _concat(got.quarantine, quarantine), got.count)


def invalid_utf8(table: pa.Table) -> list[tuple[int, str]]:
    """(row index, column) of every string that is not valid UTF-8 (a fast check first)."""
    bad = []
    for name in table.column_names:
        col = table[name]
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            continue
        offset = 0
        for chunk in col.chunks:
            bad.extend((offset + i, name) for i in _bad_indices(chunk, 0, len(chunk)))
            offset += len(chunk)
    return bad


def _bad_indices(arr: pa.Array, lo: int, hi: int) -> list[int]:
    """Indices in [lo, hi) of invalid UTF-8 strings, by halving: a valid slice costs one check."""
    try:
        arr.slice(lo, hi - lo).validate(full=True)
        return []
    except pa.ArrowInvalid:
        if hi - lo == 1:
            return [lo]
    mid = (lo + hi) // 2
    return _bad_indices(arr, lo, mid) + _bad_indices(arr, mid, hi)


def quarantine_table(files, rows, step: str, columns, values, reasons) -> pa.Table:
    """Quarantine records (QUARANTINE_COLUMNS); ``files``, ``columns`` and ``reasons`` are one
    value per row or one value for all."""
    n = len(rows)

    def each(v):
        return [v] * n if isinstance(v, str) else list(v)

    return pa.table({
        "_file": pa.array(each(files), type=pa.string()),
        "_row": pa.array(np.asarray(rows, dtype=np.int64), type=pa.int64()),
        "_step": pa.array(each(step), type=pa.string()),
        "_column": pa.array(each(columns), type=pa.string()),
        "_value": pa.array(list(values), type=pa.string()),
        "_reason": pa.array(each(reasons), type=pa.string()),
    })


def _concat(a: pa.Table | None, b: pa.Table | None) -> pa.Table | None:
    return b if a is None else a if b is None else pa.concat_tables([a, b])


def _hex(buf) -> str:
    """Bytes that are not UTF-8, shown safely: UTF-8 where it decodes, \\x escapes elsewhere."""
    return bytes(buf or b"").decode("utf-8", errors="backslashreplace")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
