"""Sizes as configs write them (``"64MB"``, ``"1GiB"``, ``512``), read where they are used: the
config checks them (compiler/config.py), the planner and runtime size with them, and the profile's
cost projection reads ``profiling.project_to_bytes`` with them. Dask's ``parse_bytes`` syntax, without
importing dask (a third of a second that a compile paid at its end for one projection); where it
differs, deliberately: ``"MB"`` and ``""`` are not sizes (tests/test_sizes.py)."""

from __future__ import annotations

import math
import re

from shardsmith.errors import ConfigError

_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)(?:e([+-]?\d+))?\s*([kmgtp]i?)?b?\s*", re.IGNORECASE)
_SIZE_UNITS = {None: 1, **{p: 1000 ** (i + 1) for i, p in enumerate("kmgtp")},
               **{p + "i": 1024 ** (i + 1) for i, p in enumerate("kmgtp")}}


def parse_size(value, key: str) -> int:
    """``"64MB"`` -> 64_000_000, ``"1GiB"`` -> 2**30; a plain int is bytes (the sizes dask's
    parse_bytes reads, without importing dask: a quarter second that planning does not need; a
    size starts with its number). Errors name ``key``.

    >>> parse_size("64MB", "k"), parse_size("1GiB", "k"), parse_size(" 1.5 kb", "k"), parse_size(512, "k")
    (64000000, 1073741824, 1500, 512)
    """
    size = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (m := _SIZE.fullmatch(value)):
        number, exponent, unit = m.groups()
        try:
            size = float(number) * 10 ** int(exponent or 0) * _SIZE_UNITS[unit.lower() if unit else None]
        except OverflowError:  # beyond a float: too large, said below
            size = math.inf
    if size is None:
        raise ConfigError(f"expected a size like '128MB' or '1GiB', got {value!r}", key)
    if not 0 < size < 2**63:
        raise ConfigError(f"expected a positive size below 8EiB, got {value!r}", key)
    return int(size)
