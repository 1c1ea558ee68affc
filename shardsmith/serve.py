"""Serving parity: a compiled dataset's fitted graph applied to in-memory batches, in the calling
process (no cluster), with the values the compile wrote for the same input rows.

>>> from shardsmith.serve import Transform                      # doctest: +SKIP
>>> t = Transform.load("shards/criteo_synthetic/manifest.json") # doctest: +SKIP
>>> out = t({"I1": [3.0], "C1": ["68fd1e64"], ...})              # doctest: +SKIP
>>> out.table, out.rows, out.filtered, out.quarantined          # doctest: +SKIP

``Transform.load`` reads the manifest (its resolved config and input schema) and the fitted state
files (JSON + Parquet, never pickle), rebuilds and optimises the graph exactly as the compile did,
and runs the CPU backend's lowerings on each batch: the same code, so the same values, as the
shards (integers, ids and hashes bit-identical; floats too, since every op rounds the same way).
A batch is a pyarrow Table, a pandas DataFrame, or a dict of lists (or of scalars: one row);
columns the graph does not read are ignored, missing ones are an error naming the column.

Rows are never dropped silently. The result holds the transformed rows (``table``, in input order)
and, for each, its position in the batch (``rows``); the positions that a ``filter`` (or an inner
join) removed (``filtered``); and the rows that a step or an expectation sent to quarantine
(``quarantined``: the compile's quarantine records, ``_row`` being the position in the batch). The
split is not applied: every row is served, as a row of no split (``target_encode`` gives it the
full-fit encoding, not an out-of-fold one). ``join`` looks rows up in the side table saved with the
fitted state; ``lag``, whose values come from other rows of the dataset, cannot be served: loading
a dataset with a lag step is an error naming the step.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from shardsmith.backends import get_backend
from shardsmith.backends.base import TaskContext
from shardsmith.backends.cpu.expr import filter_mask
from shardsmith.backends.cpu.rows import ARRAYISH, RowProgram
from shardsmith.compiler.build import build_on
from shardsmith.compiler.config import from_dict
from shardsmith.compiler.passes import optimize
from shardsmith.compiler.planner import transform_program
from shardsmith.errors import InputError, PlanError
from shardsmith.inputs.rows import QUARANTINE_COLUMNS
from shardsmith.ir import FILE_COL, ROW_COL, SPLIT_COL, Column, Schema
from shardsmith.ir.dtypes import ARROW_TYPES
from shardsmith.kernels import cpujit
from shardsmith.runtime.quality import check_stage
from shardsmith.runtime.tasks import run_program
from shardsmith.shards.manifest import read_manifest
from shardsmith.shards.state import load_states

BATCH = "<batch>"  # the "file" quarantine records name
_QUARANTINE_SCHEMA = pa.schema([(c, pa.int64() if c == "_row" else pa.string()) for c in QUARANTINE_COLUMNS])
_NO_QUARANTINE = _QUARANTINE_SCHEMA.empty_table()
# Batches of up to this many rows take the row path (backends/cpu/rows.py) where the graph has one:
# below it, the fixed costs of a table per step outweigh the row path's per-value Python work
# (measured on the demo pipeline: bench/serve/run.py, BENCHMARKS.md "Serving").
ROW_PATH_ROWS = 64


@dataclass
class Result:
    """What a batch became: ``table`` (the output schema), ``rows`` (each output row's position in
    the batch), ``filtered`` (positions removed by filters), ``quarantined`` (quarantine records)."""

    table: pa.Table
    rows: np.ndarray
    filtered: np.ndarray
    quarantined: pa.Table

    def to_pandas(self):
        return self.table.to_pandas()

    def to_pydict(self) -> dict:
        return self.table.to_pydict()


class Transform:
    """A dataset's fitted graph, ready to apply to batches (see the module docstring)."""

    def __init__(self, manifest: dict, kernels: str = "auto", threads: int | None = None):
        cfg = from_dict(manifest["config"]["resolved"])
        if "input_schema" not in manifest:
            raise InputError("this manifest records no input schema (written by an older shardsmith): "
                             "recompile it to serve it", manifest["_dir"])
        schema = Schema(tuple(Column(c["name"], c["dtype"], c.get("role", "other")) for c in manifest["input_schema"]))
        self.graph = optimize(build_on(cfg, schema))
        refuse_unservable(self.graph)
        self.program = transform_program(self.graph)
        self.states = load_states(os.path.join(manifest["_dir"], "state")) or {}
        missing = [s.key for s in self.graph.flat_steps() if s.op.fitted and s.key not in self.states]
        if missing:
            raise InputError(f"the dataset's fitted state lacks step {missing[0]}",
                             os.path.join(manifest["_dir"], "state"))
        self.backend = get_backend("cpu", kernels)
        self.columns = self.graph.source.columns  # what a batch must hold
        self._types = {c: ARROW_TYPES.get(schema[c].dtype) for c in self.columns}
        self._filter = self.graph.source.filter  # a filter pushed into the reader: applied first, as there
        self._inputs_checked = self.graph.checks_at("input")
        self._outputs_checked = self.graph.checks_at("output")
        self.manifest = manifest
        plain = self._filter is None and not self._inputs_checked and not self._outputs_checked
        self.threads = max(1, threads or 1)
        self._pool = None
        self.rows = RowProgram.of(self.program, self.states, self._types, self.backend,
                                     self.graph.schema) if plain else None

    @classmethod
    def load(cls, manifest: str, kernels: str = "auto", threads: int | None = None) -> Transform:
        """The fitted graph of the dataset at ``manifest`` (its manifest.json or directory).
        ``kernels``: the CPU backend's path: ``auto`` (the default: Numba's compiled kernels once
        they are built, on a background thread, NumPy until then; a serving process lives long
        enough to gain from them: 2.7x the batch throughput of NumPy on the demo pipeline),
        ``numba`` (wait for the compiled kernels) or ``numpy``. The values are the same bits.
        ``threads``: how many threads run a batch's independent columns side by side (the fused
        group's and the vocabulary lookups' compiled kernels, which release the GIL), for batches
        of lowering.COLUMN_POOL_ROWS rows or more. Default 1, the calling thread: on the shared
        2-vCPU machine, whose cores other processes kept busy, two threads gained nothing sure
        (BENCHMARKS.md "Serving"). The values are the same."""
        return cls(read_manifest(manifest) if isinstance(manifest, (str, os.PathLike)) else manifest, kernels, threads)

    def warm(self, batch, timeout: float | None = 60) -> bool:
        """Serve ``batch`` (a few rows) by every path it could take, and wait up to ``timeout``
        seconds (each round) for the compiled kernels that asks for, which ``kernels="auto"``
        builds on a background thread (holding the GIL for stretches of a second): a server's
        first requests then run at full speed. Whether the kernels are all built."""
        asked = -1
        for _ in range(4):  # a kernel once built can ask for another (a vocabulary's hash table)
            self._apply(self._frame(batch))  # the lowerings, whatever the batch's size
            few = self._row_columns(batch) if self.rows is not None else None
            if few is not None:
                self.rows(*few)
            n = cpujit.wait_built(timeout)
            if n is None or n == asked:
                return n is not None
            asked = n
        return True

    @property
    def output_schema(self) -> Schema:
        return self.graph.schema

    def __call__(self, batch) -> Result:
        few = self._row_columns(batch) if self.rows is not None else None
        if few is not None:  # the row path: the same values, without a table per step
            cols, n = few
            return Result(self.rows(cols, n), np.arange(n, dtype=np.int64),
                          np.zeros(0, np.int64), _NO_QUARANTINE)
        frame = self._frame(batch)
        n = frame.num_rows
        table, rows, records = self._apply(frame)
        quarantined = pa.concat_tables(records) if records else _NO_QUARANTINE
        gone = np.ones(n, dtype=bool)
        gone[rows] = False
        gone[quarantined["_row"].to_numpy()] = False
        return Result(table, rows, np.flatnonzero(gone), quarantined)

    def _apply(self, frame: pa.Table) -> tuple[pa.Table, np.ndarray, list]:
        """The filter, the checks and the program on the batch's frame: (the output table, each
        output row's position in the batch, the quarantine records)."""
        be, ctx = self.backend, TaskContext(0, (BATCH,))
        ctx.column_pool = self._executor() if self.threads > 1 else None
        if self._filter is not None:
            frame = frame.filter(pa.array(filter_mask(frame, self._filter)))
        if self._inputs_checked:
            frame, _ = check_stage(be, frame, self._inputs_checked, ctx, only_quarantine=True)
        frame = run_program(be, self.program, frame, self.states, ctx)
        if self._outputs_checked:
            frame, _ = check_stage(be, frame, self._outputs_checked, ctx, only_quarantine=True)
        return be.conform(frame, self.graph.schema), frame[ROW_COL].to_numpy(), ctx.quarantined

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="shardsmith-serve")
        return self._pool

    def _row_columns(self, batch) -> tuple[dict, int] | None:
        """A batch of at most ROW_PATH_ROWS rows as the row path's input columns, or None."""
        if isinstance(batch, dict):
            few = self.rows.columns(batch)
            return few if few is not None and few[1] <= ROW_PATH_ROWS else None
        n = len(batch) if hasattr(batch, "__len__") else ROW_PATH_ROWS + 1
        if n > ROW_PATH_ROWS:
            return None
        arrays, n = self._inputs(batch)
        return {name: col.to_pylist() for name, col in zip(self._types, arrays)}, n

    def _frame(self, batch) -> pa.Table:
        """The batch as the compile's reader would give it: the input columns in their dtypes, and
        the hidden columns (file 0, the row's position, split 0)."""
        arrays, n = self._inputs(batch)
        names = [*self._types, FILE_COL, ROW_COL, SPLIT_COL]
        # Split -1: a served row is in no split of the dataset, so fitted ops treat it as new data
        # (target_encode gives it the full-fit encoding, as the rows outside the fit split).
        hidden = [pa.array(np.zeros(n, np.int32)), pa.array(np.arange(n, dtype=np.int64)),
                  pa.array(np.full(n, -1, np.int8))]
        return pa.Table.from_arrays([*arrays, *hidden], names=names)

    def _inputs(self, batch) -> tuple[list, int]:
        """The input columns in their dtypes (an error names a missing or unconvertible one) and
        the row count."""
        table = _as_table(batch, self._types)
        present = set(table.column_names)
        arrays = []
        for name, want in self._types.items():
            if name not in present:
                raise InputError(f"column '{name}' is missing (the graph reads {', '.join(self.columns)})", "batch")
            col = table[name]
            if want is not None and col.type != want:
                try:
                    col = col.cast(want)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise InputError(f"column '{name}' is {col.type}, which does not convert to {want}: "
                                     f"{str(exc).splitlines()[0]}", "batch") from None
            arrays.append(col)
        return arrays, table.num_rows


# Ops whose state is per row of the compiled dataset, so that it has no value for a new row.
UNSERVABLE = {"lag": "its values come from the dataset's earlier rows of the same key, which a batch does not "
                     "hold (compute the lags upstream and pass them as input columns)"}


def refuse_unservable(graph) -> None:
    """A PlanError naming the first step that cannot be applied to new rows, and why."""
    for step in graph.flat_steps():
        why = UNSERVABLE.get(step.op.op_name)
        if why is not None:
            raise PlanError(f"op '{step.op.op_name}' cannot be served: {why}", step.key)


def _as_table(batch, types: dict) -> pa.Table:
    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, pa.RecordBatch):
        return pa.Table.from_batches([batch])
    if isinstance(batch, dict):
        return _dict_table(batch, types)
    if hasattr(batch, "to_dict") and hasattr(batch, "columns"):  # a pandas DataFrame
        return pa.Table.from_pandas(batch, preserve_index=False)
    raise InputError(f"expected a pyarrow Table, a pandas DataFrame or a dict of lists, got {type(batch).__name__}",
                     "batch")


def _dict_table(batch: dict, types: dict) -> pa.Table:
    """A dict of lists (or arrays), or of scalars (one row), in the input dtypes."""
    one = not any(isinstance(v, ARRAYISH) for v in batch.values())
    columns = {}
    for k, v in batch.items():
        if isinstance(v, (pa.Array, pa.ChunkedArray)):
            columns[k] = v
            continue
        try:
            columns[k] = pa.array([v] if one else v, type=types.get(k))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise InputError(f"column '{k}': {str(exc).splitlines()[0]}", "batch") from None
    return pa.table(columns)
