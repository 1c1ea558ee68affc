"""Categorical ops: categorify, hash_bucket, hashed_cross.

categorify ids (int32), the same on every backend:

* ``0`` padding (never produced; reserved for the loader and models),
* ``1`` out of vocabulary: a value not in the vocabulary (unseen, or below ``freq_threshold``,
  or cut by ``max_size``),
* ``2`` null,
* ``3 + i`` the i-th vocabulary value, where the vocabulary is ordered by count descending,
  then by value ascending (numbers numerically, strings by their UTF-8 bytes).

The vocabulary keeps values seen at least ``freq_threshold`` times (on ``split.fit_on`` rows), then
the first ``max_size`` of them. It is saved as Parquet (``state/<step>/<column>/vocab.parquet``: value,
count). The column's cardinality is ``len(vocabulary) + 3``; its suggested embedding size is
``min(600, round(1.6 * cardinality ** 0.56))``.

hash_bucket and hashed_cross use the shardsmith hash (kernels/xxhash64.py): the bucket is
``hash % num_buckets``; a cross chains the hash over its columns in the order given.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from shardsmith.errors import ConfigError
from shardsmith.ir import DTYPES, Column, Schema
from shardsmith.kernels.lookup import FIRST_ID, NULL_ID, OOV_ID, PAD_ID
from shardsmith.ops.base import INT64_MAX, ColumnwiseOp, Op, check_new_column, register_op
from shardsmith.ops.stats import ValueCounts

HASHABLE = tuple(DTYPES)  # every dtype has a specified hash (kernels/xxhash64.py)
__all__ = ["PAD_ID", "OOV_ID", "NULL_ID", "FIRST_ID", "Categorify", "HashBucket", "HashedCross", "embedding_dim"]


def embedding_dim(cardinality: int) -> int:
    """The suggested embedding width for a categorical column (the fastai / NVTabular rule)."""
    return int(min(600, round(1.6 * cardinality**0.56)))


def bucket_dtype(num_buckets: int) -> str:
    return "int32" if num_buckets <= 2**31 else "int64"


@register_op
@dataclass(frozen=True)
class Categorify(ColumnwiseOp):
    """Map each value to a dense id by frequency (see the module docstring for the id layout)."""

    op_name = "categorify"
    freq_threshold: int = 0
    max_size: int | None = None

    def check(self, schema: Schema, key: str) -> None:
        super().check(schema, key)
        if not 0 <= self.freq_threshold <= INT64_MAX:
            raise ConfigError(f"expected 0 .. 2**63-1, got {self.freq_threshold}", f"{key}.freq_threshold")
        if self.max_size is not None and not 1 <= self.max_size <= INT64_MAX:
            raise ConfigError(f"expected 1 .. 2**63-1, got {self.max_size}", f"{key}.max_size")
        for c in self.cols:
            if schema[c].dtype not in HASHABLE:
                raise ConfigError(f"column '{c}' has dtype {schema[c].dtype}, which cannot be categorified",
                                  f"{key}.cols")

    @property
    def fitted(self) -> bool:
        return True

    def output_column(self, col: Column, name: str) -> Column:
        return Column(name, "int32", "categorical")

    def statistics(self, schema: Schema) -> tuple:
        return tuple(ValueCounts(c) for c in self.cols)

    def fit(self, results: dict) -> dict:
        state = {}
        for stat, (values, counts, nulls) in results.items():
            table = pa.table({"value": values, "count": pa.array(counts, type=pa.int64())})
            # Filtering first sorts only what is kept (the same rows in the same order).
            table = table.filter(pc.greater_equal(table["count"], max(self.freq_threshold, 1)))
            table = table.take(pc.sort_indices(table, [("count", "descending"), ("value", "ascending")]))
            if self.max_size is not None:
                table = table.slice(0, self.max_size)
            state[stat.col] = {"vocab": table, "nulls": int(nulls),
                               "cardinality": table.num_rows + FIRST_ID}
        return state

    def fitted_schema(self, schema: Schema, state: dict) -> Schema:
        """The schema once the vocabularies are known: cardinalities filled in."""
        new = {}
        for c, o in self.pairs():
            new[o] = Column(o, "int32", "categorical", state[c]["cardinality"])
        return schema.replace_columns(new)


@register_op
@dataclass(frozen=True)
class HashBucket(ColumnwiseOp):
    """Map each value to ``hash(value, seed) % num_buckets`` (nulls hash too; see kernels/xxhash64)."""

    op_name = "hash_bucket"
    num_buckets: int = 0
    seed: int = 0

    def check(self, schema: Schema, key: str) -> None:
        super().check(schema, key)
        _check_hash_params(self, schema, key)

    def output_column(self, col: Column, name: str) -> Column:
        return Column(name, bucket_dtype(self.num_buckets), "categorical", self.num_buckets)


@register_op
@dataclass(frozen=True)
class HashedCross(Op):
    """One column ``out``: the chained hash of two or more columns, modulo ``num_buckets``."""

    op_name = "hashed_cross"
    num_buckets: int = 0
    seed: int = 0
    out: str | None = None

    def check(self, schema: Schema, key: str) -> None:
        super().check(schema, key)
        if len(self.cols) < 2:
            raise ConfigError("a cross needs two or more columns", f"{key}.cols")
        _check_hash_params(self, schema, key)
        check_new_column(self.output(), None, schema, [self.output()], f"{key}.out")

    def output(self) -> str:
        return self.out or "_x_".join(self.cols)

    def writes(self) -> tuple[str, ...]:
        return (self.output(),)

    def infer(self, schema: Schema) -> Schema:
        col = Column(self.output(), bucket_dtype(self.num_buckets), "categorical", self.num_buckets)
        return schema.replace_columns({col.name: col})


def _check_hash_params(op, schema: Schema, key: str) -> None:
    if not 1 <= op.num_buckets <= INT64_MAX:  # ids are int64 at most
        raise ConfigError(f"expected a number of buckets in 1 .. 2**63-1, got {op.num_buckets}", f"{key}.num_buckets")
    if not 0 <= op.seed < 2**64:
        raise ConfigError(f"expected an integer in [0, 2**64), got {op.seed}", f"{key}.seed")
    for c in op.cols:
        if schema[c].dtype not in HASHABLE:
            raise ConfigError(f"column '{c}' has dtype {schema[c].dtype}, which cannot be hashed", f"{key}.cols")
