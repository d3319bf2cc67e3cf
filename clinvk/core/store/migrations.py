"""The store's schema as numbered ``.sql`` files, one directory per SQL dialect.

``sql/<dialect>/NNN_name.sql`` is migration NNN; the schema version of a database is the
number of the last migration applied. Adding a table is adding the next numbered file to
each dialect's directory: nothing else registers it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from clinvk.core.types import StoreDialect

__all__ = ["Migration", "latest_version", "migrations"]

_NAME_RE = re.compile(r"(\d{3})_[a-z0-9_]+\.sql")


@dataclass(frozen=True)
class Migration:
    """One numbered schema step: its version and its SQL text (a script of statements)."""

    version: int
    name: str
    script: str


@cache
def migrations(dialect: StoreDialect) -> tuple[Migration, ...]:
    """Every migration of ``dialect`` in version order; versions run 1, 2, … without gaps."""
    folder = resources.files("clinvk.core.store").joinpath("sql", str(dialect))
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME_RE.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match[1]), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"store migrations for {dialect} are not numbered 1..n: {versions}")
    return tuple(found)


def latest_version(dialect: StoreDialect) -> int:
    """The schema version a fully migrated database of ``dialect`` has."""
    return len(migrations(dialect))
