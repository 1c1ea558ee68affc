"""Memory and utilisation over time: a daemon thread per process (each Dask worker, and the
driver) samples its own process with psutil every ``interval`` seconds: resident memory, CPU use,
device memory on GPU workers, and the Dask worker's managed and spilled bytes and running tasks.

Long runs keep at most ``max_samples`` points per process: when full, neighbouring samples are
merged (peaks kept as peaks) and the interval doubles, so a profile stays small.
"""

from __future__ import annotations

import resource
import threading
import time

import psutil

from shardsmith.profiling.gpu import device_memory_used
from shardsmith.profiling.spans import worker_id

SERIES = ("t", "rss", "cpu", "gpu_mem", "managed", "spilled", "executing")
# How two neighbouring samples merge when a series is thinned: peaks stay peaks, rates average.
_MERGE = {"t": min, "rss": max, "cpu": lambda a, b: (a + b) / 2, "gpu_mem": max, "managed": max,
          "spilled": max, "executing": max}
_SAMPLERS: dict[str, Sampler] = {}


class Sampler:
    def __init__(self, interval: float, gpu: bool = False, worker=None, max_samples: int = 4000):

        self.interval, self.gpu, self.worker, self.max_samples = interval, gpu, worker, max_samples
        self.proc = psutil.Process()
        self.series: dict[str, list] = {k: [] for k in SERIES}
        self.thread_cpu_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="shardsmith-sampler", daemon=True)
        self._digests0 = _digests(worker)

    def start(self) -> Sampler:
        self._last = (time.time(), self._cpu_seconds())
        self.sample()
        self._thread.start()
        return self

    def _cpu_seconds(self) -> float:
        t = self.proc.cpu_times()
        return t.user + t.system

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()
        self.thread_cpu_s = time.thread_time()  # this thread's own CPU: the sampling overhead

    def sample(self) -> None:
        now, cpu = time.time(), self._cpu_seconds()
        last_t, last_cpu = self._last
        self._last = (now, cpu)
        s = self.series
        s["t"].append(now)
        s["rss"].append(self.proc.memory_info().rss)
        s["cpu"].append(round((cpu - last_cpu) / (now - last_t), 3) if now > last_t else 0.0)
        if self.gpu:
            s["gpu_mem"].append(device_memory_used())
        w = self.worker
        if w is not None:
            spilled = getattr(w.data, "spilled_total", None)
            s["spilled"].append(int(spilled[1]) if spilled is not None else 0)
            s["managed"].append(int(w.state.nbytes))
            s["executing"].append(int(w.state.executing_count))
        if len(s["t"]) >= 2 * self.max_samples:
            self._thin()

    def _thin(self) -> None:
        for k, values in self.series.items():
            if values:
                merge = _MERGE[k]
                self.series[k] = [merge(a, b) if a is not None and b is not None else (a if b is None else b)
                                  for a, b in zip(values[::2], values[1::2])]
        self.interval *= 2

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(timeout=5 + self.interval)
        self.sample()
        return self.summary()

    def summary(self) -> dict:
        s = self.series
        limit = getattr(getattr(self.worker, "memory_manager", None), "memory_limit", None)
        if self.worker is None:
            limit = psutil.virtual_memory().total
        gpu = [v for v in s["gpu_mem"] if v is not None]
        return {
            "id": worker_id(), "pid": self.proc.pid,
            "address": getattr(self.worker, "address", None),
            "interval_s": self.interval,
            "samples": {k: v for k, v in s.items() if v},
            "peak_rss_bytes": max(s["rss"]),
            # The process's peak over its whole life: more than this run for a reused worker.
            "lifetime_max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "peak_gpu_bytes": max(gpu) if gpu else None,
            "memory_limit_bytes": limit,
            "spilled_bytes": max(s["spilled"]) if s["spilled"] else 0,
            "sampler_cpu_s": self.thread_cpu_s,
            "dask": _delta(self._digests0, _digests(self.worker)),
        }


def _digests(worker) -> dict:
    """Dask's fine performance metrics of a worker, summed over task prefixes and spans:
    e.g. ``gather-dep.network.seconds`` (transfers) or ``execute.disk-write.bytes`` (spill)."""
    if worker is None:
        return {}
    out: dict = {}
    for key, value in list(getattr(worker, "digests_total", {}).items()):
        if not isinstance(key, tuple):
            continue
        parts = [str(p) for p in (key[:1] + key[-2:] if key[0] == "execute" else key)]
        name = ".".join(parts)
        out[name] = out.get(name, 0) + value
    return out


def _delta(before: dict, after: dict) -> dict:
    return {k: round(v - before.get(k, 0), 6) for k, v in sorted(after.items()) if v - before.get(k, 0)}


# --- on Dask workers, through client.run ------------------------------------------------------------
def start_on_worker(run_id: str, interval: float, gpu: bool, dask_worker=None) -> str:
    _SAMPLERS[run_id] = Sampler(interval, gpu, dask_worker).start()
    return worker_id()


def stop_on_worker(run_id: str, dask_worker=None) -> dict | None:
    sampler = _SAMPLERS.pop(run_id, None)
    return sampler.stop() if sampler is not None else None
