"""What a backend provides, and how ops are lowered to it (a lookup table per backend, no
``isinstance`` chains). A frame is the backend's table type (pyarrow.Table on CPU, cudf.DataFrame
on GPU) holding the user columns plus the hidden ``__file``, ``__row`` and ``__split`` columns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from shardsmith.errors import PlanError

FILE_COL, ROW_COL, SPLIT_COL = "__file", "__row", "__split"
HIDDEN = (FILE_COL, ROW_COL, SPLIT_COL)


class Lowerings:
    """op class -> function(backend, step, frame, state, ctx) -> frame, found along the op's MRO so
    that a subclass of a lowered op (a user's variant) runs without registering again."""

    def __init__(self, backend_name: str):
        self.backend_name = backend_name
        self.table: dict[type, Callable] = {}
        self.notes: dict[type, Callable] = {}

    def register(self, *op_classes, note: Callable | None = None):
        """``note(op, schema_in) -> str | None``: what a plan should say about how this backend runs
        the op (e.g. a part that runs on the host); ``shardsmith plan`` prints it."""

        def deco(fn):
            for cls in op_classes:
                self.table[cls] = fn
                if note is not None:
                    self.notes[cls] = note
            return fn

        return deco

    def note(self, op, schema_in) -> str | None:
        for cls in type(op).__mro__:
            if cls in self.notes:
                return self.notes[cls](op, schema_in)
            if cls in self.table:
                return None
        return None

    def find(self, op) -> Callable | None:
        for cls in type(op).__mro__:
            if cls in self.table:
                return self.table[cls]
        return None

    def require(self, op, key: str) -> Callable:
        fn = self.find(op)
        if fn is None:
            raise PlanError(f"op '{op.op_name}' has no lowering for the {self.backend_name} backend", key)
        return fn


QUARANTINE_COLUMNS = ("_file", "_row", "_step", "_column", "_value", "_reason")


@dataclass
class TaskContext:
    """Per-partition bookkeeping that lowerings report into: the input file paths (to name them in
    errors) and the rows sent to quarantine, as Arrow tables of QUARANTINE_COLUMNS."""

    partition: int
    files: tuple[str, ...] = ()
    quarantined: list = field(default_factory=list)

    def quarantine(self, frame, mask, step_key: str, column: str, values: list[str], reason: str) -> None:
        """Record the rows of ``frame`` selected by the host boolean ``mask``."""
        import numpy as np
        import pyarrow as pa

        idx = np.flatnonzero(mask)
        files = np.asarray(_host(frame[FILE_COL]))[idx]
        rows = np.asarray(_host(frame[ROW_COL]))[idx]
        n = len(idx)
        self.quarantined.append(pa.table({
            "_file": pa.array([self.files[int(f)] for f in files], type=pa.string()),
            "_row": pa.array(rows, type=pa.int64()),
            "_step": pa.array([step_key] * n, type=pa.string()),
            "_column": pa.array([column] * n, type=pa.string()),
            "_value": pa.array(values, type=pa.string()),
            "_reason": pa.array([reason] * n, type=pa.string()),
        }))

    @property
    def quarantined_rows(self) -> int:
        return sum(t.num_rows for t in self.quarantined)


def _host(column):
    """A column's values on the host, whatever the backend's column type."""
    if hasattr(column, "to_numpy"):
        try:
            return column.to_numpy()
        except TypeError:
            pass
    if hasattr(column, "values_host"):
        return column.values_host
    return column


def register_lowering(backend: str, *op_classes):
    """Decorator for user ops: ``@register_lowering("cpu", MyOp)`` on ``fn(be, step, frame, state, ctx)``."""
    from shardsmith.backends import lowerings_for

    return lowerings_for(backend).register(*op_classes)
