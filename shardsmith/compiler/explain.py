"""``shardsmith plan``'s text: the optimised graph and the physical plan, the way EXPLAIN shows a
query plan (runtime/explain.py gathers what it shows)."""

from __future__ import annotations

import datetime

from shardsmith.compiler.passes import PASSES
from shardsmith.compiler.planner import Plan, describe
from shardsmith.ir import Fused, Graph
from shardsmith.ir.expr_types import column_kind


def explain_lines(built: Graph, trace: list, plan: Plan, lowerings, passes: bool = False) -> list[str]:
    """The text of ``shardsmith plan``: the optimised graph (or, with ``passes``, the graph as
    built and after every pass of ``trace``), the physical plan and the output schema.
    ``lowerings`` is the chosen backend's table (``backends/base.Lowerings``): its notes say how
    that backend runs a step."""
    final = plan.graph
    lines = []
    if passes:
        lines += ["== built", *render(built), ""]
        for name, g in trace:
            lines += [f"== after {name}", *render(g), ""]
    else:
        lines += [f"== optimised graph (passes: {', '.join(p.__name__ for p in PASSES)})",
                  *render(final, lowerings), ""]
    lines += ["== physical plan", *describe(plan), ""]
    lines += ["== output schema", *(f"  {c.name:<14} {c.dtype:<8} {c.role}" for c in final.schema.columns)]
    return lines


def render(g: Graph, lowerings=None) -> list[str]:
    """The graph as text; with a backend's ``lowerings``, also what that backend notes about a step
    (for example a part that runs on the host)."""
    src = g.source
    rows = f", {src.rows:,} rows" if src.rows >= 0 else ""
    lines = [f"source {src.format}: {len(src.files)} file(s){rows}; reads {len(src.columns)} of "
             f"{len(src.schema.columns)} column(s)"]
    if src.filter is not None:
        lines.append(f"  pushed filter: {src.filter}")
    if src.row_groups is not None:
        kept = sum(len(r) for r in src.row_groups)
        total = sum(len(f.row_groups) for f in src.files)
        lines.append(f"  row groups read: {kept} of {total} (statistics pruning)")
    schema_in = g.source_schema
    for node in g.steps:
        note = lowerings.note(node.op, schema_in) if lowerings is not None and not isinstance(node, Fused) else None
        schema_in = node.schema
        if isinstance(node, Fused):
            lines.append(f"{node.key}  fused: {len(node.steps)} step(s), {len(node.groups)} kernel(s)")
            for k, group in enumerate(node.groups):
                ops = " -> ".join(node.steps[pos].op.op_name for pos, _ in group.chains[0].stages)
                cols = _names(group.outs)
                lines.append(f"    kernel {k}: {len(group.chains)} column(s) {group.src_dtype} -> {ops} -> "
                             f"{group.chains[0].dtypes[-1]}  {cols}")
        else:
            fit = f"  [fitted in pass {node.fit_stage}]" if node.fit_stage is not None else ""
            lines.append(f"{node.key}  {node.op.describe()}{fit}")
        if note:
            lines.append(f"    on the {lowerings.backend_name} engine: {note}")
    lines.append(split_text(g))
    sink = g.sink
    size = f"{sink.shard_rows:,} rows" if sink.shard_rows else f"{sink.shard_bytes:,} bytes"
    lines.append(f"sink {sink.dir}: {', '.join(sink.formats)}, shards of {size}, {sink.compression}")
    return lines


def _names(names) -> str:
    names = list(names)
    return "[" + (", ".join(names) if len(names) <= 6 else f"{names[0]}, {names[1]}, ... {names[-1]}") + "]"


def split_text(g: Graph) -> str:
    """The split as one line of ``shardsmith plan``."""
    split = g.split
    names = ", ".join(split.names)
    fit_on = f"; statistics on '{split.fit_on}' rows" if split.fit_on else ""
    if split.by == "hash":
        by = f"hash of '{split.key}'" if split.key else "hash of the row in its file"
        return f"split {names} by {by}, seed {split.seed}{fit_on}"
    other = f"; null{' or unlisted' if split.by == 'column' else ''} keys to " \
            f"'{split.names[split.default]}'" if split.default is not None else ""
    if split.by == "time":
        kind = column_kind(g.source.schema[split.key].dtype)
        cuts = ", ".join(_cut_text(c, kind) for c in split.cuts)
        return f"split {names} by time: '{split.key}' cut at {cuts}{other}{fit_on}"
    listed = ", ".join(f"{n} ({len(v)} value{'s' if len(v) != 1 else ''})" for n, v in zip(split.names, split.values))
    return f"split by the value of '{split.key}': {listed}{other}{fit_on}"


def _cut_text(cut, kind: str) -> str:
    if kind == "date":
        return (datetime.date(1970, 1, 1) + datetime.timedelta(days=cut)).isoformat()
    if kind == "timestamp":
        return (datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=cut)).isoformat()
    return repr(cut)
