"""Manifest source: YAML or JSON files, directories of them, or stdin (``-``), multi-document,
with ``List`` kinds expanded (so `helm template` output and `kubectl get -o yaml` both work).

Each object keeps where it came from (file, line, and the line of any field path inside it);
bad documents become one-line problems naming the file and line, and the rest still loads."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import yaml

from kubext_audit import kinds
from kubext_audit.checks.model import Path, Ref

SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "<stdin>"  # the file name of what -f - reads
SEPARATOR = re.compile(r"^---(\s|$)")


@dataclass
class Location:
    file: str
    line: int  # 1-based line of the object's first key
    node: yaml.Node | None = field(default=None, repr=False)

    def line_of(self, path: Path) -> int:
        """The line of the deepest part of ``path`` that exists in the document."""
        node, line = self.node, self.line
        for step in path:
            # A mapping step is located at its key (a block value starts on the next line).
            pair: tuple[yaml.Node, yaml.Node] | None = None
            if isinstance(node, yaml.MappingNode):
                pair = next(((k, v) for k, v in node.value if k.value == step), None)
            elif (
                isinstance(node, yaml.SequenceNode)
                and isinstance(step, int)
                and step < len(node.value)
            ):
                pair = (node.value[step], node.value[step])
            if pair is None:
                break
            line, node = pair[0].start_mark.line + 1, pair[1]
        return line


@dataclass
class Loaded:
    objects: list[dict[str, Any]] = field(default_factory=list)
    locations: dict[Ref, Location] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def documents(text: str) -> Iterable[tuple[int, str]]:
    """Each document's text with the 0-based line it starts on."""
    start, lines = 0, []
    for number, line in enumerate(text.splitlines(keepends=True)):
        if SEPARATOR.match(line):
            yield start, "".join(lines)
            start, lines = number + 1, []
        else:
            lines.append(line)
    yield start, "".join(lines)


def first_line(node: yaml.Node, offset: int) -> int:
    return offset + node.start_mark.line + 1


def load_text(text: str, name: str, into: Loaded) -> None:
    for offset, doc in documents(text):
        try:
            node = yaml.compose(doc, Loader=yaml.SafeLoader)
            data = yaml.safe_load(doc) if node is not None else None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"{offset + mark.line + 1}:{mark.column + 1}" if mark else str(offset + 1)
            into.problems.append(f"{name}:{where}: YAML syntax error: {exc.problem or exc}")
            continue
        except yaml.YAMLError as exc:
            into.problems.append(f"{name}:{offset + 1}: YAML error: {exc}")
            continue
        if node is None or data is None:
            continue
        add_object(data, node, name, offset, into)


def add_object(data: Any, node: yaml.Node, name: str, offset: int, into: Loaded) -> None:
    line = first_line(node, offset)
    if not isinstance(data, dict):
        into.problems.append(f"{name}:{line}: a {type(data).__name__}, not a Kubernetes object")
        return
    kind = data.get("kind")
    if not kind or not isinstance(kind, str):
        into.problems.append(f"{name}:{line}: document has no kind")
        return
    if not data.get("apiVersion"):
        into.problems.append(f"{name}:{line}: {kind} has no apiVersion")
        return
    if kind == "List" or (kind.endswith("List") and isinstance(data.get("items"), list)):
        item_nodes = Location(name, line, node)
        for index, item in enumerate(data.get("items") or []):
            item_node = _child(item_nodes.node, "items", index)
            add_object(item, item_node or node, name, offset, into)
        return
    unknown = kinds.unknown_kind(str(data["apiVersion"]), kind)
    if unknown:
        into.problems.append(f"{name}:{line}: {unknown}")
        return
    if not isinstance(data.get("metadata"), dict) or not data["metadata"].get("name"):
        into.problems.append(f"{name}:{line}: {kind} has no metadata.name")
        return
    into.objects.append(data)
    # The location keeps the document's node, with lines counted from the file's start.
    into.locations.setdefault(Ref.of(data), Location(name, line, _shifted(node, offset)))


def _child(node: yaml.Node | None, key: str, index: int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        seq = next((v for k, v in node.value if k.value == key), None)
        if isinstance(seq, yaml.SequenceNode) and index < len(seq.value):
            return seq.value[index]
    return None


def _shifted(node: yaml.Node, offset: int) -> yaml.Node:
    """The node tree with each mark moved down by ``offset`` lines (one document of many)."""
    if offset:
        stack = [node]
        while stack:
            current = stack.pop()
            current.start_mark = yaml.Mark(
                current.start_mark.name,
                current.start_mark.index,
                current.start_mark.line + offset,
                current.start_mark.column,
                None,
                None,
            )
            if isinstance(current, yaml.MappingNode):
                stack.extend(v for pair in current.value for v in pair)
            elif isinstance(current, yaml.SequenceNode):
                stack.extend(current.value)
    return node


def files_under(path: FsPath) -> list[FsPath]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
    return [path]


def load(paths: Iterable[str], *, stdin: Any = None) -> Loaded:
    """Everything under ``paths`` (``-`` reads stdin)."""
    loaded = Loaded()
    for raw in paths:
        if raw == "-":
            load_text((stdin or sys.stdin).read(), STDIN, loaded)
            continue
        path = FsPath(raw)
        if not path.exists():
            loaded.problems.append(f"{raw}: no such file or directory")
            continue
        for file in files_under(path):
            try:
                text = file.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                loaded.problems.append(f"{file}: cannot read: {exc}")
                continue
            load_text(text, str(file), loaded)
    return loaded
