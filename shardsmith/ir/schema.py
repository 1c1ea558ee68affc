"""Columns and schemas: what flows along every edge of the graph.

Hidden columns that the engine carries alongside user columns start with ``__`` and never reach
the output: the input file and row of every row (for quarantine records and row-hash splits) and
the split it is assigned to.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from shardsmith.errors import ConfigError, did_you_mean

FILE_COL, ROW_COL, SPLIT_COL = "__file", "__row", "__split"
HIDDEN = (FILE_COL, ROW_COL, SPLIT_COL)
ROLES = ("label", "continuous", "categorical", "weight", "id", "other")


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str
    role: str = "other"
    cardinality: int | None = None


@dataclass(frozen=True)
class Schema:
    columns: tuple[Column, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def __contains__(self, name: str) -> bool:
        return any(c.name == name for c in self.columns)

    def __getitem__(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def require(self, name: str, where: str) -> Column:
        """The column, or a ConfigError at ``where`` that suggests a close name."""
        if name not in self:
            raise ConfigError(f"column '{name}' is not in the input schema{did_you_mean(name, self.names)}", where)
        return self[name]

    def replace_columns(self, new: dict[str, Column]) -> Schema:
        """Replace columns by name, appending the ones not present yet, keeping order otherwise."""
        cols = [new.pop(c.name, c) for c in self.columns]
        return Schema(tuple(cols) + tuple(new.values()))

    def drop(self, names) -> Schema:
        names = set(names)
        return Schema(tuple(c for c in self.columns if c.name not in names))

    def select(self, names) -> Schema:
        """The columns named, in schema order."""
        names = set(names)
        return Schema(tuple(c for c in self.columns if c.name in names))

    def with_roles(self, roles) -> Schema:
        """The schema with the roles of the columns named in ``roles`` ((name, role) pairs) set."""
        roles = dict(roles)
        if not roles:
            return self
        return Schema(tuple(replace(c, role=roles[c.name]) if c.name in roles else c for c in self.columns))

    def to_json(self) -> list[dict]:
        return [{k: v for k, v in vars(c).items() if v is not None} for c in self.columns]
