"""Reading input files, local or remote: Parquet row groups, and CSV / JSON lines with their dtype
overrides, as rows with their row numbers in the file.

A row that cannot be read is never dropped silently: with ``source.on_error: fail`` the read stops
with one error naming the file and the line (or row); with ``quarantine`` the row goes to the
quarantine with the reason, and the rows that did read keep the row numbers they have in the file.
Text files take the streaming reader's column types (inferred from the first block; a local CSV
file is then parsed on Arrow's threads with them) and only when that fails the slow path of
``inputs/salvage.py``. Strings must be valid UTF-8 (``inputs/rows.py``).
"""

from __future__ import annotations

import contextlib
import functools
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shardsmith import storage
from shardsmith.errors import InputError
from shardsmith.inputs import salvage
from shardsmith.inputs.readahead import ReadAhead
from shardsmith.inputs.rows import Rows, first_line, invalid_utf8, without_invalid_utf8
from shardsmith.ir.dtypes import ARROW_TYPES


def open_text(source, fmt: str, dtypes: dict[str, str]):
    """A streaming reader over a CSV or JSON-lines file (a path or a binary file), with dtype overrides."""
    types = {name: ARROW_TYPES[d] for name, d in dtypes.items()}
    if fmt == "csv":
        import pyarrow.csv as pcsv  # lazy: only CSV inputs need the reader

        return pcsv.open_csv(source, convert_options=pcsv.ConvertOptions(column_types=types))
    import pyarrow.json as pjson  # lazy: only JSON-lines inputs need the reader

    explicit = pa.schema(list(types.items())) if types else None
    return pjson.open_json(source, parse_options=pjson.ParseOptions(explicit_schema=explicit))


def read_text(path: str, fmt: str, dtypes: dict[str, str], columns, on_error: str = "fail",
              storage_options: dict | None = None) -> Rows:
    """A whole CSV / JSON-lines file: the requested columns of every row that parses."""
    schema = None
    try:
        if fmt == "csv" and not storage.is_url(path):
            schema, table = _read_local_csv(storage.local(path), dtypes)
        else:
            with contextlib.ExitStack() as stack:
                reader = open_text(storage.readable(path, storage_options, stack), fmt, dtypes)
                schema = reader.schema
                table = reader.read_all()
        bad = invalid_utf8(table)
        if not bad:
            table = table.select(list(columns))
            return Rows(table, np.arange(table.num_rows, dtype=np.int64), None, table.num_rows)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        pass
    with storage.open_read(path, storage_options) as f:
        data = f.read()
    return salvage.read_text(data, path, fmt, dtypes, schema, list(columns), on_error)


def _read_local_csv(path: str, dtypes: dict[str, str]) -> tuple[pa.Schema, pa.Table]:
    """A local CSV file read as the streaming reader reads it, but parsed on Arrow's threads: the
    column types are the streaming reader's (inferred from the first block, with the overrides),
    given to every block, so a later line that does not fit them fails here as it would there
    (then the slow path finds it). A 500,000-row demo file: 1.15 s against 2.3-2.4 s (2 vCPUs)."""
    import pyarrow.csv as pcsv  # lazy: only CSV inputs need the reader

    schema = open_text(path, "csv", dtypes).schema
    types = dict(zip(schema.names, schema.types))
    return schema, pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(column_types=types))


_AHEAD: ReadAhead | None = None  # the partitions being read ahead in this process, if any


def read_parquet(path: str, row_groups, row_starts, columns, on_error: str = "fail",
                 storage_options: dict | None = None) -> Rows:
    """Row groups of a Parquet file; a corrupt page is an error naming the file, invalid UTF-8 in a
    string column an error naming the row (or, with ``quarantine``, the row quarantined)."""
    ahead = _AHEAD
    if ahead is not None and not storage_options:
        got = ahead.take(_ahead_key(path, row_groups, row_starts, columns, on_error))
        if got is not None:
            return got
    return _read_parquet(path, row_groups, row_starts, columns, on_error, storage_options)


def start_read_ahead(reads) -> ReadAhead:
    """Read local Parquet partitions ahead, on a thread, in the order given: ``reads`` are the
    ``(path, row_groups, row_starts, columns, on_error)`` of :func:`read_parquet` calls to come
    (inputs/readahead.py). Replaces a read-ahead already running."""
    global _AHEAD
    end_read_ahead()
    jobs = [(_ahead_key(*r), functools.partial(_read_parquet, *r, None)) for r in reads]
    _AHEAD = ReadAhead(jobs, stat=lambda key: _version(key[0]))
    return _AHEAD


def end_read_ahead() -> ReadAhead | None:
    """Stop the read-ahead (what it read and nobody took is dropped); the one ended, if any."""
    global _AHEAD
    ahead, _AHEAD = _AHEAD, None
    if ahead is not None:
        ahead.close()
    return ahead


def _ahead_key(path, row_groups, row_starts, columns, on_error) -> tuple:
    return (path, tuple(row_groups), tuple(row_starts), tuple(columns), on_error)


def _version(path: str):
    """What tells one version of a local file from the next: a rewrite changes one of these."""
    try:
        st = os.stat(path)
    except OSError:  # gone: the read itself says so
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _read_parquet(path: str, row_groups, row_starts, columns, on_error: str,
                  storage_options: dict | None) -> Rows:
    try:
        with parquet_file(path, storage_options) as pf:
            table = pf.read_row_groups(list(row_groups), columns=list(columns), use_threads=True)
            sizes = [pf.metadata.row_group(g).num_rows for g in row_groups]
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"cannot read row group(s) {_ranges(row_groups)}: {first_line(exc)}", path) from None
    rows = np.concatenate([np.arange(s, s + n, dtype=np.int64) for s, n in zip(row_starts, sizes)]
                          or [np.zeros(0, np.int64)])
    return without_invalid_utf8(Rows(table, rows, None, table.num_rows), path, on_error)


@contextlib.contextmanager
def parquet_file(path: str, storage_options: dict | None = None):
    """``pq.ParquetFile`` of a local path (read natively) or of a URL (through fsspec); page
    checksums, where the file has them, are verified."""
    with contextlib.ExitStack() as stack:
        pf = pq.ParquetFile(storage.readable(path, storage_options, stack), page_checksum_verification=True)
        stack.callback(pf.close)
        yield pf


def _ranges(groups) -> str:
    groups = list(groups)
    return f"{groups[0]}-{groups[-1]}" if len(groups) > 1 else str(groups[0]) if groups else "-"
