"""Reading the config file: one YAML parse keeping line numbers, flattened into dotted
keys with structure problems (duplicates, unknown keys, wrong nesting) reported by line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from clinvk.core.config.coerce import type_name
from clinvk.core.config.problems import Problem, origin_text
from clinvk.core.config.schema import KNOWN_BACKENDS, SECTIONS
from clinvk.core.config.specs import SPECS, suggest, unknown_key_reason
from clinvk.core.errors import ConfigError


def _yaml_error(path: Path, exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    text = f"{context}: {problem}" if context else problem
    return ConfigError(f"invalid configuration: {where}: invalid YAML: {text}",
                       details=[{"origin": where, "key": "", "reason": f"invalid YAML: {text}"}])


def compose(text: str, path: Path) -> tuple[yaml.Node | None, Any]:
    """Parse YAML once, keeping the node tree (for line numbers) and the Python data."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise _yaml_error(path, exc) from None
    finally:
        loader.dispose()
    return node, data


def _mapping_items(node: yaml.Node) -> list[tuple[yaml.Node, yaml.Node]]:
    return list(node.value) if isinstance(node, yaml.MappingNode) else []


def walk_file(node: yaml.Node | None, data: Any, path: Path
               ) -> tuple[dict[str, Any], dict[str, int], list[Problem]]:
    """Flatten a parsed file into dotted leaf keys; report structure problems with lines."""
    origin = f"file:{path}"
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    problems: list[Problem] = []

    def where(line: int) -> str:
        return origin_text(origin, line)

    if data is None:
        return values, lines, problems
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        problems.append(Problem(where(1), "", "the top level must be a mapping of sections"))
        return values, lines, problems

    def visit(mapping_node: yaml.MappingNode, mapping: dict, prefix: str) -> None:
        seen: set[str] = set()
        for key_node, value_node in _mapping_items(mapping_node):
            line = key_node.start_mark.line + 1
            raw_key = key_node.value
            key = f"{prefix}.{raw_key}" if prefix else str(raw_key)
            if key_node.tag != "tag:yaml.org,2002:str":
                problems.append(Problem(where(line), key, "keys must be strings", line))
                continue
            if raw_key in seen:
                problems.append(Problem(where(line), key, "duplicate key", line))
                continue
            seen.add(raw_key)
            value = mapping[raw_key]
            is_section = (key in SECTIONS or
                          (prefix == "backends" and raw_key in KNOWN_BACKENDS))
            if is_section:
                if value is None:  # "server:" with everything commented out
                    continue
                if not isinstance(value, dict) or not isinstance(value_node, yaml.MappingNode):
                    problems.append(Problem(where(line), key,
                                             f"expected a mapping, got {type_name(value)}", line))
                    continue
                visit(value_node, value, key)
                continue
            if key not in SPECS:
                if prefix == "backends":
                    reason = (f"unknown backend (known: {', '.join(KNOWN_BACKENDS)})"
                              + suggest(str(raw_key), KNOWN_BACKENDS))
                else:
                    reason = unknown_key_reason(key)
                problems.append(Problem(where(line), key, reason, line))
                continue
            values[key] = value
            lines[key] = line
            if SPECS[key].kind == "map" and isinstance(value_node, yaml.MappingNode):
                names = [k.value for k, _ in _mapping_items(value_node)]
                dupes = {n for n in names if names.count(n) > 1}
                for name in sorted(dupes):
                    problems.append(Problem(where(line), f"{key}.{name}", "duplicate key", line))

    visit(node, data, "")
    return values, lines, problems


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise ConfigError(f"invalid configuration: {path}: is a directory, not a file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"invalid configuration: {path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"invalid configuration: {path}: cannot read: {exc.strerror}") from None
