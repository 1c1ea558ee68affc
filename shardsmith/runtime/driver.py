"""The driver of a compile: prepare (build, optimise, plan, check), then fit, transform and write
on whatever executor the engine config names, and commit by writing the manifest last.

Output layout while running (``<dir>.partial-<key>``, beside the final directory) and after the
commit (``<dir>``)::

    manifest.json                 the commit point, written last
    state/                        fitted state: state.json + Parquet vocabularies
    <split>/part-00000.parquet    shards, in input order, output.shard_rows (or _bytes) each
    quarantine/part-00000.parquet rows a step refused (cast on_error: quarantine), with the reason
    journal.jsonl                 progress of an unfinished compile (removed at the commit)
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field

from shardsmith.backends import engine_choice, gpu_unavailable_reason, lowerings_for
from shardsmith.compiler.build import build
from shardsmith.compiler.config import ShardsmithConfig, to_dict
from shardsmith.compiler.lineage import fit_signatures
from shardsmith.compiler.passes import optimize
from shardsmith.compiler.planner import Plan
from shardsmith.errors import PlanError, ShardsmithError
from shardsmith.inputs.read import end_read_ahead, start_read_ahead
from shardsmith.ir import Fused, Graph
from shardsmith.profiling.profile import Profiler
from shardsmith.runtime import fitsource, quality, stages
from shardsmith.runtime.assemble import build_manifest
from shardsmith.runtime.cluster import executor_for, start_early, warm_up
from shardsmith.runtime.context import RunContext
from shardsmith.runtime.fitsource import FitSource
from shardsmith.runtime.fitting import fit
from shardsmith.runtime.identity import dataset_key, redact
from shardsmith.runtime.lineage import manifest_lineage
from shardsmith.runtime.planning import check_lowerings, plan_on_this_machine
from shardsmith.runtime.remote import output_for
from shardsmith.runtime.staging import Output
from shardsmith.runtime.threads import release_freed_memory
from shardsmith.runtime.warmup import Ahead
from shardsmith.runtime.writing import ShardWriter
from shardsmith.shards.state import load_state_doc
from shardsmith.storage import is_url


@dataclass
class Result:
    manifest: dict
    path: str
    up_to_date: bool = False
    timings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Prepared:
    """A config made ready to run: its optimised graph, its plan on the chosen engine, the key."""

    graph: Graph
    plan: Plan
    backend: str  # the engine that runs it: cpu or gpu (``auto`` resolved)
    resolved: dict
    key: str
    fit: FitSource = FitSource("fit")  # where the fitted state comes from (runtime/fitsource.py)


def prepare(cfg: ShardsmithConfig, passes=None, require_engine: bool = True) -> Prepared:
    """Build, optimise and plan ``cfg``; every op must run on the engine (checked here, naming the
    op). ``passes`` replaces the optimiser's pass list; ``require_engine``: fail now when the GPU
    engine cannot run on this machine (``shardsmith plan`` explains a GPU compile anywhere)."""
    graph = optimize(build(cfg)) if passes is None else optimize(build(cfg), passes=passes)
    backend, _ = engine_choice(cfg.engine.kind)
    if backend == "gpu" and require_engine and (reason := gpu_unavailable_reason()):
        raise PlanError(f"the GPU engine cannot run here: {reason}", "engine.kind")
    plan = plan_on_this_machine(graph, cfg.engine, backend)
    check_lowerings(plan, lowerings_for(backend))
    plan, fit = fitsource.resolve(cfg, plan)
    resolved = redact(to_dict(cfg))
    inputs = [(f.path, f.bytes, f.fingerprint) for f in graph.source.files]
    inputs += [(t.key, f.path, f.bytes, f.fingerprint) for t in graph.tables for f in t.files]
    parent = fit.parent["dataset_key"] if fit.parent else None
    key = dataset_key(resolved, inputs, cfg.plugins, parent, plan.writer, plan.float_mode)
    return Prepared(graph, plan, backend, resolved, key, fit)


def read_ahead(prep: Prepared) -> bool:
    """Start reading the partitions that the compile of ``prep`` reads first, on a thread, while
    the process is still starting (inputs/readahead.py): for local Parquet input on the CPU engine
    in this process (a cluster's workers read for themselves). It stops when the first task
    starts; until then it reads, in order, any partition when the plan reads once (each is kept
    anyway), else no more than the tasks read at a time (memory stays bounded by the partitions in
    flight). False when it does not apply. :func:`compile_dataset` takes the reads and ends it."""
    plan, source = prep.plan, prep.plan.graph.source
    local = source.format == "parquet" and not source.storage_options and not any(is_url(f) for f in plan.files)
    if prep.backend != "cpu" or plan.executor.value != "inprocess" or not local or not plan.partitions:
        return False
    columns = plan.fit_columns[0] if plan.fit_programs and not plan.read_once else source.columns
    parts = plan.partitions if plan.read_once else plan.partitions[:plan.threads]
    start_read_ahead([(p.path, p.row_groups, p.row_starts, list(columns), source.on_error) for p in parts])
    return True


def warm_kernels(prep: Prepared) -> int:
    """Start building the compiled CPU kernels of the plan's fused groups (those whose parameters
    need no fitted state) on the kernel builder's thread, without waiting, when the compile runs in
    this process (a cluster's workers build their own): otherwise the first pass asks for them at
    its first partition and runs NumPy until they are ready. How many builds were asked for."""
    plan = prep.plan
    if prep.backend != "cpu" or plan.executor.value != "inprocess" or plan.cpu_kernels == "numpy":
        return 0
    from shardsmith.backends.cpu import compiled  # lazy: the GPU engine's compiles never need it

    prefix, fits, transform = plan.programs()
    items = [item for program in (prefix, *fits, transform) for item in program if isinstance(item, Fused)]
    return sum(compiled.warm_fused(item, group) for item in items for group in item.groups)


def compile_dataset(cfg: ShardsmithConfig, log=print, passes=None) -> Result:
    """Compile ``cfg``; the manifest of the dataset written (or found up to date)."""
    t_start = time.perf_counter()
    prof = Profiler(cfg, log)
    early = start_early(cfg.engine, cfg.output.dir, log)  # a cluster the config names starts while planning
    try:
        with prof.stage("plan", section=True):
            prep = prepare(cfg, passes)
        warm_kernels(prep)  # a no-op when the command line's start-up asked for them already
        log(f"engine: {prep.backend} ({engine_choice(cfg.engine.kind)[1]})")
        for line in prep.plan.warnings:
            log(f"warning: {line}")
        prof.set_backend(prep.backend)
        out = output_for(prep.graph, prep.key, log)
        with out.locked():
            existing = out.existing_manifest()
            if existing is not None:
                log(f"{out.final}: up to date (same config, inputs and code); set output.overwrite=true to rebuild")
                return Result(existing, out.manifest_path(), up_to_date=True)
            manifest, timings = _run_and_commit(cfg, prep, out, prof, log, t_start, early)
    finally:
        end_read_ahead()  # nothing of a read-ahead outlives its compile (a no-op without one)
        if early is not None:
            early.cancel()
    log(f"wrote {out.manifest_path()}: {manifest['rows']['out']:,} rows in "
        f"{sum(len(s['shards']) for s in manifest['splits'].values())} shard file(s), {timings['wall']:.1f} s")
    if manifest.get("profile"):
        log(f"profile: {out.final}/{manifest['profile']} (see 'shardsmith report {out.final}')")
    return Result(manifest, out.manifest_path(), timings=timings)


def check_expectations(run: RunContext, streams: dict, fractions: dict) -> dict | None:
    """Judge the expectations from the transform pass's partials (and the distinct values it
    spilled); the manifest's ``quality`` section, or None without expectations. Broken ``fail``
    checks raise (exit 3) before the commit; broken ``warn`` checks are logged."""
    checks = run.plan.graph.expectations
    if not checks:
        return None
    metas = [run.out.metas[p.index] for p in run.plan.partitions]
    spill = run.out.local_path(quality.QUALITY_DIR)
    distinct = quality.distinct_counts(run.ex, spill, checks, len(run.plan.partitions), quality.buckets_for(run.plan))
    shutil.rmtree(spill, ignore_errors=True)  # the spilled distinct values are not part of the dataset
    rows = {name: streams[name].planned_rows for name in run.plan.graph.split.names}
    results = quality.judge(checks, quality.merge_partials(metas), distinct, rows, fractions)
    for line in quality.broken_lines(results, "warned"):
        run.log(f"warning: {line}")
    quality.raise_if_failed(results)
    return quality.section(results)


def fit_section(prep: Prepared) -> dict:
    """The manifest's ``fit``: where the fitted state came from, and each fitted step's signature
    (what ``fit.from`` checks a new graph against)."""
    fit = prep.fit
    out = {"source": fit.kind, "steps": fit_signatures(prep.graph)}
    if fit.kind in ("parent", "cache"):
        out["from"] = fit.path
    if fit.kind == "fit" and fit.entry:
        out["cache"] = fit.entry
    if fit.kind in ("fit", "cache"):
        out["key"] = fit.key
    return out


def _run_and_commit(cfg, prep: Prepared, out: Output, prof: Profiler, log, t_start: float, early):
    out.open()
    try:
        manifest, timings = _run(cfg, prep, out, prof, log, t_start, early)
        out.commit(manifest)
    except KeyboardInterrupt:
        log(f"interrupted: rerun the same command to resume from {out.staging}")
        raise
    except OSError as exc:  # a full disk, a lost permission: one line naming the file
        out.abandon()
        raise ShardsmithError(str(exc.strerror or exc), exc.filename or out.final) from None
    except BaseException:
        out.abandon()
        raise
    return manifest, timings


def _run(cfg, prep: Prepared, out: Output, prof: Profiler, log, t_start: float, early=None) -> tuple[dict, dict]:
    """Fit, transform and write on the cluster (``early``: one started while planning); the
    manifest (with its profile) and the timings."""
    plan = prep.plan
    # A local GPU compile: the plan's kernels compile (in parallel) while the cluster starts.
    ahead = Ahead(plan, log) if prep.backend == "gpu" and cfg.engine.scheduler is None else None
    executor = early or executor_for(cfg.engine, prep.backend, log, plan.executor.value, plan.threads)
    with prof.cluster(executor, warm_up) as ex:
        if ahead is not None:
            with prof.stage("kernels ahead"):
                ahead.wait()
        run = RunContext(prep.plan, prep.backend, ex, out, log, prof, fit=prep.fit)
        with prof.section("fit"):
            states = fit(run)
            if ex.name == "inprocess":
                release_freed_memory()  # the transform's peak comes next, in this process
        with prof.section("transform+write"):
            streams = ShardWriter(run).run_all(states)
        _record_read_ahead(prof, log)
        with prof.stage("expectations", section=True):
            checked = check_expectations(run, streams, cfg.split.fractions)
    timings = {"wall": time.perf_counter() - t_start, **run.timings}
    with prof.stage("manifest", section=True):
        metas = [out.metas[p.index] for p in prep.plan.partitions]
        engine = {"kind": prep.backend, "executor": ex.name, "workers": getattr(ex, "n_workers", 1),
                  "float_mode": prep.plan.float_mode}
        manifest = build_manifest(cfg, prep.resolved, prep.key, prep.plan, states, streams, metas, engine, timings)
        manifest["lineage"] = manifest_lineage(prep.plan, load_state_doc(out.local_path("state")))
        if checked is not None:
            manifest["quality"] = checked
        manifest["fit"] = fit_section(prep)
        if prep.fit.parent:
            manifest["parent"] = prep.fit.parent
    manifest["profile"] = prof.write(out.local, stages.facts(prep.plan), manifest)
    return manifest, timings


def _record_read_ahead(prof: Profiler, log) -> None:
    """Every partition has been read: end the read-ahead, if one ran, and say what it did."""
    ahead = end_read_ahead()
    if ahead is not None and ahead.reads:
        prof.driver_span("read ahead", "read", ahead.started, ahead.wall_s, ahead.cpu_s)
        log(f"read ahead: {ahead.taken} partition(s) decoded while the process started")
