"""Predicates (ir/expr.py) as pyarrow compute expressions: how readers apply a pushed-down
filter while reading, and how Parquet row groups are pruned by their statistics at plan time."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from shardsmith import storage
from shardsmith.ir import FileInfo
from shardsmith.ir.expr import Col, Lit, Node

_BINARY = {"eq": "equal", "ne": "not_equal", "lt": "less", "le": "less_equal", "gt": "greater",
           "ge": "greater_equal", "add": "add", "sub": "subtract", "mul": "multiply", "div": "divide"}


def to_arrow_expression(node: Node) -> pc.Expression:
    if isinstance(node, Col):
        return pc.field(node.name)
    if isinstance(node, Lit):
        return pc.scalar(node.value)
    args = node.args
    if node.fn in _BINARY:
        left, right = to_arrow_expression(args[0]), to_arrow_expression(args[1])
        if node.fn == "div":  # true division, as the predicate language promises
            left = left.cast("float64")
        return getattr(pc, _BINARY[node.fn])(left, right)
    if node.fn in ("and", "or"):
        out = to_arrow_expression(args[0])
        for a in args[1:]:
            out = (out & to_arrow_expression(a)) if node.fn == "and" else (out | to_arrow_expression(a))
        return out
    if node.fn == "not":
        return ~to_arrow_expression(args[0])
    if node.fn == "is_null":
        return to_arrow_expression(args[0]).is_null(nan_is_null=True)
    if node.fn == "not_null":
        return ~to_arrow_expression(args[0]).is_null(nan_is_null=True)
    if node.fn == "is_in":
        x = to_arrow_expression(args[0])  # SQL semantics: a missing value is neither in nor not in
        null = pc.scalar(pa.scalar(None, type=pa.bool_()))
        return pc.if_else(x.is_null(nan_is_null=True), null, x.isin(list(args[1])))
    raise ValueError(f"unknown predicate function {node.fn}")


def row_groups_passing(files: tuple[FileInfo, ...], predicate: Node,
                       storage_options: dict | None = None) -> tuple[tuple[int, ...], ...]:
    """Per Parquet file, the row groups whose min/max statistics admit a row that passes
    ``predicate`` (metadata only: no data is read). Remote files are read through fsspec."""
    import pyarrow.dataset as ds  # lazy: only a pushed-down filter over Parquet needs it

    expr = to_arrow_expression(predicate)
    kept = []
    for f in files:
        path, filesystem = storage.local(f.path), None
        if storage.is_url(f.path):
            from pyarrow.fs import FSSpecHandler, PyFileSystem  # lazy: only remote inputs need it

            fs, path = storage.filesystem(f.path, storage_options)
            filesystem = PyFileSystem(FSSpecHandler(fs))
        fragment = next(ds.dataset(path, format="parquet", filesystem=filesystem).get_fragments())
        subset = fragment.subset(filter=expr)
        kept.append(tuple(rg.id for rg in subset.row_groups) if subset is not None else ())
    return tuple(kept)
