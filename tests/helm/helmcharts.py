"""Helm for the chart tests: the charts' location, a runner for the pinned helm binary over a
copy of the charts with their dependencies built, and the objects one `helm template` renders."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHARTS_DIR = REPO / "helm"
CHARTS = ("operator", "webhooks", "scheduler", "cni", "csi", "deviceplugin")
# The library chart every chart depends on (file://../kubext-common) for the shared helpers.
LIBRARY = "kubext-common"


class HelmError(Exception):
    """helm exited non-zero; the message is its stderr."""


def run_helm(binary: str, *args: str, timeout: float = 120) -> str:
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise HelmError(done.stderr.strip() or done.stdout.strip())
    return done.stdout


def build_charts(binary: str, into: Path) -> Path:
    """A copy of helm/ in ``into`` with the library built into each chart's charts/, which lint,
    template and install need. Built afresh from the library's files every time (a version
    bump is not needed to see a change), and the checkout is left as it is."""
    copy = into / "helm"
    # charts/ and Chart.lock are what `helm dependency build` leaves in a checkout (Tilt's).
    shutil.copytree(CHARTS_DIR, copy, ignore=shutil.ignore_patterns("charts", "Chart.lock"))
    for chart in CHARTS:
        # --skip-refresh: the library is a local directory; no chart repository is consulted.
        run_helm(binary, "dependency", "build", "--skip-refresh", str(copy / chart))
    return copy


@dataclass(frozen=True)
class Helm:
    """The rig's pinned helm binary over built charts, with the few commands the tests use.
    kubeconfig is the rig's cluster, for install and uninstall only."""

    binary: str
    charts: Path
    work: Path
    kubeconfig: str = ""

    @classmethod
    def with_built_charts(cls, *, binary: str, work: Path) -> Helm:
        return cls(binary=binary, charts=build_charts(binary, work), work=work)

    def run(self, *args: str, timeout: float = 120) -> str:
        return run_helm(self.binary, *args, timeout=timeout)

    def values_file(self, values: dict[str, Any] | None) -> list[str]:
        if not values:
            return []
        digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]
        path = self.work / f"values-{digest}.yaml"
        path.write_text(yaml.safe_dump(values))
        return ["--values", str(path)]

    def lint(self, chart: str, values: dict[str, Any] | None = None) -> str:
        return self.run("lint", "--strict", str(self.charts / chart), *self.values_file(values))

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
            str(self.charts / chart),
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
            str(self.charts / chart),
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
