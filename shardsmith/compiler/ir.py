"""The graph IR: immutable nodes, each carrying the typed schema that flows out of it.

A graph is a straight line ``Source -> Step* -> Split -> Sink``. Every edge is a :class:`Schema`
(names, dtypes, roles). Passes take a :class:`Graph` and return a new one (``dataclasses.replace``);
nothing mutates a node. Hidden columns that the engine carries alongside user columns start with
``__`` and never reach the output.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from shardsmith.errors import ConfigError, did_you_mean

INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
FLOAT_DTYPES = ("float16", "float32", "float64")
DTYPES = (*INT_DTYPES, *FLOAT_DTYPES, "bool", "string", "binary", "timestamp", "date")
SPLIT_COL = "__split"
ROW_COL = "__row"


def is_numeric(dtype: str) -> bool:
    return dtype in INT_DTYPES or dtype in FLOAT_DTYPES or dtype == "bool"


def is_float(dtype: str) -> bool:
    return dtype in FLOAT_DTYPES


def float_result(dtype: str) -> str:
    """The dtype of a continuous op's result: float64 stays float64, everything else is float32."""
    return "float64" if dtype == "float64" else "float32"


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str
    role: str = "other"
    cardinality: int | None = None


@dataclass(frozen=True)
class Schema:
    columns: tuple[Column, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def __contains__(self, name: str) -> bool:
        return any(c.name == name for c in self.columns)

    def __getitem__(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def require(self, name: str, where: str) -> Column:
        """The column, or a ConfigError at ``where`` that suggests a close name."""
        if name not in self:
            raise ConfigError(f"column '{name}' is not in the input schema{did_you_mean(name, self.names)}", where)
        return self[name]

    def replace_columns(self, new: dict[str, Column]) -> Schema:
        """Replace columns by name, appending the ones not present yet, keeping order otherwise."""
        cols = [new.pop(c.name, c) for c in self.columns]
        return Schema(tuple(cols) + tuple(new.values()))

    def drop(self, names) -> Schema:
        names = set(names)
        return Schema(tuple(c for c in self.columns if c.name not in names))

    def to_json(self) -> list[dict]:
        return [{k: v for k, v in vars(c).items() if v is not None} for c in self.columns]


@dataclass(frozen=True)
class FileInfo:
    """One input file as the planner saw it: enough to partition it and to fingerprint it."""

    path: str
    bytes: int
    rows: int
    fingerprint: str
    # Per row group: (rows, uncompressed bytes of every column); empty for CSV / JSON lines.
    row_groups: tuple[tuple[int, int], ...] = ()
    # Per column (in schema order): uncompressed bytes over the whole file, to size projections.
    column_bytes: tuple[int, ...] = ()


@dataclass(frozen=True)
class Source:
    format: str
    files: tuple[FileInfo, ...]
    schema: Schema  # the full schema of the files
    columns: tuple[str, ...]  # the projection: columns the graph needs (prune_columns narrows it)
    filter: Any = None  # a pushed-down row predicate (ops/rows.Expr), applied while reading
    # Row groups kept per file after statistics pruning, as indices; None: all of them.
    row_groups: tuple[tuple[int, ...], ...] | None = None
    dtypes: tuple[tuple[str, str], ...] = ()  # dtype overrides for CSV / JSON lines

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


@dataclass(frozen=True)
class Step:
    """One op application. ``key`` is where it came from in the config (``graph[3]``)."""

    op: Any
    key: str
    schema: Schema  # the schema after this step
    fit_stage: int | None = None  # set by plan_fit on fitted steps: which pass over the data fits it


@dataclass(frozen=True)
class Fused:
    """Consecutive elementwise steps that run as one kernel per column group (fuse_elementwise)."""

    steps: tuple[Step, ...]
    groups: tuple[Any, ...]  # kernels.fusion.ColumnGroup, one kernel each

    @property
    def schema(self) -> Schema:
        return self.steps[-1].schema

    @property
    def key(self) -> str:
        return f"{self.steps[0].key}..{self.steps[-1].key}"


@dataclass(frozen=True)
class Split:
    names: tuple[str, ...]
    thresholds: tuple[int, ...]  # cumulative fractions scaled to 2**53, the last one 2**53
    key: str | None
    seed: int
    fit_on: str | None


@dataclass(frozen=True)
class Sink:
    dir: str
    formats: tuple[str, ...]
    shard_rows: int | None
    shard_bytes: int | None
    row_group_rows: int
    compression: str
    compression_level: int | None
    overwrite: bool
    webdataset_compression: str = "none"
    webdataset_rows_per_sample: int = 1  # 1: one tar sample per row (see shards/webdataset.py)


@dataclass(frozen=True)
class Graph:
    name: str
    source: Source
    steps: tuple[Any, ...]  # Step or Fused
    split: Split
    sink: Sink
    passes_applied: tuple[str, ...] = field(default=())
    quantile_bits: int = 10

    @property
    def schema(self) -> Schema:
        """The output schema (what the shards hold)."""
        return self.steps[-1].schema if self.steps else self.source_schema

    @property
    def source_schema(self) -> Schema:
        return Schema(tuple(c for c in self.source.schema.columns if c.name in self.source.columns))

    def flat_steps(self) -> tuple[Step, ...]:
        out = []
        for s in self.steps:
            out.extend(s.steps if isinstance(s, Fused) else [s])
        return tuple(out)

    def with_steps(self, steps) -> Graph:
        return replace(self, steps=tuple(steps))
