"""The real kube-scheduler calling our extender, on the rig's control plane.

What runs for real: the rig's etcd, kube-apiserver (RBAC, a ValidatingAdmissionPolicy on
``pods/binding``), a second kube-scheduler (the rig's pinned binary) with a profile of this run's
own whose extender is our service as a subprocess (HTTP on 127.0.0.1: filter, prioritize, bind,
preempt verbs, ``nodeCacheCapable: true``, ``kubext.io/widget`` managed and ignored by
kube-scheduler), and our extender's informers. What is a kwok fake: the nodes (labelled and
tainted for this run, so no other test's pods land on them) and the pods' "Running".

kube-scheduler alone would put a widget pod on any node (it ignores the resource); our filter
only passes nodes with widgets free, counting those bound and binding; our bind does the
``pods/binding``; an API refusal of that binding reaches kube-scheduler as the bind result's
error, which it reports as FailedScheduling and retries, without crashing.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kubext_rig import cluster, testing
from kubext_rig.testing import wait_for

LABEL = "scheduler.kubext.io/extender-e2e"
TAINT = {"key": LABEL, "value": "true", "effect": "NoSchedule"}
WIDGET = "kubext.io/widget"


def kwok_node(name: str, run: str, *, widgets: int, role: str) -> dict[str, Any]:
    manifest = cluster.node_manifest(name)
    manifest["metadata"]["labels"].update({LABEL: run, f"{LABEL}-role": role})  # type: ignore[index]
    manifest["spec"] = {"taints": [TAINT]}
    allocatable = {"cpu": "8", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    if widgets:
        allocatable[WIDGET] = str(widgets)
    manifest["status"] = {"capacity": allocatable, "allocatable": allocatable}
    return manifest


def widget_pod(name: str, scheduler_name: str, run: str, *, role: str | None = None) -> dict:
    selector = {LABEL: run, **({f"{LABEL}-role": role} if role else {})}
    amounts = {"cpu": "100m", WIDGET: "1"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "schedulerName": scheduler_name,
            "nodeSelector": selector,
            "tolerations": [{"key": LABEL, "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [
                {
                    "name": "app",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": amounts, "limits": {WIDGET: "1"}},
                }
            ],
        },
    }


class Process:
    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log)

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(
                f"{self.log_path.name} exited {self.proc.returncode}: "
                f"{self.log_path.read_text()[-3000:]}"
            )
        return True

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_extender(kubeconfig: str, tmp_path: Path) -> tuple[Process, int, int]:
    """Our service with only the extender (and its informer cache); returns it, its extender
    port and its health port."""
    port, health = testing.free_port(), testing.free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "KUBEXT_SCHEDULER_KUBECONFIG": kubeconfig,
        "KUBEXT_SCHEDULER_STANDALONE__ENABLED": "false",
        "KUBEXT_SCHEDULER_EXTENDER__HOST": "127.0.0.1",
        "KUBEXT_SCHEDULER_EXTENDER__PORT": str(port),
        "KUBEXT_SCHEDULER_HEALTH__HOST": "127.0.0.1",
        "KUBEXT_SCHEDULER_HEALTH__PORT": str(health),
    }
    code = "import sys; from kubext_scheduler.__main__ import main; sys.exit(main())"
    return Process([sys.executable, "-c", code], tmp_path / "extender.log", env), port, health


def kube_scheduler_config(kubeconfig: str, scheduler_name: str, port: int) -> dict[str, Any]:
    """What the chart's extender mode renders, with the extender on 127.0.0.1."""
    return {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": kubeconfig, "qps": 200, "burst": 400},
        "leaderElection": {"leaderElect": False},
        "profiles": [{"schedulerName": scheduler_name}],
        "extenders": [
            {
                "urlPrefix": f"http://127.0.0.1:{port}",
                "filterVerb": "filter",
                "prioritizeVerb": "prioritize",
                "bindVerb": "bind",
                "preemptVerb": "preempt",
                "weight": 1,
                "nodeCacheCapable": True,
                "enableHTTPS": False,
                "httpTimeout": "10s",
                "managedResources": [{"name": WIDGET, "ignoredByScheduler": True}],
            }
        ],
    }


def ready(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
        return r.status == 200
    return False


def requests_counted(health: int, verb: str, result: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{health}/metrics", timeout=5) as r:
        lines = r.read().decode().splitlines()
    label = f'kubext_extender_requests_total{{result="{result}",verb="{verb}"}}'
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(label))


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:6]


@pytest.fixture
def nodes(kube_api: client.ApiClient, run_id: str) -> Iterator[dict[str, str]]:
    core = client.CoreV1Api(kube_api)
    wanted = {"plain": 0, "widgets": 2, "trap": 4}
    created: dict[str, str] = {}
    try:
        for role, widgets in wanted.items():
            name = f"kubext-ext-{run_id}-{role}"
            core.create_node(kwok_node(name, run_id, widgets=widgets, role=role))
            created[role] = name
        yield created
    finally:
        for name in created.values():
            with contextlib.suppress(client.ApiException):
                core.delete_node(name)


@pytest.fixture
def refuse_trap_bindings(kube_api: client.ApiClient, nodes: dict[str, str]) -> Iterator[str]:
    """A ValidatingAdmissionPolicy that refuses every binding to the trap node."""
    custom = client.CustomObjectsApi(kube_api)
    name = f"{nodes['trap']}-no-bindings"
    group, version = "admissionregistration.k8s.io", "v1"
    policy = {
        "apiVersion": f"{group}/{version}",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods/binding"],
                    }
                ]
            },
            "validations": [
                {
                    "expression": f"object.target.name != '{nodes['trap']}'",
                    "message": "bindings to the trap node are refused",
                }
            ],
        },
    }
    binding = {
        "apiVersion": f"{group}/{version}",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }
    custom.create_cluster_custom_object(group, version, "validatingadmissionpolicies", policy)
    custom.create_cluster_custom_object(
        group, version, "validatingadmissionpolicybindings", binding
    )
    try:
        yield name
    finally:
        for plural in ("validatingadmissionpolicybindings", "validatingadmissionpolicies"):
            with contextlib.suppress(client.ApiException):
                custom.delete_cluster_custom_object(group, version, plural, name)


@pytest.fixture
def kube_scheduler_with_extender(
    kube_cluster: cluster.ClusterInfo, tmp_path: Path, run_id: str, nodes: dict[str, str]
) -> Iterator[tuple[str, int]]:
    """Our extender and a second real kube-scheduler calling it; yields the profile's
    schedulerName and the extender's health port."""
    extender, port, health = start_extender(kube_cluster.kubeconfig, tmp_path)
    scheduler = None
    try:
        wait_for(
            "extender /readyz",
            lambda: extender.alive() and ready(f"http://127.0.0.1:{health}/readyz"),
            timeout=60,
        )
        name = f"kubext-extender-{run_id}"
        config_file = tmp_path / "kube-scheduler.yaml"
        kubeconfig = str(kube_cluster.root / "scheduler.kubeconfig")
        config_file.write_text(yaml.safe_dump(kube_scheduler_config(kubeconfig, name, port)))
        secure = testing.free_port()
        scheduler = Process(
            [
                kube_cluster.bin("kube-scheduler"),
                f"--config={config_file}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={secure}",
            ],
            tmp_path / "kube-scheduler.log",
            cluster.component_env(),
        )
        wait_for(
            "kube-scheduler /healthz",
            lambda: scheduler.alive() and _healthz(secure),
            timeout=60,
        )
        yield name, health
        scheduler.alive()  # it must not have crashed on our errors
        extender.alive()
    finally:
        if scheduler is not None:
            scheduler.stop()
        extender.stop()


def _healthz(port: int) -> bool:
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        contextlib.suppress(OSError),
        urllib.request.urlopen(
            f"https://127.0.0.1:{port}/healthz", timeout=2, context=context
        ) as r,
    ):
        return r.status == 200
    return False


def node_of(core: client.CoreV1Api, namespace: str, name: str) -> str | None:
    return core.read_namespaced_pod(name, namespace).spec.node_name


def events(core: client.CoreV1Api, namespace: str, name: str, reason: str) -> list[str]:
    found = core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name},reason={reason}"
    ).items
    return [e.message for e in found]


def test_kube_scheduler_places_by_our_filter_binds_through_us_and_reports_our_errors(
    kube_api: client.ApiClient,
    namespace: str,
    run_id: str,
    nodes: dict[str, str],
    refuse_trap_bindings: str,
    kube_scheduler_with_extender: tuple[str, int],
) -> None:
    core = client.CoreV1Api(kube_api)
    scheduler_name, health = kube_scheduler_with_extender
    # Two widget pods on the plain and widget nodes: only the widget node has them (our filter;
    # kube-scheduler ignores the resource), and it has two.
    for name in ("w-1", "w-2"):
        core.create_namespaced_pod(
            namespace, widget_pod(name, scheduler_name, run_id, role="widgets")
        )
        core.create_namespaced_pod(
            namespace, widget_pod(f"{name}-any", scheduler_name, run_id, role="plain")
        )
    for name in ("w-1", "w-2"):
        assert (
            wait_for(f"{name} bound", lambda n=name: node_of(core, namespace, n))
            == nodes["widgets"]
        )
    assert requests_counted(health, "bind", "ok") >= 2  # bound by our bind verb
    for name in ("w-1", "w-2"):
        assert wait_for(
            f"{name}'s Scheduled Event", lambda n=name: events(core, namespace, n, "Scheduled")
        )
    # The plain node has no widgets: our filter's reason, in kube-scheduler's FailedScheduling.
    messages = wait_for(
        "w-1-any's FailedScheduling",
        lambda: events(core, namespace, "w-1-any", "FailedScheduling"),
    )
    assert any(f"Insufficient {WIDGET}" in m for m in messages), messages
    assert node_of(core, namespace, "w-1-any") is None

    # A third widget pod for the widget node: both widgets are taken (counted by our cache).
    core.create_namespaced_pod(namespace, widget_pod("w-3", scheduler_name, run_id, role="widgets"))
    messages = wait_for(
        "w-3's FailedScheduling", lambda: events(core, namespace, "w-3", "FailedScheduling")
    )
    assert any(f"Insufficient {WIDGET}" in m for m in messages), messages
    assert node_of(core, namespace, "w-3") is None

    # The trap node has widgets, but the API server refuses bindings to it: our bind answers
    # the refusal in its error, kube-scheduler reports FailedScheduling and keeps going.
    core.create_namespaced_pod(
        namespace, widget_pod("trapped", scheduler_name, run_id, role="trap")
    )
    messages = wait_for(
        "trapped's FailedScheduling",
        lambda: [
            m
            for m in events(core, namespace, "trapped", "FailedScheduling")
            if "bindings to the trap node are refused" in m
        ],
        timeout=60,
    )
    assert any(f"to {nodes['trap']} rejected" in m for m in messages), messages
    assert node_of(core, namespace, "trapped") is None
    assert requests_counted(health, "bind", "error") >= 1

    # Room comes back (w-1 deleted): w-3 is placed, kube-scheduler still serving.
    core.delete_namespaced_pod("w-1", namespace, grace_period_seconds=0)
    assert (
        wait_for("w-3 bound", lambda: node_of(core, namespace, "w-3"), timeout=90)
        == nodes["widgets"]
    )
