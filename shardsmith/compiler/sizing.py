"""What the input costs in memory once decoded, and the two plan decisions that follow from it:
whether the fit passes keep their decoded partitions for the transform (one read of the input
instead of one per pass), and whether a compile runs in this process or on a Dask cluster.

Both are pure functions of the graph, the engine config and the machine facts the driver gives
(memory available, cores), so ``shardsmith plan`` shows them with their reasons. Neither changes
a byte of the output: shards are byte-identical whichever is chosen.

The memory budget is engine-neutral: host memory for the CPU engine; a GPU engine that keeps its
partitions on the device would pass its device memory here instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from shardsmith.compiler.config import EngineConfig, parse_size
from shardsmith.ir import Graph
from shardsmith.ir.dtypes import width

STRING_BYTES = 32  # bytes a decoded string value is assumed to take (offsets and data)
HIDDEN_BYTES = 13  # per row: the file index (int32), row number (int64) and split (int8) columns
TEXT_EXPANSION = 2  # decoded bytes per file byte of CSV / JSON lines, whose row count is not known
KEEP_FRACTION = 0.5  # of the budget: the rest is the transform's working set and the writers'
# engine.cluster auto: inputs whose decoded projection is below this run on threads in this
# process; above it, on a local Dask cluster. Measured on the 2-vCPU machine (docs/cpu_engine.md).
AUTO_INPROCESS_BYTES = 64 * 10**9


@dataclass(frozen=True)
class Choice:
    """A plan decision and why it was taken (``shardsmith plan`` prints both)."""

    value: str
    reason: str


def row_bytes(graph: Graph) -> int:
    """A decoded row of the source's projected columns and the hidden ones, as Arrow (or cuDF)
    holds it: fixed-width values exactly, strings at STRING_BYTES. (Parquet's "uncompressed" sizes
    are of encoded pages: a dictionary-encoded column there can be a tenth of its decoded size.)"""
    src = graph.source
    dtypes = {c.name: c.dtype for c in src.schema.columns}
    return sum(width(dtypes[c], STRING_BYTES) for c in src.columns) + HIDDEN_BYTES


def decoded_bytes(graph: Graph, partitions) -> int:
    """The decoded size of the partitions (CSV / JSON lines, whose rows are not known before
    reading: from their file bytes)."""
    row = row_bytes(graph)
    return sum(p.rows * row if p.rows >= 0 else p.bytes * TEXT_EXPANSION for p in partitions)


def text_partition_warnings(partitions, budget: int | None, at_once: int, kept: bool) -> tuple[str, ...]:
    """CSV / JSON-lines files are read whole, one partition each: when the partitions held at once
    (``at_once`` of them; all of them when the input is ``kept`` for the transform) may exceed
    the memory budget, one line saying so, naming the largest such file; else none."""
    text = [p for p in partitions if p.rows < 0]
    if budget is None or not text:
        return ()
    n = len(text) if kept else max(1, min(at_once, len(text)))
    held = sum(p.bytes for p in text) if kept else max(p.bytes for p in text) * n
    if held * TEXT_EXPANSION <= budget:
        return ()
    worst = max(text, key=lambda p: p.bytes)
    fix = "read it per pass (engine.reads=per_pass)" if kept else \
        "split it into smaller files, or lower engine.threads_per_worker"
    return (f"{worst.path}: a CSV or JSON-lines file is read whole, as one partition, about "
            f"{readable_size(worst.bytes * TEXT_EXPANSION)} decoded; {n} held at once may exceed the memory budget "
            f"({readable_size(budget)}): {fix}",)


def memory_budget(engine: EngineConfig, kind: str, executor: str, host_memory: int | None) -> int | None:
    """Bytes the engine may hold: ``engine.memory_limit`` (per worker process of a local cluster)
    or, with ``auto``, the memory available on this host; None where it is not known here (an
    existing cluster's workers, or the GPU engine, whose device budget is not wired yet)."""
    if kind != "cpu" or engine.scheduler is not None:
        return None
    if engine.memory_limit != "auto":
        limit = parse_size(engine.memory_limit, "engine.memory_limit")
        return limit * (worker_processes(engine) if executor == "local" else 1)
    return host_memory


def local_workers(engine: EngineConfig, cores: int) -> tuple[int, int]:
    """A local CPU cluster's workers and threads per worker, as runtime/cluster.py starts it: with
    ``processes``, a single-threaded worker per core; else one worker with a thread per core
    (``n_workers`` and ``threads_per_worker`` as given)."""
    return (engine.n_workers or (cores if engine.processes else 1),
            engine.threads_per_worker or (1 if engine.processes else cores))


def worker_processes(engine: EngineConfig, cores: int = 1) -> int:
    """Processes of a local CPU cluster: each pays its own start-up (imports, compiled kernels)."""
    return (engine.n_workers or cores) if engine.processes else 1


def choose_reads(engine: EngineConfig, passes: int, projected: int, budget: int | None) -> Choice:
    """``once``: the first fit pass reads each partition and keeps it for the later passes and the
    transform; ``per_pass``: every pass reads the input again and memory stays bounded by the
    partitions in flight (``engine.reads``: auto, once, per_pass)."""
    if engine.reads != "auto":
        return Choice(engine.reads, f"engine.reads={engine.reads}")
    if passes == 1:
        return Choice("once", "one pass over the data (nothing is fitted)")
    if budget is None:
        return Choice("per_pass", "the memory budget is not known here (an existing cluster's workers, or the "
                                  "GPU engine); engine.reads=once keeps partitions anyway")
    fits = projected <= KEEP_FRACTION * budget
    return Choice("once" if fits else "per_pass",
                  f"the decoded input ({readable_size(projected)}) {'fits in' if fits else 'exceeds'} half the memory "
                  f"budget ({readable_size(budget)}: {_budget_source(engine)})")


def choose_executor(engine: EngineConfig, kind: str, projected: int) -> Choice:
    """``inprocess`` (tasks on threads of this process) or ``local`` (a Dask cluster started here)
    or ``scheduler`` (an existing cluster), from ``engine.cluster``: auto, local or inprocess."""
    if engine.scheduler is not None:
        return Choice("scheduler", f"engine.scheduler={engine.scheduler}")
    if engine.cluster != "auto":
        return Choice(engine.cluster, f"engine.cluster={engine.cluster}")
    if kind != "cpu":
        return Choice("local", "the GPU engine runs a worker per GPU")
    if engine.processes or (engine.n_workers or 1) > 1:
        return Choice("local", "worker processes were asked for (engine.processes / engine.n_workers)")
    if projected <= AUTO_INPROCESS_BYTES:
        return Choice("inprocess", f"the decoded input ({readable_size(projected)}) is below "
                                   f"{readable_size(AUTO_INPROCESS_BYTES)}: threads in this process start at once")
    return Choice("local", f"the decoded input ({readable_size(projected)}) is above "
                           f"{readable_size(AUTO_INPROCESS_BYTES)}")


def _budget_source(engine: EngineConfig) -> str:
    return "memory available" if engine.memory_limit == "auto" else f"engine.memory_limit={engine.memory_limit}"


def readable_size(n: int) -> str:
    """``1234567890`` -> ``1.23 GB``."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} B"
