"""The config model: structured dataclasses registered in Hydra's ConfigStore.

Hydra checks keys and scalar types when it composes; :func:`from_omegaconf` then turns the composed
config into these frozen dataclasses and checks what Hydra cannot (value ranges, sizes, choices),
naming the offending key. Graph entries are free-form dicts here; each op validates its own
parameters when the graph is built (``compiler/build.py``).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib.util
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from shardsmith.compiler.composition import LIST_KEYS, compose_omegaconf, omegaconf_error
from shardsmith.errors import ConfigError, did_you_mean
from shardsmith.ir.schema import ROLES
from shardsmith.ir.sizes import parse_size

SOURCE_FORMATS = ("parquet", "csv", "jsonl")
OUTPUT_FORMATS = ("parquet", "webdataset")
ENGINE_KINDS = ("cpu", "gpu", "auto")
CLUSTERS = ("auto", "local", "inprocess")
READS = ("auto", "once", "per_pass")
CPU_KERNELS = ("auto", "numba", "numpy")
COMPRESSIONS = ("zstd", "snappy", "lz4", "gzip", "none")
WDS_COMPRESSIONS = ("none", "gzip", "zstd")
MAX_ROWS_PER_SAMPLE = 1 << 20
MAX_COUNT = 4096  # workers or threads: more is a typo, and starting them would take the machine down
log = logging.getLogger("shardsmith")
# Who writes Parquet shards: auto (the engine's fastest: cuDF from device memory on the GPU engine,
# pyarrow on the CPU), arrow (pyarrow: shards byte-identical with the CPU engine's), cudf (GPU only).
WRITERS = ("auto", "arrow", "cudf")
CUDF_COMPRESSIONS = ("zstd", "snappy", "lz4", "none")  # cuDF's Parquet writer has no gzip
FLOAT_MODES = ("exact", "fast")
ON_ERROR = ("fail", "quarantine")


@dataclass
class SourceConfig:
    paths: list[str] = field(default_factory=list)
    format: str = "parquet"
    # Column dtypes to force when reading CSV / JSON lines (Parquet carries its own).
    schema: dict[str, str] = field(default_factory=dict)
    # A CSV row or JSON line that does not parse (or holds invalid UTF-8, as may a Parquet string):
    # fail the compile naming file and line, or send it to the quarantine with the reason.
    on_error: str = "fail"
    # fsspec options for s3:// or gs:// paths (endpoint_url, anon, ...); credentials come from the
    # environment by default, and secrets given here are redacted from the manifest.
    storage_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TableConfig:
    """A side table (``tables.NAME``): files that ops such as ``join`` read whole and send to every
    worker, so their in-memory size is capped by ``max_bytes``."""

    paths: list[str] = field(default_factory=list)
    format: str = "parquet"
    schema: dict[str, str] = field(default_factory=dict)
    max_bytes: str = "1GB"


@dataclass
class SplitConfig:
    # hash: by the seeded hash of `key` (or of the row in its file), in `fractions`; time: by the
    # value of `key` (a timestamp, date or number column) against `cuts`; column: by the value of
    # `key`, listed per split in `values`.
    by: str = "hash"
    # Column whose hash (by: hash) or value (time, column) decides the split; null: the row (hash only).
    key: str | None = None
    seed: int = 0
    fractions: dict[str, float] = field(default_factory=lambda: {"train": 0.9, "valid": 0.05, "test": 0.05})
    # by: time: boundaries between the splits, in order (a row with key >= cuts[i] goes past split i).
    cuts: list[Any] = field(default_factory=list)
    # by: time: the splits' names in order (empty: the keys of `fractions`, whose values are then unused).
    names: list[str] = field(default_factory=list)
    # by: column: {split: [values]}; every value names one split.
    values: dict[str, Any] = field(default_factory=dict)
    # by: time / column: the split of rows whose key is null (or NaN), or whose value no split lists;
    # null: such a row reaching the output fails the compile, naming its file and row.
    default: str | None = None
    # Fitted statistics are computed on this split only (no leakage); null: on every row.
    fit_on: str | None = "train"


@dataclass
class WebDatasetConfig:
    # Rows per tar sample. 1024 (BENCHMARKS.md, "WebDataset shards: batched samples"): the tar is
    # 1.08x the column bytes (row ids 5%, headers and padding 3%; 1.05x is the floor at any size),
    # a sample is one default loader batch of ~170 KB. 1: one sample per row, the layout of
    # shardsmith 0.1 byte for byte (4 KB of headers per row: 25x the column bytes of the demo data).
    rows_per_sample: int = 1024
    # "none" (part-NNNNN.tar), "gzip" (part-NNNNN.tar.gz, the whole shard) or "zstd" (every member
    # of a batched sample compressed on its own, "<member>.zst"; the tar stays seekable).
    compression: str = "none"


@dataclass
class OutputConfig:
    dir: str = "shards/${name}"
    format: list[str] = field(default_factory=lambda: ["parquet"])
    shard_rows: int | None = None
    shard_bytes: str | None = "128MB"
    row_group_rows: int = 65536
    compression: str = "zstd"
    compression_level: int | None = None
    # WebDataset shards (output.format includes webdataset): layout and compression.
    webdataset: WebDatasetConfig = field(default_factory=WebDatasetConfig)
    # Deprecated alias of webdataset.compression (null: unset).
    webdataset_compression: str | None = None
    # Replace output.dir when it holds a shardsmith dataset built otherwise (never other files).
    overwrite: bool = False
    writer: str = "auto"
    # fsspec options when output.dir is an s3:// or gs:// URL (as source.storage_options).
    storage_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class EngineConfig:
    kind: str = "cpu"
    # auto: small inputs on threads in this process, larger ones on a local Dask cluster (the
    # threshold: compiler/sizing.py); local; inprocess (threads_per_worker threads, default one).
    cluster: str = "auto"
    scheduler: str | None = None
    n_workers: int | None = None
    # null: one worker of all cores' threads (processes: false), or single-threaded worker processes.
    threads_per_worker: int | None = None
    # Threads share the data and skip serialisation; the work (Arrow, NumPy) runs without the GIL.
    # Measured on the 2M-row demo, 2 cores: threads 6.6 s, processes 10.1 s, in-process 8.2 s.
    processes: bool = False
    memory_limit: str = "auto"
    # once: the first fit pass keeps the decoded partitions for the transform (one read of the
    # input); per_pass: every pass reads again, memory bounded by the partitions in flight; auto:
    # once when the decoded input fits half the memory budget (memory_limit, or what is available).
    reads: str = "auto"
    # A partition's decoded size: a size ("128MB"), "auto" (CPU: 128MB, or less so that every task
    # thread has a partition, not below 16MB; GPU: 1/32 of the smallest visible GPU's memory,
    # dask-cudf's default), or a fraction of GPU memory ("0.05"; GPU only). engine/cpu.yaml: auto.
    partition_bytes: str = "128MB"
    # The CPU engine's fused elementwise groups and row hash: numba (compiled loops), numpy (the
    # vectorised reference), or auto (numba when it is installed and the input is large enough to
    # repay its start-up; NumPy runs while kernels compile). Byte-identical shards (kernels/cpujit.py).
    cpu_kernels: str = "auto"
    # GPU engine settings (engine=gpu); ignored on CPU. Sizes or fractions of one GPU's memory.
    rmm_pool_size: str | None = None  # an RMM pool per worker (CuPy allocates from it too); null: none
    device_memory_limit: str | None = None  # spill device -> host above this; null: dask-cuda's 80%; 0: never
    spill_cudf: bool = False  # cuDF's own spilling of its buffers (dask-cuda's enable_cudf_spill)
    gpu_threads_per_worker: int = 8  # host work (footers, shard writes) overlaps with the GPU's
    # Start the Dask dashboard of a local cluster (needs bokeh: shardsmith[dashboard]); its address is logged.
    dashboard: bool = False
    # exact: every op in float64, rounded to its dtype after each op (bit-identical with the CPU
    # engine); fast: float32 arithmetic in the GPU kernels of float32 chains (not bit-identical).
    float_mode: str = "exact"
    # The interface a local cluster's scheduler, workers and dashboard listen on: this machine only,
    # unless set (0.0.0.0: every interface, for a dashboard seen from elsewhere).
    host: str = "127.0.0.1"


@dataclass
class StatsConfig:
    # Quantiles (median fill, quantile buckets) keep this many mantissa bits: relative error < 2**-bits.
    quantile_bits: int = 10


@dataclass
class ProfilingConfig:
    # profile.json next to the manifest (and in the Hydra run directory): see profiling/profile.py.
    enabled: bool = True
    # The cost model (profiling/cost.py): the node's price per hour, in `currency`; on the GPU
    # engine with gpus_per_node set, a run pays for the GPUs it uses (workers / gpus_per_node).
    cost_per_hour: float | None = None
    currency: str = "USD"
    gpus_per_node: int = 0
    # The input size the profile projects time and cost to (null: 1TB).
    project_to_bytes: str | None = None
    # Seconds between memory / CPU samples of each worker process.
    sample_interval: float = 0.1
    # auto: a progress bar on a terminal, log lines otherwise; or bar, log, off.
    progress: str = "auto"


@dataclass
class DriftConfig:
    """``shardsmith drift`` thresholds (shards/drift.py): a metric above its limit is drift (exit 1);
    null: no limit. ``drift=strict`` picks configs/drift/strict.yaml; --fail-on overrides."""

    psi: float | None = 0.25  # population stability index (0.1: moderate, 0.25: large shift)
    js: float | None = None  # Jensen-Shannon distance, base 2, in [0, 1]
    ks: float | None = None  # Kolmogorov-Smirnov distance of continuous columns
    null_rate: float | None = 0.05  # absolute change of the share of missing values
    oov_rate: float | None = 0.05  # NEW's share of values outside BASE's vocabulary minus BASE's own
    row_count: float | None = None  # relative change of the row count
    bins: int = 10  # bins at BASE's quantiles for continuous columns
    split: str | None = None  # compare one split; null: all rows


@dataclass
class ShardsmithConfig:
    name: str = "dataset"
    source: SourceConfig = field(default_factory=SourceConfig)
    # Side tables by name, for ops that join them (`join`): {NAME: {paths: [...], format: ...}}.
    tables: dict[str, TableConfig] = field(default_factory=dict)
    # The steps in order: a list ([{op: ...}, ...]: keys graph[0], graph[1], ...) or a mapping of named
    # steps ({cats: {op: ...}, ...}: keys graph.cats, ...), which command lines can override and sweep
    # (graph.cats.freq_threshold=10). null: no steps.
    graph: Any = None
    roles: dict[str, str] = field(default_factory=dict)
    split: SplitConfig = field(default_factory=SplitConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    profiling: ProfilingConfig = field(default_factory=ProfilingConfig)
    # Import paths of modules that register user ops (the opt-in for ops outside the registry).
    plugins: list[str] = field(default_factory=list)
    # Expectations checked while compiling: {col, check, severity, at, ...} (ops/expectations.py).
    expect: list[Any] = field(default_factory=list)
    # Where the fitted state comes from: fit.from=PATH/manifest.json reuses a dataset's (no fit pass);
    # fit.cache: auto (beside output.dir), off, or a directory (runtime/fitsource.py).
    fit: dict[str, Any] = field(default_factory=lambda: {"from": None, "cache": "auto"})
    # Thresholds of `shardsmith drift` (not used by a compile).
    drift: DriftConfig = field(default_factory=DriftConfig)


def register_configs() -> None:
    from hydra.core.config_store import ConfigStore  # lazy: as in compose()

    if "shardsmith_schema.yaml" in ConfigStore.instance().repo:
        return  # once a process (compile composes twice, a sweep's check once per value): it is the code's schema
    # Hydra merges mappings, so a default set of splits would be merged into every config's own:
    # composed configs start with none, a config's split.fractions is the whole set, and the
    # dataclass default applies when no config gives any (from_omegaconf).
    schema = structured_schema()
    schema.split.fractions = {}
    ConfigStore.instance().store(name="shardsmith_schema", node=schema)


def structured_schema():
    """The dataclasses' OmegaConf schema, a copy the caller may change. Built once a process: it is
    the code's, and building it takes about ten times as long as copying it (plan's start-up)."""
    return copy.deepcopy(_built_schema())


@functools.cache
def _built_schema():
    return OmegaConf.structured(ShardsmithConfig)


def config_dir() -> Path:
    """The Hydra config tree: shipped inside the wheel, or at the repository root when editable."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "configs", here.parent / "configs"):
        if (candidate / "config.yaml").exists():
            return candidate
    raise ConfigError("the Hydra config tree (configs/config.yaml) is missing from the installation")


def parse_fraction(value) -> float | None:
    """A fraction in (0, 1] (``0.25``, ``"0.25"``, ``"25%"``), or None when ``value`` is not one."""
    text = str(value).strip()
    try:
        frac = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return None  # a plain integer is a byte count
    return frac if 0 < frac <= 1 and ("." in text or text.endswith("%")) else None


def parse_device_size(value, key: str):
    """A device memory setting: a fraction of one GPU's memory (as a float), ``0`` (off), or bytes."""
    if str(value).strip() == "0":
        return 0
    frac = parse_fraction(value)
    return frac if frac is not None else parse_size(value, key)


def parse_partition_bytes(value, kind: str):
    """``engine.partition_bytes``: "auto", a fraction of GPU memory (GPU only), or a size in bytes."""
    if str(value).strip() == "auto":
        return "auto"
    frac = parse_fraction(value)
    if frac is not None:
        if kind == "cpu":
            raise ConfigError(f"a fraction of GPU memory ({value}) needs engine.kind=gpu or auto; give a size "
                              "like '128MB'", "engine.partition_bytes")
        return frac
    return parse_size(value, "engine.partition_bytes")


def from_omegaconf(cfg) -> ShardsmithConfig:
    """Convert a composed OmegaConf config into validated dataclasses; errors name the key."""
    try:
        raw = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        raise ConfigError(str(exc).splitlines()[0], key) from None
    if isinstance(raw.get("split"), dict) and raw["split"].get("fractions") == {}:
        del raw["split"]["fractions"]  # no config set the splits: the default ones
    return from_dict(raw)


def from_dict(raw: dict) -> ShardsmithConfig:
    """Build and validate a config from a plain dict (the resolved Hydra config or a test's dict):
    OmegaConf merges it into the structured schema, checking keys and types, then :func:`validate`
    checks what types cannot say."""
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping, got {type(raw).__name__}", "config")
    try:
        raw = _lists(raw)
        merged = OmegaConf.merge(_replacing(structured_schema(), raw), raw)
        top = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise omegaconf_error(exc) from None
    validate(top)
    return top


def _lists(raw: dict) -> dict:
    """A single value where the schema wants a list (``output.format=parquet``) becomes a list of one."""
    raw = dict(raw)
    for section, _, key in (k.rpartition(".") for k in LIST_KEYS):
        node = raw.get(section) if section else raw
        if isinstance(node, dict) and isinstance(node.get(key), str):
            node = {**node, key: [node[key]]}
            raw = {**raw, section: node} if section else node
    graph = raw.get("graph")
    # YAML 1.1 (which Hydra reads) takes a bare `on:` key for the boolean true: in a step it is `on`.
    if isinstance(graph, dict):
        raw["graph"] = {name: _on_key(step) for name, step in graph.items()}
    elif isinstance(graph, list):
        raw["graph"] = [_on_key(step) for step in graph]
    tables = raw.get("tables")
    if isinstance(tables, dict):
        one = {n for n, t in tables.items() if isinstance(t, dict) and isinstance(t.get("paths"), str)}
        raw["tables"] = {n: {**t, "paths": [t["paths"]]} if n in one else t for n, t in tables.items()}
    return raw


def _on_key(step):
    return {("on" if k is True else k): v for k, v in step.items()} if isinstance(step, dict) else step


def _replacing(base, raw: dict):
    """``base`` with its plain mappings (``split.fractions``, ``roles``) emptied where ``raw`` gives
    them: a given mapping replaces the default, it is not merged into it."""
    for key, value in raw.items():
        node = base.get(key) if key in base else None
        if isinstance(value, dict) and OmegaConf.is_dict(node):
            if OmegaConf.get_type(node) is dict:
                base[key] = {}
            else:
                _replacing(node, value)
    return base


def _choice(value, choices, key):
    if value not in choices:
        raise ConfigError(f"expected one of {', '.join(choices)}, got {value!r}{did_you_mean(value, choices)}", key)


def validate(cfg: ShardsmithConfig) -> None:
    """Checks that need no data: choices, ranges and sizes."""
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", str(cfg.name)):
        raise ConfigError(f"expected letters, digits, '_', '-' or '.', got {cfg.name!r}", "name")
    src = cfg.source
    if isinstance(src.paths, str):
        src.paths = [src.paths]
    if not src.paths:
        raise ConfigError("no input paths given (a list of files or globs)", "source.paths")
    _choice(src.format, SOURCE_FORMATS, "source.format")
    _choice(src.on_error, ON_ERROR, "source.on_error")
    _validate_tables(cfg.tables)
    for key, g in graph_entries(cfg.graph):
        if not isinstance(g, dict) or "op" not in g:
            raise ConfigError("expected a mapping with an 'op' key, e.g. {op: log1p, cols: [I1]}", key)
    for col, role in cfg.roles.items():
        _choice(role, ROLES, f"roles.{col}")
    _validate_split(cfg.split)
    _validate_output(cfg.output)
    _validate_engine(cfg.engine)
    _validate_gpu_only(cfg.output, cfg.engine)
    if not 1 <= cfg.stats.quantile_bits <= 52:
        raise ConfigError(f"expected 1..52, got {cfg.stats.quantile_bits}", "stats.quantile_bits")
    _validate_profiling(cfg.profiling)
    validate_drift(cfg.drift)


def validate_drift(d: DriftConfig) -> None:
    for name in ("psi", "js", "ks", "null_rate", "oov_rate", "row_count"):
        v = getattr(d, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
            raise ConfigError(f"expected a limit >= 0 (or null: no limit), got {v!r}", f"drift.{name}")
    if not isinstance(d.bins, int) or d.bins < 2:
        raise ConfigError(f"expected 2 or more bins, got {d.bins!r}", "drift.bins")


def graph_entries(graph) -> list[tuple[str, Any]]:
    """The steps of ``graph`` with the config keys that name them: ``graph[i]`` for a list,
    ``graph.NAME`` for a mapping of named steps (in its order)."""
    if graph is None:
        return []
    if isinstance(graph, dict):
        for name in graph:
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ConfigError(f"step names are letters, digits and '_' (not starting with a digit), got {name!r}",
                                  "graph")
        return [(f"graph.{name}", entry) for name, entry in graph.items()]
    if isinstance(graph, (list, tuple)):
        return [(f"graph[{i}]", entry) for i, entry in enumerate(graph)]
    raise ConfigError(f"expected a list of steps or a mapping of named steps, got {graph!r}", "graph")


def _validate_tables(tables: dict) -> None:
    for name, table in tables.items():
        key = f"tables.{name}"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
            raise ConfigError(f"table names are letters, digits and '_', got {name!r}", key)
        if isinstance(table.paths, str):
            table.paths = [table.paths]
        if not table.paths:
            raise ConfigError("no input paths given (a list of files or globs)", f"{key}.paths")
        _choice(table.format, SOURCE_FORMATS, f"{key}.format")
        parse_size(table.max_bytes, f"{key}.max_bytes")


SPLIT_MODES = ("hash", "time", "column")


def split_names(split: SplitConfig) -> list[str]:
    """The splits in order: by the mode's own key (``values`` for column, ``names`` for time) or
    the keys of ``fractions``."""
    if split.by == "column" and split.values:
        return [str(n) for n in split.values]
    if split.by == "time" and split.names:
        return [str(n) for n in split.names]
    return [str(n) for n in split.fractions]


def _validate_split(split: SplitConfig) -> None:
    _choice(split.by, SPLIT_MODES, "split.by")
    where = {"hash": "split.fractions", "time": "split.names" if split.names else "split.fractions",
             "column": "split.values"}[split.by]
    names = split_names(split)
    if not names:
        raise ConfigError("at least one split is needed, e.g. {train: 1.0}", where)
    for name in names:
        if not re.fullmatch(r"[a-z0-9_]+", str(name)):
            raise ConfigError(f"split names are lowercase letters, digits and '_', got {name!r}", where)
    if len(set(names)) != len(names):
        raise ConfigError(f"a split is named twice: {names}", where)
    {"hash": _validate_hash_split, "time": _validate_time_split, "column": _validate_column_split}[split.by](split)
    for key in ("fit_on", "default"):
        if getattr(split, key) is not None and getattr(split, key) not in names:
            _choice(getattr(split, key), names, f"split.{key}")
    if not isinstance(split.seed, int) or not 0 <= split.seed < 2**64:
        raise ConfigError(f"expected an integer in [0, 2**64), got {split.seed!r}", "split.seed")


_MODES_OF = {"values": "column", "default": "time or column"}  # split keys not of time splits alone


def _validate_hash_split(split: SplitConfig) -> None:
    for name, frac in split.fractions.items():
        if not isinstance(frac, (int, float)) or frac < 0:
            raise ConfigError(f"expected a fraction >= 0, got {frac!r}", f"split.fractions.{name}")
    total = sum(split.fractions.values())
    if abs(total - 1.0) > 1e-9:
        shares = ", ".join(f"{k} {v:g}" for k, v in split.fractions.items())
        raise ConfigError(f"fractions must sum to 1, they sum to {total:g} ({shares}; a mapping given on the "
                          "command line is merged into the config's: drop a split with ~split.fractions.NAME)",
                          "split.fractions")
    for key in ("cuts", "names", "values", "default"):
        if getattr(split, key) not in (None, [], {}):
            raise ConfigError(f"split.{key} is for split.by: {_MODES_OF.get(key, 'time')}; "
                              "this split is by: hash", f"split.{key}")


def _validate_time_split(split: SplitConfig) -> None:
    if split.key is None:
        raise ConfigError("a time split needs the timestamp, date or number column it splits by", "split.key")
    if not split.cuts:
        raise ConfigError("expected the boundaries between the splits, e.g. ['2024-03-01', '2024-04-01']",
                          "split.cuts")
    names = split_names(split)
    if len(names) != len(split.cuts) + 1:
        raise ConfigError(f"{len(split.cuts)} cut(s) make {len(split.cuts) + 1} splits, but {len(names)} are named "
                          f"({', '.join(names)}): set split.names", "split.cuts")


def _validate_column_split(split: SplitConfig) -> None:
    if split.key is None:
        raise ConfigError("a column split needs the column whose values name the splits", "split.key")
    if not split.values:
        raise ConfigError("expected {split: [values]}, e.g. {train: [a, b], valid: [c]}", "split.values")
    for name, values in split.values.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"expected a list of values, got {values!r}", f"split.values.{name}")


def _validate_output(out: OutputConfig) -> None:
    if not str(out.dir).strip():
        raise ConfigError("expected a directory path, got an empty one", "output.dir")
    if isinstance(out.format, str):
        out.format = [out.format]
    if not out.format:
        raise ConfigError("expected at least one of parquet, webdataset", "output.format")
    for fmt in out.format:
        _choice(fmt, OUTPUT_FORMATS, "output.format")
    for key in ("shard_rows", "row_group_rows"):
        if getattr(out, key) is not None and not 0 < getattr(out, key) < 2**63:
            raise ConfigError(f"expected a positive row count, got {getattr(out, key)}", f"output.{key}")
    if out.shard_rows is None:
        if out.shard_bytes is None:
            raise ConfigError("set output.shard_rows or output.shard_bytes", "output.shard_rows")
        parse_size(out.shard_bytes, "output.shard_bytes")
    _choice(out.compression, COMPRESSIONS, "output.compression")
    _choice(out.writer, WRITERS, "output.writer")
    if out.compression_level is not None:
        _validate_level(out.compression, out.compression_level)
    _validate_webdataset(out)


def _validate_webdataset(out: OutputConfig) -> None:
    wd = out.webdataset
    if out.webdataset_compression is not None:
        old = "output.webdataset_compression"
        _choice(out.webdataset_compression, WDS_COMPRESSIONS, old)
        if wd.compression not in ("none", out.webdataset_compression):
            raise ConfigError(f"conflicts with output.webdataset.compression={wd.compression!r}; set only that key",
                              old)
        wd.compression = out.webdataset_compression
        log.warning("%s is deprecated; use output.webdataset.compression", old)
    n = wd.rows_per_sample
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_ROWS_PER_SAMPLE:
        raise ConfigError(f"expected an integer in [1, {MAX_ROWS_PER_SAMPLE}], got {n!r}",
                          "output.webdataset.rows_per_sample")
    _choice(wd.compression, WDS_COMPRESSIONS, "output.webdataset.compression")
    if n == 1 and wd.compression == "zstd":  # per-member zstd of one row's 50-byte members gains nothing
        raise ConfigError("zstd compresses the members of batched samples; with rows_per_sample=1 use gzip or none",
                          "output.webdataset.compression")


def _validate_gpu_only(out: OutputConfig, eng: EngineConfig) -> None:
    """Settings that only the GPU engine has, and what cuDF's writer cannot do."""
    if out.writer == "cudf":
        if eng.kind == "cpu":
            raise ConfigError("cudf writes Parquet from GPU memory and needs the GPU engine (engine=gpu, or "
                              "engine=auto on a machine with a GPU); use auto or arrow", "output.writer")
        if out.compression not in CUDF_COMPRESSIONS:
            raise ConfigError(f"cuDF's Parquet writer has no {out.compression}: use one of "
                              f"{', '.join(CUDF_COMPRESSIONS)}, or output.writer=arrow", "output.compression")
        if out.compression_level is not None:
            raise ConfigError("cuDF's Parquet writer takes no compression level: drop it, or use "
                              "output.writer=arrow", "output.compression_level")
    if eng.float_mode == "fast" and eng.kind == "cpu":
        raise ConfigError("fast is float32 arithmetic in the GPU engine's kernels; the CPU engine computes "
                          "exactly: use exact, or engine=gpu", "engine.float_mode")


def _validate_level(codec: str, level: int) -> None:
    """A compression level the codec has (Arrow's own range for it)."""
    if codec == "none" or not pa.Codec.supports_compression_level(codec):
        raise ConfigError(f"output.compression {codec} takes no level: drop it", "output.compression_level")
    lo, hi = pa.Codec.minimum_compression_level(codec), pa.Codec.maximum_compression_level(codec)
    if not lo <= level <= hi:
        raise ConfigError(f"expected {lo} .. {hi} for {codec}, got {level}", "output.compression_level")


def _validate_engine(eng: EngineConfig) -> None:
    _choice(eng.kind, ENGINE_KINDS, "engine.kind")
    _choice(eng.float_mode, FLOAT_MODES, "engine.float_mode")
    _choice(eng.cluster, CLUSTERS, "engine.cluster")
    _choice(eng.reads, READS, "engine.reads")
    for key in ("n_workers", "threads_per_worker", "gpu_threads_per_worker"):
        if getattr(eng, key) is not None and not 0 < getattr(eng, key) <= MAX_COUNT:
            raise ConfigError(f"expected a count in 1 .. {MAX_COUNT}, got {getattr(eng, key)}", f"engine.{key}")
    parse_partition_bytes(eng.partition_bytes, eng.kind)
    _choice(eng.cpu_kernels, CPU_KERNELS, "engine.cpu_kernels")
    if eng.cpu_kernels == "numba" and importlib.util.find_spec("numba") is None:
        raise ConfigError("numba is not installed (pip install numba), or choose auto or numpy", "engine.cpu_kernels")
    for key in ("rmm_pool_size", "device_memory_limit"):
        if getattr(eng, key) is not None:
            parse_device_size(getattr(eng, key), f"engine.{key}")
    if eng.memory_limit != "auto":
        parse_size(eng.memory_limit, "engine.memory_limit")
    if not re.fullmatch(r"[A-Za-z0-9_.:\-]+", str(eng.host)):
        raise ConfigError(f"expected an address like 127.0.0.1, 0.0.0.0 or a host name, got {eng.host!r}",
                          "engine.host")
    if eng.scheduler is not None and not re.match(r"^(tcp|tls|ucx|inproc)://", str(eng.scheduler)):
        raise ConfigError(f"expected an address like tcp://host:8786, got {eng.scheduler!r}", "engine.scheduler")


def _validate_profiling(p: ProfilingConfig) -> None:
    price = p.cost_per_hour
    if price is not None and (isinstance(price, bool) or not isinstance(price, (int, float)) or price < 0):
        raise ConfigError(f"expected a price >= 0 per hour, got {p.cost_per_hour!r}", "profiling.cost_per_hour")
    if not isinstance(p.gpus_per_node, int) or p.gpus_per_node < 0:
        raise ConfigError(f"expected a GPU count >= 0, got {p.gpus_per_node!r}", "profiling.gpus_per_node")
    if p.project_to_bytes is not None:
        parse_size(p.project_to_bytes, "profiling.project_to_bytes")
    if not isinstance(p.sample_interval, (int, float)) or not 0.01 <= p.sample_interval <= 60:
        raise ConfigError(f"expected seconds in [0.01, 60], got {p.sample_interval!r}", "profiling.sample_interval")
    _choice(p.progress, ("auto", "bar", "log", "off"), "profiling.progress")


def to_dict(cfg: ShardsmithConfig) -> dict:
    return dataclasses.asdict(cfg)


def compose(overrides: list[str] | None = None, config_name: str = "config",
            extra_dir: str | None = None) -> ShardsmithConfig:
    """Compose the shipped Hydra tree (and ``extra_dir``, as ``--config-dir`` adds it) with
    command-line style overrides, without a run directory."""
    register_configs()
    return from_omegaconf(compose_omegaconf(str(config_dir()), list(overrides or []), config_name, extra_dir))
