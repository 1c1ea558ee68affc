"""The one exception type users see: a message that names the config key or file at fault."""

from __future__ import annotations

import difflib


class ShardsmithError(Exception):
    """A user-facing error. ``where`` is a config key (``graph[3].cols``) or a file path."""

    exit_code = 2

    def __init__(self, message: str, where: str | None = None):
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}" if where else message)


class ConfigError(ShardsmithError):
    """The config is wrong: raised before any data is read."""


class InputError(ShardsmithError):
    """An input file is missing, unreadable or disagrees with the others."""


class OutputError(ShardsmithError):
    """The output location cannot be written: read-only, full, or not a directory."""


class PlanError(ShardsmithError):
    """The graph cannot be planned for the chosen backend."""


class ExpectationError(ShardsmithError):
    """Expectations of severity ``fail`` were broken (ops/expectations.py): the compile stopped
    before its commit. Exit code 3; one line per broken expectation."""

    exit_code = 3

    def __init__(self, lines: list[str]):
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


def error_lines(exc: ShardsmithError) -> list[str]:
    """What the command line prints for an error: ``error: ...``, one line per problem."""
    return [f"error: {line}" for line in str(exc).splitlines() or [type(exc).__name__]]


def did_you_mean(name: str, choices) -> str:
    """`` (did you mean 'I4'?)`` when a close match exists, else the empty string."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""
