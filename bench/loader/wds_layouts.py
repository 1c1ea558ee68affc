"""WebDataset layouts and compressions, shard by shard: bytes, write time and read time.

    python bench/loader/wds_layouts.py COMPILED_DIR --out bench/loader/wds-layouts-DATE.json

Takes the first train Parquet shard of a compiled dataset (``shardsmith compile ...``; its first
``--max-rows`` rows, to keep the per-row cases short), writes it as
a WebDataset shard with each ``rows_per_sample`` and compression, and reads it back two ways: the
loader's path (``TarShard.read`` of the whole shard, all numeric columns) and the ``webdataset``
library (decode, ``to_tuple``, ``unbatched``: the recipe of docs/loader.md) on the first
``--wds-rows`` rows. Also measured (``--levels-only``: just these): zstd levels per member, and
zstd and gzip levels over the whole tar (``.tar.zst`` being the alternative to per-member zstd).
Ratios are to the shard's uncompressed column bytes (rows x sum of dtype sizes).
Each figure is the median of ``--reps`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shardsmith.shards import manifest as mf
from shardsmith.shards.readers import _tar_bytes
from shardsmith.shards.webdataset import TarShard, unzstd, write_webdataset

CASES = [(1, "none"), (1, "gzip"), (64, "none"), (256, "none"), (1024, "none"), (4096, "none"), (16384, "none"),
         (1024, "zstd"), (1024, "gzip")]


def first_train_shard(root: str, max_rows: int):
    manifest = mf.read_manifest(root)
    shard = next(s for s in manifest["splits"]["train"]["shards"] if s["format"] == "parquet")
    schema = [(c["name"], c["dtype"], c["role"]) for c in manifest["schema"]]
    return pq.read_table(os.path.join(root, shard["path"])).slice(0, max_rows).combine_chunks(), schema


def column_bytes(table: pa.Table) -> int:
    return sum(table.num_rows * np.dtype(f.type.to_pandas_dtype()).itemsize for f in table.schema)


def timed(fn, reps: int):
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def write_case(table, schema_obj, tmp: str, per: int, comp: str, reps: int) -> dict:
    sink = SimpleNamespace(webdataset_compression=comp, webdataset_rows_per_sample=per)
    dest = os.path.join(tmp, f"{per}-{comp}", "part-00000.tar")
    seconds, info = timed(lambda: write_webdataset(table, dest, sink, schema=schema_obj), reps)
    return {"path": info["path"], "bytes": info["bytes"], "write_s": seconds}


def loader_read(path: str, schema, rows: int, names) -> int:
    with open(path, "rb") as f:
        read_at, size, in_memory = _tar_bytes(f, path)
        cols = TarShard(read_at, size, schema, rows, path, in_memory=in_memory).read(0, rows, names)
    return len(cols[names[0]])


def wds_read(path: str, per: int, limit: int) -> int:
    import webdataset as wds

    keys = ("continuous.npy", "categorical.npy") if per > 1 else ("continuous.npy", "categorical.npy", "cls")
    keys = keys + (("label.npy",) if per > 1 else ())
    pipe = wds.WebDataset(path, shardshuffle=False).decode(unzstd).to_tuple(*[f"{k};{k}.zst" for k in keys])
    n = 0
    for _ in pipe.unbatched() if per > 1 else pipe:
        n += 1
        if n >= limit:
            break
    return n


def whole_file(path: str, codec: str, level: int, reps: int) -> dict:
    """The whole tar compressed at once (as gzip shards are, and as .tar.zst would be)."""
    data = open(path, "rb").read()
    seconds, out = timed(lambda: pa.Codec(codec, compression_level=level).compress(data, asbytes=True), reps)
    return {"bytes": len(out), "compress_s": seconds}


def levels(table, schema_obj, tmp: str, reps: int) -> dict:
    """zstd levels per member, and zstd and gzip levels over the whole tar, at 1024 rows per sample."""
    plain = write_case(table, schema_obj, os.path.join(tmp, "plain"), 1024, "none", 1)["path"]
    out = {"zstd_members": {}, "whole_tar_zstd": {}, "whole_tar_gzip": {}}
    for level in (1, 3):
        out["zstd_members"][level] = member_zstd_level(table, schema_obj, tmp, level, reps)
        out["zstd_members"][level].pop("path")
        out["whole_tar_zstd"][level] = whole_file(plain, "zstd", level, reps)
    for level in (1, 6, 9):
        out["whole_tar_gzip"][level] = whole_file(plain, "gzip", level, reps)
    return out


def member_zstd_level(table, schema_obj, tmp: str, level: int, reps: int) -> dict:
    from shardsmith.shards import webdataset as w

    saved, w.ZSTD_LEVEL = w.ZSTD_LEVEL, level
    try:
        return write_case(table, schema_obj, os.path.join(tmp, f"level{level}"), 1024, "zstd", reps)
    finally:
        w.ZSTD_LEVEL = saved


def measure_case(table, schema_obj, schema, tmp: str, per: int, comp: str, reps: int, wds_rows: int) -> dict:
    case = {"rows_per_sample": per, "compression": comp, **write_case(table, schema_obj, tmp, per, comp, reps)}
    case["ratio"] = case["bytes"] / column_bytes(table)
    path, names = case.pop("path"), [n for n, d, _ in schema if d != "string"]
    case["loader_read_s"] = timed(lambda: loader_read(path, schema, table.num_rows, names), reps)[0]
    case["wds_rows_per_s"] = wds_rows / timed(lambda: wds_read(path, per, wds_rows), 1)[0]
    return case


def run(root: str, reps: int, wds_rows: int, max_rows: int, levels_only: bool = False) -> dict:
    from shardsmith.ir import Column, Schema

    table, schema = first_train_shard(root, max_rows)
    schema_obj = Schema(tuple(Column(n, d, r) for n, d, r in schema))
    out = {"rows": table.num_rows, "column_bytes": column_bytes(table), "cases": []}
    tmp = tempfile.mkdtemp(prefix="wds-layouts-")
    try:
        for per, comp in CASES if not levels_only else ():
            out["cases"].append(measure_case(table, schema_obj, schema, tmp, per, comp, reps, wds_rows))
            print(json.dumps(out["cases"][-1]), flush=True)
        out["levels"] = levels(table, schema_obj, tmp, reps)
    finally:
        shutil.rmtree(tmp)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("compiled", help="a compiled dataset's directory (its first train Parquet shard is used)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--wds-rows", type=int, default=50_000)
    ap.add_argument("--max-rows", type=int, default=131_072)
    ap.add_argument("--levels-only", action="store_true", help="only the compression levels")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "load_before": os.getloadavg()}
    result.update(run(args.compiled, args.reps, args.wds_rows, args.max_rows, args.levels_only))
    result["load_after"] = os.getloadavg()
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
