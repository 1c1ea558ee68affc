"""The CPU engine's compiled kernels (Numba): which path runs, and where generated sources live.

``engine.cpu_kernels`` chooses: ``numba`` (compiled loops: kernels/numba_fused.py for fused
elementwise groups, kernels/numba_xxhash64.py for the row hash), ``numpy`` (the vectorised NumPy
reference, which defines every result), or ``auto`` (numba when it is installed and the input is
large enough to repay Numba's start-up, else numpy). Both paths give bit-identical results; the
tests run both.

Numba is imported on first use only (it costs a few tenths of a second), and a generated source is
written once to ``<cache>/numba/<name>_<sha256>.py`` and imported from there, so that Numba's own
on-disk cache (``cache=True``, which needs a real file) keeps its machine code across runs: a
warm run loads kernels instead of compiling them. The file's name is its content's hash, so a
change to code generation can never meet stale machine code.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import queue
import sys
import tempfile
import threading
from concurrent.futures import Future, wait
from pathlib import Path

from shardsmith.errors import ShardsmithError
from shardsmith.kernels.gpu import cache_dir as kernel_cache

# Numba costs each worker process 1-2 s of CPU before its first kernel runs (importing it, its first
# dispatch; more when SciPy is installed, which Numba imports), and the demo pipeline's kernels save
# about 0.5 s of CPU per million rows (2-vCPU machine, 2026-11): below this many input rows per
# worker process, auto stays on NumPy.
AUTO_MIN_ROWS = 4_000_000
_lock = threading.Lock()  # the builder's table of futures
_source_lock = threading.Lock()
_modules: dict[str, object] = {}


def available() -> bool:
    """Whether Numba is installed (without importing it: the driver only plans)."""
    return importlib.util.find_spec("numba") is not None


def import_numba():
    """Numba, imported with Intel's SVML kept out: with it, LLVM may replace ``log1p`` in a
    vectorised loop by a vector routine whose last bit differs from the C library's."""
    os.environ.setdefault("NUMBA_DISABLE_INTEL_SVML", "1")
    import numba  # lazy: a second of start-up; the driver and small inputs never need it

    return numba


def cache_dir() -> Path:
    return kernel_cache() / "numba"


def load_source(prefix: str, text: str):
    """The module whose source is ``text``, written to the cache directory (once) and imported."""
    sha = hashlib.sha256(text.encode()).hexdigest()[:20]
    name = f"{prefix}_{sha}"
    module = _modules.get(name)
    if module is not None:
        return module
    with _source_lock:
        if name not in _modules:
            import_numba()
            _modules[name] = _import(name, _write_once(name, text))
    return _modules[name]


def _write_once(name: str, text: str) -> Path:
    """The source's path, in the cache directory or, where that cannot be written, a folder in /tmp."""
    for directory in (cache_dir(), Path(tempfile.gettempdir()) / f"shardsmith-numba-{os.getuid()}"):
        try:
            return _write_into(directory, name, text)
        except OSError:
            continue
    raise OSError(f"cannot write a kernel source into {cache_dir()} nor into the temporary directory")


def _write_into(directory: Path, name: str, text: str) -> Path:
    """Written through a temporary name, so that another worker never reads half a file, and never
    rewritten, so that Numba's cache of it (keyed by the file's modification time) stays valid."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(text)
        try:
            os.link(tmp, path)  # unlike a rename, never replaces a file another process just wrote
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path


def _import(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # Numba's cache names functions by their module
    spec.loader.exec_module(module)
    return module


def choose(setting: str, rows: int, processes: int) -> str:
    """The plan's ``engine.cpu_kernels``: ``auto`` becomes ``numpy`` where Numba is missing or the
    input is too small to repay its start-up (``rows`` < 0: not known, as for CSV)."""
    if setting != "auto":
        return setting
    if not available() or 0 <= rows < AUTO_MIN_ROWS * max(1, processes):
        return "numpy"
    return "auto"


def mode(setting: str) -> str:
    """How a backend runs kernels for an ``engine.cpu_kernels`` setting: ``numpy``; ``numba``
    (compiled, waiting for a kernel's compile); or ``auto`` (compiled once ready, NumPy meanwhile)."""
    if setting == "numpy" or (setting == "auto" and not available()):
        return "numpy"
    return setting


def compiled(how: str, key, build):
    """The kernel that ``build()`` returns, built once per process and ``key`` on a background
    thread. ``how="numba"`` waits for it; ``how="auto"`` gets None until it is ready (and for good
    if it failed), so the caller runs the NumPy path meanwhile: the results are the same bits."""
    future = _builder.submit(key, build)
    if how == "numba":
        try:
            return future.result()
        except Exception as exc:  # noqa: BLE001  (any build failure is the setting's to explain)
            raise ShardsmithError(f"a compiled CPU kernel failed to build ({type(exc).__name__}: {exc}); "
                                  "use engine.cpu_kernels=numpy", "engine.cpu_kernels") from exc
    if not future.done():
        return None
    if future.exception() is not None:
        _warn_once(key, future.exception())
        return None
    return future.result()


def wait_built(timeout: float | None = None) -> int | None:
    """Wait (up to ``timeout`` seconds) until every kernel asked for so far is built or failed,
    for a long-lived process that warms up before its work (shardsmith/serve.py ``warm``): how
    many kernels were asked for, or None when the time ran out."""
    with _lock:
        futures = list(_builder.futures.values())
    return None if wait(futures, timeout).not_done else len(futures)


class _Builder:
    """One daemon thread that builds kernels in the order asked: compiling (or loading from Numba's
    cache) holds the GIL for long stretches, and one thread keeps that to one core."""

    def __init__(self):
        self.futures: dict = {}
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread: threading.Thread | None = None

    def submit(self, key, build) -> Future:
        with _lock:
            future = self.futures.get(key)
            if future is None:
                future = self.futures[key] = Future()
                self.queue.put((future, build))
                if self.thread is None:
                    self.thread = threading.Thread(target=self._run, name="shardsmith-numba", daemon=True)
                    self.thread.start()
        return future

    def _run(self) -> None:
        while True:
            future, build = self.queue.get()
            try:
                future.set_result(build())
            except BaseException as exc:  # noqa: BLE001  (handed to whoever waits for the kernel)
                future.set_exception(exc)


_builder = _Builder()
_warned: set = set()


def _warn_once(key, exc: BaseException) -> None:
    if key[0] not in _warned:
        _warned.add(key[0])
        logging.getLogger("shardsmith").warning("compiled CPU kernel %s unavailable, NumPy runs instead: %s: %s",
                                                key[0], type(exc).__name__, exc)
