"""The slow path of a CSV / JSON-lines file that the streaming reader refused: find the lines that
do not parse, by halving, with the same reader and the same column types.

A record is a line: pyarrow's readers, as shardsmith configures them (no newlines inside values),
read one record per line and skip empty lines (JSON lines: blank ones). Lines are parsed in runs
with the column types the streaming reader inferred from the file's first block, so the rows that
parse here are the rows the fast path would have given; a run that fails is halved until the
failing lines stand alone. Cost: about two parses of the file per bad line found when failing,
more when quarantining many. A row keeps its number in the file (the count of records before it),
so the good rows' numbers and splits do not depend on the bad ones.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pyarrow as pa

from shardsmith.errors import InputError
from shardsmith.inputs.rows import SOURCE_STEP, VALUE_CHARS, Rows, first_line, invalid_utf8, quarantine_table
from shardsmith.ir.dtypes import ARROW_TYPES

FIRST_BLOCK = 1 << 20  # bytes from which the readers infer column types (pyarrow's block size)
_WHITESPACE = np.array([9, 10, 13, 32], dtype=np.uint8)


class Lines:
    """The records of a text file: byte ranges of its non-empty lines, their 1-based line numbers,
    and (CSV) the header line."""

    def __init__(self, data: bytes, fmt: str):
        self.data, self.fmt = data, fmt
        buf = np.frombuffer(data, dtype=np.uint8)
        nl = np.flatnonzero(buf == 10)
        starts = np.concatenate([[0], nl + 1]).astype(np.int64)
        ends = np.concatenate([nl, [len(buf)]]).astype(np.int64)
        if fmt == "jsonl":  # a blank line is no record
            mark = np.concatenate([[0], np.cumsum(~np.isin(buf, _WHITESPACE), dtype=np.int64)])
            keep = mark[ends] > mark[starts]
        else:  # an empty line (or a lone \r) is no record
            cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13) if len(buf) else ends > starts
            keep = (ends - cr) > starts
        numbers = np.flatnonzero(keep) + 1
        self.starts, self.ends, self.numbers = starts[keep], ends[keep], numbers
        self.header = b""
        if fmt == "csv" and len(self.starts):
            self.header = data[self.starts[0]:self.ends[0]] + b"\n"
            self.starts, self.ends, self.numbers = self.starts[1:], self.ends[1:], self.numbers[1:]

    def __len__(self) -> int:
        return len(self.starts)

    def run(self, lo: int, hi: int) -> bytes:
        """Records lo..hi-1 as one readable text (with the header for CSV)."""
        return self.header + self.data[self.starts[lo]:self.ends[hi - 1]] + b"\n"

    def text(self, i: int) -> str:
        text = self.data[self.starts[i]:self.ends[i]].decode("utf-8", errors="backslashreplace").rstrip("\r")
        return text[:VALUE_CHARS]


def read_text(data: bytes, path: str, fmt: str, dtypes: dict[str, str], schema: pa.Schema | None, columns,
              on_error: str) -> Rows:
    """The rows of ``data`` that parse, and the others failing (``fail``) or quarantined."""
    lines = Lines(data, fmt)
    overrides = {name: ARROW_TYPES[d] for name, d in dtypes.items()}
    quarantine = on_error == "quarantine"
    if schema is None:  # the first block itself does not parse: take the types from its good lines
        schema = first_block_schema(head(data), path, fmt, dtypes, on_error)
    good, bad = split(lines, 0, len(lines), fmt, overrides, schema, stop_at_bad=not quarantine)
    _fail_on(bad, lines, path, quarantine, schema.names)
    tables = [t for _, _, t in good]
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    rows = np.concatenate([np.arange(lo, hi, dtype=np.int64) for lo, hi, _ in good] or [np.zeros(0, np.int64)])
    names = schema.names
    q = quarantine_table(path, [i for i, _ in bad], SOURCE_STEP, "", [lines.text(i) for i, _ in bad],
                         [f"line {lines.numbers[i]}: {_reason(r, names)}" for i, r in bad]) if bad else None
    return Rows(table.select(list(columns)), rows, q, len(lines))


def head(data: bytes) -> bytes:
    """The whole lines of the first FIRST_BLOCK bytes (all of ``data`` if it has no newline there)."""
    cut = data.rfind(b"\n", 0, FIRST_BLOCK)
    return data[:cut + 1] if cut >= 0 and len(data) > FIRST_BLOCK else data


def first_block_schema(block: bytes, path: str, fmt: str, dtypes: dict[str, str], on_error: str) -> pa.Schema:
    """The column types the reader infers from the lines of ``block`` that parse: the schema of a
    file whose first block has a bad line (which fails unless ``on_error`` is quarantine)."""
    lines = Lines(block, fmt)
    overrides = {name: ARROW_TYPES[d] for name, d in dtypes.items()}
    good, bad = split(lines, 0, len(lines), fmt, overrides, None, stop_at_bad=on_error != "quarantine")
    _fail_on(bad, lines, path, on_error == "quarantine", None)
    return parse(_join(lines, good), fmt, overrides, None).schema


def _join(lines: Lines, good) -> bytes:
    """The good runs' records as one text (to infer the types from them together)."""
    body = b"".join(lines.data[lines.starts[lo]:lines.ends[hi - 1]] + b"\n" for lo, hi, _ in good)
    return lines.header + body


def _fail_on(bad, lines: Lines, path: str, quarantine: bool, names) -> None:
    if bad and not quarantine:
        i, reason = bad[0]
        raise InputError(f"line {lines.numbers[i]}: {_reason(reason, names)}", path)


def split(lines: Lines, lo: int, hi: int, fmt: str, overrides: dict, schema, stop_at_bad: bool):
    """(good runs as (lo, hi, table), bad records as (index, reason)) of records lo..hi-1."""
    good, bad = [], []

    def visit(a: int, b: int) -> None:
        if a >= b or (stop_at_bad and bad):
            return
        try:
            good.append((a, b, parse(lines.run(a, b), fmt, overrides, schema)))
        except pa.ArrowInvalid as exc:
            if b - a == 1:
                bad.append((a, first_line(exc)))
                return
            mid = (a + b) // 2
            visit(a, mid)
            visit(mid, b)

    visit(lo, hi)
    return good, bad


def parse(text: bytes, fmt: str, overrides: dict, schema: pa.Schema | None) -> pa.Table:
    """One run of records with the given column types (None: inferred, overrides applied); an
    invalid UTF-8 string fails the run as a parse error does."""
    types = dict(zip(schema.names, schema.types)) if schema is not None else overrides
    if fmt == "csv":
        import pyarrow.csv as pcsv  # lazy: only CSV inputs need the reader

        table = pcsv.read_csv(io.BytesIO(text), convert_options=pcsv.ConvertOptions(column_types=types))
    else:
        import pyarrow.json as pjson  # lazy: only JSON-lines inputs need the reader

        explicit = pa.schema(list(types.items())) if types else None
        opts = pjson.ParseOptions(explicit_schema=explicit,
                                  unexpected_field_behavior="ignore" if schema is not None else "infer")
        table = pjson.read_json(io.BytesIO(text), parse_options=opts)
    bad = invalid_utf8(table)
    if bad:
        raise pa.ArrowInvalid(f"column '{bad[0][1]}' is not valid UTF-8")
    return table


def _reason(message: str, names) -> str:
    """pyarrow's message in the user's terms: the column by name, without a row count of our run."""
    message = re.sub(r" in row \d+$", "", message)
    if names is not None:
        message = re.sub(r"^In CSV column #(\d+): ",
                         lambda m: f"column '{names[int(m.group(1))]}': " if int(m.group(1)) < len(names) else m[0],
                         message)
    return message
