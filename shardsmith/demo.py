"""Deterministic synthetic Criteo-like data for demos, tests and benchmarks.

Columns: ``label`` (int8, about 25% positive), ``I1..I13`` (float32, heavy-tailed counts, 2-30%
nulls, I2 and I11 with some negatives), ``C1..C26`` (Zipf-like categoricals with cardinalities from
10 to 5,000,000; C1..C3 are strings, the rest int64). Rows are generated in blocks from a seed and
the block index, so the same arguments always give the same bytes.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shardsmith.kernels import xxhash64 as xx

N_INT, N_CAT = 13, 26
STRING_COLS = 3
BLOCK = 1 << 17
CARDINALITIES = tuple(int(round(10 * (5_000_000 / 10) ** (i / (N_CAT - 1)))) for i in range(N_CAT))
NULL_RATES = tuple(0.02 + 0.28 * ((i * 7) % N_INT) / (N_INT - 1) for i in range(N_INT))


def generate(rows: int, out_dir: str, files: int | None = None, seed: int = 0,
             row_group_rows: int = BLOCK) -> list[str]:
    """Write ``rows`` rows into ``files`` Parquet files (default: one per 500,000 rows) under
    ``out_dir``; returns their paths. Existing files of the same names are replaced."""
    if rows < 1:
        raise ValueError("rows must be positive")
    files = files or max(1, math.ceil(rows / 500_000))
    os.makedirs(out_dir, exist_ok=True)
    per_file = [rows // files + (1 if i < rows % files else 0) for i in range(files)]
    paths, block_index = [], 0
    for fi, n in enumerate(per_file):
        path = os.path.join(out_dir, f"part-{fi:05d}.parquet")
        tmp = path + ".tmp"
        writer = None
        try:
            for start in range(0, n, row_group_rows):
                table = block(min(row_group_rows, n - start), seed, block_index)
                block_index += 1
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema, compression="snappy")
                writer.write_table(table, row_group_size=row_group_rows)
        finally:
            if writer is not None:
                writer.close()
        os.replace(tmp, path)
        paths.append(path)
    return paths


def block(n: int, seed: int, index: int):
    """One block of ``n`` rows: a pyarrow Table."""
    rng = np.random.default_rng([seed, index])
    cols: dict[str, pa.Array] = {}
    ints = []
    for i in range(N_INT):
        x = np.maximum(np.floor(np.exp(rng.normal(1.0 + 0.25 * (i % 5), 1.2 + 0.1 * (i % 4), n))) - 1.0, 0.0)
        if i in (1, 10):  # a few small negatives, as Criteo's I2 has
            neg = rng.random(n) < 0.05
            x[neg] = -rng.integers(1, 4, int(neg.sum()))
        ints.append(x)
        mask = rng.random(n) < NULL_RATES[i]
        cols[f"I{i + 1}"] = pa.array(x.astype(np.float32), mask=mask)
    cats = []
    for j, card in enumerate(CARDINALITIES):
        ids = np.minimum(np.floor(np.exp(rng.random(n) * math.log(card + 1))) - 1, card - 1).astype(np.int64)
        cats.append(ids)
        values = xx.xxh64_u64(ids.view(np.uint64), 1000 + j)
        if j < STRING_COLS:
            cols[f"C{j + 1}"] = _hex_strings(values)
        else:
            cols[f"C{j + 1}"] = pa.array((values >> np.uint64(1)).astype(np.int64))
    score = 0.35 * np.log1p(np.maximum(ints[0], 0)) - 0.25 * np.log1p(np.maximum(ints[4], 0)) \
        + 0.8 * (cats[0] < 2) - 0.4 * (cats[5] % 3 == 0) - 1.3
    label = (rng.random(n) < 1.0 / (1.0 + np.exp(-score))).astype(np.int8)
    return pa.table({"label": pa.array(label), **cols})


def _hex_strings(values: np.ndarray):
    """8-character lowercase hex strings of the low 32 bits, as Criteo's anonymised categories."""
    low = (values & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    chars = np.empty((len(low), 8), dtype=np.uint8)
    for k in range(8):
        chars[:, k] = digits[(low >> np.uint32(28 - 4 * k)) & np.uint32(0xF)]
    offsets = np.arange(0, 8 * len(low) + 1, 8, dtype=np.int32)
    return pa.StringArray.from_buffers(len(low), pa.py_buffer(offsets), pa.py_buffer(chars.tobytes()))


# --- events: a related set of tables (joins, time splits, per-key features) ---------------------------
EVENTS_START = 1_704_067_200  # 2024-01-01T00:00:00Z, in seconds
EVENTS_DAYS = 91  # to 2024-03-31
COUNTRIES = ("us", "de", "fr", "br", "in", "jp", "gb", "ng", "mx", "ca")
CATEGORIES = ("books", "music", "games", "toys", "garden", "kitchen", "sports", "beauty", "tools", "film", "shoes",
              "phones")
DEVICES = ("mobile", "desktop", "tablet")


def generate_events(rows: int, out_dir: str, files: int | None = None, seed: int = 0) -> dict[str, list[str]]:
    """A related set under ``out_dir``: ``events/part-*.parquet`` (``rows`` events: event_id,
    user_id, item_id, ts (timestamp[us]), device, position, dwell (seconds, some null) and the
    ``click`` label), ``users/users.parquet`` (user_id, country, signup (date), age (some null))
    and ``items/items.parquet`` (item_id, category, price). Events cover 2024-01-01 to 2024-03-31,
    in roughly (not strictly) increasing time across files; some events name a user or an item
    that the tables lack. Deterministic from ``seed``; returns the paths by table."""
    if rows < 1:
        raise ValueError("rows must be positive")
    rng = np.random.default_rng([seed, 7])
    n_users, n_items = max(10, rows // 50), max(10, rows // 200)
    users = _users(rng, n_users)
    items = _items(rng, n_items)
    user_bias = rng.normal(0, 0.8, n_users + 50)
    item_bias = rng.normal(0, 0.8, n_items + 20)
    files = files or max(1, math.ceil(rows / 1_000_000))
    out = {"users": [_write(users, os.path.join(out_dir, "users"), "users.parquet")],
           "items": [_write(items, os.path.join(out_dir, "items"), "items.parquet")], "events": []}
    per_file = [rows // files + (1 if i < rows % files else 0) for i in range(files)]
    start = 0
    for fi, n in enumerate(per_file):
        ev_rng = np.random.default_rng([seed, 8, fi])
        table = _events(ev_rng, start, n, rows, n_users, n_items, user_bias, item_bias)
        out["events"].append(_write(table, os.path.join(out_dir, "events"), f"part-{fi:05d}.parquet"))
        start += n
    return out


def _users(rng, n: int) -> pa.Table:
    signup = EVENTS_START // 86_400 - rng.integers(0, 3 * 365, n)
    return pa.table({"user_id": pa.array(np.arange(n, dtype=np.int64) * 7 + 1000),
                     "country": pa.array(rng.choice(COUNTRIES, n, p=_zipf(len(COUNTRIES)))),
                     "signup": pa.array(signup.astype(np.int32)).view(pa.date32()),
                     "age": pa.array(rng.integers(16, 80, n).astype(np.int16), mask=rng.random(n) < 0.1)})


def _items(rng, n: int) -> pa.Table:
    return pa.table({"item_id": pa.array(np.arange(n, dtype=np.int64) * 13 + 500),
                     "category": pa.array(rng.choice(CATEGORIES, n, p=_zipf(len(CATEGORIES)))),
                     "price": pa.array(np.round(np.exp(rng.normal(3, 1, n)), 2).astype(np.float32))})


def _zipf(k: int) -> np.ndarray:
    w = 1.0 / np.arange(1, k + 1)
    return w / w.sum()


def _events(rng, start: int, n: int, total: int, n_users: int, n_items: int, user_bias, item_bias) -> pa.Table:
    # Users and items by a skewed draw; a few ids beyond the tables (unknown to the joins).
    u = np.minimum(np.floor(np.exp(rng.random(n) * math.log(n_users + 50))) - 1, n_users + 49).astype(np.int64)
    i = np.minimum(np.floor(np.exp(rng.random(n) * math.log(n_items + 20))) - 1, n_items + 19).astype(np.int64)
    # Time: the file's share of the period, with noise across file boundaries (not sorted).
    span = EVENTS_DAYS * 86_400
    base = EVENTS_START + (start + np.arange(n)) / total * span
    ts = np.clip(base + rng.normal(0, 3 * 3600, n), EVENTS_START, EVENTS_START + span - 1)
    micros = (ts * 1e6).astype(np.int64) // 1000 * 1000
    hour = (micros // 3_600_000_000) % 24
    position = rng.integers(1, 21, n).astype(np.int16)
    device = rng.choice(DEVICES, n, p=[0.6, 0.3, 0.1])
    score = user_bias[u] + item_bias[i] - 0.08 * position + 0.3 * ((hour >= 18) & (hour <= 22)) - 1.2
    click = (rng.random(n) < 1.0 / (1.0 + np.exp(-score))).astype(np.int8)
    dwell = np.round(rng.exponential(20 + 40 * click, n), 1).astype(np.float32)
    return pa.table({"event_id": pa.array(np.arange(start, start + n, dtype=np.int64)),
                     "user_id": pa.array(u * 7 + 1000), "item_id": pa.array(i * 13 + 500),
                     "ts": pa.array(micros).view(pa.timestamp("us")), "device": pa.array(device),
                     "position": pa.array(position), "dwell": pa.array(dwell, mask=rng.random(n) < 0.05),
                     "click": pa.array(click)})


def _write(table: pa.Table, directory: str, name: str) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    pq.write_table(table, path + ".tmp", compression="snappy", row_group_size=BLOCK)
    os.replace(path + ".tmp", path)
    return path
