"""The driver of a compile: fit passes, then transform and write, on whatever executor the engine
config names; resumable through a journal; committed by writing the manifest last.

Output layout while running (``<dir>.partial-<key>``, beside the final directory) and after the
commit (``<dir>``)::

    manifest.json                 the commit point, written last
    state/                        fitted state: state.json + Parquet vocabularies
    <split>/part-00000.parquet    shards, in input order, output.shard_rows (or _bytes) each
    quarantine/part-00000.parquet rows a step refused (cast on_error: quarantine), with the reason
    journal.jsonl                 progress of an unfinished compile (removed at the commit)

Shard boundaries depend only on the data: each split's rows are numbered in input order and cut
every ``shard_rows``, so the shards are byte-identical whatever the partition size or worker count.
"""

from __future__ import annotations

import collections
import datetime
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field

from shardsmith import __version__
from shardsmith.backends import get_backend, resolve_kind
from shardsmith.compiler import tasks
from shardsmith.compiler.build import build
from shardsmith.compiler.cluster import executor_for
from shardsmith.compiler.config import ShardsmithConfig, to_dict
from shardsmith.compiler.ir import Fused, Schema, Step
from shardsmith.compiler.passes import optimize
from shardsmith.compiler.planner import Collect, Plan, physical_plan
from shardsmith.errors import ConfigError, ShardsmithError
from shardsmith.ops.categorical import embedding_dim
from shardsmith.profiling.profile import Profiler
from shardsmith.profiling.spans import PROFILE_KEY
from shardsmith.shards import manifest as mf
from shardsmith.shards.state import load_states, save_states
from shardsmith.shards.summary import merge_summaries

JOURNAL = "journal.jsonl"
QUARANTINE = "quarantine"


@dataclass
class Result:
    manifest: dict
    path: str
    up_to_date: bool = False
    timings: dict = field(default_factory=dict)


def compile_dataset(cfg: ShardsmithConfig, log=print, passes=None) -> Result:
    """Build, optimise, plan and run ``cfg``; return the manifest of the dataset written.
    ``passes`` replaces the optimiser's pass list (tests compare optimised and unoptimised runs)."""
    t_start = time.perf_counter()
    prof = Profiler(cfg, log)
    with prof.stage("plan", section=True):
        graph = optimize(build(cfg)) if passes is None else optimize(build(cfg), passes=passes)
        plan = physical_plan(graph, cfg.engine)
        backend = resolve_kind(cfg.engine.kind)
        be = get_backend(backend)
        check_lowerings(plan, be)
        resolved = to_dict(cfg)
        key = dataset_key(resolved, plan)
    prof.set_backend(backend)
    out = Output(graph.sink.dir, key, graph.sink.overwrite)
    existing = out.existing_manifest()
    if existing is not None:
        log(f"{out.final}: up to date (same config, inputs and code); set output.overwrite=true to rebuild")
        return Result(existing, os.path.join(out.final, mf.MANIFEST), up_to_date=True)
    out.open()
    try:
        with prof.cluster(executor_for(cfg.engine, backend, log)) as ex:
            run = Run(plan, backend, ex, out, log, prof)
            with prof.section("fit"):
                states = run.fit()
            with prof.section("transform+write"):
                streams = run.transform_and_write(states)
        timings = {"wall": time.perf_counter() - t_start, **run.timings}
        with prof.stage("manifest", section=True):
            manifest = build_manifest(cfg, resolved, key, plan, states, streams, run, timings, backend, ex)
        manifest["profile"] = prof.write(out.staging, plan, manifest)
        out.commit(manifest)
    except KeyboardInterrupt:
        log(f"interrupted: rerun the same command to resume from {out.staging}")
        raise
    except BaseException:
        out.abandon()
        raise
    log(f"wrote {out.final}/{mf.MANIFEST}: {manifest['rows']['out']:,} rows in "
        f"{sum(len(s['shards']) for s in manifest['splits'].values())} shard file(s), {timings['wall']:.1f} s")
    if manifest.get("profile"):
        log(f"profile: {out.final}/{manifest['profile']} (see 'shardsmith report {out.final}')")
    return Result(manifest, os.path.join(out.final, mf.MANIFEST), timings=timings)


def check_lowerings(plan: Plan, be) -> None:
    """Every node must run on the chosen backend: fail at plan time, naming the op, if not."""
    nodes = list(plan.transform) + [n for p in plan.fit_programs for n in p if not isinstance(n, Collect)]
    for node in nodes:
        if isinstance(node, Fused):
            be.lowerings.require(node, node.key)
        elif isinstance(node, Step):
            be.lowerings.require(node.op, node.key)


def dataset_key(resolved: dict, plan: Plan) -> str:
    """What the shards depend on: the config minus engine and bookkeeping keys, the inputs, the
    code version. Two compiles with the same key write byte-identical shards."""
    relevant = {k: v for k, v in resolved.items() if k not in ("engine", "profiling")}
    relevant["output"] = {k: v for k, v in resolved["output"].items() if k not in ("overwrite", "dir")}
    inputs = [(f.path, f.bytes, f.fingerprint) for f in plan.graph.source.files]
    return mf.sha256_json({"config": relevant, "inputs": inputs, "code": __version__})


class Output:
    """The staging directory of a compile, its journal, and the final atomic swap."""

    def __init__(self, final: str, key: str, overwrite: bool):
        self.final = os.path.normpath(final)
        self.key = key
        self.overwrite = overwrite
        self.staging = f"{self.final}.partial-{key[:12]}"
        self.created = False
        self.done_shards: dict[tuple[str, int], dict] = {}
        self.metas: dict[int, dict] = {}

    def existing_manifest(self) -> dict | None:
        path = os.path.join(self.final, mf.MANIFEST)
        if not os.path.exists(path):
            if os.path.exists(self.final) and os.listdir(self.final) and not self.overwrite:
                raise ConfigError(f"'{self.final}' exists and is not a shardsmith dataset; choose another "
                                  "directory or set output.overwrite=true", "output.dir")
            return None
        old = mf.read_manifest(path)
        if old.get("dataset_key") == self.key and not self.overwrite:
            return old
        if not self.overwrite:
            raise ConfigError(f"'{self.final}' holds a dataset built from another config or input; "
                              "set output.overwrite=true to replace it, or choose another output.dir", "output.dir")
        return None

    def open(self) -> None:
        if os.path.isdir(self.staging):
            self._load_journal()
        else:
            os.makedirs(self.staging)
            self.created = True
        self._journal = open(os.path.join(self.staging, JOURNAL), "a")

    def _load_journal(self) -> None:
        path = os.path.join(self.staging, JOURNAL)
        if not os.path.exists(path):
            return
        with open(path) as f:
            for line in f:
                try:
                    event = json.loads(line)
                except ValueError:
                    break  # a line cut short by a crash: everything after it is redone
                if event["event"] == "partition":
                    self.metas[event["meta"]["partition"]] = event["meta"]
                elif event["event"] == "shard":
                    info = event["info"]
                    if all(os.path.exists(os.path.join(self.staging, v["path"])) for v in info["files"].values()):
                        self.done_shards[(event["stream"], event["index"])] = info

    def record(self, event: dict) -> None:
        self._journal.write(json.dumps(event, default=str) + "\n")
        self._journal.flush()

    def path(self, *parts) -> str:
        return os.path.join(self.staging, *parts)

    def commit(self, manifest: dict) -> None:
        self._journal.close()
        os.remove(os.path.join(self.staging, JOURNAL))
        mf.write_manifest(self.staging, manifest)
        trash = None
        if os.path.exists(self.final):
            trash = f"{self.final}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.final, trash)
        os.replace(self.staging, self.final)
        if trash:
            shutil.rmtree(trash, ignore_errors=True)

    def abandon(self) -> None:
        """An error (not a crash): remove what this run created; a resumed run keeps its staging."""
        if getattr(self, "_journal", None):
            self._journal.close()
        if self.created:
            shutil.rmtree(self.staging, ignore_errors=True)


class Run:
    def __init__(self, plan: Plan, backend: str, ex, out: Output, log, prof: Profiler | None = None):
        self.plan, self.backend, self.ex, self.out, self.log = plan, backend, ex, out, log
        # Profiling (profiling/profile.py): spans from tasks, progress display; off by default here.
        self.prof = prof if prof is not None else Profiler.disabled(log)
        self.timings: dict = collections.defaultdict(float)
        self.window = max(2, 2 * getattr(ex, "n_workers", 1))
        self.plan_h = ex.scatter(plan)

    def _record(self, event: dict) -> None:
        with self.prof.stage("journal"):  # a write and flush per event: visible in the profile
            self.out.record(event)

    # --- fitting ------------------------------------------------------------------------------------
    def fit(self) -> dict:
        saved = load_states(self.out.path("state"))
        if saved is not None:
            self.log(f"resuming: fitted state found in {self.out.path('state')}")
            return saved
        states: dict = {}
        for stage, program in enumerate(self.plan.fit_programs):
            t0 = time.perf_counter()
            states_h = self.ex.scatter(states)
            stats = {item.step.key: item.stats for item in program if isinstance(item, Collect)}
            progress = self.prof.progress(f"fit pass {stage}", self.plan.partitions)
            # A binary-counter tree of merges as the partials arrive: O(log partitions) partials
            # alive at a time, merged on the workers; every merge is exact, so the shape of the
            # tree cannot change the result.
            stack: list = []
            for p in self.plan.partitions:
                node = progress.watch(self.ex.submit(tasks.fit_task, self.backend, self.plan_h, p, stage, states_h,
                                                     self.prof.task_opts), p)
                level = 0
                while stack and stack[-1][1] == level:
                    node, level = self._merge(stats, stack.pop()[0], node, stage), level + 1
                stack.append((node, level))
            while len(stack) > 1:
                top = stack.pop()[0]
                stack[-1] = (self._merge(stats, stack[-1][0], top, stage), stack[-1][1])
            merged = dict(stack[0][0].result())
            progress.close()
            for spans in merged.pop(PROFILE_KEY, None) or []:
                self.prof.add(spans)
            with self.prof.stage(f"fit{stage} merge"):
                for item in program:
                    if isinstance(item, Collect):
                        states[item.step.key] = fit_step(item, merged[item.step.key])
            self.timings[f"fit_pass_{stage}"] = time.perf_counter() - t0
            self.log(f"fit pass {stage}: {len(self.plan.partitions)} partition(s), "
                     f"fitted {', '.join(i.step.key for i in program if isinstance(i, Collect))} "
                     f"in {time.perf_counter() - t0:.2f} s")
        with self.prof.stage("save state"):
            save_states(self.out.path("state"), states)
        self._record({"event": "fit"})
        return states

    def _merge(self, stats, a, b, stage: int):
        return self.ex.submit(tasks.merge_partials, stats, a, b, self.backend, stage, self.prof.task_opts)

    # --- transform and write ---------------------------------------------------------------------------
    def transform_and_write(self, states: dict) -> dict:
        t0 = time.perf_counter()
        streams = {name: Stream(name) for name in (*self.plan.graph.split.names, QUARANTINE)}
        states_h = self.ex.scatter(states)
        queue: collections.deque = collections.deque()
        parts = list(self.plan.partitions)
        self.skip = self._resumable(streams)
        self.shard_futures: list = []
        self.progress = self.prof.progress("transform", parts)
        nxt = 0
        while nxt < len(parts) or queue:
            while nxt < len(parts) and len(queue) < self.window:
                queue.append(self._start(parts[nxt], states_h, streams))
                nxt += 1
            part, fut, meta = queue.popleft()
            if meta is None:
                meta = self.ex.submit(tasks.result_meta, fut).result()  # only the meta reaches the driver
                self.prof.add(meta.pop("profile", None))
                self.out.metas[part.index] = meta
                self._record({"event": "partition", "meta": meta})
            self._assign(part, fut, meta, streams)
            self._drain(block=False)
        for s in streams.values():
            self._flush(s, final=True)
        self._drain(block=True)
        self.progress.close()
        self.timings["transform_write"] = time.perf_counter() - t0
        return streams

    def _start(self, part, states_h, streams):
        """Submit a partition unless a resumed run knows its rows only feed written shards."""
        if part.index in self.skip:
            self.progress.advance(part)
            return part, None, self.out.metas[part.index]
        fut = self.ex.submit(tasks.transform_task, self.backend, self.plan_h, part, states_h, self.prof.task_opts)
        return part, self.progress.watch(fut, part), None

    def _resumable(self, streams) -> set[int]:
        """Partitions whose row counts the journal knows (in an unbroken prefix, so their offsets
        are known too) and whose rows fall only into shards already written."""
        skip, offsets = set(), {name: 0 for name in streams}
        for part in self.plan.partitions:
            meta = self.out.metas.get(part.index)
            if meta is None:
                break
            done = True
            for name in streams:
                n = _stream_rows(meta, name)
                if n:
                    first, last = offsets[name] // self.plan.shard_rows, (offsets[name] + n - 1) // self.plan.shard_rows
                    done &= all((name, i) in self.out.done_shards for i in range(first, last + 1))
                offsets[name] += n
            if done:
                skip.add(part.index)
        return skip

    def _assign(self, part, fut, meta, streams) -> None:
        for name, s in streams.items():
            n = _stream_rows(meta, name)
            # Each stream keeps only its own rows alive: a small split of the 5% test split must
            # not pin whole partitions in memory until its shard fills.
            src = self.ex.submit(tasks.pick_stream, fut, name) if n and fut is not None else None
            offset = 0
            s.planned_rows += n
            while offset < n:
                take = min(self.plan.shard_rows - s.pending_rows, n - offset)
                s.pieces.append((src, offset, offset + take))
                s.pending_rows += take
                offset += take
                if s.pending_rows == self.plan.shard_rows:
                    self._flush(s)

    def _flush(self, s: Stream, final: bool = False) -> None:
        if s.pending_rows == 0 or (final is False and s.pending_rows < self.plan.shard_rows):
            return
        index = s.next_index
        s.next_index += 1
        stem = os.path.join(s.name, f"part-{index:05d}")
        done = self.out.done_shards.get((s.name, index))
        if done is not None:
            s.infos.append((index, done))
        else:
            fut = self.ex.submit(tasks.write_shard_task, self.backend, list(s.pieces), s.name,
                                 self.out.path(stem), self.plan.graph.sink, self.plan.output_schema,
                                 self.prof.task_opts)
            self.shard_futures.append((s, index, fut))
        s.pieces, s.pending_rows = [], 0

    def _drain(self, block: bool) -> None:
        pending = []
        for s, index, fut in self.shard_futures:
            if block or fut.done():
                res = dict(fut.result())
                self.prof.add(res.pop(PROFILE_KEY, None))
                files = {fmt: {**v, "path": os.path.relpath(v["path"], self.out.staging)}
                         for fmt, v in res["files"].items()}
                info = {"files": files, "summary": res["summary"]}
                s.infos.append((index, info))
                self.out.done_shards[(s.name, index)] = info
                self._record({"event": "shard", "stream": s.name, "index": index, "info": info})
            else:
                pending.append((s, index, fut))
        self.shard_futures = pending


@dataclass
class Stream:
    """One split (or the quarantine) being cut into shards in input order."""

    name: str
    pieces: list = field(default_factory=list)
    pending_rows: int = 0
    planned_rows: int = 0
    next_index: int = 0
    infos: list = field(default_factory=list)


def _stream_rows(meta: dict, name: str) -> int:
    return meta["quarantined"] if name == QUARANTINE else meta["split_rows"][name]


def fit_step(item: Collect, merged: list) -> dict:
    """Finalize one step's merged partials and let the op fit its state from them."""
    return item.step.op.fit({stat: stat.finalize(m) for stat, m in zip(item.stats, merged)})


# --- the manifest ------------------------------------------------------------------------------------
def fitted_schema(plan: Plan, states: dict) -> Schema:
    schema = plan.graph.source_schema
    for step in plan.graph.flat_steps():
        schema = step.op.infer(schema)
        if step.key in states:
            schema = step.op.fitted_schema(schema, states[step.key])
    return schema


def _json_float(v):
    import math

    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


def _shards(stream: Stream) -> list[dict]:
    return [dict(v, format=fmt) for _, info in sorted(stream.infos, key=lambda t: t[0])
            for fmt, v in info["files"].items()]


def _stats(stream: Stream, schema: Schema) -> dict:
    parts = [info["summary"] for _, info in sorted(stream.infos, key=lambda t: t[0])]
    merged = merge_summaries(parts, schema) if parts else {}
    return {c: {k: _json_float(v) for k, v in e.items()} for c, e in merged.items()}


def build_manifest(cfg, resolved, key, plan: Plan, states, streams, run: Run, timings, backend, ex) -> dict:
    schema = fitted_schema(plan, states)
    metas = [run.out.metas[p.index] for p in plan.partitions]
    splits = {}
    for name in plan.graph.split.names:
        splits[name] = {"rows": streams[name].planned_rows, "shards": _shards(streams[name])}
    quarantine = {"rows": streams[QUARANTINE].planned_rows, "shards": _shards(streams[QUARANTINE])}
    rows_read = sum(m["rows_read"] for m in metas)
    rows = {"in": rows_read + plan.rows_pruned, "out": sum(s["rows"] for s in splits.values()),
            "filtered": sum(m["filtered"] for m in metas) + plan.rows_pruned,
            "quarantined": sum(m["quarantined"] for m in metas)}
    if rows["in"] != rows["out"] + rows["filtered"] + rows["quarantined"]:
        raise ShardsmithError(f"row accounting does not balance: {rows}", "internal")
    files = plan.graph.source.files
    rows_per_file = collections.Counter()
    for p, m in zip(plan.partitions, metas):
        rows_per_file[p.file_index] += m["rows_read"]
    for fi, f in enumerate(files):
        rows_per_file[fi] = f.rows if f.rows >= 0 else rows_per_file[fi]
    schema_json = []
    for c in schema.columns:
        entry = {"name": c.name, "dtype": c.dtype, "role": c.role}
        if c.cardinality:
            entry["cardinality"] = c.cardinality
            entry["embedding_dim"] = embedding_dim(c.cardinality)
        schema_json.append(entry)
    return {
        "format": mf.FORMAT, "version": mf.VERSION, "name": cfg.name,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": {"resolved": resolved, "sha256": mf.sha256_json(resolved)},
        "dataset_key": key,
        "code_version": code_version(),
        "inputs": [{"path": f.path, "bytes": f.bytes, "rows": rows_per_file[i], "fingerprint": f.fingerprint}
                   for i, f in enumerate(files)],
        "schema": schema_json,
        "splits": splits,
        "quarantine": quarantine,
        "rows": rows,
        "fitted_state": "state/",
        "stats": {name: _stats(streams[name], plan.output_schema) for name in plan.graph.split.names},
        "plan": {"partitions": len(plan.partitions), "passes_over_data": plan.passes_over_data,
                 "fit_passes": len(plan.fit_programs), "shard_rows": plan.shard_rows,
                 "rows_pruned": plan.rows_pruned, "optimizer_passes": list(plan.graph.passes_applied)},
        "engine": {"kind": backend, "executor": ex.name, "workers": getattr(ex, "n_workers", 1)},
        "timings": {k: round(v, 4) for k, v in timings.items()},
    }


def code_version(here: str | None = None) -> str:
    """The package version, plus the git commit when running from a checkout (``here``: its root)."""
    here = here or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    git = os.path.join(here, ".git")
    try:
        if os.path.isfile(git):  # a worktree or submodule: .git names the real git directory
            with open(git) as f:
                git = os.path.join(here, f.read().strip().removeprefix("gitdir: "))
        with open(os.path.join(git, "HEAD")) as f:
            ref = f.read().strip()
        if ref.startswith("ref: "):
            ref = _resolve_ref(git, ref[5:])
        return f"{__version__}+g{ref[:10]}" if ref else __version__
    except OSError:
        return __version__


def _resolve_ref(git: str, name: str) -> str | None:
    """A branch's commit from its loose ref, the worktree's common dir, or packed-refs."""
    common = git
    if os.path.exists(os.path.join(git, "commondir")):
        with open(os.path.join(git, "commondir")) as f:
            common = os.path.normpath(os.path.join(git, f.read().strip()))
    for base in (git, common):
        path = os.path.join(base, name)
        if os.path.exists(path):
            with open(path) as f:
                return f.read().strip()
    packed = os.path.join(common, "packed-refs")
    if os.path.exists(packed):
        with open(packed) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[1] == name:
                    return parts[0]
    return None
