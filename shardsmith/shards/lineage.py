"""A dataset's lineage as people and lineage tools read it: ``shardsmith lineage`` renders the
manifest's ``lineage`` section (runtime/lineage.py writes it) as text, or as an OpenLineage run
event (https://openlineage.io/spec/2-0-2/OpenLineage.json) with the inputs and their fingerprints,
the output dataset, its schema and the column-level lineage facet.

Datasets are named the OpenLineage way: a local file as namespace ``file`` and its absolute path;
an object-store URL (``s3://bucket/key``) as namespace ``s3://bucket`` and the key. A side table
(``(table, column)`` in a column's lineage) is an input dataset of its own: the files the manifest
lists under ``tables.<name>.inputs`` when it has them, else the name ``table/<name>``.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlparse

from shardsmith.errors import InputError, did_you_mean

SPEC = "https://openlineage.io/spec"
EVENT_SCHEMA = f"{SPEC}/2-0-2/OpenLineage.json#/$defs/RunEvent"
FACETS = {
    "schema": f"{SPEC}/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
    "version": f"{SPEC}/facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet",
    "columnLineage": f"{SPEC}/facets/1-2-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet",
    "processing_engine": f"{SPEC}/facets/1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet",
    "jobType": f"{SPEC}/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
}
RUN_NAMESPACE = uuid.UUID("6f1c7f52-8d0e-4a57-9a43-5b3c3f0b7a11")  # run ids: uuid5 of the dataset key


def lineage_of(manifest: dict, column: str | None = None) -> dict:
    """The manifest's lineage (one column's entry when ``column`` is given); errors name the column."""
    lineage = manifest.get("lineage")
    if lineage is None:
        raise InputError("this manifest has no lineage (written by an older shardsmith: recompile it)",
                         manifest.get("_dir", "manifest"))
    if column is None:
        return lineage
    if column not in lineage["columns"]:
        raise InputError(f"no output column '{column}'{did_you_mean(column, lineage['columns'])}", "COLUMN")
    return {"columns": {column: lineage["columns"][column]}, "rows": lineage["rows"]}


def text_lines(manifest: dict, column: str | None = None) -> list[str]:
    """What ``shardsmith lineage`` prints: per column its inputs and its chain of steps."""
    lineage = lineage_of(manifest, column)
    schema = {c["name"]: c for c in manifest["schema"]}
    lines = [f"dataset {manifest['name']} ({len(manifest['inputs'])} input file(s))"]
    if manifest.get("parent"):
        lines.append(f"fitted state from parent {manifest['parent']['path']}")
    for name, entry in lineage["columns"].items():
        col = schema.get(name, {})
        inputs = ", ".join(f"{c} ({entry['dtypes'].get(c, '?')})" for c in entry["inputs"])
        tables = ", ".join(f"{t}.{c}" for t, c in entry["tables"])
        source = " + ".join(p for p in (f"input {inputs}" if inputs else "", f"table {tables}" if tables else "") if p)
        lines.append(f"{name} ({col.get('dtype', '?')}, {col.get('role', '?')}) <- {source or 'nothing'}")
        lines += [f"    {s['step']:<10} {s['op']:<18} {_params(s)}{_state(s)}".rstrip() for s in entry["steps"]]
    rows = lineage["rows"]
    for f in rows["filters"]:
        where = ", pushed into the reader" if f["where"] != "graph" else ""
        lines.append(f"rows: {f['expr']} ({', '.join(f['steps']) or 'source'}{where})")
    split = rows["split"]
    by = f"hash of '{split['key']}'" if split["key"] else "hash of the row in its file"
    lines.append(f"rows: split {', '.join(split['names'])} by {by}, seed {split['seed']}")
    return lines


def _params(step: dict) -> str:
    parts = [f"{k}={v}" for k, v in step["params"].items() if v not in (None, [], {}, "")]
    via = f"[{', '.join(step['via'])}] " if len(step["via"]) > 1 else ""
    return via + " ".join(parts)


def _state(step: dict) -> str:
    st = step.get("state")
    if not st:
        return ""
    files = f" + {', '.join(st['files'])}" if st["files"] else ""
    return f"  state: {st['file']}#{','.join(st['entries'])}{files}"


# --- OpenLineage ----------------------------------------------------------------------------------
def dataset_id(path: str) -> tuple[str, str]:
    """(namespace, name) of a file or URL, as OpenLineage names datasets."""
    url = urlparse(path)
    if url.scheme and url.scheme != "file" and len(url.scheme) > 1:
        return f"{url.scheme}://{url.netloc}", url.path.lstrip("/")
    return "file", os.path.abspath(url.path if url.scheme == "file" else path)


def _facet(kind: str, producer: str, /, **fields) -> dict:
    return {"_producer": producer, "_schemaURL": FACETS[kind], **fields}


def _schema_facet(columns: list[dict], producer: str) -> dict:
    return _facet("schema", producer, fields=[{"name": c["name"], "type": c["dtype"]} for c in columns])


def openlineage_event(manifest: dict, namespace: str = "shardsmith", producer: str | None = None) -> dict:
    """The compile as one OpenLineage ``COMPLETE`` run event (a dict ready for JSON)."""
    lineage = lineage_of(manifest)
    version = manifest.get("code_version", "0")
    producer = producer or f"https://pypi.org/project/shardsmith/{version}/"
    inputs, files_of = _inputs(manifest, producer)
    out_ns, out_name = dataset_id(manifest["_dir"])
    output = {"namespace": out_ns, "name": out_name, "facets": {
        "schema": _schema_facet(manifest["schema"], producer),
        "version": _facet("version", producer, datasetVersion=manifest["dataset_key"]),
        "columnLineage": _facet("columnLineage", producer, **_column_lineage(lineage, files_of)),
    }}
    run_id = uuid.uuid5(RUN_NAMESPACE, manifest["dataset_key"])
    return {
        "eventType": "COMPLETE", "eventTime": manifest["created"], "producer": producer, "schemaURL": EVENT_SCHEMA,
        "run": {"runId": str(run_id), "facets": {"processing_engine": _facet(
            "processing_engine", producer, version=version, name="shardsmith")}},
        "job": {"namespace": namespace, "name": manifest["name"], "facets": {"jobType": _facet(
            "jobType", producer, processingType="BATCH", integration="SHARDSMITH", jobType="COMPILE")}},
        "inputs": inputs, "outputs": [output],
    }


def _inputs(manifest: dict, producer: str) -> tuple[list[dict], dict]:
    """The input datasets (source files, then side tables), and per source (None: the main input;
    a table name) the (namespace, name) of its datasets."""
    schema = manifest.get("input_schema", [])
    files_of: dict = {None: []}
    out = []
    for f in manifest["inputs"]:
        ns, name = dataset_id(f["path"])
        files_of[None].append((ns, name))
        out.append({"namespace": ns, "name": name, "facets": {
            "schema": _schema_facet(schema, producer),
            "version": _facet("version", producer, datasetVersion=f["fingerprint"])}})
    lineage = manifest["lineage"]
    tables = {t for entry in [*lineage["columns"].values(), *lineage["rows"]["filters"]] for t, _ in entry["tables"]}
    for t in sorted(tables):
        known = manifest.get("tables", {}).get(t, {}).get("inputs")
        ids = [dataset_id(f["path"]) for f in known] if known else [("shardsmith", f"table/{t}")]
        files_of[t] = ids
        for (ns, name), f in zip(ids, known or [{}] * len(ids)):
            facets = {"version": _facet("version", producer, datasetVersion=f["fingerprint"])} \
                if f.get("fingerprint") else {}
            out.append({"namespace": ns, "name": name, "facets": facets})
    return out, files_of


def _column_lineage(lineage: dict, files_of: dict) -> dict:
    fields = {}
    for name, entry in lineage["columns"].items():
        kind = "TRANSFORMATION" if entry["steps"] else "IDENTITY"
        what = " > ".join(f"{s['step']} {s['op']}" for s in entry["steps"]) or "copied unchanged"
        refs = [(None, c) for c in entry["inputs"]] + [(t, c) for t, c in entry["tables"]]
        fields[name] = {"inputFields": [
            {"namespace": ns, "name": ds, "field": c,
             "transformations": [{"type": "DIRECT", "subtype": kind, "description": what}]}
            for src, c in refs for ns, ds in files_of[src]]}
    indirect = []
    for f in lineage["rows"]["filters"]:
        refs = [(None, c) for c in f["inputs"]] + [(t, c) for t, c in f["tables"]]
        indirect += [{"namespace": ns, "name": ds, "field": c, "transformations": [
            {"type": "INDIRECT", "subtype": "FILTER", "description": f["expr"]}]}
            for src, c in refs for ns, ds in files_of[src]]
    key = lineage["rows"]["split"]["key"]
    if key:
        indirect += [{"namespace": ns, "name": ds, "field": key, "transformations": [
            {"type": "INDIRECT", "subtype": "CONDITIONAL", "description": "split key: which split a row goes to"}]}
            for ns, ds in files_of[None]]
    return {"fields": fields, "dataset": indirect}
