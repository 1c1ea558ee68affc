"""Tasks on a pool of threads in this process: the executor of ``engine.cluster: inprocess`` with
``threads_per_worker`` above one, and of ``auto`` for inputs that a Dask cluster would not repay.

The work of a task runs in Arrow and NumPy outside the GIL, so threads share the cores as a
local Dask cluster's threads do, without its scheduler, its start-up (about a second: importing
``distributed``, starting a scheduler and a worker) or its hand-offs. A task is handed to the pool
only when every future among its arguments is done, so no pool thread ever waits for another
task: the pool runs at most ``threads`` tasks, each of them ready.

>>> ex = Threads(2)
>>> a = ex.submit(sum, [1, 2])
>>> ex.submit(pow, a, 2).result()
9
>>> ex.close()
"""

from __future__ import annotations

import ctypes
import sys
import threading
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor

import pyarrow as pa


class Threads:
    """A pool of ``threads`` task threads; futures are ``concurrent.futures.Future``."""

    name = "inprocess"
    n_workers = 1
    dashboard = None

    def __init__(self, threads: int):
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="shardsmith-task")

    def submit(self, fn, *args) -> Future:
        """``fn(*args)`` once every future in ``args`` (also inside lists and tuples) is done,
        with each replaced by its result."""
        out: Future = Future()
        pending = [f for f in _futures(args) if not f.done()]
        if not pending:
            self._start(out, fn, args)
            return out
        # The callbacks stay on the futures they wait for, so they must not keep the arguments
        # (and with them those futures' results, e.g. a kept partition) alive once the task started.
        waiting = {"left": len(pending), "task": (fn, args)}
        lock = threading.Lock()

        def one_done(_f):
            with lock:
                waiting["left"] -= 1
                task = waiting.pop("task") if waiting["left"] == 0 else None
            if task is not None:
                self._start(out, *task)

        for f in pending:
            f.add_done_callback(one_done)
        return out

    def _start(self, out: Future, fn, args) -> None:
        try:
            self._pool.submit(_run, out, fn, args)
        except RuntimeError:  # the pool was shut down (the compile is failing): nothing more runs
            out.set_exception(CancelledError())

    def scatter(self, obj) -> Future:
        f: Future = Future()
        f.set_result(obj)
        return f

    def close(self) -> None:
        """Wait for the running tasks; those not started never run."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def _run(out: Future, fn, args) -> None:
    try:
        value = fn(*_resolve(args))
    except BaseException as exc:  # noqa: BLE001  (handed to whoever waits for the result)
        out.set_exception(exc)
    else:
        out.set_result(value)


def _futures(obj):
    if isinstance(obj, Future):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _futures(o)


def _resolve(obj):
    """``obj`` with every (done) future replaced by its result; a failed one raises its error."""
    if isinstance(obj, Future):
        return obj.result()
    if isinstance(obj, list):
        return [_resolve(o) for o in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(o) for o in obj)
    return obj


def release_freed_memory() -> None:
    """Hand back to the system the memory that the fit freed and the allocators kept: pyarrow's
    pool (mimalloc or jemalloc) holds freed pages for reuse, and glibc's malloc keeps freed chunks
    of NumPy's temporaries in its arenas. Called between the fit and the transform of a compile in
    this process, where the resident set peaks: on the 2M demo the peak fell from 1,321 to 1,256
    MiB (medians of 6 paired whole-process runs, 2026-11-30), at a cost of a few ms. pyarrow's
    part runs everywhere; glibc's malloc_trim where it exists (not on musl, macOS or Windows)."""
    pa.default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):  # musl and others have no malloc_trim
            pass
