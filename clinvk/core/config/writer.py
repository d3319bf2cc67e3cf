"""``clinvk config set``: change one key in the file, editing the text in place so comments
survive, validating the whole result, and replacing the file atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from clinvk.core.config.coerce import Invalid, coerce, parse_text
from clinvk.core.config.loader import load_file_into
from clinvk.core.config.model import build, defaults
from clinvk.core.config.problems import Problem, origin_text, raise_problems
from clinvk.core.config.specs import SPECS, split_map_entry, unknown_key_reason
from clinvk.core.config.yamlfile import compose, read_text


def _inline_yaml(value: Any) -> str:
    """One-line YAML for a value, quoted whenever YAML would otherwise change its type."""
    if isinstance(value, str) and ("\n" in value or "\r" in value):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, tuple):
        value = list(value)
    dumped = yaml.safe_dump({"k": value}, default_flow_style=True, width=10**9,
                            allow_unicode=True).strip()
    return dumped[len("{k: "):-1]


def _find_node(root: yaml.Node | None, parts: list[str]
               ) -> tuple[list[tuple[yaml.Node, yaml.Node]], yaml.Node | None]:
    """Walk mapping nodes along ``parts``; return the (key, value) chain found and the rest."""
    chain: list[tuple[yaml.Node, yaml.Node]] = []
    node = root
    for part in parts:
        if not isinstance(node, yaml.MappingNode):
            break
        found = None
        for key_node, value_node in node.value:
            if key_node.value == part:
                found = (key_node, value_node)
        if found is None:
            break
        chain.append(found)
        node = found[1]
    return chain, node


def _after_node(text: str, node: yaml.Node) -> int:
    """Index of the start of the line after the last line holding ``node``'s content."""
    while isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and not node.flow_style \
            and node.value:
        last = node.value[-1]
        node = last[1] if isinstance(node, yaml.MappingNode) else last
    end = node.end_mark.index
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        return end  # a block scalar already ends at the start of a line
    newline = text.find("\n", end)
    return len(text) if newline == -1 else newline + 1


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _block_lines(missing: list[str], inline: str, indent: int) -> list[str]:
    lines = [f"{' ' * (indent + 2 * depth)}{part}:" for depth, part in enumerate(missing[:-1])]
    lines.append(f"{' ' * (indent + 2 * (len(missing) - 1))}{missing[-1]}: {inline}")
    return lines


def _insert(text: str, at: int, lines: list[str]) -> str:
    lead = "\n" if at > 0 and text[at - 1] != "\n" else ""
    return text[:at] + lead + "\n".join(lines) + "\n" + text[at:]


def _line_edit(text: str, root: yaml.Node | None, parts: list[str], value: Any) -> str | None:
    """Edit the file text in place so comments survive; None if only a rewrite will do."""
    chain, _ = _find_node(root, parts)
    inline = _inline_yaml(value)
    if len(chain) == len(parts):  # the key exists: replace its value
        key_node, node = chain[-1]
        on_key_line = node.start_mark.line == node.end_mark.line == key_node.start_mark.line
        if isinstance(node, yaml.SequenceNode) and not node.flow_style and node.value \
                and isinstance(value, tuple) and value:
            # Block list -> block list with the same indentation.
            first = node.value[0].start_mark
            dash_col = text.rfind("-", 0, first.index) - text.rfind("\n", 0, first.index) - 1
            start = text.rfind("\n", 0, first.index) + 1
            items = [" " * dash_col + "- " + _inline_yaml(item) for item in value]
            return text[:start] + "\n".join(items) + "\n" + text[_after_node(text, node):]
        flow_or_scalar = isinstance(node, yaml.ScalarNode) or bool(getattr(node, "flow_style",
                                                                           False))
        block_scalar = isinstance(node, yaml.ScalarNode) and node.style in ("|", ">")
        if _is_null(node) and node.start_mark.index == node.end_mark.index:
            at = node.start_mark.index  # "key:" with nothing after the colon
            return text[:at] + " " + inline + text[at:]
        if block_scalar and node.start_mark.line == key_node.start_mark.line:
            # "key: |" + indented lines -> "key: <one-line value>"
            return text[:node.start_mark.index] + inline + "\n" + text[_after_node(text, node):]
        if on_key_line and flow_or_scalar and not block_scalar:
            start, end = node.start_mark.index, node.end_mark.index
            return text[:start] + inline + text[end:]
        return None
    # The key is missing: add it (and any missing parent sections) after the parent's last entry.
    missing = parts[len(chain):]
    if not chain and root is None:  # empty file, or comments only
        return _insert(text, len(text), _block_lines(missing, inline, 0))
    parent = chain[-1][1] if chain else root
    if isinstance(parent, yaml.MappingNode) and not parent.flow_style and parent.value:
        indent = parent.value[0][0].start_mark.column
        return _insert(text, _after_node(text, parent), _block_lines(missing, inline, indent))
    str_tag = "tag:yaml.org,2002:str"
    if isinstance(parent, yaml.MappingNode) and parent.flow_style and len(missing) == 1 \
            and split_map_entry(".".join(parts)) \
            and parent.start_mark.line == parent.end_mark.line \
            and all(isinstance(v, yaml.ScalarNode) and k.tag == v.tag == str_tag
                    for k, v in parent.value):
        # "env: {A: b}" gains an entry: rewrite just that one-line mapping.
        merged = {k.value: v.value for k, v in parent.value} | {missing[0]: value}
        start, end = parent.start_mark.index, parent.end_mark.index
        return text[:start] + _inline_yaml(merged) + text[end:]
    if chain and _is_null(parent):  # "output:" with everything commented out
        key_node = chain[-1][0]
        text = text[:parent.start_mark.index] + text[parent.end_mark.index:]  # drop "null"/"~"
        at = text.find("\n", parent.start_mark.index)
        at = len(text) if at == -1 else at
        lines = _block_lines(missing, inline, key_node.start_mark.column + 2)
        return text[:at] + "\n" + "\n".join(lines) + text[at:]
    return None


def _rewrite(data: Any, parts: list[str], value: Any) -> str:
    data = data if isinstance(data, dict) else {}
    node = data
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = list(value) if isinstance(value, tuple) else value
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o600  # backend env may hold secrets
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def set_config_value(path: str | os.PathLike[str], dotted_key: str, raw_value: str) -> None:
    """``clinvk config set``: parse, validate and write one key, keeping comments if possible.

    ``backends.<name>.env.NAME`` / ``.aliases.NAME`` set a single map entry. The resulting file
    is validated as a whole before it atomically replaces the old one.
    """
    path = Path(path).expanduser()
    origin = f"config set {dotted_key}"
    entry = split_map_entry(dotted_key)
    spec = SPECS.get(entry[0] if entry else dotted_key)
    if spec is None:
        raise_problems([Problem(origin, dotted_key, unknown_key_reason(dotted_key))])
    try:
        if entry:
            value: Any = raw_value
            coerce(spec, {entry[1]: raw_value})
        else:
            value = coerce(spec, parse_text(spec, raw_value))
    except Invalid as exc:
        raise_problems([Problem(origin, dotted_key, str(exc))])
    parts = dotted_key.split(".")
    text = read_text(path) if path.exists() else ""
    root, data = compose(text, path)
    if data is not None and not isinstance(data, dict):
        raise_problems([Problem(origin_text(f"file:{path}", 1), "",
                         "the top level must be a mapping of sections")])
    new_text = _line_edit(text, root, parts, value)
    if new_text is None:
        new_text = _rewrite(data, parts, value)
    # Validate the file exactly as `load_config` would (environment ignored).
    flat, sources = defaults()
    problems: list[Problem] = []
    lines = load_file_into(flat, sources, problems, new_text, path)
    build(flat, sources, problems, path=path, lines=lines)
    _atomic_write(path, new_text)
