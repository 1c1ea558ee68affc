"""Pass: check that every edge's schema is what the steps infer, and that names stay valid.

Run first by the driver and, in tests, after every pass (an IR validator in the tinygrad sense).
"""

from __future__ import annotations

from shardsmith.errors import ConfigError, PlanError
from shardsmith.ir import Fused, Graph, Step


def validate(graph: Graph) -> Graph:
    schema = graph.source_schema
    for node in graph.steps:
        members = node.steps if isinstance(node, Fused) else (node,)
        for step in members:
            if not isinstance(step, Step):
                raise PlanError(f"unexpected node {type(step).__name__}", "graph")
            for col in step.op.reads():
                schema.require(col, step.key)
            inferred = step.op.infer(schema)
            if inferred != step.schema:
                raise PlanError(f"schema of {step.key} does not match what its op infers", step.key)
            schema = inferred
    names = [c.name for c in schema.columns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"the output has duplicate columns: {', '.join(dupes)}", "graph")
    hidden = [n for n in names if n.startswith("__")]
    if hidden:
        raise ConfigError(f"column names starting with '__' are reserved: {hidden[0]}", "graph")
    if not names:
        raise ConfigError("the graph drops every column: the output would be empty", "graph")
    if graph.split.key is not None and graph.split.key not in graph.source.columns:
        raise PlanError(f"split key '{graph.split.key}' is not read from the source", "split.key")
    return graph
