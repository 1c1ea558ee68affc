"""What several commands share: logging to stderr, argument parsing whose errors are one line, and
telling options from Hydra overrides."""

from __future__ import annotations

import argparse
import gc
import logging
import sys

from shardsmith.errors import ShardsmithError

log = logging.getLogger("shardsmith")


def setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)


FREEZE_STARTUP = False  # cli.entry sets it: the process is the command's, and ends with it


def startup_over() -> None:
    """The command's work begins: the cyclic garbage collector, off while it started, runs again
    (``cli.main`` turns it off, and a command with ``START_UP_ONLY`` calls this itself). In the
    command's own process (``cli.entry``) the objects made so far (~8x10^4: modules, Hydra's state,
    the config) are first frozen out of the collector's reach (``gc.freeze``): they live as long as
    the process, and the collections of the work then skip them (0.23 s of collections in a
    2,000,000-row compile became 0.14 s). Not when ``cli.main`` is called from a longer-lived
    process, whose cyclic garbage from before would never be collected."""
    if FREEZE_STARTUP:
        gc.freeze()
    gc.enable()


def split_options(rest: list[str], flags: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """Options (``--x`` / ``--x=1`` / ``-x 1``) for argparse; ``key=value`` words are overrides.
    ``flags`` are options that take no value."""
    opts, overrides, i = [], [], 0
    while i < len(rest):
        word = rest[i]
        if word.startswith("-") and "=" not in word.split("=")[0][2:] and not is_override(word):
            opts.append(word)
            if i + 1 < len(rest) and not rest[i + 1].startswith("-") and not is_override(rest[i + 1]) \
                    and word not in flags and "=" not in word:
                opts.append(rest[i + 1])
                i += 1
        else:
            overrides.append(word)
        i += 1
    return opts, overrides


def is_override(word: str) -> bool:
    """``key=value``, ``+key=value``, ``~key`` (a Hydra deletion needs no value)."""
    return ("=" in word or word.startswith("~")) and not word.startswith("--")


class _Defaults(argparse.RawDescriptionHelpFormatter):
    """Each option's help ends with its default, where it has one worth saying."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """argparse with every option's default in its help, and a usage error as one ``error:`` line
    (exit 2) instead of the usage text followed by the error."""

    def __init__(self, prog: str, description: str, **kwargs):
        super().__init__(prog=f"shardsmith {prog}", description=description, formatter_class=_Defaults, **kwargs)

    def error(self, message: str):
        raise ShardsmithError(f"{message} (see '{self.prog} --help')", self.prog)


def add_config_options(p: argparse.ArgumentParser) -> None:
    """``--config-dir`` and ``--config-name``, as ``compile`` (Hydra) takes them."""
    p.add_argument("--config-dir", "-cd", metavar="DIR", default=None,
                   help="add DIR to the config search path (DIR/pipeline/NAME.yaml is then pipeline=NAME)")
    p.add_argument("--config-name", "-cn", metavar="NAME", default="config",
                   help="the primary config: the package's configs/config.yaml, or DIR/NAME.yaml")
