"""Database conversion between db.example.com/v1 and v1beta1, lossless in both directions.

The mapping is :data:`kubext.crds.database.FIELD_MAP` applied structurally, without validating:
a conversion webhook must convert whatever is stored (an object admitted under older rules
must stay readable in every served version). Whatever the target version has no field for
(unknown keys, an empty ``backup: {}`` group) rides along in the annotation
:data:`RESIDUE_ANNOTATION` and is put back when the object is converted back.

Every object gets an answer, never an exception other than :class:`ConversionError`: one nested
deeper than :data:`MAX_DEPTH` is refused with its path, and an unusable residue is ignored.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from kubext.crds import database

RESIDUE_ANNOTATION = "conversion.webhooks.kubext.io/unconverted-spec"
# Levels of objects and arrays an object may nest, itself being level 1. A Database is 3 levels
# deep under its spec; managedFields and unknown fields add a few. Python cannot follow the API
# server's own JSON limit (10,000 levels): its recursion limit is 1,000 frames and copy.deepcopy
# takes 2 a level. 100 leaves every recursive step (the copy, the JSON encoding of the answer)
# far inside that, wherever the call stack stands, and no real Database near it.
MAX_DEPTH = 100
V1 = f"{database.GROUP}/{database.VERSION}"
V1BETA1 = f"{database.GROUP}/{database.V1BETA1}"
_MISSING = object()
_V1BETA1_KEYS = {key for _, key in database.FIELD_MAP}
# v1 groups (storage, backup, monitoring) and the keys the map knows inside each.
_V1_GROUPS: dict[str, set[str]] = {}
_V1_TOP = set()
for _path, _ in database.FIELD_MAP:
    if len(_path) == 1:
        _V1_TOP.add(_path[0])
    else:
        _V1_GROUPS.setdefault(_path[0], set()).add(_path[1])


class ConversionError(Exception):
    """An object that cannot be converted; the message names the object and the problem."""


def _too_deep(value: Any) -> tuple[str | int, ...] | None:
    """The path of the first object or array below level :data:`MAX_DEPTH`, or None.

    Iterative: a recursive walk would fail at the very depth it is there to refuse.
    """
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            children: Any = node.items()
        elif isinstance(node, list):
            children = enumerate(node)
        else:
            continue
        if len(path) >= MAX_DEPTH:
            return path
        stack.extend((child, (*path, key)) for key, child in children)
    return None


def _shown(path: tuple[str | int, ...], parts: int = 4) -> str:
    """``spec.a[0].b...``: the start of ``path``, enough to find the field."""
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path[:parts])
    return text.lstrip(".") + ("..." if len(path) > parts else "")


def _v1_to_v1beta1(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(v1beta1 spec, v1 residue the v1beta1 spec cannot hold)."""
    out: dict[str, Any] = {}
    for path, key in database.FIELD_MAP:
        node: Any = spec
        for part in path:
            node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
            if node is _MISSING:
                break
        else:
            out[key] = node
    residue: dict[str, Any] = {}
    for key, value in spec.items():
        if key in _V1_GROUPS:
            if not isinstance(value, dict):
                residue[key] = value
                continue
            extra = {k: v for k, v in value.items() if k not in _V1_GROUPS[key]}
            if extra or not any(k in _V1_GROUPS[key] for k in value):
                residue[key] = extra  # unknown keys, or an empty group worth keeping
        elif key not in _V1_TOP:
            residue[key] = value
    return out, residue


def _v1beta1_to_v1(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(v1 spec, v1beta1 residue the v1 spec cannot hold)."""
    out: dict[str, Any] = {}
    for path, key in database.FIELD_MAP:
        if key in spec:
            node = out
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = spec[key]
    residue = {k: v for k, v in spec.items() if k not in _V1BETA1_KEYS}
    return out, residue


def _merge_residue(spec: dict[str, Any], residue: dict[str, Any]) -> dict[str, Any]:
    """Put back what an earlier conversion set aside; fields present in ``spec`` win."""
    merged = dict(spec)
    for key, value in residue.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**value, **merged[key]}
        elif key not in merged:
            merged[key] = value
    return merged


def _residue_for(stored: Any, api_version: str) -> dict[str, Any] | None:
    """The spec residue ``stored`` holds for ``api_version``; None if it holds none we can use.

    Anyone who may edit the object's annotations can write anything here. Refusing to convert
    would make the object, and every LIST of its kind in the other version, unreadable, and
    still not recover what the residue lost: so an unusable one is ignored (and left in place,
    where it can be seen), and the conversion stays lossless for everything else.
    """
    try:
        saved = json.loads(stored)
    except (TypeError, ValueError, RecursionError):
        return None
    if not isinstance(saved, dict) or saved.get("apiVersion") != api_version:
        return None
    spec = saved.get("spec")
    if spec is None:
        return {}
    if not isinstance(spec, dict) or _too_deep(saved) is not None:
        return None
    return spec


def convert(obj: Any, desired_api_version: str) -> dict[str, Any]:
    """One Database object converted to ``desired_api_version`` (unchanged if already there)."""
    if not isinstance(obj, dict):
        raise ConversionError(f"expected a Database object, got {type(obj).__name__}")
    source = obj.get("apiVersion")
    name = (
        (obj.get("metadata") or {}).get("name") if isinstance(obj.get("metadata"), dict) else None
    )
    who = f"Database {name!r}" if name else "Database"
    if obj.get("kind") != database.KIND:
        raise ConversionError(f"expected kind Database, got {obj.get('kind')!r}")
    if source not in (V1, V1BETA1):
        raise ConversionError(f"{who}: cannot convert from apiVersion {source!r}")
    if desired_api_version not in (V1, V1BETA1):
        raise ConversionError(f"{who}: cannot convert to apiVersion {desired_api_version!r}")
    deep = _too_deep(obj)
    if deep is not None:
        raise ConversionError(f"{who}: {_shown(deep)} nests deeper than {MAX_DEPTH} levels")
    if source == desired_api_version:
        return obj
    out = copy.deepcopy(obj)
    out["apiVersion"] = desired_api_version
    metadata = out.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise ConversionError(f"{who}: metadata must be an object")
    annotations = metadata.get("annotations")
    if annotations is not None and not isinstance(annotations, dict):
        raise ConversionError(f"{who}: metadata.annotations must be an object")
    spec = out.get("spec")
    if spec is None:
        return out
    if not isinstance(spec, dict):
        raise ConversionError(f"{who}: spec must be an object")
    new_spec, residue = (_v1_to_v1beta1 if source == V1 else _v1beta1_to_v1)(spec)
    annotations = dict(annotations or {})
    stored = annotations.pop(RESIDUE_ANNOTATION, None)
    if stored is not None:
        saved = _residue_for(stored, desired_api_version)
        if saved is not None:
            new_spec = _merge_residue(new_spec, saved)
        else:
            annotations[RESIDUE_ANNOTATION] = stored  # someone else's, or unusable: keep it
    if residue:
        payload = {"apiVersion": source, "spec": residue}
        annotations[RESIDUE_ANNOTATION] = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    if annotations:
        metadata["annotations"] = annotations
        out["metadata"] = metadata
    else:
        metadata.pop("annotations", None)
    out["spec"] = new_spec
    return out


def convert_all(objects: list[Any], desired_api_version: str) -> list[dict[str, Any]]:
    """Every object converted, or :class:`ConversionError` for the first that cannot be."""
    return [convert(obj, desired_api_version) for obj in objects]
