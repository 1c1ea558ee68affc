"""The optimiser: passes run in this order, each a module with one public function
``pass(graph) -> graph``. ``shardsmith plan --passes`` prints the graph after each one."""

from __future__ import annotations

from shardsmith.compiler.passes.fuse_elementwise import fuse_elementwise
from shardsmith.compiler.passes.plan_fit import plan_fit
from shardsmith.compiler.passes.prune_columns import prune_columns
from shardsmith.compiler.passes.push_filters import push_filters
from shardsmith.compiler.passes.validate import validate

PASSES = (validate, prune_columns, push_filters, plan_fit, fuse_elementwise)


def optimize(graph, passes=PASSES, trace=None, check=False):
    """Run ``passes`` in order. ``trace`` (a list) receives (pass name, graph) after each;
    ``check`` re-validates the IR after every pass."""
    for p in passes:
        graph = p(graph)
        graph = graph.__class__(**{**graph.__dict__, "passes_applied": graph.passes_applied + (p.__name__,)})
        if check:
            validate(graph)
        if trace is not None:
            trace.append((p.__name__, graph))
    return graph
