"""A dataset shaped like the compiled demo (an int8 label, 13 float32 continuous columns, 27 int32
categorical ids: 161 bytes a row), written straight through shardsmith's shard writers and
manifest, without a compile. For machines without Hydra (the lent GPU machine) and for loader
benchmarks of any size; ``ShardDataset`` reads it like any compiled dataset.

    python tests/loader/synthetic.py OUT_DIR --rows 4000000
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import os
import sys
from types import SimpleNamespace

import numpy as np
import pyarrow as pa

from shardsmith.ir import Column, Schema
from shardsmith.shards.manifest import FORMAT, VERSION, write_manifest
from shardsmith.shards.webdataset import write_webdataset
from shardsmith.shards.writers import write_parquet

N_CONT, N_CAT = 13, 27
CARDINALITIES = tuple(int(round(10 * (2_000_000 / 10) ** (i / (N_CAT - 1)))) for i in range(N_CAT))


def columns() -> list[tuple[str, str, str]]:
    """(name, dtype, role) of every column, in order."""
    return ([("label", "int8", "label")] + [(f"I{i + 1}", "float32", "continuous") for i in range(N_CONT)]
            + [(f"C{i + 1}", "int32", "categorical") for i in range(N_CAT)])


def table(rows: int, seed: int, index: int) -> pa.Table:
    """``rows`` rows: normalised log counts and Zipf-like ids, as a compile of the demo makes them."""
    rng = np.random.default_rng([seed, index])
    data = {"label": (rng.random(rows) < 0.25).astype(np.int8)}
    for i in range(N_CONT):
        x = np.log1p(rng.geometric(0.02 + 0.05 * i / N_CONT, rows).astype(np.float64))
        data[f"I{i + 1}"] = ((x - x.mean()) / (x.std() or 1.0)).astype(np.float32)
    for i, card in enumerate(CARDINALITIES):
        data[f"C{i + 1}"] = (np.minimum(rng.zipf(1.2, rows), card) - 1).astype(np.int32)
    return pa.table(data)


def write(out: str, rows: int, shard_rows: int = 131_072, row_group_rows: int = 65_536, seed: int = 0,
          formats=("parquet", "webdataset"), rows_per_sample: int = 1024, compression: str = "zstd",
          jobs: int = 1) -> str:
    """Write a train split of ``rows`` rows under ``out`` with a manifest (``jobs`` processes write the
    shards); returns ``out``."""
    roles = {n: r for n, _, r in columns()}
    sink = _sink(row_group_rows, rows_per_sample, compression)
    work = [(out, k, min(shard_rows, rows - start), seed, roles, sink, formats)
            for k, start in enumerate(range(0, rows, shard_rows))]
    if jobs > 1:
        with concurrent.futures.ProcessPoolExecutor(jobs) as pool:
            done = list(pool.map(_synthetic_shard, work))
    else:
        done = [_synthetic_shard(w) for w in work]
    return _manifest(out, done, roles, sink, f"synthetic-{seed}-{rows}")


def write_tables(out: str, tables, roles: dict, row_group_rows: int, formats=("parquet",), rows_per_sample: int = 1024,
                 compression: str = "zstd") -> str:
    """Each table one shard of the train split (columns with ``roles``), and the manifest."""
    sink = _sink(row_group_rows, rows_per_sample, compression)
    done = [_shard(out, k, t, roles, sink, formats) for k, t in enumerate(tables)]
    return _manifest(out, done, roles, sink, "tables")


def _sink(row_group_rows: int, rows_per_sample: int, compression: str):
    return SimpleNamespace(row_group_rows=row_group_rows, compression=compression, compression_level=None,
                           webdataset_compression="none", webdataset_rows_per_sample=rows_per_sample)


def _synthetic_shard(args):
    out, k, rows, seed, roles, sink, formats = args
    return _shard(out, k, table(rows, seed, k), roles, sink, formats)


def _shard(out: str, k: int, t: pa.Table, roles: dict, sink, formats):
    """Shard ``k`` in each format: (the columns' (name, dtype), the manifest's shard entries)."""
    names = [(f.name, np.dtype(f.type.to_pandas_dtype()).name) for f in t.schema]
    schema = Schema(tuple(Column(n, d, roles.get(n, "other")) for n, d in names))
    entries = []
    for fmt in formats:
        suffix, fn = {"parquet": (".parquet", write_parquet), "webdataset": (".tar", write_webdataset)}[fmt]
        rel = f"train/part-{k:05d}{suffix}"
        info = fn(t, os.path.join(out, rel), sink, schema=schema)
        entries.append({"path": info.get("path", rel).removeprefix(out + "/"), "rows": t.num_rows,
                        "bytes": info["bytes"], "sha256": info["sha256"], "format": fmt})
    return names, entries


def _manifest(out: str, done: list, roles: dict, sink, fingerprint: str) -> str:
    names = done[0][0]
    shards = [e for _, entries in done for e in entries]
    total = sum(e["rows"] for e in shards if e["format"] == shards[0]["format"])
    write_manifest(out, {
        "format": FORMAT, "version": VERSION, "name": "synthetic-demo",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "config": {"resolved": {"output": {"row_group_rows": sink.row_group_rows,
                                           "webdataset": {"rows_per_sample": sink.webdataset_rows_per_sample}}}},
        "inputs": [{"path": "synthetic", "fingerprint": fingerprint}],
        "schema": [{"name": n, "dtype": d, "role": roles.get(n, "other")} for n, d in names],
        "splits": {"train": {"rows": total, "shards": shards}},
        "rows": {"in": total, "out": total, "filtered": 0, "quarantined": 0}})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=4_000_000)
    ap.add_argument("--shard-rows", type=int, default=131_072)
    ap.add_argument("--row-group-rows", type=int, default=65_536)
    ap.add_argument("--formats", default="parquet,webdataset")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args(argv)
    write(args.out, args.rows, args.shard_rows, args.row_group_rows, formats=tuple(args.formats.split(",")),
          jobs=args.jobs)
    print(f"wrote {args.rows} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
