"""Conversion of objects a client could have stored: too deep, or with an unusable residue."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubext_webhooks import conversion

RESIDUE = conversion.RESIDUE_ANNOTATION


def nested(levels: int, *, key: str = "x") -> Any:
    """``levels`` containers inside each other, from the outside: object, object, array, ..."""
    value: Any = "leaf"
    for level in reversed(range(levels)):
        value = [value] if level % 3 == 2 else {key: value}
    return value


def v1(spec_extra: dict[str, Any] | None = None, annotations: dict[str, Any] | None = None):
    metadata: dict[str, Any] = {"name": "pg"}
    if annotations is not None:
        metadata["annotations"] = annotations
    return {
        "apiVersion": conversion.V1,
        "kind": "Database",
        "metadata": metadata,
        "spec": {
            "type": "mysql",
            "version": "8.0.1",
            "storage": {"size": "1Gi"},
            **(spec_extra or {}),
        },
    }


def beta(annotations: dict[str, Any] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "pg"}
    if annotations is not None:
        metadata["annotations"] = annotations
    return {
        "apiVersion": conversion.V1BETA1,
        "kind": "Database",
        "metadata": metadata,
        "spec": {"engine": "mysql", "version": "8.0.1", "storageSize": "1Gi"},
    }


@pytest.mark.parametrize("levels", [conversion.MAX_DEPTH, 600, 5000])
@pytest.mark.parametrize("desired", [conversion.V1BETA1, conversion.V1])
def test_an_object_nested_too_deep_fails_with_the_path_and_the_limit(levels, desired) -> None:
    obj = v1({"extra": nested(levels)})
    with pytest.raises(conversion.ConversionError) as raised:
        conversion.convert(obj, desired)
    assert str(raised.value) == (
        f"Database 'pg': spec.extra.x.x... nests deeper than {conversion.MAX_DEPTH} levels"
    )


def test_the_deepest_accepted_object_converts_both_ways() -> None:
    # The object is level 1 and spec level 2: extra may hold MAX_DEPTH - 2 more levels.
    obj = v1({"extra": nested(conversion.MAX_DEPTH - 2)})
    there = conversion.convert(obj, conversion.V1BETA1)
    assert conversion.convert(there, conversion.V1) == obj


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param(json.dumps({"apiVersion": conversion.V1, "spec": [1, 2]}), id="spec-array"),
        pytest.param(json.dumps({"apiVersion": conversion.V1, "spec": "x"}), id="spec-string"),
        pytest.param(json.dumps({"apiVersion": conversion.V1, "spec": 7}), id="spec-number"),
        pytest.param(json.dumps([{"apiVersion": conversion.V1}]), id="top-array"),
        pytest.param(json.dumps("db.example.com/v1"), id="top-string"),
        pytest.param(json.dumps(None), id="top-null"),
        pytest.param(json.dumps({"apiVersion": ["v1"], "spec": {"a": 1}}), id="apiversion-list"),
        pytest.param(json.dumps({"apiVersion": {}, "spec": {"a": 1}}), id="apiversion-object"),
        pytest.param("{not json", id="not-json"),
        pytest.param("", id="empty"),
        pytest.param("[" * 100_000 + "]" * 100_000, id="json-too-deep-to-parse"),
        pytest.param(
            json.dumps({"apiVersion": conversion.V1, "spec": {"extra": nested(600)}}),
            id="residue-too-deep",
        ),
        pytest.param(7, id="not-a-string"),
    ],
)
def test_an_unusable_residue_is_ignored_and_kept_as_it_was(stored) -> None:
    plain = conversion.convert(beta(), conversion.V1)
    out = conversion.convert(beta({RESIDUE: stored, "team": "db"}), conversion.V1)
    assert out["spec"] == plain["spec"]
    assert out["metadata"]["annotations"] == {RESIDUE: stored, "team": "db"}


def test_a_usable_residue_is_merged_whatever_its_values() -> None:
    stored = json.dumps(
        {
            "apiVersion": conversion.V1,
            "spec": {"storage": "not-a-group", "backup": {}, "futureField": [1, {"a": None}]},
        }
    )
    out = conversion.convert(beta({RESIDUE: stored}), conversion.V1)
    assert out["spec"] == {
        "type": "mysql",
        "version": "8.0.1",
        "storage": {"size": "1Gi"},  # a converted field wins over a residue of the wrong type
        "backup": {},
        "futureField": [1, {"a": None}],
    }
    assert "annotations" not in out["metadata"]


def test_an_unusable_residue_is_replaced_by_this_conversions_own() -> None:
    obj = v1({"futureField": 1}, annotations={RESIDUE: "{not json"})
    there = conversion.convert(obj, conversion.V1BETA1)
    saved = json.loads(there["metadata"]["annotations"][RESIDUE])
    assert saved == {"apiVersion": conversion.V1, "spec": {"futureField": 1}}
    assert conversion.convert(there, conversion.V1)["spec"] == obj["spec"]
