"""Helm for the chart tests: the charts' location, a runner for the pinned helm binary, and
the objects one `helm template` renders."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHARTS_DIR = REPO / "helm"
CHARTS = ("operator", "webhooks", "scheduler", "cni", "csi", "deviceplugin")


class HelmError(Exception):
    """helm exited non-zero; the message is its stderr."""


@dataclass(frozen=True)
class Helm:
    """The rig's pinned helm binary, with the few commands the tests use."""

    binary: str
    kubeconfig: str
    work: Path

    def run(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run([self.binary, *args], capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise HelmError(done.stderr.strip() or done.stdout.strip())
        return done.stdout

    def values_file(self, values: dict[str, Any] | None) -> list[str]:
        if not values:
            return []
        digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]
        path = self.work / f"values-{digest}.yaml"
        path.write_text(yaml.safe_dump(values))
        return ["--values", str(path)]

    def lint(self, chart: str, values: dict[str, Any] | None = None) -> str:
        return self.run("lint", "--strict", str(CHARTS_DIR / chart), *self.values_file(values))

    def template(
        self,
        chart: str,
        *,
        release: str = "kubext",
        namespace: str = "kubext-system",
        values: dict[str, Any] | None = None,
        extra: Sequence[str] = (),
    ) -> Rendered:
        out = self.run(
            "template",
            release,
            str(CHARTS_DIR / chart),
            "--namespace",
            namespace,
            *self.values_file(values),
            *extra,
        )
        return Rendered([d for d in yaml.safe_load_all(out) if d])

    def install(
        self, chart: str, *, release: str, namespace: str, values: dict[str, Any] | None = None
    ) -> str:
        return self.run(
            "install",
            release,
            str(CHARTS_DIR / chart),
            "--namespace",
            namespace,
            "--kubeconfig",
            self.kubeconfig,
            "--wait",
            "--timeout",
            "90s",
            *self.values_file(values),
        )

    def uninstall(self, *, release: str, namespace: str) -> str:
        return self.run(
            "uninstall",
            release,
            "--namespace",
            namespace,
            "--kubeconfig",
            self.kubeconfig,
            "--wait",
            "--timeout",
            "60s",
        )


@dataclass(frozen=True)
class Rendered:
    """The objects of one `helm template`."""

    objects: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def workloads(self) -> list[dict[str, Any]]:
        return self.of_kind("Deployment") + self.of_kind("DaemonSet")

    def config(self, configmap: str) -> dict[str, Any]:
        """The service's config.yaml from the named ConfigMap."""
        return yaml.safe_load(self.one("ConfigMap", configmap)["data"]["config.yaml"]) or {}

    def rules(self, kind: str, name: str) -> list[dict[str, Any]]:
        return self.one(kind, name)["rules"]
