"""The operator's deploy manifest is accepted by the real API server (server-side dry run)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[3] / "deploy" / "operator.yaml"


def test_operator_manifest_passes_server_dry_run(kube_cluster: Any, namespace: str) -> None:
    docs = [d for d in yaml.safe_load_all(DEPLOY.read_text()) if d and d["kind"] != "Namespace"]
    for doc in docs:
        if "namespace" in doc["metadata"]:
            doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects", []):
            subject["namespace"] = namespace
    kubectl = [kube_cluster.bin("kubectl"), f"--kubeconfig={kube_cluster.kubeconfig}"]
    done = subprocess.run(
        [*kubectl, "apply", "--dry-run=server", "-f", "-"],
        input=yaml.safe_dump_all(docs),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "deployment.apps/kubext-operator created (server dry run)" in done.stdout
