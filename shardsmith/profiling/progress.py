"""Progress of the long stages: a bar with rows done, rows/s and ETA on a terminal, plain log lines
(every ``LOG_EVERY`` seconds) where there is none (CI, a pipe, a log file).

Tasks finish on Dask's threads, so :meth:`Progress.watch` counts a partition when its future
completes (a done-callback), not when the driver gets round to it; the counters take a lock.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time

MODES = ("auto", "bar", "log", "off")
LOG_EVERY = 10.0  # seconds between plain log lines
BAR_DELAY = 0.5  # a stage shorter than this never shows a bar
REDRAW = 0.1


def resolve_mode(mode: str, stream=None) -> str:
    """``auto``: a bar on an interactive terminal, log lines otherwise (and always under CI)."""
    if mode != "auto":
        return mode
    stream = stream or sys.stderr
    tty = hasattr(stream, "isatty") and stream.isatty()
    if not tty or os.environ.get("CI") or os.environ.get("TERM") == "dumb":
        return "log"
    return "bar"


def human(n: float) -> str:
    """``1234567`` -> ``1.23M``."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"


class Progress:
    """Rows done out of ``total`` (partitions when a partition's rows are unknown, e.g. CSV)."""

    def __init__(self, label: str, partitions, mode: str = "auto", log=print, stream=None):
        self.label, self.log = label, log
        self.stream = stream or sys.stderr
        self.mode = resolve_mode(mode, self.stream)
        parts = list(partitions)
        self.by_rows = all(getattr(p, "rows", -1) >= 0 for p in parts)
        self.unit = "rows" if self.by_rows else "partitions"
        self.total = sum(p.rows for p in parts) if self.by_rows else len(parts)
        self.done = 0
        self.t0 = time.perf_counter()
        self._lock = threading.Lock()
        self._last_draw = self._last_log = self.t0
        self._drawn = False

    def _weight(self, part) -> int:
        return part.rows if self.by_rows else 1

    def watch(self, future, part):
        """Count ``part`` when ``future`` completes; returns the future."""
        if self.mode == "off":
            return future
        if future.done():
            self.advance(part)
        else:
            future.add_done_callback(lambda _f: self.advance(part))
        return future

    def advance(self, part) -> None:
        if self.mode == "off":
            return
        with self._lock:
            self.done += self._weight(part)
            now = time.perf_counter()
            if self.mode == "bar" and now - self.t0 >= BAR_DELAY and (now - self._last_draw >= REDRAW
                                                                        or self.done >= self.total):
                self._draw(now)
            elif self.mode == "log" and now - self._last_log >= LOG_EVERY and self.done < self.total:
                self._last_log = now
                self.log(self.line(now))

    def rates(self, now: float) -> tuple[float, float | None]:
        elapsed = max(now - self.t0, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else None
        return rate, eta

    def line(self, now: float) -> str:
        rate, eta = self.rates(now)
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta_s = clock(eta) if eta is not None else "?"
        return (f"{self.label}: {human(self.done)}/{human(self.total)} {self.unit} ({pct:.0f}%), "
                f"{human(rate)} {self.unit}/s, ETA {eta_s}")

    def _draw(self, now: float) -> None:
        self._last_draw = now
        rate, eta = self.rates(now)
        frac = self.done / self.total if self.total else 1.0
        tail = (f" {human(self.done)}/{human(self.total)} {self.unit} {human(rate)}/s "
                f"ETA {clock(eta) if eta is not None else '?'}")
        width = max(10, min(40, shutil.get_terminal_size((80, 20)).columns - len(self.label) - len(tail) - 5))
        filled = int(round(width * frac))
        self.stream.write(f"\r{self.label} |{'#' * filled}{'.' * (width - filled)}|{tail}\x1b[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Erase the bar: the driver logs its own summary line of the stage."""
        with self._lock:
            if self._drawn:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self._drawn = False
