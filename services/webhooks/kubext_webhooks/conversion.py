"""Database conversion between db.example.com/v1 and v1beta1, lossless in both directions.

The mapping is :data:`kubext.crds.database.FIELD_MAP` applied structurally, without validating:
a conversion webhook must convert whatever is stored (an object admitted under older rules
must stay readable in every served version). Whatever the target version has no field for
(unknown keys, an empty ``backup: {}`` group) rides along in the annotation
:data:`RESIDUE_ANNOTATION` and is put back when the object is converted back.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from kubext.crds import database

RESIDUE_ANNOTATION = "conversion.webhooks.kubext.io/unconverted-spec"
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
        try:
            saved = json.loads(stored)
        except (TypeError, ValueError):
            raise ConversionError(f"{who}: annotation {RESIDUE_ANNOTATION} is not JSON") from None
        if isinstance(saved, dict) and saved.get("apiVersion") == desired_api_version:
            new_spec = _merge_residue(new_spec, saved.get("spec") or {})
        else:
            annotations[RESIDUE_ANNOTATION] = stored  # someone else's; keep it
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
