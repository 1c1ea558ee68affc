"""The driver's side of profiling: it times its own stages, starts the memory samplers, collects
the spans that tasks return, and writes ``profile.json`` next to the manifest.

``profile.json`` (format ``shardsmith-profile``, version 1), times in seconds from the start of
the compile unless named ``*_s``::

    started                the Unix time the compile started (what the other times count from)
    wall_s, sections       the driver's timeline (plan, cluster start, fit, transform+write, ...)
    stages                 per stage, in pipeline order: calls, wall/CPU/GPU seconds, rows and
                           bytes in and out, rows/s, bytes/s, CPU share, bound (and why)
    workers                per process: peak RSS (sampled), lifetime max RSS, peak GPU memory,
                           memory limit, spilled bytes, busy seconds, utilisation, Dask metrics
    samples                per process: t, rss, cpu (cores busy), gpu_mem, managed, spilled, executing
    spans                  per stage call: stage index, worker, partition, start, end (the waterfall)
    cost                   the cost model (profiling/cost.py) and its projection
    accounting             sum of stage seconds vs wall, the measured profiling overhead
    machine, versions      CPU model, cores, memory, GPUs; package versions
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid

from shardsmith.profiling import nvtx
from shardsmith.profiling.assemble import assemble
from shardsmith.profiling.document import PROFILE, write_json
from shardsmith.profiling.progress import Progress
from shardsmith.profiling.sampler import Sampler, start_on_worker, stop_on_worker
from shardsmith.profiling.spans import worker_id


class Profiler:
    """One per compile. With ``profiling.enabled=false`` it only drives the progress display."""

    def __init__(self, cfg=None, log=print):
        """``cfg``: the compile's config (its ``profiling``, ``engine`` and ``output`` sections);
        None measures nothing and shows progress as the default config would."""
        self.pcfg = cfg.profiling if cfg is not None else None
        self.cfg, self.log = cfg, log
        self.enabled = bool(self.pcfg is not None and self.pcfg.enabled)
        self.progress_mode = self.pcfg.progress if self.pcfg is not None else "auto"
        self.t0, self.epoch0 = time.perf_counter(), time.time()
        self.spans: list[dict] = []
        self.sections: list[dict] = []
        self.samplers: list[dict] = []
        self.task_overhead_s = 0.0
        self.backend = "cpu"
        self.executor = {"name": "inprocess", "workers": 1}
        self.task_opts: dict | None = {"gpu": False, "nvtx": False} if self.enabled else None
        self._run_id = uuid.uuid4().hex
        self._driver_sampler = None

    @classmethod
    def disabled(cls, log=print) -> Profiler:
        """Measures nothing; shows progress as the default config would."""
        return cls(None, log)

    def set_backend(self, backend: str) -> None:
        self.backend = backend
        if self.enabled:
            self.task_opts = {"gpu": backend == "gpu", "nvtx": backend == "gpu" and nvtx.available()}

    # --- the driver's own stages --------------------------------------------------------------------
    @contextlib.contextmanager
    def stage(self, key: str, kind: str = "driver", section: bool = False):
        """Time a piece of the driver's work as stage ``driver:<key>`` (and a timeline section)."""
        if not self.enabled:
            yield
            return
        start, t, cpu = time.time(), time.perf_counter(), time.thread_time()
        with nvtx.annotate(f"driver:{key}", self.backend == "gpu"):
            try:
                yield
            finally:
                self.driver_span(key, kind, start, time.perf_counter() - t, time.thread_time() - cpu, section)

    def driver_span(self, key: str, kind: str, start: float, wall: float, cpu: float, section: bool = False) -> None:
        """Record driver-side work timed elsewhere (``start``: epoch seconds) as stage ``driver:<key>``."""
        if not self.enabled:
            return
        self.spans.append({"phase": "driver", "key": key, "kind": kind, "worker": worker_id(),
                           "partition": None, "start": start, "wall": wall, "cpu": cpu, "rows_in": None,
                           "rows_out": None, "bytes_in": None, "bytes_out": None})
        if section:
            self.sections.append({"name": key, "start": start - self.epoch0, "wall": wall})

    @contextlib.contextmanager
    def section(self, name: str):
        """A top-level part of the timeline whose work is done by tasks (fit, transform+write)."""
        start, t = time.time(), time.perf_counter()
        with nvtx.annotate(f"shardsmith:{name}", self.enabled and self.backend == "gpu"):
            try:
                yield
            finally:
                self.sections.append({"name": name, "start": start - self.epoch0,
                                      "wall": time.perf_counter() - t})

    @contextlib.contextmanager
    def cluster(self, executor_cm, warm_up=None):
        """Wrap an executor's context manager: time its start and stop, sample memory while it
        runs. ``warm_up(backend)`` runs on every worker first, so that the imports of tasks count
        as start-up, not as their first read."""
        with self.stage("cluster start", kind="startup", section=True):
            ex = executor_cm.__enter__()
            if self.task_opts is not None:  # tasks side by side in this process: per-thread CPU time
                self.task_opts["threads"] = getattr(ex, "threads", 1)
            client = getattr(ex, "client", None)
            if client is not None and warm_up is not None:
                client.run(warm_up, self.backend)
        exc = (None, None, None)
        try:
            self._start_sampling(ex)
            try:
                yield ex
            finally:
                self._stop_sampling(ex)
        except BaseException:
            exc = sys.exc_info()
            raise
        finally:
            with self.stage("cluster stop", kind="startup", section=True):
                executor_cm.__exit__(*exc)

    # --- what tasks send back -----------------------------------------------------------------------
    def add(self, task_profile: dict | None) -> None:
        if task_profile:
            self.spans.extend(task_profile["spans"])
            self.task_overhead_s += task_profile["overhead_s"]

    def progress(self, label: str, partitions) -> Progress:
        return Progress(label, partitions, self.progress_mode, self.log)

    # --- memory samplers ----------------------------------------------------------------------------
    def _start_sampling(self, ex) -> None:
        self.executor = {"name": ex.name, "workers": getattr(ex, "n_workers", 1),
                         "dashboard": getattr(ex, "dashboard", None)}
        if not self.enabled:
            return
        interval = self.pcfg.sample_interval
        client = getattr(ex, "client", None)
        self._driver_sampler = Sampler(interval, gpu=client is None and self.backend == "gpu").start()
        if client is not None:
            client.run(start_on_worker, self._run_id, interval, self.backend == "gpu")

    def _stop_sampling(self, ex) -> None:
        if self._driver_sampler is None:
            return
        client = getattr(ex, "client", None)
        role = "driver" if client is not None else "inprocess"
        self.samplers.append(dict(self._driver_sampler.stop(), role=role))
        self._driver_sampler = None
        if client is not None:
            try:
                results = client.run(stop_on_worker, self._run_id)
            except Exception as exc:  # noqa: BLE001 - a lost worker must not fail a finished compile
                self.log(f"profiling: could not collect worker memory samples ({type(exc).__name__}: {exc})")
                return
            self.samplers.extend(dict(r, role="worker") for r in results.values() if r)

    # --- the profile --------------------------------------------------------------------------------
    def write(self, directory: str, facts: dict, manifest: dict) -> str | None:
        """Assemble the profile (``facts``: see assemble.py) and write it into ``directory``;
        returns its name (None if off)."""
        t = time.perf_counter()  # the run ends here: assembling its profile is not part of it
        if not self.enabled:
            return None
        try:
            doc = assemble(self, facts, manifest, wall_s=t - self.t0)
            doc["accounting"]["assembly_s"] = time.perf_counter() - t
            write_json(os.path.join(directory, PROFILE), doc)
        except Exception as exc:  # noqa: BLE001 - a profiling fault must not cost the user the dataset
            self.log(f"profiling: could not write {PROFILE} ({type(exc).__name__}: {exc}); the dataset is fine")
            return None
        return PROFILE


