"""Fitted state on disk: JSON for scalars, Parquet for tables (vocabularies). Never pickle."""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

STATE_FILE = "state.json"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")


def save_states(directory: str, states: dict) -> None:
    """Write ``states`` ({step key: {column: {name: value}}}) under ``directory``: the tables (a
    vocabulary per categorified column) on a few threads, since Arrow writes outside the GIL and
    the compile's tasks wait for this, then ``state.json`` naming them."""
    os.makedirs(directory, exist_ok=True)
    tables: list[tuple[pa.Table, str]] = []

    def encode(obj, path):
        if isinstance(obj, pa.Table):
            rel = "/".join(_safe(p) for p in path) + ".parquet"
            tables.append((obj, os.path.join(directory, rel)))
            return {"$parquet": rel}
        if isinstance(obj, dict):
            return {k: encode(v, path + [str(k)]) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [encode(v, path + [str(i)]) for i, v in enumerate(obj)]
        if hasattr(obj, "item"):  # NumPy scalars
            return obj.item()
        return obj

    doc = encode(states, [])
    if tables:
        with ThreadPoolExecutor(min(4, len(tables)), thread_name_prefix="shardsmith-state") as pool:
            list(pool.map(lambda t: _write_table(*t), tables))
    tmp = os.path.join(directory, STATE_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True, allow_nan=True)
    os.replace(tmp, os.path.join(directory, STATE_FILE))


def _write_table(table: pa.Table, full: str) -> None:
    os.makedirs(os.path.dirname(full), exist_ok=True)
    pq.write_table(table, full + ".tmp", compression="zstd")
    os.replace(full + ".tmp", full)


def load_state_doc(directory: str) -> dict | None:
    """``state.json`` as written: tables appear as ``{"$parquet": relative path}``; None when absent."""
    path = os.path.join(directory, STATE_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def table_files(doc) -> list[str]:
    """The Parquet files (relative to the state directory) that a part of ``state.json`` names."""
    if isinstance(doc, dict):
        if set(doc) == {"$parquet"}:
            return [doc["$parquet"]]
        return [f for v in doc.values() for f in table_files(v)]
    if isinstance(doc, list):
        return [f for v in doc for f in table_files(v)]
    return []


def load_states(directory: str) -> dict | None:
    """The states saved in ``directory``, or None when none were saved (completely)."""
    doc = load_state_doc(directory)
    if doc is None:
        return None

    def decode(obj):
        if isinstance(obj, dict):
            if set(obj) == {"$parquet"}:
                return pq.read_table(os.path.join(directory, obj["$parquet"]))
            return {k: decode(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [decode(v) for v in obj]
        return obj

    return decode(doc)
