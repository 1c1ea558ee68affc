"""Build the graph IR from a validated config: scan the inputs, then type every step.

Every error here names a config key or a file, and happens before any data is read.
"""

from __future__ import annotations

import importlib
import math

from shardsmith.compiler.config import ShardsmithConfig, graph_entries, parse_size, split_names
from shardsmith.errors import ConfigError, did_you_mean
from shardsmith.inputs import scan as sources
from shardsmith.inputs.tables import scan_table
from shardsmith.ir import Graph, Schema, Sink, Source, Split, Step
from shardsmith.ir.expr_types import column_kind, time_literal
from shardsmith.ops import get_op
from shardsmith.ops.expectations import parse_expectations

UNIT = 1 << 53


def build(cfg: ShardsmithConfig) -> Graph:
    load_plugins(cfg.plugins)
    files, arrow_schema = sources.scan(cfg.source.paths, cfg.source.format, cfg.source.schema,
                                       cfg.source.storage_options, cfg.source.on_error)
    plain = sources.to_schema(arrow_schema, {})
    # A role of an input column applies from the start (ops that keep roles carry it along).
    schema = sources.to_schema(arrow_schema, {c: r for c, r in cfg.roles.items() if c in plain})
    for col in cfg.source.schema:
        schema.require(col, f"source.schema.{col}")
    return build_on(cfg, schema, files)


def build_on(cfg: ShardsmithConfig, schema: Schema, files: tuple = ()) -> Graph:
    """The graph of ``cfg`` over input columns ``schema`` (roles applied) and input ``files``:
    :func:`build` after its scan, and how a dataset's graph is rebuilt from its manifest to serve
    it (shardsmith/serve.py: no files)."""
    load_plugins(cfg.plugins)
    source = Source(cfg.source.format, files, schema, schema.names,
                    dtypes=tuple(sorted(cfg.source.schema.items())), on_error=cfg.source.on_error,
                    storage_options=dict(cfg.source.storage_options))
    tables = {name: scan_table(name, t.paths, t.format, t.schema, parse_size(t.max_bytes, f"tables.{name}.max_bytes"))
              for name, t in cfg.tables.items()}
    steps = build_steps(cfg.graph, schema, tables)
    split = build_split(cfg, schema)
    out_schema = steps[-1].schema if steps else schema
    checks = parse_expectations(cfg.expect, schema, out_schema, split.names)
    return Graph(cfg.name, source, steps, split, build_sink(cfg), quantile_bits=cfg.stats.quantile_bits,
                 expectations=checks, roles=output_roles(cfg.roles, schema, steps), tables=tuple(tables.values()))


def output_roles(roles: dict[str, str], inputs: Schema, steps) -> tuple[tuple[str, str], ...]:
    """The roles that name output columns (derived and joined ones included), applied last; a name
    must be an output column or an input column (whose role ops carry along, e.g. through a rename)."""
    out = steps[-1].schema if steps else inputs
    for col in roles:
        if col not in out and col not in inputs:
            raise ConfigError(f"column '{col}' is not an output column{did_you_mean(col, out.names)}",
                              f"roles.{col}")
    return tuple((c, r) for c, r in roles.items() if c in out)


def build_steps(graph, schema: Schema, tables: dict | None = None) -> tuple[Step, ...]:
    """Type every step in order (``graph``: a list, or a mapping of named steps); ``tables`` are the
    scanned side tables (for ops that join them). Errors name a step by its key (``graph[3]``,
    ``graph.cats``)."""
    steps = []
    for key, entry in graph_entries(graph):
        if not isinstance(entry, dict) or "op" not in entry:
            raise ConfigError("expected a mapping with an 'op' key", key)
        cls = get_op(str(entry["op"]), f"{key}.op")
        if getattr(cls, "uses_tables", False):
            op = cls.from_config(entry, schema, key, tables=tables or {})
        else:
            op = cls.from_config(entry, schema, key)
        schema = op.infer(schema)
        steps.append(Step(op, key, schema))
    return tuple(steps)


def build_split(cfg: ShardsmithConfig, schema: Schema) -> Split:
    split = cfg.split
    if split.key is not None:
        schema.require(split.key, "split.key")
    names = split_names(split)
    default = names.index(split.default) if split.default is not None else None
    if split.by == "time":
        return Split(tuple(names), (), split.key, int(split.seed), split.fit_on, "time",
                     time_cuts(split.cuts, schema[split.key].dtype), default=default)
    if split.by == "column":
        values = column_values(split.values, schema[split.key].dtype)
        return Split(tuple(names), (), split.key, int(split.seed), split.fit_on, "column", values=values,
                     default=default)
    thresholds, acc = [], 0.0
    for frac in split.fractions.values():
        acc += frac
        thresholds.append(min(UNIT, int(round(acc * UNIT))))
    thresholds[-1] = UNIT
    return Split(tuple(names), tuple(thresholds), split.key, int(split.seed), split.fit_on)


def time_cuts(cuts: list, dtype: str) -> tuple:
    """The cuts in the key's computing form, checked: of the key's kind, strictly increasing."""
    kind = column_kind(dtype)
    if kind not in ("int", "float", "date", "timestamp"):
        raise ConfigError(f"a time split needs a timestamp, date or number column; this one is {dtype}", "split.key")
    out = []
    for i, cut in enumerate(cuts):
        key = f"split.cuts[{i}]"
        if kind in ("date", "timestamp"):
            try:
                value = time_literal(str(cut), kind)
            except ValueError:
                form = "'2024-03-01'" if kind == "date" else "'2024-03-01T12:30:00'"
                raise ConfigError(f"expected a {kind} in ISO form like {form}, got {cut!r}", key) from None
        elif isinstance(cut, bool) or not isinstance(cut, (int, float)) or not math.isfinite(cut):
            raise ConfigError(f"expected a number (the key is {dtype}), got {cut!r}", key)
        else:  # an int key is past a cut c from ceil(c) on
            value = math.ceil(cut) if kind == "int" else float(cut)
        if out and value <= out[-1]:
            raise ConfigError(f"cuts must increase: {cut!r} does not come after {cuts[i - 1]!r}", key)
        out.append(value)
    return tuple(out)


def column_values(values: dict, dtype: str) -> tuple[tuple, ...]:
    """Each split's listed values, checked against the key's kind; a value may name one split."""
    kind = column_kind(dtype)
    if kind is None or kind == "float":
        raise ConfigError(f"a column split needs a string, integer, bool, date or timestamp key; this one is {dtype}",
                          "split.key")
    seen: dict = {}
    out = []
    for name, items in values.items():
        for j, v in enumerate(items):
            where = f"split.values.{name}[{j}]"
            ok = {"string": isinstance(v, str), "int": isinstance(v, int) and not isinstance(v, bool),
                  "bool": isinstance(v, bool)}.get(kind, isinstance(v, str))
            if not ok:
                raise ConfigError(f"expected a {kind} value (the key is {dtype}), got {v!r}", where)
            if kind in ("date", "timestamp"):
                try:
                    time_literal(v, kind)
                except ValueError:
                    raise ConfigError(f"expected a {kind} in ISO form, got {v!r}", where) from None
            canon = time_literal(v, kind) if kind in ("date", "timestamp") else v
            if canon in seen:
                raise ConfigError(f"{v!r} is listed for split '{seen[canon]}' too", where)
            seen[canon] = name
        out.append(tuple(items))
    return tuple(out)


def build_sink(cfg: ShardsmithConfig) -> Sink:
    out = cfg.output
    shard_bytes = parse_size(out.shard_bytes, "output.shard_bytes") if out.shard_rows is None else None
    return Sink(str(out.dir), tuple(out.format), out.shard_rows, shard_bytes, out.row_group_rows,
                out.compression, out.compression_level, bool(out.overwrite), out.webdataset.compression,
                out.webdataset.rows_per_sample, out.writer, storage_options=dict(out.storage_options))


def load_plugins(modules: list[str]) -> None:
    """Import modules that register user ops: the explicit opt-in for ops outside the registry."""
    for i, name in enumerate(modules):
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"expected a module name like 'my_package.my_ops', got {name!r}", f"plugins[{i}]")
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"cannot import plugin module '{name}': {exc}", f"plugins[{i}]") from None
        except Exception as exc:  # the user's module failed while it ran: say where, without our traceback
            raise ConfigError(f"plugin module '{name}' raised {type(exc).__name__} on import: {_where(exc)}{exc}",
                              f"plugins[{i}]") from None


def _where(exc: BaseException) -> str:
    """``file.py:12: `` of the innermost frame of a plugin's exception."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}: " if tb is not None else ""
