"""Pass: decide in which pass over the data each fitted step is fitted, using as few as possible.

A column value is *ready* in pass k when everything it depends on is fitted before pass k. A fitted
step's statistics are computed in the pass where all its inputs are ready; a filter delays every
later step to the pass where its predicate is ready. So every statistic whose inputs depend on no
other fitted step is computed in pass 0, in one read of the input, whatever the number of steps.
"""

from __future__ import annotations

from dataclasses import replace

from shardsmith.ir import Graph


def plan_fit(graph: Graph) -> Graph:
    stages = availability(graph)
    steps = [replace(s, fit_stage=a if s.op.fitted else None) for s, a in zip(graph.flat_steps(), stages)]
    return graph.with_steps(steps)


def availability(graph: Graph) -> list[int]:
    """Per flat step: the first pass in which its input (columns and rows) can be computed."""
    ready = {c: 0 for c in graph.source.columns}  # column -> first pass in which its value exists
    rows_ready = 0  # first pass in which the set of rows at this point is known
    out = []
    for step in graph.flat_steps():
        op = step.op
        avail = max([rows_ready] + [ready.get(c, 0) for c in op.reads()])
        out_ready = avail + 1 if op.fitted else avail
        if op.is_row_op:
            rows_ready = max(rows_ready, avail)
        out.append(avail)
        for c in op.writes():
            ready[c] = out_ready
    return out


def fit_passes(graph: Graph) -> int:
    """How many passes over the input fitting takes (0 when nothing is fitted)."""
    stages = [s.fit_stage for s in graph.flat_steps() if s.fit_stage is not None]
    return max(stages) + 1 if stages else 0
