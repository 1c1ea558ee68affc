"""Pass: fuse runs of consecutive elementwise steps (fill, clip, log1p, normalize, ...) into one
Fused node each, holding one kernel per column group (ir/fusion.py)."""

from __future__ import annotations

from shardsmith.ir import Fused, Graph, Schema, Step
from shardsmith.ir.fusion import group_columns
from shardsmith.ops.base import ElementwiseOp


def fuse_elementwise(graph: Graph) -> Graph:
    return graph.with_steps(fuse(graph.flat_steps(), graph.source_schema))


def fuse(steps: tuple[Step, ...], schema: Schema) -> list:
    """Group maximal runs of elementwise steps; a run of one step is fused too (one kernel per
    column group instead of one per column)."""
    out, run, run_schema = [], [], schema
    for step in steps:
        if isinstance(step.op, ElementwiseOp):
            if not run:
                run_schema = schema
            run.append(step)
        else:
            if run:
                out.append(Fused(tuple(run), group_columns(tuple(run), run_schema)))
                run = []
            out.append(step)
        schema = step.schema
    if run:
        out.append(Fused(tuple(run), group_columns(tuple(run), run_schema)))
    return out


def kernel_count(nodes) -> int:
    """Kernels a program launches per partition for its elementwise work (the fusion test's unit)."""
    return sum(len(n.groups) for n in nodes if isinstance(n, Fused))
