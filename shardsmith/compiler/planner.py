"""The physical plan: partitions of the input, what each pass over the data runs, and how rows
are cut into shards. Pure planning: it reads no data (only the metadata the scan already holds)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from shardsmith.compiler import sizing
from shardsmith.compiler.config import EngineConfig, parse_partition_bytes
from shardsmith.compiler.liveness import AUTO, USE, backward
from shardsmith.compiler.passes.fuse_elementwise import fuse, kernel_count
from shardsmith.compiler.passes.plan_fit import availability, fit_passes
from shardsmith.compiler.sizing import Choice
from shardsmith.errors import ConfigError
from shardsmith.ir import Fused, Graph, Schema, Step
from shardsmith.ir.dtypes import width
from shardsmith.ir.fusion import group_columns
from shardsmith.kernels import cpujit
from shardsmith.ops.base import ElementwiseOp

STRING_WIDTH = 32  # bytes a string value is assumed to take when sizing shards by bytes


@dataclass(frozen=True)
class Partition:
    index: int
    file_index: int
    path: str
    row_groups: tuple[int, ...]  # () for CSV / JSON lines: the whole file
    row_starts: tuple[int, ...]  # the first row (in its file) of each row group
    rows: int  # rows read before filters; -1 when unknown until read (CSV / JSON lines)
    bytes: int  # estimated decoded bytes of the projected columns


@dataclass(frozen=True)
class Collect:
    """Compute ``stats`` for ``step`` over the frame as it is at this point of the program."""

    step: Step
    stats: tuple


@dataclass(frozen=True)
class Plan:
    graph: Graph
    partitions: tuple[Partition, ...]
    fit_programs: tuple[tuple, ...]  # one per fit pass: Step / Fused / Collect items
    fit_columns: tuple[tuple[str, ...], ...]  # per fit pass: the source columns it reads
    transform: tuple  # Step / Fused items
    shard_rows: int
    rows_pruned: int  # rows in row groups that statistics pruning skipped
    files: tuple[str, ...]
    cpu_kernels: str = "auto"  # engine.cpu_kernels: how the CPU backend runs fused groups and hashes
    writer: str = "arrow"  # who writes the Parquet shards: arrow (pyarrow) or cudf (output.writer resolved)
    float_mode: str = "exact"  # the generated kernels' arithmetic (engine.float_mode; CPU: exact)
    # compiler/sizing.py: one read of the input or one per pass; this process or a cluster.
    reads: Choice = Choice("per_pass", "not planned")
    executor: Choice = Choice("inprocess", "not planned")
    threads: int = 1  # task threads of an in-process executor
    decoded_bytes: int = 0  # the partitions' projected columns, decoded
    partition_note: str = ""  # why the partitions are smaller than partition_bytes says, if they are
    warnings: tuple[str, ...] = ()  # what may go wrong at run time (shardsmith plan shows them, a compile logs them)
    # Reading once: the fused items at the head of the first fit program, applied once to each
    # partition as it is read and kept (their steps need no fitted state), and the fit programs
    # and transform that run on the kept partitions after them.
    read_prefix: tuple = ()
    fit_after_read: tuple[tuple, ...] = ()
    transform_after_read: tuple = ()

    @property
    def read_once(self) -> bool:
        return self.reads.value == "once"

    def without_fit(self) -> Plan:
        """This plan when the fitted state is reused: no fit pass, one read by the transform."""
        return replace(self, fit_programs=(), fit_columns=(), read_prefix=(), fit_after_read=(),
                       transform_after_read=self.transform,
                       reads=Choice("once", "one pass over the data (the fitted state is reused)"))

    def programs(self) -> tuple[tuple, tuple[tuple, ...], tuple]:
        """What runs: (items applied as a partition is read, the fit programs, the transform)."""
        if self.read_once:
            return self.read_prefix, self.fit_after_read, self.transform_after_read
        return (), self.fit_programs, self.transform

    @property
    def output_schema(self) -> Schema:
        return self.graph.schema

    @property
    def passes_over_data(self) -> int:
        return len(self.fit_programs) + 1


CPU_PARTITION_BYTES = 128_000_000
# partition_bytes: auto on the CPU is CPU_PARTITION_BYTES, or smaller where the input would give
# the task threads fewer partitions than there are threads (a 1,000,000-event file was one
# partition: one thread of two worked), down to this: a task's fixed costs stay small beside it.
AUTO_MIN_PARTITION_BYTES = 16_000_000
GPU_PARTITION_FRACTION = 1 / 32  # of the smallest visible GPU's memory: dask-cudf's default blocksize


def partition_target(engine: EngineConfig, kind: str, device_memory: int | None = None) -> int:
    """The decoded bytes a partition aims at (``engine.partition_bytes``; see config.py) on the
    engine ``kind`` (resolved: cpu or gpu), given the smallest GPU's memory for the GPU engine."""
    value = parse_partition_bytes(engine.partition_bytes, engine.kind)
    if isinstance(value, int):
        return value
    if kind != "gpu":
        if value == "auto":
            return CPU_PARTITION_BYTES
        raise ConfigError("a fraction of GPU memory needs the GPU engine, which cannot run here",
                          "engine.partition_bytes")
    return max(1, int(device_memory * (GPU_PARTITION_FRACTION if value == "auto" else value)))


def physical_plan(graph: Graph, engine: EngineConfig, kind: str = "cpu", device_memory: int | None = None,
                  host_memory: int | None = None, cores: int | None = None) -> Plan:
    """The plan of ``graph`` on the engine ``kind``; pure: what it needs of the machine is given
    (the smallest GPU's memory, the host memory available, the cores; None: not known)."""
    cores = cores or os.cpu_count() or 1
    target = partition_target(engine, kind, device_memory)
    parts, pruned = partition(graph, target)
    fits = [fit_program(graph, s) for s in range(fit_passes(graph))]
    projected = sizing.decoded_bytes(graph, parts)
    executor = sizing.choose_executor(engine, kind, projected)
    budget = sizing.memory_budget(engine, kind, executor.value, host_memory)
    reads = sizing.choose_reads(engine, len(fits) + 1, projected, budget)
    processes = sizing.worker_processes(engine, cores) if executor.value == "local" else 1
    threads = engine.threads_per_worker or (cores if engine.cluster == "auto" else 1)
    note = ""
    at_once = _task_threads(engine, executor.value, threads, cores)
    if kind == "cpu" and str(engine.partition_bytes).strip() == "auto":
        parts, pruned, note = _one_per_thread(graph, parts, pruned, projected, at_once)
    # Read per pass, the transform holds one partition more than its tasks; read once, all of them.
    warnings = sizing.text_partition_warnings(parts, budget, at_once + 1, kept=reads.value == "once")
    prefix, k = read_prefix(graph, fits[0][0]) if fits else ((), 0)
    after = tuple(fit_program(graph, s, k)[0] for s in range(len(fits))) if k else tuple(p for p, _ in fits)
    return Plan(graph, parts, tuple(p for p, _ in fits), tuple(c for _, c in fits), transform_program(graph),
                shard_rows(graph), pruned, tuple(f.path for f in graph.source.files),
                cpujit.choose(engine.cpu_kernels, graph.source.rows, processes),
                parquet_writer(graph.sink, kind, graph.schema), engine.float_mode if kind == "gpu" else "exact",
                reads=reads, executor=executor, threads=threads, decoded_bytes=projected, read_prefix=prefix,
                fit_after_read=after, transform_after_read=transform_program(graph, k), partition_note=note,
                warnings=warnings)


def _one_per_thread(graph: Graph, parts, pruned: int, projected: int, parallel: int):
    """``partition_bytes: auto`` on the CPU: partitions small enough that each of the ``parallel``
    task threads has one, where the input's row groups allow it, and no smaller than
    AUTO_MIN_PARTITION_BYTES; with why, for ``shardsmith plan``. The shards are the same whatever
    the partitions (tests/test_determinism.py). Measured on the events demo (1,000,000 rows, one
    file of 8 row groups, 2 threads): 2 partitions against 1, wall 0.91x at the same CPU; more per
    thread gave no more (7: wall 0.98x, CPU 1.12x)."""
    # A tenth over an even share: row groups of one size then divide evenly (8 into 2 x 4, not 3+3+2).
    target = max(AUTO_MIN_PARTITION_BYTES, int(projected * 1.1) // max(parallel, 1))
    if len(parts) >= parallel or target >= CPU_PARTITION_BYTES:
        return parts, pruned, ""
    parts, pruned = partition(graph, target)
    size = sizing.readable_size
    return parts, pruned, (f"partition_bytes auto: up to {size(target)} each (not {size(CPU_PARTITION_BYTES)}), "
                           f"so that each of the {parallel} task thread(s) has one")


def _task_threads(engine: EngineConfig, executor: str, threads: int, cores: int) -> int:
    """Tasks that run at once: the in-process pool's threads, a local cluster's workers times
    their threads, one for an existing cluster (its workers are not known)."""
    if executor == "inprocess":
        return threads
    if executor == "local":
        workers, per_worker = sizing.local_workers(engine, cores)
        return workers * per_worker
    return 1


def read_prefix(graph: Graph, program: tuple) -> tuple[tuple, int]:
    """The fused items that open the first fit program and apply flat steps 0..k-1 in order, with
    k: elementwise steps need no fitted state and touch no rows, so a partition read once can
    carry their result to every later pass (the transform then starts at step k). None when the
    graph checks its input: those checks must see the values as read."""
    if graph.checks_at("input"):
        return (), 0
    flat, items, k = graph.flat_steps(), [], 0
    for item in program:
        if not isinstance(item, Fused) or item.steps != tuple(flat[k : k + len(item.steps)]):
            break
        items.append(item)
        k += len(item.steps)
    return tuple(items), k


CPU_KERNELS_TEXT = {"numba": "compiled (Numba)", "numpy": "NumPy",
                    "auto": "compiled (Numba) once built, NumPy meanwhile"}


def parquet_writer(sink, kind: str, schema=None) -> str:
    """``output.writer`` on the engine ``kind``: auto is cuDF's writer on the GPU engine (from device
    memory) unless the output asks for what it lacks (gzip, a compression level) or holds a date
    column, pyarrow on the CPU. cuDF has no date type: its DataFrame turns day timestamps into
    second timestamps, so its writer would store a date as a timestamp (seen on an H200)."""
    if sink.writer == "cudf" and kind != "gpu":
        raise ConfigError("cudf writes Parquet from GPU memory, and the GPU engine cannot run here (engine.kind "
                          "auto chose the CPU); use auto or arrow", "output.writer")
    dates = [c.name for c in schema.columns if c.dtype == "date"] if schema is not None else []
    if sink.writer == "cudf" and dates and "parquet" in sink.formats:
        raise ConfigError(f"cuDF's Parquet writer has no date type and would write column {dates[0]!r} as a "
                          "timestamp; use output.writer=auto or arrow", "output.writer")
    if sink.writer != "auto":
        return sink.writer
    cudf_can = sink.compression != "gzip" and sink.compression_level is None and not dates
    return "cudf" if kind == "gpu" and cudf_can else "arrow"


def transform_program(graph: Graph, start: int = 0) -> tuple:
    """The graph's nodes (from flat step ``start`` on, fused again when the fusion pass ran), with
    any elementwise step the fusion pass did not fuse (it was not run) as a one-step fused node:
    elementwise ops always run through the fused kernels."""
    nodes, schema = graph.steps, graph.source_schema
    if start:
        flat = graph.flat_steps()
        schema = flat[start - 1].schema
        nodes = fuse(flat[start:], schema) if any(isinstance(n, Fused) for n in graph.steps) else flat[start:]
    out = []
    for node in nodes:
        if isinstance(node, Step) and isinstance(node.op, ElementwiseOp):
            node = Fused((node,), group_columns((node,), schema))
        out.append(node)
        schema = node.schema
    return tuple(out)


def partition(graph: Graph, target: int) -> tuple[tuple[Partition, ...], int]:
    """Consecutive row groups of one file, up to ``target`` decoded bytes of projected columns
    (compiler/sizing.py's estimate of a decoded row)."""
    src = graph.source
    row = sizing.row_bytes(graph)
    parts, pruned = [], 0
    for fi, f in enumerate(src.files):
        if not f.row_groups:  # CSV / JSON lines: one partition per file
            parts.append(Partition(len(parts), fi, f.path, (), (), f.rows, f.bytes))
            continue
        keep = set(src.row_groups[fi]) if src.row_groups is not None else set(range(len(f.row_groups)))
        starts, acc = [], 0
        for rows, _ in f.row_groups:
            starts.append(acc)
            acc += rows
        cur: list[int] = []
        cur_bytes = 0
        for g, (rows, _) in enumerate(f.row_groups):
            if g not in keep:
                pruned += rows
                continue
            size = rows * row
            if cur and cur_bytes + size > target:
                parts.append(_part(len(parts), fi, f, cur, starts, cur_bytes))
                cur, cur_bytes = [], 0
            cur.append(g)
            cur_bytes += size
        if cur:
            parts.append(_part(len(parts), fi, f, cur, starts, cur_bytes))
    return tuple(parts), pruned


def _part(index, fi, f, groups, starts, nbytes) -> Partition:
    return Partition(index, fi, f.path, tuple(groups), tuple(starts[g] for g in groups),
                     sum(f.row_groups[g][0] for g in groups), nbytes)


def fit_program(graph: Graph, stage: int, start: int = 0) -> tuple[tuple, tuple[str, ...]]:
    """What fit pass ``stage`` runs: a Collect where each step fitted in this pass sees its input,
    and before it only the steps those inputs need (fused), the others left out; and the source
    columns that this needs (the pass's own projection). Flat steps before ``start`` are already
    applied (a kept read's prefix)."""
    flat = graph.flat_steps()
    avail = availability(graph)
    last = max(i for i, s in enumerate(flat) if s.fit_stage == stage)
    chosen: list = []  # (position, step, is_collect)
    for i, step in enumerate(flat[: last + 1]):
        if i < start:
            continue
        if step.fit_stage == stage:
            chosen.append((i, step, True))
        elif avail[i] <= stage and (step.fit_stage is None or step.fit_stage < stage):
            chosen.append((i, step, False))
    positions, live = backward([step for _, step, _ in chosen], set(), lambda k: USE if chosen[k][2] else AUTO)
    chosen = [chosen[k] for k in positions]
    items: list = []
    run: list[Step] = []
    run_start = 0
    schemas = [graph.source_schema] + [s.schema for s in flat]  # schemas[i]: the input of step i
    for i, step, collect in chosen:
        if collect:
            if run:
                items.extend(fuse(tuple(run), schemas[run_start]))
                run = []
            stats = tuple(st.for_graph(graph) for st in step.op.statistics(schemas[i]))
            items.append(Collect(step, stats))
        else:
            if not run:
                run_start = i
            run.append(step)
    if graph.source.filter is not None:
        live |= graph.source.filter.columns()
    for check in graph.checks_at("input"):  # quarantined input rows are left out of every statistic
        if check.severity == "quarantine":
            live |= check.columns()
    return tuple(items), tuple(c for c in graph.source.columns if c in live or c == graph.split.key)


def shard_rows(graph: Graph) -> int:
    sink = graph.sink
    if sink.shard_rows:
        return int(sink.shard_rows)
    return max(1, sink.shard_bytes // row_width(graph.schema))


def row_width(schema: Schema) -> int:
    return sum(width(c.dtype, STRING_WIDTH) for c in schema.columns) or 1


def describe(plan: Plan) -> list[str]:
    """The physical plan as text lines for ``shardsmith plan``."""
    g = plan.graph
    rows = g.source.rows
    lines = [f"partitions: {len(plan.partitions)} over {len(plan.files)} file(s)"
             + (f", {rows:,} rows" if rows >= 0 else "")
             + (f"; statistics pruning skips {plan.rows_pruned:,} rows" if plan.rows_pruned else "")]
    if plan.partition_note:
        lines.append(f"  {plan.partition_note}")
    lines += [f"  warning: {w}" for w in plan.warnings]
    lines.append(f"passes over the data: {plan.passes_over_data} "
                 f"({len(plan.fit_programs)} to fit, 1 to transform and write)")
    for s, program in enumerate(plan.fit_programs):
        fitted = [item.step.key for item in program if isinstance(item, Collect)]
        lines.append(f"  fit pass {s}: reads {len(plan.fit_columns[s])} column(s), {len(program) - len(fitted)} "
                     f"node(s), statistics for {', '.join(fitted)}")
    lines.append(f"  transform: {len(plan.transform)} node(s), {kernel_count(plan.transform)} fused kernel(s)")
    lines.append(f"shards: {plan.shard_rows:,} rows each, splits {', '.join(g.split.names)}")
    if "parquet" in g.sink.formats:
        how = "cuDF, from device memory" if plan.writer == "cudf" else "pyarrow, from host memory"
        lines.append(f"  Parquet written by {how} (output.writer: {g.sink.writer}); identity by content digests")
    if plan.float_mode == "fast":
        lines.append("  float_mode fast: float32 chains computed in float32 arithmetic, not bit-identical with "
                     "the CPU engine")
    lines.append(f"CPU engine kernels: {CPU_KERNELS_TEXT[plan.cpu_kernels]} (engine.cpu_kernels)")
    lines.append(f"reads: {READS_TEXT[plan.reads.value]}: {plan.reads.reason}")
    if plan.read_once and plan.read_prefix:
        lines.append(f"  applied once, as each partition is read: {', '.join(i.key for i in plan.read_prefix)} "
                     f"(the transform then runs {len(plan.transform_after_read)} node(s))")
    lines.append(f"executor: {executor_text(plan)}: {plan.executor.reason}")
    return lines


READS_TEXT = {"once": "once (the first pass keeps the decoded partitions for the next ones)",
              "per_pass": "once per pass (memory bounded by the partitions in flight)"}


def executor_text(plan: Plan) -> str:
    if plan.executor.value == "inprocess":
        return f"this process, {plan.threads} task thread(s)"
    return {"local": "a local Dask cluster", "scheduler": "an existing Dask cluster"}[plan.executor.value]


def program_nodes(program) -> list:
    return [n for n in program if isinstance(n, (Step, Fused))]
