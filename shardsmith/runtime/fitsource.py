"""Where a compile's fitted state comes from: fitted here, another dataset's (``fit.from``), or the
fit cache. Decided at plan time, so that ``shardsmith plan`` says it and a reused fit runs no fit
pass at all.

``fit.from=PATH/manifest.json`` applies a finished dataset's fitted state (vocabularies, means,
quantiles) to new input: the path for scoring data and for next week's data with the same
features. Every fitted step of the new graph must match one of the parent's, column by column, by
its fit signature (compiler/lineage.py: the op, its parameters, and the steps and source dtypes
its input columns come from); a step that matches none fails here, naming the step.

The fit cache keeps fitted state under a key of everything the fit depends on: the fit passes'
programs (the fitted steps and the steps feeding them, with their parameters), the columns they
read, the inputs and side tables (paths, sizes, fingerprints), the pushed-down filter, the split (which rows are
fit rows), input quarantine checks, and the code (ours and the plugins'). A compile that changes
only what the fit does not see (shard sizes, partitioning, the engine, a later elementwise step)
finds its state there and skips the fit passes. Entries are state directories (JSON + Parquet,
never pickle) written under a temporary name and renamed into place: a reader sees a whole entry
or none, and two compiles storing the same entry at once leave one of them.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass

import pyarrow as pa

from shardsmith import storage
from shardsmith.compiler.lineage import fit_signatures
from shardsmith.compiler.planner import Collect, Plan
from shardsmith.errors import ConfigError, InputError, PlanError
from shardsmith.ir import Fused, Step
from shardsmith.runtime.identity import code_sha256, plugin_sha256
from shardsmith.shards import manifest as mf
from shardsmith.shards.state import STATE_FILE, load_states, save_states

FIT_KEYS = ("from", "cache")
CACHE_DIR = ".shardsmith-fit-cache"
ENTRY_FILE = "entry.json"


@dataclass(frozen=True)
class FitSource:
    """``kind``: fit (fitted by this compile), parent (``fit.from``), cache (a cache entry) or none
    (nothing to fit). ``path``: the parent's manifest or the cache entry; ``entry``: where a fit is
    cached (None: cache off); ``mapping``: the new graph's step key -> the parent's."""

    kind: str
    key: str | None = None
    path: str | None = None
    entry: str | None = None
    parent: dict | None = None
    mapping: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        """The ``fit:`` line of ``shardsmith plan`` and of the compile's log."""
        if self.kind == "parent":
            return f"fit: from the parent dataset {self.path} (no fit pass)"
        if self.kind == "cache":
            return f"fit: cached from {self.path} (no fit pass)"
        if self.kind == "none":
            return "fit: nothing to fit"
        return f"fit: fitted here; cached in {self.entry}" if self.entry else "fit: fitted here (fit cache off)"


def fit_settings(cfg) -> tuple[str | None, str]:
    """``fit.from`` and ``fit.cache`` of a config, checked; errors name the key."""
    fit = dict(cfg.fit or {})
    for k in fit:
        if k not in FIT_KEYS:
            raise ConfigError(f"unknown key (expected: {', '.join(FIT_KEYS)})", f"fit.{k}")
    parent, cache = fit.get("from"), fit.get("cache", "auto")
    if parent is not None and not isinstance(parent, str):
        raise ConfigError(f"expected the path of a dataset's manifest.json, got {parent!r}", "fit.from")
    if cache is None or not isinstance(cache, str) or not cache:
        raise ConfigError(f"expected auto, off or a directory, got {cache!r}", "fit.cache")
    return parent, cache


def resolve(cfg, plan: Plan) -> tuple[Plan, FitSource]:
    """Where the plan's fitted state comes from; the plan without fit passes when it is reused."""
    parent, cache = fit_settings(cfg)
    if not plan.fit_programs and parent is None:
        return plan, FitSource("none")
    if parent is not None:
        source = from_parent(parent, plan)
    else:
        key = fit_key(plan, cfg.plugins)
        root = cache_root(cache, plan.graph.sink.dir)
        entry = os.path.join(root, key[:32]) if root else None
        if entry and os.path.isfile(os.path.join(entry, STATE_FILE)):
            source = FitSource("cache", key, path=entry, entry=entry)
        else:
            return plan, FitSource("fit", key, entry=entry)
    return plan.without_fit(), source


# --- fit.from ---------------------------------------------------------------------------------------
def from_parent(path: str, plan: Plan) -> FitSource:
    parent = mf.read_manifest(path)
    sigs = (parent.get("fit") or {}).get("steps")
    if sigs is None:
        raise InputError("this dataset records no fit signatures (compiled by an older shardsmith): recompile it",
                         "fit.from")
    mapping = []
    for key, mine in fit_signatures(plan.graph).items():
        mapping.append((key, _match(key, mine, sigs, parent["_dir"])))
    info = {"path": os.path.join(parent["_dir"], mf.MANIFEST), "dataset_key": parent["dataset_key"],
            "name": parent["name"]}
    return FitSource("parent", key=parent["dataset_key"], path=info["path"], parent=info, mapping=tuple(mapping))


def _match(key: str, mine: dict, theirs: dict, where: str) -> str:
    """The parent's step whose state this step can use (the same key first); else a PlanError
    naming the step and what differs."""
    def fits(k):
        return all(theirs[k]["columns"].get(c) == h for c, h in mine["columns"].items())

    for k in [key] + sorted(k for k in theirs if k != key):
        if k in theirs and fits(k):
            return k
    op = mine["op"].split("(")[0]
    same = [k for k in sorted(theirs) if theirs[k]["op"].split("(")[0] == op]
    ref = key if key in theirs else (same[0] if same else None)
    if ref is None:
        why = f"the parent fits no {op} step"
    else:
        column = next(c for c, h in mine["columns"].items() if theirs[ref]["columns"].get(c) != h)
        what = "does not fit column" if column not in theirs[ref]["columns"] else "fits column"
        why = f"its {ref} {theirs[ref]['op']} {what} '{column}'" + (
            "" if what == "does not fit column" else " with other parameters, or after other steps or input dtypes")
    raise PlanError(f"fit.from: no fitted step of the parent dataset ({where}) matches this step, {mine['op']}: "
                    f"{why}", key)


def parent_states(source: FitSource) -> dict:
    directory = os.path.join(os.path.dirname(source.path), "state")
    states = load_states(directory)
    if states is None:
        raise InputError("the parent dataset's fitted state is missing", directory)
    return {new: states[old] for new, old in source.mapping}


# --- the fit cache ----------------------------------------------------------------------------------
def cache_root(setting: str, output_dir: str) -> str | None:
    """The cache directory: ``auto`` is beside the output directory (for an object-store output,
    in this machine's cache: the fit cache is local files); ``off`` is none."""
    if setting == "off":
        return None
    if setting == "auto" and storage.is_url(output_dir):
        return storage.local_cache("fit")
    if setting == "auto":
        local = os.path.abspath(os.path.normpath(storage.local(output_dir)))
        return os.path.join(os.path.dirname(local), CACHE_DIR)
    return os.path.abspath(setting)


def _item(item) -> dict:
    if isinstance(item, Collect):
        return {"collect": _item(item.step), "stats": [repr(s) for s in item.stats]}
    if isinstance(item, Fused):
        return {"fused": [_item(s) for s in item.steps]}
    if isinstance(item, Step):
        return {"step": item.key, "op": item.op.op_name, "params": item.op.parameters(),
                "schema": item.schema.to_json()}
    raise TypeError(type(item).__name__)


def fit_key(plan: Plan, plugins: list[str]) -> str:
    """The cache key of a plan's fit (see the module docstring for what it holds)."""
    g = plan.graph
    src = g.source
    doc = {
        "programs": [[_item(i) for i in program] for program in plan.fit_programs],
        "columns": [list(c) for c in plan.fit_columns],
        "source": {"format": src.format, "filter": str(src.filter) if src.filter is not None else None,
                   "files": [[os.path.abspath(f.path), f.bytes, f.fingerprint] for f in src.files],
                   "row_groups": src.row_groups, "dtypes": src.dtypes},
        # Side tables are inputs too: a fitted step after a join fits the joined values.
        "tables": {t.name: [[os.path.abspath(f.path), f.bytes, f.fingerprint] for f in t.files] for t in g.tables},
        "split": {"key": g.split.key, "seed": g.split.seed, "names": g.split.names,
                  "thresholds": g.split.thresholds, "fit_on": g.split.fit_on},
        "quarantine": [str(e.failing()) for e in g.checks_at("input") if e.severity == "quarantine"],
        "quantile_bits": g.quantile_bits,
        "code": {"shardsmith": code_sha256(), "plugins": plugin_sha256(plugins)},
    }
    return mf.sha256_json(doc)


def cached_states(source: FitSource) -> dict:
    """A cache entry's states; an entry that cannot be read is an error naming it (we never
    delete what another compile may be reading)."""
    try:
        states = load_states(source.path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        states, why = None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    else:
        why = "state.json is missing"
    if states is None:
        raise InputError(f"cannot read this fit cache entry ({why}): remove it, or compile with fit.cache=off",
                         source.path)
    return states


def store(source: FitSource, states: dict, log=print, saved_in: str | None = None) -> None:
    """Write ``states`` as the cache entry of ``source`` (atomically; a concurrent compile's entry
    of the same key wins the race and ours is dropped). ``saved_in``: a state directory that
    ``save_states`` wrote from these states (the compile's own), whose files are copied."""
    if source.entry is None or source.kind != "fit":
        return
    root = os.path.dirname(source.entry)
    tmp = os.path.join(root, f".tmp-{os.path.basename(source.entry)}-{uuid.uuid4().hex[:8]}")
    try:
        os.makedirs(root, exist_ok=True)
        save_states(tmp, states, {k: saved_in for k in states} if saved_in else None)
        with open(os.path.join(tmp, ENTRY_FILE), "w") as f:
            json.dump({"key": source.key, "steps": sorted(states)}, f, indent=1)
        os.rename(tmp, source.entry)
        log(f"fit: cached in {source.entry}")
    except OSError as exc:  # the entry exists (another compile stored it) or the cache is not writable
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.isfile(os.path.join(source.entry, STATE_FILE)):
            log(f"fit: not cached ({exc.strerror or exc})")
