"""Reading a compile's first Parquet partitions while its process is still starting.

Between the early check of ``shardsmith compile`` (the config composed and planned) and its first
task, the main thread runs only Python (Hydra's run directory and saved config, the run's imports,
the task threads starting) and the second core has nothing to do. Parquet decoding runs outside the
GIL, so a thread
decodes the partitions that the first pass will read first, in its order, meanwhile. A read taken
from here is the same call of :func:`shardsmith.inputs.read.read_parquet` with the same arguments,
so the rows, row numbers, quarantined rows and errors are those the task's own read would have
given; a file that changed in between (size, modification time or inode) is read again.

The thread stops once the compile's first task asks for a partition (the tasks read the
partitions not yet begun: on two cores a third reader only competes with them), and
:meth:`ReadAhead.close` drops what was not taken.
"""

from __future__ import annotations

import collections
import threading
import time
from concurrent.futures import Future


class ReadAhead:
    """``jobs``: (key, read) in the order the compile will ask for them; ``read()`` returns what
    the compile's own read returns for ``key``; ``stat(key)`` identifies the file's version."""

    def __init__(self, jobs, stat):
        self._jobs = collections.deque(jobs)
        self._stat = stat
        self._done: dict = {}  # key -> Future of (file version, result)
        self._lock = threading.Lock()
        self._stopped = False
        self.taken = 0
        self.reads = 0
        self.wall_s = 0.0
        self.cpu_s = 0.0
        self.started = time.time()
        self._thread = threading.Thread(target=self._run, name="shardsmith-readahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        t, cpu = time.perf_counter(), time.thread_time()
        while True:
            with self._lock:
                if self._stopped or not self._jobs:
                    break
                key, read = self._jobs.popleft()
                fut = self._done[key] = Future()
            try:
                version = self._stat(key)
                fut.set_result((version, read()))
            except BaseException as exc:  # noqa: BLE001  (the compile's read raises it, as its own would)
                fut.set_exception(exc)
            self.reads += 1
        self.wall_s, self.cpu_s = time.perf_counter() - t, time.thread_time() - cpu

    def take(self, key):
        """The result read ahead for ``key`` (waiting while it is being read), or None: the caller
        reads it itself (not read ahead, or its file changed since)."""
        with self._lock:
            self._stopped = True  # the compile has started: its tasks read what is not yet begun
            self._jobs.clear()
            fut = self._done.pop(key, None)
            if fut is None:
                return None
        version, result = fut.result()
        if self._stat(key) != version:
            return None
        self.taken += 1
        return result

    def close(self) -> None:
        """Stop after the read in progress (never waited for) and drop what was not taken."""
        with self._lock:
            self._stopped = True
            self._jobs.clear()
            self._done.clear()
