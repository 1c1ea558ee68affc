"""Pass: read only the columns the graph needs, and remove steps whose results nobody uses.

A backward liveness walk from the output schema (plus the split key): a step stays if it writes a
live column or removes rows; the source's projection becomes the columns live at its output, so
the Parquet reader never decodes the others.
"""

from __future__ import annotations

from dataclasses import replace

from shardsmith.compiler.ir import Graph
from shardsmith.ops.rows import Drop, Rename


def prune_columns(graph: Graph) -> Graph:
    live = set(graph.schema.names)
    kept = []
    for step in reversed(graph.flat_steps()):
        op = step.op
        if isinstance(op, Drop):
            kept.append(step)  # harmless: the drop's columns are not live after it by definition
            continue
        if isinstance(op, Rename):
            inverse = {new: old for old, new in op.mapping.items()}
            if live & set(inverse):
                live = {inverse.get(c, c) for c in live} | set(op.mapping)
                kept.append(step)
            continue
        writes = set(op.writes())
        if op.is_row_op or writes & live:
            live = (live - writes) | set(op.reads())
            kept.append(step)
    if graph.split.key is not None:
        live.add(graph.split.key)
    kept.reverse()
    columns = tuple(n for n in graph.source.schema.names if n in live)
    steps = _retype(graph, columns, kept)
    return replace(graph, source=replace(graph.source, columns=columns), steps=steps)


def _retype(graph: Graph, columns, steps):
    """Re-infer each kept step's schema over the narrower source projection."""
    from shardsmith.compiler.ir import Schema

    schema = Schema(tuple(c for c in graph.source.schema.columns if c.name in columns))
    out = []
    for step in steps:
        op = step.op
        if isinstance(op, Drop):
            present = tuple(c for c in op.cols if c in schema)
            if not present:
                continue  # every dropped column was pruned from the reader already
            op = replace(op, cols=present)
        schema = op.infer(schema)
        out.append(replace(step, op=op, schema=schema))
    return tuple(out)
