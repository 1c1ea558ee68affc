"""Side tables (``tables:`` in the config): scanned at plan time like the source, and read whole
by the runtime for the ops that use them (``join``), which send them to every worker.

Reading checks what a broadcast needs: the columns asked for fit in ``max_bytes`` of memory, and
the rows are unique by the join keys (or only the first row of each key is kept, in file order,
with ``on_duplicate: first``). Rows whose key is null can never match and are left out.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shardsmith.errors import ConfigError, InputError
from shardsmith.inputs import scan as sources
from shardsmith.inputs.read import open_text
from shardsmith.ir import SideTable

INDEX = "__index"


def scan_table(name: str, paths: list[str], fmt: str, dtypes: dict[str, str], max_bytes: int) -> SideTable:
    """A side table's files and schema (metadata only); errors name ``tables.NAME``."""
    where = f"tables.{name}"
    files, arrow_schema = sources.scan(paths, fmt, dtypes, where=f"{where}.paths")
    schema = sources.to_schema(arrow_schema, {})
    for col in dtypes:
        schema.require(col, f"{where}.schema.{col}")
    for col in schema.names:
        if col.startswith("__"):
            raise ConfigError(f"column names starting with '__' are reserved: {col}", where)
    return SideTable(name, fmt, files, schema, tuple(sorted(dtypes.items())), max_bytes)


def read_table(side: SideTable, columns: list[str]) -> pa.Table:
    """The named columns of every file of ``side``, in file order, with one physical layout per
    dtype (dictionaries decoded, large and view strings as plain ones)."""
    parts = []
    for f in side.files:
        try:
            if side.format == "parquet":  # ParquetFile: pq.read_table would import pyarrow.dataset (seconds)
                t = pq.ParquetFile(f.path).read(columns=columns)
            else:
                t = open_text(f.path, side.format, dict(side.dtypes)).read_all().select(columns)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"cannot read table '{side.name}': {sources.first_line(exc)}", f.path) from None
        parts.append(_plain(t))
    table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    return table.combine_chunks()


def _plain(t: pa.Table) -> pa.Table:
    for i, field in enumerate(t.schema):
        if pa.types.is_dictionary(field.type):
            t = t.set_column(i, field.name, t[field.name].cast(field.type.value_type))
        elif field.type in (pa.large_string(), pa.string_view()):
            t = t.set_column(i, field.name, t[field.name].cast(pa.string()))
    return t.replace_schema_metadata(None)


def check_size(side: SideTable, table: pa.Table, where: str) -> None:
    """Fail when the columns read take more memory than ``max_bytes`` (a broadcast goes to every
    worker)."""
    nbytes = table.get_total_buffer_size()
    if nbytes > side.max_bytes:
        raise InputError(f"the {table.num_columns} column(s) that {where} uses of table '{side.name}' take "
                         f"{_size(nbytes)} in memory, more than {side.key}.max_bytes ({_size(side.max_bytes)}): a "
                         "joined table is sent to every worker; raise the limit or bring fewer columns (cols)",
                         side.key)


def unique_by(table: pa.Table, keys: list[str], first: bool, side: SideTable, where: str,
              shown: dict | None = None) -> pa.Table:
    """``table`` without rows whose key is null, and with one row per key: a duplicate is an error
    naming a key value (a key column named as ``shown`` maps it), unless ``first`` keeps the first
    row of each key (in file order)."""
    valid = None
    for k in keys:
        v = pc.is_valid(table[k])
        valid = v if valid is None else pc.and_(valid, v)
    if valid is not None and table.num_rows and not pc.all(valid).as_py():
        table = table.filter(valid)
    indexed = table.append_column(INDEX, pa.array(range(table.num_rows), pa.int64()))
    groups = indexed.group_by(keys, use_threads=False).aggregate([(INDEX, "min"), (INDEX, "count")])
    if groups.num_rows == table.num_rows:
        return table
    if not first:
        dup = groups.filter(pc.greater(groups[f"{INDEX}_count"], 1)).slice(0, 1).to_pylist()[0]
        names = shown or {}
        shown = ", ".join(f"{names.get(k, k)} = {_readable(dup[k])!r}" for k in keys)
        raise InputError(f"table '{side.name}' has {dup[f'{INDEX}_count']} rows with {shown}: {where} needs one "
                         "row per key (set on_duplicate: first to keep the first)", side.key)
    return table.take(np.sort(groups[f"{INDEX}_min"].to_numpy()))


def _size(n: int) -> str:
    return f"{n:,} bytes" if n < 10**6 else f"{n / 1e6:,.1f} MB"


def _readable(value):
    """A key value for a message: bytes as text where they are UTF-8."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return value
    return value
