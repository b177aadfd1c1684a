"""values.schema.json of every chart, derived from its values.yaml (the defaults give the
types; a few keys get their allowed values). Helm validates values against it on lint,
template and install, so a misspelt key stops with a message instead of being ignored.

``python tests/helm/values_schema.py`` rewrites the schemas; a test fails when they drift.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

CHARTS_DIR = Path(__file__).resolve().parents[2] / "helm"
# Blocks whose content is Kubernetes' own objects or free-form data: any object goes.
OPAQUE = {
    "resources",
    "securityContext",
    "podSecurityContext",
    "sidecarSecurityContext",
    "livenessProbe",
    "readinessProbe",
    "updateStrategy",
    "nodeSelector",
    "tolerations",
    "affinity",
    "podAnnotations",
    "podLabels",
    "commonLabels",
    "annotations",
    "config",
    "policy",  # the webhooks' PodPolicy (the service validates it)
    "plugin",
    # A KubeSchedulerConfiguration profile's plugin set and plugins' args (the service
    # validates them at start).
    "plugins",
    "pluginConfig",
    "chain",
    "parameters",
    "issuerRef",
    "matchLabels",
    "matchExpressions",
    "objectSelector",
}
# Keys with a closed set of values, by chart and dotted path.
ENUMS: dict[tuple[str, str], list[Any]] = {
    ("webhooks", "webhooks.failurePolicy"): ["Fail", "Ignore"],
    ("csi", "csiDriver.fsGroupPolicy"): ["File", "ReadWriteOnceWithFSType", "None"],
    ("csi", "storageClass.reclaimPolicy"): ["Delete", "Retain"],
    ("csi", "storageClass.volumeBindingMode"): ["Immediate", "WaitForFirstConsumer"],
    ("csi", "snapshotClass.deletionPolicy"): ["Delete", "Retain"],
    ("csi", "groupSnapshotClass.deletionPolicy"): ["Delete", "Retain"],
    ("scheduler", "mode"): ["standalone", "extender"],
}
# Image tags like 1.2 arrive as numbers from --set.
STRING_OR_NUMBER = {"image.tag"}


def node(chart: str, path: str, value: Any) -> dict[str, Any]:
    key = path.rsplit(".", 1)[-1]
    if (chart, path) in ENUMS:
        return {"enum": ENUMS[chart, path]}
    if path in STRING_OR_NUMBER:
        return {"type": ["string", "number"]}
    if isinstance(value, dict):
        if key in OPAQUE:
            return {"type": "object"}
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                k: node(chart, f"{path}.{k}" if path else k, v) for k, v in value.items()
            },
        }
    if isinstance(value, list):
        return {"type": "array"}
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    return {}


def dependency_blocks(chart: str) -> dict[str, Any]:
    """Helm gives each dependency a block of the values, holding at least the globals. The only
    dependency is the library chart, which reads no values: nothing else may go there."""
    meta = yaml.safe_load((CHARTS_DIR / chart / "Chart.yaml").read_text())
    return {
        dependency["name"]: {
            "type": "object",
            "additionalProperties": False,
            "properties": {"global": {"type": "object"}},
        }
        for dependency in meta.get("dependencies", [])
    }


def schema(chart: str) -> dict[str, Any]:
    values = yaml.safe_load((CHARTS_DIR / chart / "values.yaml").read_text())
    root = node(chart, "", values)
    root["properties"].update(dependency_blocks(chart))
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": f"Values of the kubext {chart} chart (generated from values.yaml)",
        **root,
    }


def render(chart: str) -> str:
    return json.dumps(schema(chart), indent=2) + "\n"


def main() -> int:
    # Every chart with values: the library chart has none.
    for values_yaml in sorted(CHARTS_DIR.glob("*/values.yaml")):
        chart = values_yaml.parent.name
        (values_yaml.parent / "values.schema.json").write_text(render(chart))
        print(f"wrote helm/{chart}/values.schema.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
