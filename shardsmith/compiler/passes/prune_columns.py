"""Pass: read only the columns the graph needs, and remove steps whose results nobody uses.

A backward liveness walk (compiler/liveness.py) from the output schema (plus the split key and
the columns that input expectations check): a step stays if it writes a live column or removes
rows; the source's projection becomes the columns live at its output, so the Parquet reader never
decodes the others.
"""

from __future__ import annotations

from dataclasses import replace

from shardsmith.compiler.liveness import AUTO, KEEP, backward
from shardsmith.ir import Graph
from shardsmith.ops.rows import Drop


def prune_columns(graph: Graph) -> Graph:
    steps = graph.flat_steps()
    # A drop stays (harmless): its columns are not live after it by definition.
    kept, live = backward(steps, set(graph.schema.names), lambda i: KEEP if isinstance(steps[i].op, Drop) else AUTO)
    if graph.split.key is not None:
        live.add(graph.split.key)
    for check in graph.checks_at("input"):  # input checks read source columns before any step
        live |= check.columns()
    columns = tuple(n for n in graph.source.schema.names if n in live)
    source = replace(graph.source, columns=columns)
    return replace(graph, source=source, steps=_retype(source.schema.select(columns), [steps[i] for i in kept]))


def _retype(schema, steps):
    """Re-infer each kept step's schema over the narrower source projection."""
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
