"""The manifest's ``lineage``: for each output column, its input columns, side tables and the chain
of steps that made it (op, parameters, and the fitted-state entry and files each step used); for
the rows, the filters that chose them and the split. Read by ``shardsmith lineage``
(shards/lineage.py renders it as text or as an OpenLineage run event)."""

from __future__ import annotations

import posixpath

from shardsmith.compiler.lineage import Origin, row_filters, step_params, walk
from shardsmith.compiler.planner import Plan
from shardsmith.shards.state import STATE_FILE, table_files

STATE_DIR = "state"


def manifest_lineage(plan: Plan, state_doc: dict | None) -> dict:
    """The lineage section of the manifest; ``state_doc`` is ``state.json`` as written (tables
    as file references), None when nothing was fitted."""
    graph = plan.graph
    source = graph.source_schema
    envs = walk(source, graph.flat_steps())
    columns = {c.name: column_lineage(envs[-1][c.name], source, state_doc or {}) for c in graph.schema.columns}
    split = graph.split
    return {"columns": columns,
            "rows": {"filters": row_filters(graph, envs),
                     "split": {"key": split.key, "seed": split.seed, "names": list(split.names),
                               "by": "column" if split.key else "row in its file"}}}


def column_lineage(origin: Origin, source, state_doc: dict) -> dict:
    return {"inputs": list(origin.inputs),
            "dtypes": {c: source[c].dtype for c in origin.inputs},
            "tables": [list(t) for t in origin.tables],
            "steps": [step_entry(step, via, state_doc) for _, step, via in origin.steps]}


def step_entry(step, via: tuple[str, ...], state_doc: dict) -> dict:
    entry = {"step": step.key, "op": step.op.op_name, "params": step_params(step), "via": list(via)}
    state = state_doc.get(step.key)
    if state is not None:
        # A per-column state is keyed by the column the step read; otherwise the step's whole state.
        keys = [v for v in via if isinstance(state, dict) and v in state]
        parts = [state[k] for k in keys] if keys else [state]
        entry["state"] = {"file": posixpath.join(STATE_DIR, STATE_FILE),
                          "entries": [f"{step.key}/{k}" for k in keys] or [step.key],
                          "files": [posixpath.join(STATE_DIR, f) for p in parts for f in table_files(p)]}
    return entry
