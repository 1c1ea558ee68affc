"""Column liveness, the one backward analysis that the optimiser (``prune_columns``) and the
planner (each fit pass's program and projection) share.

Walking the steps backwards from the columns wanted after them, a step is *needed* when it removes
rows (every later statistic and shard sees that) or writes a wanted column; a needed step makes
the columns it reads wanted, and the columns it writes unwanted above it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from shardsmith.ir import OpSpec, Step

USE, KEEP, AUTO = "use", "keep", "auto"


def needed(op: OpSpec, live: set[str]) -> bool:
    return op.is_row_op or bool(set(op.writes()) & live)


def live_before(op: OpSpec, live: set[str]) -> set[str]:
    """The columns wanted before ``op`` when ``live`` are wanted after it (``op`` is needed)."""
    return (live - set(op.writes())) | set(op.reads())


def backward(steps: Sequence[Step], live: set[str], mode: Callable[[int], str] = lambda i: AUTO
             ) -> tuple[list[int], set[str]]:
    """The positions of the steps to keep, in order, and the columns wanted before the first.

    ``mode(i)`` says how step ``i`` is treated: ``AUTO`` kept when :func:`needed`; ``USE`` always
    kept as a consumer of what it reads (a statistic computed at that point: it writes nothing);
    ``KEEP`` always kept and transparent (a harmless step such as a drop)."""
    live = set(live)
    kept = []
    for i in reversed(range(len(steps))):
        op, m = steps[i].op, mode(i)
        if m == USE:
            live |= set(op.reads())
        elif m == AUTO:
            if not needed(op, live):
                continue
            live = live_before(op, live)
        kept.append(i)
    return kept[::-1], live
