"""Validation against the SARIF 2.1.0 JSON schema (OASIS, errata 01: sarif-schema-2.1.0.json
beside this file, from github.com/oasis-tcs/sarif-spec sarif-2.1/schema/).

No JSON Schema library is in the lockfile, so this implements the draft-04 keywords that schema
uses, and refuses any other keyword: it cannot pass a document by not understanding the schema."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).resolve().parent / "sarif-schema-2.1.0.json"
ANNOTATIONS = frozenset({"$schema", "id", "title", "description", "default", "definitions"})
TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}
# RFC 3986 characters of a URI reference (unreserved, reserved and percent-escapes).
URI_REFERENCE = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*$")
URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*$")
DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
    return schema


def of_type(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    return isinstance(value, TYPES[name])


def errors(
    value: Any, schema: dict[str, Any], root: dict[str, Any], at: str = "$"
) -> Iterator[str]:
    """Every violation of ``schema`` by ``value``, as 'path: what'."""
    unknown = set(schema) - ANNOTATIONS - set(KEYWORDS)
    if unknown:
        raise NotImplementedError(f"schema keywords {sorted(unknown)} at {at}")
    for keyword, argument in schema.items():
        if keyword in KEYWORDS:
            yield from KEYWORDS[keyword](value, argument, schema, root, at)


def _ref(
    value: Any, ref: str, schema: dict[str, Any], root: dict[str, Any], at: str
) -> Iterator[str]:
    if not ref.startswith("#/"):
        raise NotImplementedError(f"external $ref {ref}")
    target: Any = root
    for part in ref[2:].split("/"):
        target = target[part]
    yield from errors(value, target, root, at)


def _type(
    value: Any, name: Any, schema: dict[str, Any], root: dict[str, Any], at: str
) -> Iterator[str]:
    names = name if isinstance(name, list) else [name]
    if not any(of_type(value, n) for n in names):
        yield f"{at}: {type(value).__name__} is not {name}"


def _properties(
    value: Any, props: dict[str, Any], schema: dict[str, Any], root: dict[str, Any], at: str
) -> Iterator[str]:
    if isinstance(value, dict):
        for key, sub in props.items():
            if key in value:
                yield from errors(value[key], sub, root, f"{at}.{key}")


def _additional(
    value: Any, allowed: Any, schema: dict[str, Any], root: dict[str, Any], at: str
) -> Iterator[str]:
    if not isinstance(value, dict):
        return
    extra = [k for k in value if k not in schema.get("properties", {})]
    for key in extra:
        if allowed is False:
            yield f"{at}: property {key} is not allowed"
        elif isinstance(allowed, dict):
            yield from errors(value[key], allowed, root, f"{at}.{key}")


def _required(
    value: Any, names: list[str], schema: dict[str, Any], root: dict[str, Any], at: str
) -> Iterator[str]:
    if isinstance(value, dict):
        for name in names:
            if name not in value:
                yield f"{at}: {name} is required"


def _items(
    value: Any, sub: dict[str, Any], schema: dict[str, Any], root: dict[str, Any], at: str
) -> Iterator[str]:
    if isinstance(value, list):
        for index, element in enumerate(value):
            yield from errors(element, sub, root, f"{at}[{index}]")


def _min_items(
    value: Any, n: int, schema: dict[str, Any], root: dict[str, Any], at: str
) -> Iterator[str]:
    if isinstance(value, list) and len(value) < n:
        yield f"{at}: fewer than {n} items"


def _unique(
    value: Any, on: bool, schema: dict[str, Any], root: dict[str, Any], at: str
) -> Iterator[str]:
    if on and isinstance(value, list):
        seen = [json.dumps(v, sort_keys=True) for v in value]
        if len(set(seen)) != len(seen):
            yield f"{at}: items are not unique"


def _minimum(
    value: Any, n: float, schema: dict[str, Any], root: dict[str, Any], at: str
) -> Iterator[str]:
    if of_type(value, "number") and value < n:
        yield f"{at}: {value} < {n}"


def _maximum(
    value: Any, n: float, schema: dict[str, Any], root: dict[str, Any], at: str
) -> Iterator[str]:
    if of_type(value, "number") and value > n:
        yield f"{at}: {value} > {n}"


def _pattern(
    value: Any, pattern: str, schema: dict[str, Any], root: dict[str, Any], at: str
) -> Iterator[str]:
    if isinstance(value, str) and not re.search(pattern, value):
        yield f"{at}: {value!r} does not match {pattern}"


def _format(
    value: Any, name: str, schema: dict[str, Any], root: dict[str, Any], at: str
) -> Iterator[str]:
    checks = {"uri": URI, "uri-reference": URI_REFERENCE, "date-time": DATE_TIME}
    if name not in checks:
        raise NotImplementedError(f"format {name}")
    if isinstance(value, str) and not checks[name].match(value):
        yield f"{at}: {value!r} is not a {name}"


def _enum(
    value: Any, values: list[Any], schema: dict[str, Any], root: dict[str, Any], at: str
) -> Iterator[str]:
    if value not in values:
        yield f"{at}: {value!r} is not one of {values}"


def _any_of(
    value: Any, subs: list[dict[str, Any]], schema: dict[str, Any], root: dict[str, Any], at: str
) -> Iterator[str]:
    if all(list(errors(value, sub, root, at)) for sub in subs):
        yield f"{at}: matches none of anyOf"


def _one_of(
    value: Any, subs: list[dict[str, Any]], schema: dict[str, Any], root: dict[str, Any], at: str
) -> Iterator[str]:
    matching = sum(not list(errors(value, sub, root, at)) for sub in subs)
    if matching != 1:
        yield f"{at}: matches {matching} of oneOf, not one"


KEYWORDS = {
    "$ref": _ref,
    "type": _type,
    "properties": _properties,
    "additionalProperties": _additional,
    "required": _required,
    "items": _items,
    "minItems": _min_items,
    "uniqueItems": _unique,
    "minimum": _minimum,
    "maximum": _maximum,
    "pattern": _pattern,
    "format": _format,
    "enum": _enum,
    "anyOf": _any_of,
    "oneOf": _one_of,
}


def validate(document: Any) -> list[str]:
    root = load_schema()
    return list(errors(document, root, root))
