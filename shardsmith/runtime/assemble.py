"""The manifest of a finished compile, assembled on the driver from the plan, the fitted states,
the shard writers' records and the partitions' row accounting."""

from __future__ import annotations

import collections
import datetime
import math

from shardsmith.compiler.planner import Plan
from shardsmith.errors import ShardsmithError
from shardsmith.ir import Schema
from shardsmith.kernels import digest
from shardsmith.ops.categorical import embedding_dim
from shardsmith.runtime.identity import code_sha256, code_version
from shardsmith.runtime.tasks import pushed_key
from shardsmith.runtime.writing import QUARANTINE, Stream
from shardsmith.shards import manifest as mf
from shardsmith.shards.summary import merge_summaries


def fitted_schema(plan: Plan, states: dict) -> Schema:
    schema = plan.graph.source_schema
    for step in plan.graph.flat_steps():
        schema = step.op.infer(schema)
        if step.key in states:
            schema = step.op.fitted_schema(schema, states[step.key])
    return schema.with_roles(plan.graph.roles)


def build_manifest(cfg, resolved: dict, key: str, plan: Plan, states: dict, streams: dict[str, Stream],
                   metas: list[dict], engine: dict, timings: dict) -> dict:
    splits = {name: {"rows": streams[name].planned_rows, "shards": _shards(streams[name])}
              for name in plan.graph.split.names}
    quarantine = {"rows": streams[QUARANTINE].planned_rows, "shards": _shards(streams[QUARANTINE])}
    rows = row_accounting(plan, metas, splits)
    return {
        "format": mf.FORMAT, "version": mf.VERSION, "name": cfg.name,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": {"resolved": resolved, "sha256": mf.sha256_json(resolved)},
        "dataset_key": key,
        "code_version": code_version(),
        "code_sha256": code_sha256(),
        "inputs": _inputs(plan, metas),
        "input_schema": plan.graph.source.schema.to_json(),
        "tables": {t.name: [{"path": f.path, "bytes": f.bytes, "rows": f.rows if f.rows >= 0 else None,
                             "fingerprint": f.fingerprint} for f in t.files] for t in plan.graph.tables},
        "schema": _schema_json(fitted_schema(plan, states)),
        "splits": splits,
        "quarantine": quarantine,
        "content": content(streams, plan.graph.split.names),
        "rows": rows,
        "filtered_by": filtered_by(plan, metas, rows),
        "fitted_state": "state/",
        "stats": {name: _stats(streams[name], plan.output_schema) for name in plan.graph.split.names},
        "plan": {"partitions": len(plan.partitions), "passes_over_data": plan.passes_over_data,
                 "fit_passes": len(plan.fit_programs), "shard_rows": plan.shard_rows,
                 "rows_pruned": plan.rows_pruned, "optimizer_passes": list(plan.graph.passes_applied)},
        "engine": engine,
        "timings": {k: round(v, 4) for k, v in timings.items()},
    }


def row_accounting(plan: Plan, metas: list[dict], splits: dict) -> dict:
    """in = out + filtered + quarantined, checked: a row that went missing fails the compile."""
    rows_read = sum(m["rows_read"] for m in metas)
    rows = {"in": rows_read + plan.rows_pruned, "out": sum(s["rows"] for s in splits.values()),
            "filtered": sum(m["filtered"] for m in metas) + plan.rows_pruned,
            "quarantined": sum(m["quarantined"] for m in metas)}
    if rows["in"] != rows["out"] + rows["filtered"] + rows["quarantined"]:
        raise ShardsmithError(f"row accounting does not balance: {rows}", "internal")
    return rows


def filtered_by(plan: Plan, metas: list[dict], rows: dict) -> dict:
    """The filtered rows by the step that removed them (a filter, an inner join; the filters pushed
    into the reader together, with the row groups their statistics skipped), in graph order."""
    out = collections.Counter()
    if plan.rows_pruned:
        out[pushed_key(plan.graph.source)] += plan.rows_pruned
    for m in metas:
        out.update(m.get("filtered_by", {}))
    if sum(out.values()) != rows["filtered"]:
        raise ShardsmithError(f"row accounting by step does not balance: {dict(out)} against {rows}", "internal")
    return dict(out)


def _inputs(plan: Plan, metas: list[dict]) -> list[dict]:
    files = plan.graph.source.files
    rows_per_file = collections.Counter()
    for p, m in zip(plan.partitions, metas):
        rows_per_file[p.file_index] += m["rows_read"]
    return [{"path": f.path, "bytes": f.bytes, "rows": f.rows if f.rows >= 0 else rows_per_file[i],
             "fingerprint": f.fingerprint} for i, f in enumerate(files)]


def _schema_json(schema: Schema) -> list[dict]:
    out = []
    for c in schema.columns:
        entry = {"name": c.name, "dtype": c.dtype, "role": c.role}
        if c.cardinality:
            entry["cardinality"] = c.cardinality
            entry["embedding_dim"] = embedding_dim(c.cardinality)
        out.append(entry)
    return out


def _json_float(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


def _in_order(stream: Stream) -> list:
    return sorted(stream.infos, key=lambda t: t[0])


def _shards(stream: Stream) -> list[dict]:
    """One entry per file (a shard written in two formats has two), with the shard's content."""
    return [dict(v, format=fmt, content=info["content"]) for _, info in _in_order(stream)
            for fmt, v in info["files"].items()]


def content(streams: dict[str, Stream], names) -> dict:
    """The dataset's identity (kernels/digest.py): the spec it follows and the digest over every
    split's shard digests, in order."""
    splits = {name: [digest.from_hex(info["content"]["digest"]) for _, info in _in_order(streams[name])]
              for name in names}
    return {"spec": digest.SPEC, "digest": digest.hex_digest(digest.dataset_digest(splits))}


def _stats(stream: Stream, schema: Schema) -> dict:
    parts = [info["summary"] for _, info in _in_order(stream)]
    merged = merge_summaries(parts, schema) if parts else {}
    return {c: {k: _json_float(v) for k, v in e.items()} for c, e in merged.items()}
