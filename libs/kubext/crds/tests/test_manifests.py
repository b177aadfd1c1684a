"""The generated CRDs are structural and carry every rule, column and subresource."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from kubext import cron
from kubext.crds import database, manifests


def _walk(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found.extend(_walk(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_walk(value))
    return found


@pytest.mark.parametrize("crd", [manifests.webapp_crd(), manifests.database_crd()], ids=str)
def test_schemas_are_structural(crd: dict[str, Any]) -> None:
    for version in crd["spec"]["versions"]:
        for node in _walk(version["schema"]["openAPIV3Schema"]):
            assert "$ref" not in node and "anyOf" not in node and "title" not in node
            if "properties" in node:
                assert node["type"] == "object" and "additionalProperties" not in node


def _spec(crd: dict[str, Any], version: str) -> dict[str, Any]:
    (found,) = (v for v in crd["spec"]["versions"] if v["name"] == version)
    return found


def test_database_v1_has_the_seed_rules_and_scale_paths() -> None:
    crd = manifests.database_crd()
    v1 = _spec(crd, "v1")
    props = v1["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert props["type"]["enum"] == ["mysql", "postgresql", "mongodb"]
    assert props["version"]["pattern"] == database.VERSION_PATTERN
    assert props["storage"]["properties"]["size"]["pattern"] == "^[0-9]+[KMGT]i?$"
    assert props["storage"]["required"] == ["size"]
    backup = props["backup"]["properties"]
    assert (backup["retention"]["minimum"], backup["retention"]["maximum"]) == (1, 365)
    assert backup["schedule"]["pattern"] == cron.PATTERN
    status = v1["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert set(status) >= {"replicas", "selector", "endpoints", "backupStatus", "conditions"}
    assert v1["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = [c["name"] for c in v1["additionalPrinterColumns"]]
    assert columns[-4:] == ["Replicas", "Ready", "Phase", "Age"]


def test_database_v1beta1_is_deprecated_and_converted_by_webhook() -> None:
    crd = manifests.database_crd()
    beta = _spec(crd, "v1beta1")
    assert beta["deprecated"] is True and beta["storage"] is False
    assert beta["deprecationWarning"] == database.DEPRECATION_WARNING
    assert crd["spec"]["conversion"]["strategy"] == "Webhook"
    assert crd["spec"]["conversion"]["webhook"]["clientConfig"]["service"]["path"] == "/convert"
    assert crd["spec"]["names"]["categories"] == ["all", "storage"]


def test_rendered_yaml_has_no_aliases_and_round_trips() -> None:
    for name, manifest in manifests.all_crds().items():
        text = manifests.render(manifest)
        assert not re.search(r"[&*]id\d+", text), name
        assert yaml.safe_load(text) == manifest
