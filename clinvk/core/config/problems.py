"""A config problem (origin, key, reason) and the one ConfigError that reports them all."""

from __future__ import annotations

import typing
from dataclasses import dataclass

from clinvk.core.errors import ConfigError


@dataclass(frozen=True)
class Problem:
    origin: str
    key: str
    reason: str
    line: int = 0  # file line, only used to report file problems in reading order

    def render(self) -> str:
        return f"{self.origin}: {self.key}: {self.reason}" if self.key else \
            f"{self.origin}: {self.reason}"


def raise_problems(problems: list[Problem]) -> typing.NoReturn:
    if len(problems) == 1:
        message = "invalid configuration: " + problems[0].render()
    else:
        lines = "\n".join("  - " + p.render() for p in problems)
        message = f"invalid configuration ({len(problems)} errors):\n{lines}"
    raise ConfigError(
        message,
        field=problems[0].key or None,
        details=[{"origin": p.origin, "key": p.key, "reason": p.reason} for p in problems],
    )


def origin_text(source: str, line: int | None = None) -> str:
    if source.startswith("file:"):
        path = source[len("file:"):]
        return f"{path}, line {line}" if line else path
    if source.startswith("env:"):
        return f"environment variable {source[len('env:'):]}"
    if source == "flag":
        return "command-line option"
    return source
