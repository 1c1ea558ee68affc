"""Per-key fitted features: target_encode and groupby_features. Both are fitted on the
``split.fit_on`` rows (every row when it is null) with exact per-key statistics (ops/stats.py
``KeyedMoments``) and joined back to every row by key (a key in canonical form, as ``join``
matches it: ops/joins.py); a null key matches nothing.

target_encode (``{op: target_encode, cols: [user_id], target: click, smoothing: 20, folds: 5}``):
for each key column, the smoothed mean of ``target`` per key::

    enc(k) = (sum_k + smoothing * prior) / (count_k + smoothing)

over the fitted rows whose target is finite and key not null (``prior``: their mean target; an
unseen or null key gets the prior). Rows of the fitted split are encoded out of fold, so that no row sees its own
target: the fitted rows are dealt into ``folds`` folds by a seeded hash of the row (its file's name
and row number: ops/stats.py ``FOLD_SALT``, independent of partitioning and of the split's hash),
and a row of fold f gets ``enc`` computed without fold f's rows (and with the prior without them).
Rows of the other splits get ``enc`` over all the fitted rows. The result is float32 (float64 for a
float64 target), named ``<col>_te`` unless ``out`` names it.

groupby_features (``{op: groupby_features, keys: [user_id], cols: [price], stats: [count, mean]}``):
per key (one or more columns together), over the fitted rows: ``count`` (rows), and per column of
``cols`` the ``sum``, ``mean``, ``std`` (population), ``min`` and ``max`` of its finite values,
written as ``<prefix>count`` and ``<prefix><col>_<stat>`` (``prefix`` defaults to the keys joined
by ``_`` and a ``_``). A key that the fitted rows do not have gets nulls (count too); a statistic of
a column without finite values for a key is null.

Sums are exact per exponent (kernels/exact.py) and added in a fixed order, so the state does not
depend on partitioning, worker count or engine; means and the smoothed encodings are float64
arithmetic on the driver, then rounded to the output dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shardsmith.errors import ConfigError
from shardsmith.ir import Column, Schema, float_result, is_numeric
from shardsmith.ir.expr_types import column_kind
from shardsmith.ops.base import ColumnwiseOp, Op, register_op, resolve_columns
from shardsmith.ops.stats import FOLD, KEY, KeyedMoments

STATS = ("count", "sum", "mean", "std", "min", "max")


def check_keys(keys, schema: Schema, key: str) -> None:
    """Key columns exist and have a kind keys match by (no floats)."""
    for c in keys:
        dtype = schema.require(c, key).dtype
        if column_kind(dtype) in ("float", None):
            raise ConfigError(f"key '{c}' is {dtype}: keys are integers, strings, bools, dates or timestamps "
                              "(cast it first)", key)


def check_numeric(cols, schema: Schema, key: str, what: str) -> None:
    for c in cols:
        dtype = schema.require(c, key).dtype
        if not is_numeric(dtype):
            raise ConfigError(f"column '{c}' is {dtype}; {what} needs numbers or bools", key)


@register_op
@dataclass(frozen=True)
class TargetEncode(ColumnwiseOp):
    """Each key column of ``cols`` as the smoothed, out-of-fold mean of ``target`` per key."""

    op_name = "target_encode"
    target: str = ""
    smoothing: float = 20.0
    folds: int = 5
    seed: int = 0

    def check(self, schema: Schema, key: str) -> None:
        super().check(schema, key)
        check_keys(self.cols, schema, f"{key}.cols")
        if not self.target:
            raise ConfigError("expected the label column to encode with, e.g. target: click", f"{key}.target")
        check_numeric([self.target], schema, f"{key}.target", "target_encode's target")
        if not self.smoothing >= 0:
            raise ConfigError(f"expected 0 or more, got {self.smoothing}", f"{key}.smoothing")
        if not 2 <= self.folds <= 1000:
            raise ConfigError(f"expected 2 to 1000 folds (rows are encoded out of fold), got {self.folds}",
                              f"{key}.folds")
        if not 0 <= self.seed < 2**64:
            raise ConfigError(f"expected an integer in [0, 2**64), got {self.seed}", f"{key}.seed")

    def outputs(self) -> tuple[str, ...]:
        return tuple(self.out) if self.out is not None else tuple(f"{c}_te" for c in self.cols)

    def reads(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.cols, self.target)))

    def depends_on(self) -> dict[str, tuple]:
        """Each encoding from its key column and the target.

        >>> TargetEncode(cols=("user",), target="click").depends_on()
        {'user_te': ('user', 'click')}
        """
        return {o: tuple(dict.fromkeys((c, self.target))) for c, o in self.pairs()}

    @property
    def fitted(self) -> bool:
        return True

    def infer(self, schema: Schema) -> Schema:
        dtype = float_result(schema[self.target].dtype)
        return schema.replace_columns({o: Column(o, dtype, "continuous") for o in self.outputs()})

    def statistics(self, schema: Schema) -> tuple:
        return tuple(KeyedMoments(c, keys=(c,), values=(self.target,), folds=self.folds, seed=self.seed)
                     for c in self.cols)

    def fit(self, results: dict) -> dict:
        """Per key column: ``table`` (the keys; ``enc``; ``enc_<f>`` without fold f), ``prior``,
        ``priors`` (per fold), and the split ``fit_split`` whose rows are encoded out of fold."""
        state = {}
        for stat, res in results.items():
            state[stat.col] = encodings(res, self.target, self.folds, self.smoothing)
            state[stat.col]["fit_split"] = stat.fit_split
        return state


def encodings(res, target: str, folds: int, smoothing: float) -> dict:
    """The target encodings of one key column from its per (key, fold) statistics."""
    col = res.columns[target]
    groups = res.groups
    key_col = groups[f"{KEY}0"]
    fold = groups[FOLD].to_numpy() if groups.num_rows else np.zeros(0, np.int64)
    # Unique keys in order (groups are sorted by key, then fold), and each group's key index.
    starts = _key_starts(key_col)
    kid = np.cumsum(starts) - 1
    n_keys = int(starts.sum())
    n = np.zeros((n_keys, folds))
    s = np.zeros((n_keys, folds))
    n[kid, fold] = col["count"]
    s[kid, fold] = col["sum"]
    n_k, s_k = n.sum(axis=1), _ordered_sum(s)
    total_n, total_s = float(n_k.sum()), float(_ordered_sum(s_k[None, :])[0]) if n_keys else 0.0
    prior = total_s / total_n if total_n else 0.0
    fold_n, fold_s = n.sum(axis=0), _ordered_sum(s.T)
    with np.errstate(divide="ignore", invalid="ignore"):
        priors = np.where(total_n - fold_n > 0, (total_s - fold_s) / (total_n - fold_n), prior)
        enc = _smoothed(s_k, n_k, prior, smoothing)
        out_of_fold = _smoothed(s_k[:, None] - s, n_k[:, None] - n, priors[None, :], smoothing)
    keys = key_col.take(pa.array(np.flatnonzero(starts))) if n_keys else key_col
    table = pa.table({f"{KEY}0": keys, "enc": pa.array(enc),
                      **{f"enc_{f}": pa.array(out_of_fold[:, f]) for f in range(folds)}})
    return {"table": table, "prior": prior, "priors": [float(p) for p in priors]}


def _smoothed(s, n, prior, smoothing: float):
    denominator = n + smoothing
    return np.where(denominator > 0, (s + smoothing * prior) / np.where(denominator > 0, denominator, 1), prior)


def _ordered_sum(m: np.ndarray) -> np.ndarray:
    """Row sums added left to right (a fixed order, so the result never depends on NumPy's blocking)."""
    out = np.zeros(m.shape[0])
    for j in range(m.shape[1]):
        out = out + m[:, j]
    return out


def _key_starts(keys: pa.Array) -> np.ndarray:
    """True where a sorted key column starts a new value."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=bool)
    keys = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
    differs = np.asarray(pc.not_equal(keys.slice(1), keys.slice(0, n - 1)).fill_null(True))
    return np.concatenate([[True], differs])


@dataclass(frozen=True)
class KeyedOp(Op):
    """A fitted op over rows grouped by ``keys`` (names or patterns of the input's columns), writing
    its ``outputs()``."""

    keys: tuple[str, ...] = ()

    @property
    def fitted(self) -> bool:
        return True

    def outputs(self) -> tuple[str, ...]:
        raise NotImplementedError(type(self).__name__)

    def writes(self) -> tuple[str, ...]:
        return self.outputs()

    @classmethod
    def from_config(cls, entry: dict, schema: Schema, key: str) -> KeyedOp:
        if "keys" in entry:
            entry = {**entry, "keys": resolve_columns(entry["keys"], schema, f"{key}.keys")}
        return super().from_config(entry, schema, key)

    def check(self, schema: Schema, key: str) -> None:
        super().check(schema, key)
        if not self.keys:
            raise ConfigError("expected the key columns to group rows by", f"{key}.keys")
        check_keys(self.keys, schema, f"{key}.keys")


@register_op
@dataclass(frozen=True)
class GroupbyFeatures(KeyedOp):
    """Per-key statistics of ``cols`` (fitted on the fit split) joined back to every row."""

    op_name = "groupby_features"
    stats: tuple[str, ...] = STATS
    prefix: str | None = None

    def check(self, schema: Schema, key: str) -> None:
        super().check(schema, key)
        check_numeric(self.cols, schema, f"{key}.cols", "groupby_features")
        for s in self.stats:
            if s not in STATS:
                raise ConfigError(f"expected some of {', '.join(STATS)}, got {s!r}", f"{key}.stats")
        if not self.stats or (not self.cols and set(self.stats) != {"count"}):
            raise ConfigError("statistics other than count need columns (cols)", f"{key}.cols")
        for name in self.outputs():
            if name in schema:
                raise ConfigError(f"column '{name}' already exists: set a prefix", f"{key}.prefix")

    def name_prefix(self) -> str:
        return self.prefix if self.prefix is not None else "_".join(self.keys) + "_"

    def outputs(self) -> tuple[str, ...]:
        p = self.name_prefix()
        out = [f"{p}count"] if "count" in self.stats else []
        return tuple(out + [f"{p}{c}_{s}" for c in self.cols for s in self.stats if s != "count"])

    def reads(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.keys, *self.cols)))

    def depends_on(self) -> dict[str, tuple]:
        """The count from the keys; each statistic of a column from the keys and that column.

        >>> GroupbyFeatures(keys=("u",), cols=("p",), stats=("count", "mean")).depends_on()
        {'u_count': ('u',), 'u_p_mean': ('u', 'p')}
        """
        p = self.name_prefix()
        out = {f"{p}count": self.keys} if "count" in self.stats else {}
        for c in self.cols:
            out.update({f"{p}{c}_{s}": tuple(dict.fromkeys((*self.keys, c))) for s in self.stats if s != "count"})
        return out

    def infer(self, schema: Schema) -> Schema:
        p, new = self.name_prefix(), {}
        if "count" in self.stats:
            new[f"{p}count"] = Column(f"{p}count", "int64", "continuous")
        for c in self.cols:
            for s in self.stats:
                if s != "count":
                    name = f"{p}{c}_{s}"
                    new[name] = Column(name, float_result(schema[c].dtype), "continuous")
        return schema.replace_columns(new)

    def statistics(self, schema: Schema) -> tuple:
        return (KeyedMoments(self.keys[0], keys=tuple(self.keys), values=tuple(self.cols),
                             squares="std" in self.stats),)

    def fit(self, results: dict) -> dict:
        """``table``: the keys (canonical) and each output column, as int64 / float64."""
        (res,) = results.values()
        p, cols = self.name_prefix(), {}
        if "count" in self.stats:
            cols[f"{p}count"] = pa.array(res.n.astype(np.int64))
        for c in self.cols:
            cols.update(column_statistics(res.columns[c], f"{p}{c}_", self.stats))
        return {"table": pa.table({**{name: res.groups[name] for name in res.groups.column_names}, **cols})}


def column_statistics(col: dict, prefix: str, stats) -> dict:
    """The per-key statistics of one column (null where it has no finite value)."""
    count = col["count"]
    none = count == 0
    safe = np.where(none, 1, count)
    mean = col["sum"] / safe
    var = np.maximum(col["sumsq"] / safe - mean * mean, 0.0)
    values = {"sum": col["sum"], "mean": mean, "std": np.sqrt(var), "min": col["min"], "max": col["max"]}
    return {f"{prefix}{s}": pa.array(np.asarray(values[s], dtype=np.float64), mask=none if none.any() else None)
            for s in stats if s != "count"}
