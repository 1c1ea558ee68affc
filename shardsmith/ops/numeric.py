"""Numeric ops: fill_missing, clip, log1p, normalize, normalize_minmax, bucketize, cast.

Exact meanings (every backend implements these):

* Values are computed in float64; null, NaN and +-inf are all *missing* and stay missing through
  every op but ``fill_missing``, which replaces them; results are rounded to the op's output dtype
  (integers: half to even); a result that is +-inf (log1p(-1), a value beyond float32's range) is
  missing too; missing results are written as null. So an infinity never reaches the shards
  through an op, and the statistics, which skip missing values, describe what the ops write.
  (``cast`` is a conversion, not an elementwise op: its ``on_error`` decides about infinities
  that do not convert; categorify and the hashes treat NaN and +-inf as values; filter has its
  own rules, ir/expr.py.)
* Continuous results (log1p, normalize, normalize_minmax) are float64 for float64 input and
  float32 otherwise. fill_missing and clip keep the input dtype. bucketize gives int32.
* Fitted statistics skip missing values (null, NaN, +-inf) and, with ``split.fit_on``, rows outside
  that split. Means and standard deviations come from exact sums (ops/stats.py); medians and
  quantiles from a histogram with ``stats.quantile_bits`` mantissa bits (the inverted-CDF quantile:
  the smallest v with at least ceil(q*n) values <= v, truncated toward zero to those bits).
* Parameters (fill values, bounds, boundaries) are finite numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from shardsmith.errors import ConfigError
from shardsmith.ir import INT_DTYPES, Column, Schema, is_float, is_numeric
from shardsmith.kernels import formula as F
from shardsmith.ops.base import ColumnwiseOp, ElementwiseOp, register_op
from shardsmith.ops.stats import MinMax, Moments, Quantiles


def representable(values, dtype: str) -> bool:
    """Whether every value (scalars or arrays) is exactly a value of ``dtype``."""
    target = {"float32": np.float32, "float16": np.float16, "float64": np.float64}.get(dtype)
    for v in values:
        v = np.asarray(v, dtype=np.float64)
        if target is None:  # integers: integral and in range
            info = np.iinfo(dtype) if dtype != "bool" else None
            if info is None or not np.all(np.isfinite(v) & (v == np.rint(v)) & (v >= info.min) & (v <= info.max)):
                return False
        elif not np.array_equal(v.astype(target).astype(np.float64), v, equal_nan=True):
            return False
    return True


@register_op
@dataclass(frozen=True)
class FillMissing(ElementwiseOp):
    """Replace missing values (null, NaN, +-inf) by a constant, or by the fitted mean or median."""

    op_name = "fill_missing"
    value: float | None = None
    strategy: str = "constant"  # constant | mean | median

    def check(self, schema: Schema, key: str) -> None:
        super().check(schema, key)
        if self.strategy not in ("constant", "mean", "median"):
            raise ConfigError(f"expected constant, mean or median, got {self.strategy!r}", f"{key}.strategy")
        if self.strategy == "constant" and self.value is None:
            raise ConfigError("strategy 'constant' needs a value", f"{key}.value")
        if self.strategy != "constant" and self.value is not None:
            raise ConfigError(f"strategy '{self.strategy}' is fitted: drop the value", f"{key}.value")

    @property
    def fitted(self) -> bool:
        return self.strategy != "constant"

    def out_dtype(self, dtype: str) -> str:
        return dtype if is_numeric(dtype) and dtype != "bool" else "float32"

    def output_column(self, col: Column, name: str) -> Column:
        return Column(name, self.out_dtype(col.dtype), col.role if col.role != "other" else "continuous")

    def statistics(self, schema: Schema) -> tuple:
        if self.strategy == "mean":
            return tuple(Moments(c) for c in self.cols)
        if self.strategy == "median":
            return tuple(Quantiles(c) for c in self.cols)
        return ()

    def fit(self, results: dict) -> dict:
        state = {}
        for stat, res in results.items():
            fill = res["mean"] if self.strategy == "mean" else res.quantile(0.5)
            state[stat.col] = {"fill": 0.0 if math.isnan(fill) else fill}
        return state

    def params(self, state: dict, col: str) -> dict[str, float]:
        return {"fill": float(self.value) if self.strategy == "constant" else state[col]["fill"]}

    def keeps_values(self, in_dtype, out_dtype, params):
        return in_dtype == out_dtype and representable(params.values(), out_dtype)

    def formula(self, x, p):
        return F.where(F.isnan(x), p["fill"], x)


@register_op
@dataclass(frozen=True)
class Clip(ElementwiseOp):
    """Limit values to [lower, upper] (either bound may be omitted); missing (+-inf too) stays missing."""

    op_name = "clip"
    lower: float | None = None
    upper: float | None = None

    def check(self, schema: Schema, key: str) -> None:
        super().check(schema, key)
        if self.lower is None and self.upper is None:
            raise ConfigError("give lower, upper or both", f"{key}.lower")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ConfigError(f"lower {self.lower} is above upper {self.upper}", f"{key}.lower")
        for name in ("lower", "upper"):
            bound = getattr(self, name)
            if bound is not None and any(schema[c].dtype in INT_DTYPES for c in self.cols) and bound != int(bound):
                raise ConfigError(f"integer columns need an integer bound, got {bound}", f"{key}.{name}")

    def out_dtype(self, dtype: str) -> str:
        return dtype if is_numeric(dtype) and dtype != "bool" else "float32"

    def output_column(self, col: Column, name: str) -> Column:
        return Column(name, self.out_dtype(col.dtype), col.role if col.role != "other" else "continuous")

    def signature(self) -> tuple:
        return (self.op_name, self.lower is not None, self.upper is not None)

    def params(self, state, col):
        p = {}
        if self.lower is not None:
            p["lo"] = float(self.lower)
        if self.upper is not None:
            p["hi"] = float(self.upper)
        return p

    def keeps_values(self, in_dtype, out_dtype, params):
        return in_dtype == out_dtype and representable(params.values(), out_dtype)

    def formula(self, x, p):
        # Comparisons with NaN are false, so missing values pass through unchanged.
        if self.lower is not None:
            x = F.where(x < p["lo"], p["lo"], x)
        if self.upper is not None:
            x = F.where(x > p["hi"], p["hi"], x)
        return x


@register_op
@dataclass(frozen=True)
class Log1p(ElementwiseOp):
    """log(1 + x); values of -1 and below give missing (log1p(-1) = -inf is missing, as every infinity)."""

    op_name = "log1p"

    def formula(self, x, p):
        return F.log1p(x)


@register_op
@dataclass(frozen=True)
class Normalize(ElementwiseOp):
    """Z-score: (x - mean) / std with the fitted mean and population std (std 0 counts as 1); +-inf is
    missing, in the fit and in the output."""

    op_name = "normalize"

    @property
    def fitted(self) -> bool:
        return True

    def statistics(self, schema: Schema) -> tuple:
        return tuple(Moments(c) for c in self.cols)

    def fit(self, results: dict) -> dict:
        return {s.col: {"mean": r["mean"], "std": r["std"], "count": r["count"]} for s, r in results.items()}

    def params(self, state, col):
        std = state[col]["std"]
        return {"mean": state[col]["mean"], "std": std if std > 0 and math.isfinite(std) else 1.0}

    def formula(self, x, p):
        return (x - p["mean"]) / p["std"]


@register_op
@dataclass(frozen=True)
class NormalizeMinmax(ElementwiseOp):
    """(x - min) / (max - min) with the fitted min and max (a zero range counts as 1)."""

    op_name = "normalize_minmax"

    @property
    def fitted(self) -> bool:
        return True

    def statistics(self, schema: Schema) -> tuple:
        return tuple(MinMax(c) for c in self.cols)

    def fit(self, results: dict) -> dict:
        return {s.col: {"min": r["min"], "max": r["max"], "count": r["count"]} for s, r in results.items()}

    def params(self, state, col):
        lo, hi = state[col]["min"], state[col]["max"]
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return {"min": 0.0, "range": 1.0}
        return {"min": lo, "range": (hi - lo) if hi > lo else 1.0}

    def formula(self, x, p):
        return (x - p["min"]) / p["range"]


MAX_QUANTILES = 65536  # fitted boundaries are computed one by one on the driver


@register_op
@dataclass(frozen=True)
class Bucketize(ElementwiseOp):
    """Bucket index: the number of boundaries <= x (0..len(boundaries)); boundaries given, or
    fitted at the quantiles 1/q, 2/q, ... (q-1)/q (duplicates dropped). Missing stays missing."""

    op_name = "bucketize"
    boundaries: tuple[float, ...] | None = None
    quantiles: int | None = None

    def check(self, schema: Schema, key: str) -> None:
        super().check(schema, key)
        if (self.boundaries is None) == (self.quantiles is None):
            raise ConfigError("give boundaries or quantiles (one of the two)", f"{key}.boundaries")
        if self.boundaries is not None:
            b = list(self.boundaries)
            if not b or any(math.isnan(v) for v in b) or any(x >= y for x, y in zip(b, b[1:])):
                raise ConfigError("expected strictly increasing numbers", f"{key}.boundaries")
        if self.quantiles is not None and not 2 <= self.quantiles <= MAX_QUANTILES:
            raise ConfigError(f"expected 2 .. {MAX_QUANTILES} buckets, got {self.quantiles}", f"{key}.quantiles")

    @property
    def fitted(self) -> bool:
        return self.quantiles is not None

    def out_dtype(self, dtype: str) -> str:
        return "int32"

    def output_column(self, col: Column, name: str) -> Column:
        n = len(self.boundaries) + 1 if self.boundaries is not None else self.quantiles
        return Column(name, "int32", "categorical", n)

    def statistics(self, schema: Schema) -> tuple:
        return tuple(Quantiles(c) for c in self.cols) if self.quantiles else ()

    def fit(self, results: dict) -> dict:
        state = {}
        for stat, hist in results.items():
            qs = [hist.quantile(Fraction(i, self.quantiles)) for i in range(1, self.quantiles)] if hist.count else []
            state[stat.col] = {"boundaries": sorted(set(q for q in qs if math.isfinite(q)))}
        return state

    def fitted_schema(self, schema: Schema, state: dict) -> Schema:
        if self.boundaries is not None:
            return schema
        return schema.replace_columns({o: Column(o, "int32", "categorical", len(state[c]["boundaries"]) + 1)
                                       for c, o in self.pairs()})

    def params(self, state, col):
        b = self.boundaries if self.boundaries is not None else state[col]["boundaries"]
        return {"boundaries": np.asarray(b, dtype=np.float64)}

    def formula(self, x, p):
        return F.bucketize(x, p["boundaries"])


CAST_ERRORS = ("fail", "null", "quarantine")


@register_op
@dataclass(frozen=True)
class Cast(ColumnwiseOp):
    """Convert to ``dtype``. Floats to integers truncate toward zero; strings parse as numbers.
    A value that cannot be converted (unparsable, out of range, missing into a non-null target is
    fine: it stays null) fails the compile, becomes null, or sends its row to quarantine
    (``on_error``)."""

    op_name = "cast"
    dtype: str = "float32"
    on_error: str = "fail"

    def check(self, schema: Schema, key: str) -> None:
        super().check(schema, key)
        allowed = (*INT_DTYPES, "float32", "float64", "string", "bool")
        if self.dtype not in allowed:
            raise ConfigError(f"expected one of {', '.join(allowed)}, got {self.dtype!r}", f"{key}.dtype")
        if self.on_error not in CAST_ERRORS:
            raise ConfigError(f"expected one of {', '.join(CAST_ERRORS)}, got {self.on_error!r}", f"{key}.on_error")

    def output_column(self, col: Column, name: str) -> Column:
        role = "continuous" if is_float(self.dtype) and col.role == "other" else col.role
        return Column(name, self.dtype, role, col.cardinality if self.dtype != "string" else None)
