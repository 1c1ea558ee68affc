"""The config keys as ``compile --help`` and ``plan --help`` show them: the config groups and their
options, then every key with a one-line description and its value as composed (defaults, or with
the overrides given on the command line)."""

from __future__ import annotations

import dataclasses
import os

from shardsmith.compiler.composition import config_dir_arg
from shardsmith.compiler.config import ShardsmithConfig, compose, config_dir

GROUPS = {
    "pipeline": "the graph, its input and its splits (configs/pipeline/NAME.yaml)",
    "engine": "where it runs: cpu (a local Dask cluster), inprocess (no cluster), gpu, auto",
    "drift": "thresholds of 'shardsmith drift'",
}
# One line per key; tests/test_cli_ux.py checks that every key of the config model has one.
KEYS = {
    "name": "dataset name: letters, digits, '_', '-', '.'",
    "source.paths": "input files, globs or directories (a single value is a list of one)",
    "source.format": "parquet, csv or jsonl",
    "source.schema": "dtype overrides for text formats: {column: dtype}",
    "source.on_error": "a row that does not parse (or invalid UTF-8): fail, or quarantine it",
    "source.storage_options": "fsspec options for s3:// or gs:// input paths (endpoint_url, anon, ...)",
    "tables": "side tables for join: {NAME: {paths: [...], format, schema, max_bytes}}",
    "graph": "the ops, in order: [{op: NAME, cols: [...], ...}], or named steps {NAME: {op: ...}} (README: Ops)",
    "roles": "roles of output columns, derived or joined too: {column: label|weight|continuous|categorical|...}",
    "plugins": "modules to import that register user ops",
    "split.by": "hash (by the hash of key), time (key against cuts) or column (key's values name the split)",
    "split.key": "column whose hash (or time, or value) decides the split; null (hash): the row's position in its file",
    "split.cuts": "time splits: the boundaries between the splits, in order, e.g. ['2024-03-01', '2024-04-01']",
    "split.names": "time splits: the splits' names (default: the keys of split.fractions)",
    "split.values": "column splits: {split: [values]}",
    "split.default": "time and column splits: the split of rows with a null key or a value no split lists",
    "split.seed": "seed of the split hash",
    "split.fractions": "the splits and their fractions, in order, summing to 1 (a config's set is the whole "
                       "set; on the command line delete one with ~split.fractions.NAME)",
    "split.fit_on": "fitted statistics use only this split (null: every row)",
    "output.dir": "the dataset directory",
    "output.storage_options": "fsspec options for an s3:// or gs:// output.dir",
    "output.format": "[parquet], [webdataset] or both (a single value is a list of one)",
    "output.shard_rows": "rows per shard (null: cut by shard_bytes)",
    "output.shard_bytes": "bytes per shard when shard_rows is null",
    "output.row_group_rows": "rows per Parquet row group",
    "output.compression": "zstd, snappy, lz4, gzip or none",
    "output.writer": "who writes Parquet: auto (the engine's fastest), arrow (byte-identical with CPU), cudf (GPU)",
    "output.compression_level": "the codec's level (null: its default)",
    "output.webdataset.rows_per_sample": "rows per WebDataset tar sample (1: one sample per row)",
    "output.webdataset.compression": "none (part-NNNNN.tar), gzip (.tar.gz) or zstd (each member of a sample)",
    "output.webdataset_compression": "deprecated: output.webdataset.compression",
    "output.overwrite": "replace an existing dataset of another config in output.dir",
    "engine.kind": "cpu, gpu or auto (the GPU when it can run here, else the CPU; plan says which and why)",
    "engine.cluster": "local (a Dask cluster on this machine) or inprocess (no cluster)",
    "engine.scheduler": "address of an existing Dask scheduler (tcp://host:8786); null: start one",
    "engine.n_workers": "workers of a local cluster (null: 1 of threads, or a process per core; a worker per GPU)",
    "engine.threads_per_worker": "threads per worker (null: every core, or 1 with processes)",
    "engine.processes": "single-threaded worker processes instead of one worker of threads",
    "engine.memory_limit": "memory per worker (auto: Dask's share of the machine)",
    "engine.cpu_kernels": "CPU engine's elementwise kernels: numba (compiled), numpy, or auto (numba for large inputs)",
    "engine.reads": "once (the fit keeps the decoded input for the transform), per_pass, or auto (once if it fits)",
    "engine.partition_bytes": "decoded bytes per partition (auto: 128MB on CPU, less so that every task "
                              "thread has a partition, not below 16MB; 1/32 of a GPU)",
    "engine.rmm_pool_size": "GPU: an RMM pool per worker, a size or a fraction of the GPU (null: none)",
    "engine.device_memory_limit": "GPU: spill to host above this (null: 80% of the GPU; 0: never)",
    "engine.spill_cudf": "GPU: cuDF's own buffer spilling too",
    "engine.gpu_threads_per_worker": "GPU: host threads per GPU worker",
    "engine.dashboard": "start the Dask dashboard of a local cluster and log its address (needs bokeh)",
    "engine.float_mode": "exact (float64 per op, bit-identical with CPU) or fast (float32 GPU kernels; GPU only)",
    "engine.host": "interface a local cluster and its dashboard listen on (127.0.0.1: this machine only)",
    "stats.quantile_bits": "mantissa bits the quantile histograms keep (1..52)",
    "profiling.enabled": "write profile.json next to the manifest",
    "profiling.cost_per_hour": "price of the machine per hour, for the profile's cost (null: no cost)",
    "profiling.currency": "the price's currency",
    "profiling.gpus_per_node": "GPU engine: GPUs of the priced node (a run pays for the ones it uses)",
    "profiling.project_to_bytes": "input size the profile projects time and cost to (null: 1TB)",
    "profiling.sample_interval": "seconds between memory and CPU samples of each worker",
    "profiling.progress": "auto, bar, log or off",
    "expect": "expectations checked while compiling: [{col, check, severity, at, ...}] (docs/quality.md)",
    "fit": "fit.from: PATH/manifest.json whose fitted state to reuse (no fit pass); fit.cache: auto, off or a "
           "directory (docs/reuse.md)",
    "drift.psi": "drift: population stability index limit (null: none)",
    "drift.js": "drift: Jensen-Shannon distance limit (null: none)",
    "drift.ks": "drift: Kolmogorov-Smirnov distance limit for continuous columns (null: none)",
    "drift.null_rate": "drift: limit of the change of the share of missing values",
    "drift.oov_rate": "drift: limit of the change in the share of values outside BASE's vocabulary "
                      "(NEW's minus BASE's own)",
    "drift.row_count": "drift: limit of the relative change of the row count (null: none)",
    "drift.bins": "drift: bins at BASE's quantiles for continuous columns",
    "drift.split": "drift: compare one split (null: all rows)",
}


def config_help(overrides: list[str], config_name: str = "config", extra_dir: str | None = None) -> str:
    """The groups and keys, each with its value composed from ``overrides``."""
    cfg = dataclasses.asdict(compose(overrides, config_name, extra_dir))
    lines = ["config groups (GROUP=OPTION):"]
    for group, what in GROUPS.items():
        lines.append(f"  {group:<30} {what}")
        lines.append(f"  {'':<30} options: {', '.join(group_options(group, extra_dir))}")
    lines += ["", "keys (value as composed now):"]
    for key in config_keys():
        value = _value(cfg, key)
        lines.append(f"  {key:<30} {KEYS.get(key, '')}")
        lines.append(f"  {'':<30} = {_short(value)}")
    return "\n".join(lines)


def config_keys(node=None, prefix: str = "") -> list[str]:
    """Every key of the config model, sections expanded (``engine.n_workers``, ``output.webdataset.compression``)."""
    keys = []
    node = ShardsmithConfig() if node is None else node
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        keys += config_keys(value, f"{prefix}{f.name}.") if dataclasses.is_dataclass(value) else [prefix + f.name]
    return keys


def group_options(group: str, extra_dir: str | None = None) -> list[str]:
    """The YAML files of a config group, in the package and in ``extra_dir``."""
    dirs = [os.path.join(config_dir(), group)]
    if extra_dir is not None:
        dirs.append(os.path.join(config_dir_arg(extra_dir), group))
    names = {f[:-5] for d in dirs if os.path.isdir(d) for f in os.listdir(d) if f.endswith(".yaml")}
    return sorted(names)


def _value(cfg: dict, key: str):
    for part in key.split("."):
        cfg = cfg.get(part) if isinstance(cfg, dict) else None
    return cfg


def _short(value) -> str:
    text = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return text if len(text) <= 100 else text[:97] + "..."
