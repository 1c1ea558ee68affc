"""Parquet row groups pruned by their statistics at plan time: the part of a pushed-down predicate
(ir/expr.py) that statistics can decide, as a pyarrow expression.

Only terms whose meaning Arrow shares exactly are used: a column compared with a literal (``==``,
``<``, ``<=``, ``>``, ``>=``), ``in`` with literals, and ``and`` / ``or`` of those. Of the predicate's
top-level ``and`` terms, those that are not of this form are left out, which only ever keeps more
row groups (the rows themselves are filtered by the engine's evaluator either way).
"""

from __future__ import annotations

import datetime

import pyarrow as pa
import pyarrow.compute as pc

from shardsmith import storage
from shardsmith.ir import FileInfo, Schema
from shardsmith.ir.expr import Col, Expr, Lit, Node
from shardsmith.ir.expr_types import column_kind, time_literal

_CMP = {"eq": "equal", "lt": "less", "le": "less_equal", "gt": "greater", "ge": "greater_equal"}


def prunable(node: Node, schema: Schema) -> Node | None:
    """The top-level ``and`` terms of ``node`` that statistics can decide (None: none)."""
    terms = node.args if isinstance(node, Expr) and node.fn == "and" else (node,)
    keep = tuple(t for t in terms if _decidable(t, schema))
    if not keep:
        return None
    return keep[0] if len(keep) == 1 else Expr("and", keep)


def _decidable(node, schema: Schema) -> bool:
    if not isinstance(node, Expr):
        return False
    if node.fn in ("and", "or"):
        return all(_decidable(a, schema) for a in node.args)
    if node.fn in _CMP:
        a, b = node.args
        col, lit = (a, b) if isinstance(a, Col) else (b, a)
        return isinstance(col, Col) and isinstance(lit, Lit) and _literal_fits(col.name, lit.value, schema)
    if node.fn == "is_in":
        return isinstance(node.args[0], Col) and all(_literal_fits(node.args[0].name, v, schema) for v in node.args[1])
    return False


def _literal_fits(name: str, value, schema: Schema) -> bool:
    """Arrow compares these exactly as the engines do (uint64 is read as int64 by the engines)."""
    if name not in schema or value is None:
        return False
    dtype = schema[name].dtype
    kind = column_kind(dtype)
    if kind in ("date", "timestamp"):
        return isinstance(value, str)
    want = {"int": (int, float), "float": (int, float), "string": (str,), "bool": (bool,)}.get(kind)
    if want is None or dtype in ("uint64", "binary"):
        return False
    return isinstance(value, want) and (kind == "bool") == isinstance(value, bool)


def to_arrow_expression(node: Node, schema: Schema) -> pc.Expression:
    """A decidable predicate (see :func:`prunable`) as a pyarrow expression."""
    if node.fn in ("and", "or"):
        parts = [to_arrow_expression(a, schema) for a in node.args]
        while len(parts) > 1:  # a balanced tree: thousands of terms must not nest thousands deep
            parts = [(parts[i] & parts[i + 1] if node.fn == "and" else parts[i] | parts[i + 1])
                     if i + 1 < len(parts) else parts[i] for i in range(0, len(parts), 2)]
        return parts[0]
    if node.fn == "is_in":
        col = node.args[0]
        return pc.field(col.name).isin([_scalar(col.name, v, schema).as_py() for v in node.args[1]])
    a, b = node.args
    fn = node.fn
    if not isinstance(a, Col):
        a, b, fn = b, a, {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le"}.get(fn, fn)
    return getattr(pc, _CMP[fn])(pc.field(a.name), _scalar(a.name, b.value, schema))


def _scalar(name: str, value, schema: Schema) -> pa.Scalar:
    kind = column_kind(schema[name].dtype)
    if kind == "date":
        return pa.scalar(datetime.date(1970, 1, 1) + datetime.timedelta(days=time_literal(value, "date")),
                         pa.date32())
    if kind == "timestamp":
        return pa.scalar(time_literal(value, "timestamp"), pa.timestamp("us"))
    return pa.scalar(value)


def row_groups_passing(files: tuple[FileInfo, ...], predicate: Node, schema: Schema,
                       storage_options: dict | None = None) -> tuple[tuple[int, ...], ...] | None:
    """Per Parquet file, the row groups whose min/max statistics admit a row that passes
    ``predicate`` (metadata only: no data is read); None when statistics cannot decide any part.
    Remote files are read through fsspec."""
    import pyarrow.dataset as ds  # lazy: only a pushed-down filter over Parquet needs it

    part = prunable(predicate, schema)
    if part is None:
        return None
    expr = to_arrow_expression(part, schema)
    kept = []
    for f in files:
        path, filesystem = storage.local(f.path), None
        if storage.is_url(f.path):
            from pyarrow.fs import FSSpecHandler, PyFileSystem  # lazy: only remote inputs need it

            fs, path = storage.filesystem(f.path, storage_options)
            filesystem = PyFileSystem(FSSpecHandler(fs))
        fragment = next(ds.dataset(path, format="parquet", filesystem=filesystem).get_fragments())
        try:
            subset = fragment.subset(filter=expr)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            kept.append(tuple(range(len(f.row_groups))))  # Arrow cannot decide it here: keep every group
            continue
        kept.append(tuple(rg.id for rg in subset.row_groups) if subset is not None else ())
    return tuple(kept)
