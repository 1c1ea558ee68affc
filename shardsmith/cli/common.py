"""What several commands share: logging to stderr, and telling options from Hydra overrides."""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("shardsmith")


def setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)


def split_options(rest: list[str], flags: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """Options (``--x`` / ``--x=1`` / ``-x 1``) for argparse; ``key=value`` words are overrides.
    ``flags`` are options that take no value."""
    opts, overrides, i = [], [], 0
    while i < len(rest):
        word = rest[i]
        if word.startswith("-") and "=" not in word.split("=")[0][2:] and not is_override(word):
            opts.append(word)
            if i + 1 < len(rest) and not rest[i + 1].startswith("-") and not is_override(rest[i + 1]) \
                    and word not in flags:
                opts.append(rest[i + 1])
                i += 1
        else:
            overrides.append(word)
        i += 1
    return opts, overrides


def is_override(word: str) -> bool:
    return "=" in word and not word.startswith("--")
