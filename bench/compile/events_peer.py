"""The polars peer of ``configs/pipeline/events.yaml``, for the events compile benchmark
(bench/compile/events.py): the same work on the same files (``shardsmith demo-data --kind events``),
written as the same Parquet shards (zstd, same row groups), in idiomatic lazy polars:

* join users (left, ``user_`` prefix: country, signup, age) and items (inner: category, price) by
  key, keeping the events' order;
* hour and weekday (Monday 0) of ``ts``; ``tenure_days = (epoch_seconds(ts) - signup * 86400) //
  86400``; ``weight = 1.0 if device == 'mobile' else 2.0``;
* split by time: train before 2024-03-01, valid before 2024-03-16, test after;
* target encodings of user_id and item_id (click, smoothing 20, 5 folds): the train rows out of fold
  (fold = XXH64(row in file, seed = XXH64(file name, FOLD_SALT)) % 5, the hash shardsmith's spec
  names, computed with its NumPy reference as peers.py does), the other rows with the full fit;
* per-user count and mean / max of price and dwell over the train rows, null for unseen users;
* differences of ts (seconds) and price to the user's previous 1 and 2 events in ts order (ties by
  file and row), over every split;
* nulls filled with 0 in user_age, dwell, tenure_days and the differences; categorify (3 or more
  train rows, ids by count then value) of user_country, category and device;
* each split in input order, cut into shards of ``--shard-rows`` rows.

Usage: ``python bench/compile/events_peer.py --data DIR --out DIR --shard-rows N``; besides the
shards it writes ``vocab_sizes.json`` and ``timings.json``.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import time

import numpy as np
import polars as pl

from shardsmith.kernels import xxhash64 as xx

SPLITS = ("train", "valid", "test")
CUTS = (datetime.datetime(2024, 3, 1), datetime.datetime(2024, 3, 16))
FOLDS, SMOOTHING, FOLD_SALT = 5, 20.0, 0x7F4A7C159E3779B9
FREQ_THRESHOLD = 3
OOV_ID, NULL_ID, FIRST_ID = 1, 2, 3
CATS = ["user_country", "category", "device"]
FILL = ["user_age", "dwell", "tenure_days", "ts_diff1", "ts_diff2", "price_diff1", "price_diff2"]
OUT_COLUMNS = ["user_id", "item_id", "device", "position", "dwell", "click", "user_country", "user_age", "category",
               "price", "hour", "weekday", "tenure_days", "weight", "user_id_te", "item_id_te", "user_count",
               "user_price_mean", "user_price_max", "user_dwell_mean", "user_dwell_max", "ts_diff1", "ts_diff2",
               "price_diff1", "price_diff2"]
ROW_GROUP_ROWS, ZSTD_LEVEL = 65536, 1


def folds_of_rows(path: str, rows: np.ndarray) -> np.ndarray:
    seed = xx.xxh64_bytes(os.path.basename(path).encode(), 0 ^ FOLD_SALT)
    return (xx.xxh64_u64(np.asarray(rows, dtype=np.int64).view(np.uint64), seed) % np.uint64(FOLDS)).astype(np.int8)


def events(files: list[str]) -> pl.LazyFrame:
    scans = [pl.scan_parquet(path).with_columns(
        pl.lit(i, pl.Int32).alias("_file"), pl.int_range(pl.len(), dtype=pl.Int64).alias("_row"))
        .with_columns(pl.col("_row").map_batches(lambda r, path=path: pl.Series(folds_of_rows(path, r.to_numpy())),
                                                return_dtype=pl.Int8).alias("_fold"))
        for i, path in enumerate(files)]
    return pl.concat(scans, how="vertical")


def features(data: str) -> pl.LazyFrame:
    users = pl.scan_parquet(f"{data}/users/*.parquet").select(
        "user_id", pl.col("country").alias("user_country"), pl.col("signup").alias("user_signup"),
        pl.col("age").alias("user_age"))
    items = pl.scan_parquet(f"{data}/items/*.parquet").select("item_id", "category", "price")
    lf = (events(sorted(glob.glob(f"{data}/events/*.parquet")))
          .join(users, on="user_id", how="left", maintain_order="left")
          .join(items, on="item_id", how="inner", maintain_order="left"))
    seconds = pl.col("ts").dt.epoch("s")
    return lf.with_columns(
        pl.col("ts").dt.hour().cast(pl.Int8).alias("hour"),
        (pl.col("ts").dt.weekday() - 1).cast(pl.Int8).alias("weekday"),
        ((seconds - pl.col("user_signup").cast(pl.Int64) * 86_400) // 86_400).cast(pl.Int32).alias("tenure_days"),
        pl.when(pl.col("device") == "mobile").then(1.0).otherwise(2.0).cast(pl.Float32).alias("weight"),
        pl.when(pl.col("ts") < CUTS[0]).then(0).when(pl.col("ts") < CUTS[1]).then(1).otherwise(2)
        .cast(pl.Int8).alias("_split"))


def target_encoding(lf: pl.LazyFrame, key: str) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """(per (key, fold): n, s) and (per fold: N_f, S_f) over the train rows."""
    train = lf.filter(pl.col("_split") == 0)
    per = train.group_by(key, "_fold").agg(pl.len().alias("n"), pl.col("click").cast(pl.Int64).sum().alias("s"))
    folds = train.group_by("_fold").agg(pl.len().alias("N_f"), pl.col("click").cast(pl.Int64).sum().alias("S_f"))
    return per, folds


def encode(lf: pl.LazyFrame, key: str, per: pl.DataFrame, folds: pl.DataFrame) -> pl.Expr:
    """Join the per-key sums back and compute the encoding column (float64 arithmetic as the
    engine's, then float32)."""
    N, S = float(folds["N_f"].sum()), float(folds["S_f"].sum())
    prior = S / N
    priors = {int(f): (S - float(sf)) / (N - float(nf)) if N - nf > 0 else prior
              for f, nf, sf in zip(folds["_fold"], folds["N_f"], folds["S_f"])}
    totals = per.group_by(key).agg(pl.col("n").sum().alias("n_k"), pl.col("s").sum().alias("s_k"))
    per = per.rename({"n": "n_kf", "s": "s_kf"})
    prior_f = pl.col("_fold").replace_strict(priors, default=prior, return_dtype=pl.Float64)
    n_k, s_k = pl.col("n_k").cast(pl.Float64), pl.col("s_k").cast(pl.Float64)
    n_oof = n_k - pl.col("n_kf").fill_null(0).cast(pl.Float64)
    s_oof = s_k - pl.col("s_kf").fill_null(0).cast(pl.Float64)
    oof = pl.when(pl.col("n_k").is_null()).then(prior_f).otherwise((s_oof + SMOOTHING * prior_f) / (n_oof + SMOOTHING))
    full = pl.when(pl.col("n_k").is_null()).then(pl.lit(prior)).otherwise((s_k + SMOOTHING * prior) / (n_k + SMOOTHING))
    value = pl.when(pl.col("_split") == 0).then(oof).otherwise(full).cast(pl.Float32).alias(f"{key}_te")
    joined = (lf.join(totals.lazy(), on=key, how="left", maintain_order="left")
              .join(per.lazy(), on=[key, "_fold"], how="left", maintain_order="left"))
    return joined.with_columns(value).drop("n_k", "s_k", "n_kf", "s_kf")


def run(data: str, out: str, shard_rows: int) -> dict:
    t = {"start": time.perf_counter()}
    lf = features(data).cache()
    te = [target_encoding(lf, k) for k in ("user_id", "item_id")]
    train = lf.filter(pl.col("_split") == 0)
    user_stats = train.group_by("user_id").agg(
        pl.len().cast(pl.Int64).alias("user_count"),
        pl.col("price").cast(pl.Float64).mean().cast(pl.Float32).alias("user_price_mean"),
        pl.col("price").max().cast(pl.Float32).alias("user_price_max"),
        pl.col("dwell").cast(pl.Float64).mean().cast(pl.Float32).alias("user_dwell_mean"),
        pl.col("dwell").max().cast(pl.Float32).alias("user_dwell_max"))
    vocabs = [train.group_by(c).len().filter(pl.col(c).is_not_null() & (pl.col("len") >= FREQ_THRESHOLD))
              .sort(["len", c], descending=[True, False]).with_row_index("_id", offset=FIRST_ID)
              .select(c, pl.col("_id").cast(pl.Int32)) for c in CATS]
    fitted = pl.collect_all([*(x for pair in te for x in pair), user_stats, *vocabs])
    (per_u, folds_u, per_i, folds_i, stats), vocabs = fitted[:5], fitted[5:]
    t["fit"] = time.perf_counter()

    lf = encode(lf, "user_id", per_u, folds_u)
    lf = encode(lf, "item_id", per_i, folds_i)
    lf = lf.join(stats.lazy(), on="user_id", how="left", maintain_order="left")
    order = ["user_id", "ts", "_file", "_row"]
    lf = lf.with_row_index("_idx").sort(order)
    lags = []
    for k in (1, 2):
        lags.append(((pl.col("ts") - pl.col("ts").shift(k).over("user_id")).dt.total_microseconds() / 1e6)
                    .alias(f"ts_diff{k}"))
        lags.append((pl.col("price").cast(pl.Float64) - pl.col("price").cast(pl.Float64).shift(k).over("user_id"))
                    .alias(f"price_diff{k}"))
    lf = lf.with_columns(lags).sort("_idx")
    lf = lf.with_columns(pl.col(c).fill_nan(0.0).fill_null(0) if c in ("dwell",) or c.endswith(("diff1", "diff2"))
                         else pl.col(c).fill_null(0) for c in FILL)
    ids = [pl.when(pl.col(c).is_null()).then(pl.lit(NULL_ID, pl.Int32))
           .otherwise(pl.col(c).replace_strict(v[c], v["_id"], default=OOV_ID, return_dtype=pl.Int32)).alias(c)
           for c, v in zip(CATS, vocabs)]
    df = lf.with_columns(ids).select(*OUT_COLUMNS, "_split").collect()
    t["transform"] = time.perf_counter()

    for k, name in enumerate(SPLITS):
        sub = df.filter(pl.col("_split") == k).drop("_split")
        for i, a in enumerate(range(0, sub.height, shard_rows)):
            os.makedirs(os.path.join(out, name), exist_ok=True)
            sub.slice(a, min(shard_rows, sub.height - a)).write_parquet(
                os.path.join(out, name, f"part-{i:05d}.parquet"), compression="zstd", compression_level=ZSTD_LEVEL,
                row_group_size=ROW_GROUP_ROWS)
    t["write"] = time.perf_counter()
    marks = list(t.items())
    phases = {name: round(v - marks[i - 1][1], 4) for i, (name, v) in enumerate(marks) if i}
    phases["total"] = round(marks[-1][1] - marks[0][1], 4)
    with open(os.path.join(out, "vocab_sizes.json"), "w") as f:
        json.dump({c: v.height for c, v in zip(CATS, vocabs)}, f)
    with open(os.path.join(out, "timings.json"), "w") as f:
        json.dump(phases, f)
    return phases


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="the directory `shardsmith demo-data --kind events` wrote")
    p.add_argument("--out", required=True)
    p.add_argument("--shard-rows", type=int, required=True, help="rows per output shard (shardsmith's plan)")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    print(json.dumps(run(args.data, args.out, args.shard_rows)))


if __name__ == "__main__":
    main()
