"""The graph IR: immutable nodes, each carrying the typed schema that flows out of it.

A graph is a straight line ``Source -> Step* -> Split -> Sink``. Every edge is a :class:`Schema`
(names, dtypes, roles). Passes take a :class:`Graph` and return a new one (``dataclasses.replace``);
nothing mutates a node.

An op (``shardsmith/ops``) is what a :class:`Step` applies; the IR needs only what
:class:`OpSpec` declares of it, so that passes reason about any op, built-in or a user's.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

from shardsmith.ir.expr import Node
from shardsmith.ir.schema import Schema


class OpSpec(Protocol):
    """What the IR and its passes read of an op (``shardsmith.ops.base.Op`` implements it)."""

    op_name: str
    is_row_op: bool  # changes which rows exist (filter)

    @property
    def fitted(self) -> bool: ...

    def reads(self) -> tuple[str, ...]: ...

    def writes(self) -> tuple[str, ...]: ...

    def infer(self, schema: Schema) -> Schema: ...

    def describe(self) -> str: ...


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
    filter: Node | None = None  # a pushed-down row predicate, applied while reading
    filter_keys: tuple[str, ...] = ()  # the steps whose predicates were pushed into it (row accounting)
    # Row groups kept per file after statistics pruning, as indices; None: all of them.
    row_groups: tuple[tuple[int, ...], ...] | None = None
    dtypes: tuple[tuple[str, str], ...] = ()  # dtype overrides for CSV / JSON lines
    filter_keys: tuple[str, ...] = ()  # the steps whose predicates ``filter`` holds (push_filters)
    on_error: str = "fail"  # a CSV / JSON row that does not parse: fail, or quarantine it
    # fsspec options of remote paths (credentials: the environment by default); not part of identity.
    storage_options: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


@dataclass(frozen=True)
class SideTable:
    """A side table (``tables.NAME``) as the planner saw it: its files (fingerprinted into the
    dataset key) and schema. Ops that use one (``join``) hold it; the runtime reads it whole."""

    name: str
    format: str
    files: tuple[FileInfo, ...]
    schema: Schema
    dtypes: tuple[tuple[str, str], ...] = ()  # dtype overrides for CSV / JSON lines
    max_bytes: int = 10**9  # the most its columns may take in memory (it is sent to every worker)

    @property
    def key(self) -> str:
        return f"tables.{self.name}"


@dataclass(frozen=True)
class Step:
    """One op application. ``key`` is where it came from in the config (``graph[3]``)."""

    op: OpSpec
    key: str
    schema: Schema  # the schema after this step
    fit_stage: int | None = None  # set by plan_fit on fitted steps: which pass over the data fits it


@dataclass(frozen=True)
class Chain:
    """How one output column of a fused run is computed: ``src`` through ``stages`` (step
    position in the run, the column's name at that step's input)."""

    src: str
    out: str
    stages: tuple[tuple[int, str], ...]
    dtypes: tuple[str, ...]  # the dtype after each stage


@dataclass(frozen=True)
class ColumnGroup:
    """Columns whose chains have one signature: one kernel (ir/fusion.py)."""

    signature: tuple
    src_dtype: str
    chains: tuple[Chain, ...]

    @property
    def srcs(self) -> tuple[str, ...]:
        return tuple(c.src for c in self.chains)

    @property
    def outs(self) -> tuple[str, ...]:
        return tuple(c.out for c in self.chains)


@dataclass(frozen=True)
class Fused:
    """Consecutive elementwise steps that run as one kernel per column group (fuse_elementwise)."""

    steps: tuple[Step, ...]
    groups: tuple[ColumnGroup, ...]

    @property
    def schema(self) -> Schema:
        return self.steps[-1].schema

    @property
    def key(self) -> str:
        return f"{self.steps[0].key}..{self.steps[-1].key}"


@dataclass(frozen=True)
class Split:
    """How rows are assigned to splits (backends/base.py ``assign_split``): ``by`` hash (the seeded
    hash of ``key`` or of the row against ``thresholds``), time (the value of ``key`` against
    ``cuts``: split i holds cuts[i-1] <= value < cuts[i]) or column (the value of ``key`` in the
    literal lists of ``values``). Under time and column, a null key (or an unlisted value) goes to
    split ``default`` (an index), or with None is an error once such a row reaches the output."""

    names: tuple[str, ...]
    thresholds: tuple[int, ...]  # cumulative fractions scaled to 2**53, the last one 2**53
    key: str | None
    seed: int
    fit_on: str | None
    by: str = "hash"
    # time: boundaries in the key's computing form (ints: the smallest int value past the cut;
    # floats; dates as days; timestamps as microseconds), increasing
    cuts: tuple = ()
    values: tuple[tuple, ...] = ()  # column: per split, the literal values that name it
    default: int | None = None


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
    writer: str = "auto"  # output.writer as configured; the plan resolves auto (compiler/planner.py)
    storage_options: dict = field(default_factory=dict, compare=False, repr=False)  # of a remote output.dir


@dataclass(frozen=True)
class Graph:
    name: str
    source: Source
    steps: tuple[Step | Fused, ...]
    split: Split
    sink: Sink
    passes_applied: tuple[str, ...] = field(default=())
    quantile_bits: int = 10
    expectations: tuple = ()  # checks of the data (ops/expectations.py), evaluated while compiling
    # Roles given in the config for output columns (``roles``), applied last: a derived or joined
    # column can be the label whatever role the op that made it gives it.
    roles: tuple[tuple[str, str], ...] = ()
    tables: tuple[SideTable, ...] = ()  # the side tables the config declares (tables:)

    def checks_at(self, stage: str) -> tuple:
        """The column and row checks evaluated at ``stage`` (input or output)."""
        return tuple(e for e in self.expectations if e.kind != "dataset" and e.at == stage)

    @property
    def schema(self) -> Schema:
        """The output schema (what the shards hold)."""
        return (self.steps[-1].schema if self.steps else self.source_schema).with_roles(self.roles)

    @property
    def source_schema(self) -> Schema:
        return self.source.schema.select(self.source.columns)

    def flat_steps(self) -> tuple[Step, ...]:
        out = []
        for s in self.steps:
            out.extend(s.steps if isinstance(s, Fused) else [s])
        return tuple(out)

    def with_steps(self, steps) -> Graph:
        return replace(self, steps=tuple(steps))
