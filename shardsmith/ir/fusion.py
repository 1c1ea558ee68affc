"""Fusion analysis: the column groups of a run of consecutive elementwise steps.

Inside a run, every output column is a chain of ops applied to one input column. Columns whose
chains have the same signature (the same op kinds and dtypes at every stage, parameters aside)
form a group: one generated kernel on GPU, one blocked pass on CPU, with per-column parameters
passed as arrays. The ops of a run are elementwise ops (``shardsmith.ops.base.ElementwiseOp``):
they map columns ``pairs()`` and have a kernel ``signature()``.
"""

from __future__ import annotations

from shardsmith.ir.graph import Chain, ColumnGroup, Step
from shardsmith.ir.schema import Schema


def group_columns(steps: tuple[Step, ...], schema_in: Schema) -> tuple[ColumnGroup, ...]:
    """The column groups of a run of elementwise ``steps`` whose input schema is ``schema_in``."""
    env: dict[str, tuple[str, tuple, tuple]] = {}
    order: list[str] = []
    for pos, step in enumerate(steps):
        updates = {}
        for c, o in step.op.pairs():
            src, stages, dtypes = env.get(c, (c, (), ()))
            updates[o] = (src, stages + ((pos, c),), dtypes + (step.schema[o].dtype,))
        for o, v in updates.items():
            env[o] = v
            if o not in order:
                order.append(o)
    groups: dict[tuple, list[Chain]] = {}
    for out in order:
        src, stages, dtypes = env[out]
        sig = (schema_in[src].dtype,) + tuple(
            (steps[pos].op.signature(), dt) for (pos, _), dt in zip(stages, dtypes))
        groups.setdefault(sig, []).append(Chain(src, out, stages, dtypes))
    return tuple(ColumnGroup(sig, sig[0], tuple(chains)) for sig, chains in groups.items())
