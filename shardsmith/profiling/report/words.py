"""Numbers in words for reports and terminal summaries; durations as users write them."""

from __future__ import annotations

import re

from shardsmith.errors import ShardsmithError


def human_bytes(n) -> str:
    if n is None:
        return "-"
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def human_count(n) -> str:
    if n is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.3g}" if isinstance(n, float) else f"{n}"


def human_seconds(s) -> str:
    if s is None:
        return "-"
    if s >= 3600:
        return f"{s / 3600:.2f} h"
    if s >= 120:
        return f"{s / 60:.1f} min"
    return f"{s:.3g} s"


def money(value, currency: str) -> str:
    if value is None:
        return "-"
    digits = 2 if abs(value) >= 1 else 4 if abs(value) >= 0.01 else 6
    return f"{value:,.{digits}f} {currency}"




_UNITS = {"sec": "s", "secs": "s", "min": "m", "mins": "m", "hr": "h", "hrs": "h"}
_ALIASES = re.compile(r"(\d)\s*(secs?|mins?|hrs?)$", re.IGNORECASE)  # units dask does not spell this way


def parse_duration(text: str, key: str = "--deadline") -> float:
    """``"90"`` / ``"90s"`` -> 90.0, ``"10m"`` -> 600.0, ``"1.5h"`` -> 5400.0 (dask's parse_timedelta)."""
    from dask.utils import parse_timedelta  # lazy: importing dask costs ~0.3 s of every start-up

    short = _ALIASES.sub(lambda m: m.group(1) + _UNITS[m.group(2).lower()], str(text).strip())
    try:
        seconds = parse_timedelta(short, default="s")
    except (ValueError, KeyError, TypeError):
        seconds = None
    if seconds is None or seconds < 0:
        raise ShardsmithError(f"expected a duration like 90s, 10m or 1.5h, got {text!r}", key)
    return float(seconds)
