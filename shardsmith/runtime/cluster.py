"""Where tasks run: a Dask cluster (local, local CUDA, or an existing scheduler) or this process.

The driver talks to one small interface (``submit``, ``scatter``, handles with ``result()``), so
the compile logic is the same for every choice; Dask moves the data between workers.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import threading
import urllib.parse

from shardsmith.backends import get_backend, resolve_kind
from shardsmith.compiler.config import EngineConfig, parse_device_size, parse_size
from shardsmith.compiler.sizing import local_workers
from shardsmith.errors import ShardsmithError
from shardsmith.runtime import tasks  # noqa: F401  (a worker that runs warm_up imports the tasks' code)
from shardsmith.runtime.planning import usable_cores
from shardsmith.runtime.threads import Threads
from shardsmith.shards.manifest import MANIFEST


class Done:
    """An in-process task's result, shaped like a Dask future."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value

    def done(self) -> bool:
        return True

    def release(self) -> None:
        self.value = None


def _unwrap(obj):
    if isinstance(obj, Done):
        return obj.value
    if isinstance(obj, list):
        return [_unwrap(o) for o in obj]
    if isinstance(obj, tuple):
        return tuple(_unwrap(o) for o in obj)
    return obj


class InProcess:
    """Runs every task at once, in this process, one after another: for debugging."""

    name = "inprocess"
    n_workers = 1
    threads = 1
    dashboard = None

    def submit(self, fn, *args):
        return Done(fn(*_unwrap(list(args))))

    def scatter(self, obj):
        return Done(obj)


class DaskExecutor:
    name = "dask"

    def __init__(self, client):
        self.client = client
        self.n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        self.dashboard = getattr(client, "dashboard_link", None)

    def submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False)

    def scatter(self, obj):
        # A list of one: scattering a dict would scatter each of its values as a separate key.
        return self.client.scatter([obj], broadcast=True, hash=False)[0]


@contextlib.contextmanager
def executor_for(engine: EngineConfig, backend: str, log=None, choice: str | None = None, threads: int = 1):
    """Start (or connect to) what ``engine`` describes; shut down what was started on exit.
    ``choice``: the plan's executor (compiler/sizing.py; None: ``engine.cluster`` as given, auto
    meaning local), and ``threads`` the task threads of an in-process one."""
    choice = choice or ("scheduler" if engine.scheduler else "inprocess" if engine.cluster == "inprocess" else "local")
    if choice == "inprocess":
        ex = Threads(threads) if threads > 1 else InProcess()
        try:
            yield ex
        finally:
            if threads > 1:
                ex.close()
        return
    from distributed import Client  # lazy: distributed costs half a second; in-process runs never need it

    for name in ("distributed", "distributed.nanny", "distributed.scheduler", "distributed.worker"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if engine.scheduler is not None:
        try:
            client = Client(engine.scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise ShardsmithError(f"cannot reach the Dask scheduler {engine.scheduler}: {exc}",
                                  "engine.scheduler") from None
        with client:
            ex = DaskExecutor(client)
            if log:
                log(f"connected to {engine.scheduler}: {ex.n_workers} worker(s)")
            yield ex
        return
    cluster = _local_cluster(engine, backend)
    with cluster, Client(cluster) as client:
        ex = DaskExecutor(client)
        ex.dashboard = local_link(ex.dashboard, engine.host)
        if log:
            log(f"started a local {backend.upper()} cluster: {ex.n_workers} worker(s){_dashboard_note(engine, ex)}")
        yield ex


class EarlyStart:
    """A cluster that the config names (``engine.cluster=local`` or ``engine.scheduler``) started
    on a thread while the driver plans; entering it waits for the start to finish. The thread that
    starts it also stops it (Dask's client keeps its context per thread). ``cancel()`` stops it if
    it was never entered (the dataset was up to date, or planning failed)."""

    def __init__(self, cm):
        self._cm, self._ex, self._error, self._entered = cm, None, None, False
        self._started, self._stop = threading.Event(), threading.Event()
        self._exc: tuple = (None, None, None)
        self._thread = threading.Thread(target=self._hold, name="shardsmith-cluster", daemon=True)
        self._thread.start()

    def _hold(self) -> None:
        try:
            self._ex = self._cm.__enter__()
        except BaseException as exc:  # noqa: BLE001  (raised where the driver enters it)
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._stop.wait()
        try:
            self._cm.__exit__(*self._exc)
        except BaseException as exc:  # noqa: BLE001  (raised where the driver exits it)
            self._error = exc

    def __enter__(self):
        self._started.wait()
        self._entered = True
        if self._error is not None:
            raise self._error
        return self._ex

    def __exit__(self, *exc):
        self._exc = exc
        self._stop.set()
        self._thread.join()
        if self._error is not None and exc[0] is None:
            raise self._error
        return False

    def cancel(self) -> None:
        if not self._entered:
            self._entered = True
            self._stop.set()
            self._thread.join()


def start_early(engine: EngineConfig, output_dir: str, log=None) -> EarlyStart | None:
    """Start the cluster now when the config alone says there will be one (a local cluster or an
    existing scheduler); ``auto`` decides after planning, from the input's size. Not when the
    output already holds a dataset, which may be up to date and need no cluster at all."""
    if engine.scheduler is None and engine.cluster != "local":
        return None
    if os.path.exists(os.path.join(output_dir, MANIFEST)):
        return None
    return EarlyStart(executor_for(engine, resolve_kind(engine.kind), log))


def _has_bokeh() -> bool:
    return importlib.util.find_spec("bokeh") is not None


def _dashboard_note(engine: EngineConfig, ex) -> str:
    """The dashboard's address, or, when one was asked for, why there is none (it needs bokeh)."""
    if not engine.dashboard:
        return ""
    if not _has_bokeh():
        return "; no dashboard: it needs bokeh (pip install 'shardsmith[dashboard]')"
    return f", dashboard {ex.dashboard}" if ex.dashboard else ""


def http_address(host: str) -> str:
    """A free port on ``host`` (IPv6 addresses in brackets).

    >>> http_address("127.0.0.1"), http_address("::1")
    ('127.0.0.1:0', '[::1]:0')
    """
    return f"[{host}]:0" if ":" in host else f"{host}:0"


def local_link(link: str | None, host: str) -> str | None:
    """The dashboard's address on the interface it listens on (Dask names the machine's own
    address, which a server bound to 127.0.0.1 does not answer); as Dask says for every interface.

    >>> local_link("http://192.0.2.2:8787/status", "127.0.0.1")
    'http://127.0.0.1:8787/status'
    """
    if not link or host in ("0.0.0.0", "::", ""):
        return link
    parts = urllib.parse.urlsplit(link)
    netloc = f"[{host}]" if ":" in host else host
    return parts._replace(netloc=f"{netloc}:{parts.port}" if parts.port else netloc).geturl()


def _local_cluster(engine: EngineConfig, backend: str):
    # Dask's scheduler serves HTTP either way (None means its default port 8787 on every interface,
    # which a second compile on the machine would find taken): a free port on engine.host always
    # (this machine only, by default); the dashboard if asked for. Workers listen on engine.host too.
    dashboard = http_address(engine.host)
    scheduler_kwargs = {"dashboard": bool(engine.dashboard)}
    memory = "auto" if engine.memory_limit == "auto" else parse_size(engine.memory_limit, "engine.memory_limit")
    if backend == "gpu":
        from dask_cuda import LocalCUDACluster  # lazy: dask-cuda is optional (the gpu extras)

        return LocalCUDACluster(host=engine.host, dashboard_address=dashboard, memory_limit=memory,
                                silence_logs=logging.ERROR, scheduler_kwargs=scheduler_kwargs,
                                **cuda_cluster_kwargs(engine))
    import dask  # lazy: as distributed above
    from distributed import LocalCluster  # lazy: as distributed above

    # The cores as the plan counts them: a cpuset-limited job gets no more workers than it has cores.
    n, threads = local_workers(engine, usable_cores())
    # Dask sets MALLOC_TRIM_THRESHOLD_ in its workers, and setting it at all switches off glibc's
    # adaptive mmap threshold: every large NumPy / Arrow temporary is then mmapped and unmapped
    # afresh (measured on a fit task: 12x the page faults, 5x the system time of this process).
    # Arrow gets as many threads as the worker has, not the whole machine per worker.
    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    env["SHARDSMITH_ARROW_THREADS"] = str(threads)
    dask.config.set({"distributed.nanny.pre-spawn-environ": env})
    # Worker threads talk to the scheduler in memory (inproc://): only worker processes listen on a host.
    host = {"host": engine.host} if engine.processes else {}
    return LocalCluster(n_workers=n, threads_per_worker=threads, processes=engine.processes, memory_limit=memory,
                        dashboard_address=dashboard, silence_logs=logging.ERROR, scheduler_kwargs=scheduler_kwargs,
                        **host)


def cuda_cluster_kwargs(engine: EngineConfig) -> dict:
    """LocalCUDACluster's settings from the engine config (dask-cuda 26.10's documented parameters):
    one worker per visible GPU (the first ``n_workers`` of CUDA_VISIBLE_DEVICES), an RMM pool that
    CuPy shares, and spilling: dask-cuda's device-to-host spilling of task results above
    ``device_memory_limit`` (its default: 80% of the GPU), and optionally cuDF's own spilling."""
    kwargs: dict = {"threads_per_worker": engine.gpu_threads_per_worker, "pre_import": ["cudf", "cupy"]}
    if engine.n_workers:
        kwargs["n_workers"] = engine.n_workers
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        kwargs["CUDA_VISIBLE_DEVICES"] = visible
    if engine.rmm_pool_size is not None:
        kwargs["rmm_pool_size"] = parse_device_size(engine.rmm_pool_size, "engine.rmm_pool_size")
        kwargs["rmm_allocator_external_lib_list"] = ["cupy"]
    if engine.device_memory_limit is not None:
        kwargs["device_memory_limit"] = parse_device_size(engine.device_memory_limit, "engine.device_memory_limit")
    if engine.spill_cudf:
        kwargs["enable_cudf_spill"] = True
    return kwargs


def warm_up(backend: str) -> None:
    """Import what tasks import, and make the backend (run on every worker when the cluster starts)."""
    get_backend(backend)  # importing this module on the worker imported the task code
