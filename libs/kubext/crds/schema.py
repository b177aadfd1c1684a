"""Pydantic models -> structural OpenAPI v3 schemas, as apiextensions.k8s.io/v1 requires them.

Pydantic's JSON Schema is close; a structural schema additionally needs every ``$ref`` inlined,
``Optional[X]`` as plain ``X`` (absent, not null), no ``additionalProperties: false`` next to
``properties``, and no titles. Defaults are dropped on purpose: the operator applies them, so
the API server stores what the user wrote and conversion stays lossless.
"""

from __future__ import annotations

from typing import Any

import pydantic

_DROP = {"title", "default"}
# Readable manifests: the kind of a node first, then its words, then its rules, then children.
_ORDER = [
    "type",
    "format",
    "description",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "items",
    "properties",
    "required",
]


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    rank = {key: i for i, key in enumerate(_ORDER)}
    return dict(sorted(node.items(), key=lambda kv: (rank.get(kv[0], len(_ORDER)), kv[0])))


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _inline(merged, defs)
    any_of = node.get("anyOf")
    if any_of is not None:
        non_null = [branch for branch in any_of if branch != {"type": "null"}]
        if len(non_null) != 1:
            raise ValueError(f"a structural schema cannot express anyOf {any_of!r}")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        return _inline({**non_null[0], **rest}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or key == "$defs":
            continue
        if key == "additionalProperties" and value is False:
            continue
        if key == "properties":
            out[key] = {name: _inline(prop, defs) for name, prop in value.items()}
        else:
            out[key] = _inline(value, defs)
    return _ordered(out)


def openapi_schema(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    """The structural schema of ``model`` (camelCase property names, validation rules kept)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema: dict[str, Any] = _inline(raw, raw.get("$defs", {}))
    return schema


def object_schema(
    *,
    spec: type[pydantic.BaseModel],
    status: type[pydantic.BaseModel],
) -> dict[str, Any]:
    """The openAPIV3Schema of a whole custom resource: ``spec`` required, ``status`` optional."""
    return {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": openapi_schema(spec),
            "status": openapi_schema(status),
        },
        "required": ["spec"],
    }
