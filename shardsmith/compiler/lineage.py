"""Column lineage of a graph: for every column, the source columns and side-table columns it is
computed from and the chain of steps that computed it; for the rows, the filters that chose them.

One forward walk over the steps, using only what each op says of itself in ``depends_on``
(ops/base.py): a column an op writes inherits the origins of the inputs it depends on, plus that
step. The walk serves the manifest's ``lineage`` (runtime/assemble.py) and the fit signatures that
let a compile reuse another dataset's fitted state (``fit.from``) only where it means the same.

>>> from shardsmith.ir import Column, Schema
>>> from shardsmith.ops.numeric import Log1p
>>> src = Schema((Column("a", "float32"),))
>>> op = Log1p(cols=("a",), out=("b",))
>>> step = Step(op, "graph[0]", op.infer(src))
>>> env = walk(src, [step])[-1]
>>> env["b"].inputs, [s.key for _, s, _ in env["b"].steps]
(('a',), ['graph[0]'])
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from shardsmith.ir import Graph, Schema, Step


@dataclass(frozen=True)
class Origin:
    """Where one column's values come from: source columns, side-table columns ((table, column)),
    and the steps that computed it in graph order, each as (position, step, the input columns of
    that step it came through)."""

    inputs: tuple[str, ...] = ()
    tables: tuple[tuple[str, str], ...] = ()
    steps: tuple[tuple[int, Step, tuple[str, ...]], ...] = ()


def _merge(origins: list[Origin]) -> Origin:
    inputs, tables, steps = [], [], {}
    for o in origins:
        inputs += [c for c in o.inputs if c not in inputs]
        tables += [t for t in o.tables if t not in tables]
        for pos, step, via in o.steps:
            old = steps.get(pos, (pos, step, ()))
            steps[pos] = (pos, step, old[2] + tuple(v for v in via if v not in old[2]))
    return Origin(tuple(inputs), tuple(tables), tuple(steps[p] for p in sorted(steps)))


def walk(source: Schema, steps) -> list[dict[str, Origin]]:
    """The origin of every column before each step and after the last one (``len(steps) + 1``
    environments); ``source`` is the schema the first step reads."""
    env = {c: Origin(inputs=(c,)) for c in source.names}
    out = [env]
    for pos, step in enumerate(steps):
        new = {}
        for col, deps in step.op.depends_on().items():
            parts = [env[d] if isinstance(d, str) else Origin(tables=(tuple(d),)) for d in deps
                     if not isinstance(d, str) or d in env]
            merged = _merge(parts)
            via = tuple(d for d in deps if isinstance(d, str))
            new[col] = Origin(merged.inputs, merged.tables, merged.steps + ((pos, step, via),))
        env = {c: new.get(c, env.get(c, Origin())) for c in step.schema.names}
        out.append(env)
    return out


def row_filters(graph: Graph, envs: list[dict[str, Origin]]) -> list[dict]:
    """The steps that chose the output's rows (pushed into the reader or not), with the source
    columns and side tables they read."""
    out = []
    if graph.source.filter is not None:
        cols = sorted(graph.source.filter.columns())
        out.append({"steps": list(graph.source.filter_keys), "where": "pushed into the reader",
                    "expr": f"filter({graph.source.filter})", "inputs": cols, "tables": []})
    for pos, step in enumerate(graph.flat_steps()):
        if step.op.is_row_op:
            origin = _merge([envs[pos][c] for c in step.op.reads() if c in envs[pos]])
            out.append({"steps": [step.key], "where": "graph", "expr": step.op.describe(),
                        "inputs": list(origin.inputs), "tables": [list(t) for t in origin.tables]})
    return out


def step_params(step: Step) -> dict:
    """A step's parameters without its column selection (``cols``, ``out``), which the lineage
    already says per column."""
    return {k: v for k, v in step.op.parameters().items() if k not in ("cols", "out")}


def describe_origin(origin: Origin, source: Schema) -> dict:
    """An origin as JSON: input columns with dtypes, tables, steps (op and parameters)."""
    return {"inputs": [[c, source[c].dtype] for c in origin.inputs],
            "tables": [list(t) for t in origin.tables],
            "steps": [{"op": s.op.op_name, "params": step_params(s), "via": list(via)}
                      for _, s, via in origin.steps]}


def fit_signatures(graph: Graph) -> dict[str, dict]:
    """Per fitted step (by key): what it fits, in words, and per column it reads a signature of
    what its state means for that column: the op with its parameters and the lineage of the column
    (source columns with dtypes, the steps before with their parameters). Step keys, row filters
    and the data are not part of it: a state fitted on other rows or other data means the same."""
    source = graph.source_schema
    flat = graph.flat_steps()
    envs = walk(source, flat)
    out = {}
    for pos, step in enumerate(flat):
        if not step.op.fitted:
            continue
        columns = {}
        for c in step.op.reads():
            doc = {"op": step.op.op_name, "params": step_params(step),
                   "origin": describe_origin(envs[pos].get(c, Origin()), source)}
            columns[c] = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:32]
        out[step.key] = {"op": step.op.describe(), "columns": columns}
    return out
