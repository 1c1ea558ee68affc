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
