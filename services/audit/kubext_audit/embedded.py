"""ConfigMap data values that are themselves Kubernetes-style documents (a scheduler's
KubeSchedulerConfiguration), parsed once here so that the checks, which parse nothing, can read
them. Both sources build their Inventory through ``inventory``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from kubext_audit.checks.model import Inventory, Obj, Ref


def documents(objects: Iterable[Obj]) -> dict[tuple[Ref, str], Any]:
    """(ConfigMap, data key) -> the value parsed as YAML, for values that are a mapping with a
    ``kind``; values that are not YAML, or plain text, are left out."""
    found: dict[tuple[Ref, str], Any] = {}
    for obj in objects:
        data = obj.get("data")
        if obj.get("kind") != "ConfigMap" or not isinstance(data, dict):
            continue
        for key, value in data.items():
            if not isinstance(value, str) or "kind:" not in value and '"kind"' not in value:
                continue
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                continue  # a ConfigMap may hold any text
            if isinstance(parsed, dict) and isinstance(parsed.get("kind"), str):
                found[(Ref.of(obj), str(key))] = parsed
    return found


def inventory(objects: Iterable[Obj], *, live: bool = False) -> Inventory:
    listed = tuple(objects)
    return Inventory(listed, live=live, embedded=documents(listed))
