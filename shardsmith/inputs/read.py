"""Reading input files: the streaming readers of CSV and JSON lines, with dtype overrides."""

from __future__ import annotations

import pyarrow as pa

from shardsmith.ir.dtypes import ARROW_TYPES


def open_text(path: str, fmt: str, dtypes: dict[str, str]):
    """A streaming reader over a CSV or JSON-lines file, with dtype overrides applied."""
    types = {name: ARROW_TYPES[d] for name, d in dtypes.items()}
    if fmt == "csv":
        import pyarrow.csv as pcsv  # lazy: only CSV inputs need the reader

        return pcsv.open_csv(path, convert_options=pcsv.ConvertOptions(column_types=types))
    import pyarrow.json as pjson  # lazy: only JSON-lines inputs need the reader

    explicit = pa.schema(list(types.items())) if types else None
    return pjson.open_json(path, parse_options=pjson.ParseOptions(explicit_schema=explicit))
