"""Pass: move row filters into the reader, and prune Parquet row groups by their statistics.

A filter moves to the source when no earlier step writes a column it reads and no earlier step is
fitted (moving it would change the rows that step's statistics see). Pushed predicates are ANDed,
evaluated while reading, and used once more at plan time: row groups whose min/max statistics
prove that no row can pass are never read (their rows are counted as filtered). Nothing moves when
expectations check the input (``at: input``): they see every input row.
"""

from __future__ import annotations

from dataclasses import replace

from shardsmith.inputs.predicate import row_groups_passing
from shardsmith.ir import Graph
from shardsmith.ir.expr import Expr
from shardsmith.ops.rows import Filter


def push_filters(graph: Graph) -> Graph:
    if graph.checks_at("input"):  # input expectations see every row as read: nothing moves before them
        return graph
    pushed, keys, kept, written, fitted_before = [], [], [], set(), False
    for step in graph.flat_steps():
        op = step.op
        if isinstance(op, Filter) and not fitted_before and not (set(op.reads()) & written):
            pushed.append(op.predicate)
            keys.append(step.key)
            continue
        written |= set(op.writes())
        fitted_before |= op.fitted
        kept.append(step)
    if not pushed:
        return graph
    pred = graph.source.filter
    terms = ([pred] if pred is not None else []) + pushed
    pred = terms[0] if len(terms) == 1 else Expr("and", tuple(terms))
    source = replace(graph.source, filter=pred, filter_keys=graph.source.filter_keys + tuple(keys))
    if source.format == "parquet":
        kept_groups = row_groups_passing(source.files, source.filter, source.schema, source.storage_options)
        source = replace(source, row_groups=kept_groups)
    return replace(graph, source=source, steps=tuple(kept))
