"""Worker-side measurement: one span per stage of a task (read, each op or fused kernel, each
fitted statistic, split, write), with wall, CPU and (on the GPU engine) CUDA-event time, and the
rows and bytes that went in and out.

A task makes a :func:`recorder` from the options the driver passed (``None``: profiling is off and
every call is a no-op), calls ``start``/``stop`` around each stage, and returns ``finish()`` with
its result. Spans carry epoch start times so that the driver can line up tasks from different
processes on one timeline.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
import time

from shardsmith.profiling import nvtx
from shardsmith.profiling.gpu import EventTimer

# The key under which a task's spans travel in a result dict (no step key looks like it).
PROFILE_KEY = "__profile__"


@functools.cache
def _host() -> str:
    return socket.gethostname()


def worker_id() -> str:
    """``host:pid``: the same for the spans and the memory samples of one process."""
    return f"{_host()}:{os.getpid()}"


def cpu_clock(shared: bool = False):
    """The CPU clock that charges a stage for its own work.

    Process CPU time counts the Arrow/NumPy helper threads a stage starts (Parquet decoding is
    multi-threaded), which thread time would miss; it is right while this process runs one task at
    a time (one thread per Dask worker process, or in-process execution on one thread). Otherwise
    (``shared``: tasks on several threads of this process) concurrent tasks would be charged for
    each other, so per-thread time is used.
    """
    if shared:
        return time.thread_time
    dist = sys.modules.get("distributed")  # not imported: certainly not on a Dask worker
    try:
        w = dist.get_worker() if dist is not None else None
    except ValueError:
        w = None
    if w is None:
        return time.process_time
    one_task_at_a_time = w.state.nthreads == 1 and len(type(w)._instances) == 1
    return time.process_time if one_task_at_a_time else time.thread_time


class Recorder:
    """The spans of one task, in the order its stages ran."""

    enabled = True

    def __init__(self, be, phase: str, partition: int | None, opts: dict):
        self.phase, self.partition = phase, partition
        self._rows = be.num_rows
        self._nbytes = getattr(be, "nbytes", None)  # a backend without it reports no bytes
        self._clock = cpu_clock(opts.get("threads", 1) > 1)
        self._wid = worker_id()
        self._gpu = None
        if opts.get("gpu"):
            self._gpu = EventTimer()
        self._nvtx = opts.get("nvtx", False)
        self.spans: list[dict] = []
        self.overhead_s = 0.0
        self._handoff = None  # (frame, rows, bytes) a stage ended with: the next one starts from it

    def _size(self, frame, rows, nbytes):
        if frame is None:
            return rows, nbytes
        handoff, self._handoff = self._handoff, None
        if handoff is not None and handoff[0] is frame and rows is None and nbytes is None:
            return handoff[1], handoff[2]  # sizing a frame costs ~50 us; a stage's output is the next one's input
        return (self._rows(frame) if rows is None else rows,
                (self._nbytes(frame) if self._nbytes else None) if nbytes is None else nbytes)

    def start(self, key: str, kind: str, frame=None, rows: int | None = None, nbytes: int | None = None) -> dict:
        t = time.perf_counter()
        rows, nbytes = self._size(frame, rows, nbytes)
        span = {"phase": self.phase, "key": key, "kind": kind, "worker": self._wid, "partition": self.partition,
                "rows_in": rows, "bytes_in": nbytes}
        if self._nvtx:
            nvtx.push(f"{self.phase}:{key}")
        if self._gpu is not None:
            span["_gpu"] = self._gpu.start()
        span["start"] = time.time()
        span["_cpu"] = self._clock()
        span["_t"] = time.perf_counter()
        self.overhead_s += span["_t"] - t
        return span

    def stop(self, span: dict, frame=None, rows: int | None = None, nbytes: int | None = None, **extra) -> None:
        t = time.perf_counter()
        span["cpu"] = self._clock() - span.pop("_cpu")
        span["wall"] = t - span.pop("_t")
        if self._gpu is not None:
            self._gpu.stop(span, span.pop("_gpu"))
        if self._nvtx:
            nvtx.pop()
        span["rows_out"], span["bytes_out"] = self._size(frame, rows, nbytes)
        self._handoff = (frame, span["rows_out"], span["bytes_out"]) if frame is not None else None
        span.update(extra)
        self.spans.append(span)
        self.overhead_s += time.perf_counter() - t

    def finish(self) -> dict:
        """What the task returns to the driver (GPU times resolved: one device sync per task)."""
        self._handoff = None
        if self._gpu is not None:
            self._gpu.resolve()
        return {"spans": self.spans, "overhead_s": self.overhead_s}


class _Off:
    """Profiling disabled: every call does nothing."""

    enabled = False
    spans: list = []

    def start(self, *args, **kwargs):
        return None

    def stop(self, *args, **kwargs) -> None:
        return None

    def finish(self):
        return None


OFF = _Off()


def recorder(be, phase: str, partition: int | None, opts: dict | None):
    """A :class:`Recorder`, or the no-op one when ``opts`` is None (profiling disabled)."""
    return OFF if opts is None else Recorder(be, phase, partition, opts)
