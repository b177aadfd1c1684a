"""Workload and security checks: the good manifest has no finding; each broken field gives the
exact rule, object and field path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kubext_audit.checks.model import Severity
from kubext_audit.tests import samples

REF = "Deployment/sys/ctl"
POD = "spec.template.spec"
C0 = f"{POD}.containers[0]"


def test_the_good_deployment_has_no_finding() -> None:
    assert samples.run(samples.good_deployment(), samples.pdb(), samples.binding()) == []


def set_path(obj: dict[str, Any], dotted: str, value: Any) -> None:
    keys: list[Any] = []
    for part in dotted.replace("]", "").split("."):
        name, *indices = part.split("[")
        keys.append(name)
        keys.extend(int(i) for i in indices)
    target = obj
    for key in keys[:-1]:
        target = target[key]
    if value is DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value


DELETE = object()

BROKEN: list[Any] = [
    pytest.param("spec.replicas", 1, "WL001", "spec.replicas", id="controller-one-replica"),
    pytest.param(f"{C0}.args", [], "WL002", f"{POD}.serviceAccountName", id="no-leader-election"),
    pytest.param(f"{POD}.affinity", DELETE, "WL004", f"{POD}.affinity", id="no-anti-affinity"),
    pytest.param(
        f"{C0}.resources.requests",
        {"cpu": "1m"},
        "WL005",
        f"{C0}.resources.requests",
        id="requests",
    ),
    pytest.param(f"{C0}.resources.limits", {}, "WL006", f"{C0}.resources.limits", id="limits"),
    pytest.param(f"{C0}.livenessProbe", DELETE, "WL007", f"{C0}.livenessProbe", id="liveness"),
    pytest.param(f"{C0}.readinessProbe", DELETE, "WL008", f"{C0}.readinessProbe", id="readiness"),
    pytest.param(f"{C0}.image", "example.org/ctl:latest", "WL009", f"{C0}.image", id="latest"),
    pytest.param(f"{C0}.image", "example.org:5000/ctl", "WL009", f"{C0}.image", id="no-tag"),
    pytest.param(
        f"{POD}.serviceAccountName",
        "default",
        "WL010",
        f"{POD}.serviceAccountName",
        id="default-sa",
    ),
    pytest.param(
        f"{C0}.securityContext.runAsNonRoot",
        DELETE,
        "SEC001",
        f"{C0}.securityContext.runAsNonRoot",
        id="root",
    ),
    pytest.param(
        f"{C0}.securityContext.readOnlyRootFilesystem",
        False,
        "SEC002",
        f"{C0}.securityContext.readOnlyRootFilesystem",
        id="writable-root",
    ),
    pytest.param(
        f"{C0}.securityContext.allowPrivilegeEscalation",
        DELETE,
        "SEC003",
        f"{C0}.securityContext.allowPrivilegeEscalation",
        id="escalation",
    ),
    pytest.param(
        f"{C0}.securityContext.capabilities",
        {"drop": ["NET_RAW"]},
        "SEC004",
        f"{C0}.securityContext.capabilities.drop",
        id="capabilities",
    ),
    pytest.param(
        f"{POD}.securityContext",
        {},
        "SEC005",
        f"{C0}.securityContext.seccompProfile",
        id="seccomp",
    ),
    pytest.param(
        f"{C0}.securityContext.privileged",
        True,
        "SEC006",
        f"{C0}.securityContext.privileged",
        id="privileged",
    ),
    pytest.param(f"{POD}.hostNetwork", True, "SEC007", f"{POD}.hostNetwork", id="host-network"),
    pytest.param(
        f"{POD}.volumes",
        [{"name": "root", "hostPath": {"path": "/"}}],
        "SEC008",
        f"{POD}.volumes[0].hostPath",
        id="host-path",
    ),
]


@pytest.mark.parametrize(("field", "value", "rule", "path"), BROKEN)
def test_each_broken_field_is_found_with_its_rule_and_path(
    field: str, value: Any, rule: str, path: str
) -> None:
    broken = samples.good_deployment()
    set_path(broken, field, value)
    found = samples.triples(samples.run(broken, samples.pdb(), samples.binding()))
    assert (rule, REF, path) in found
    # Only the broken field's rules: nothing else of the good manifest is reported (the default
    # ServiceAccount is also bound to no role).
    assert {r for r, _, _ in found} <= {rule} | ({"WL011"} if rule == "WL010" else set())


def test_a_replicated_workload_without_a_pdb() -> None:
    found = samples.run(samples.good_deployment(), samples.binding())
    assert samples.triples(found) == {("WL003", REF, "spec.replicas")}
    # A PDB in another namespace, or selecting other pods, does not count.
    other = samples.pdb()
    other["spec"]["selector"] = {"matchLabels": {"app.kubernetes.io/name": "other"}}
    assert "WL003" in {f.rule for f in samples.run(samples.good_deployment(), other)}


def test_a_bare_pod_needs_probes_too_but_a_job_does_not() -> None:
    """A Pod behind a Service serves traffic like a Deployment's pods (kube-score's pod-probes
    found this gap); a Job's pods run to completion and serve nothing."""
    template = samples.good_deployment()["spec"]["template"]
    container = template["spec"]["containers"][0]
    del container["livenessProbe"], container["readinessProbe"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "sys"}}
    pod["spec"] = template["spec"]
    found = samples.triples(samples.run(pod, samples.binding()))
    assert {
        ("WL007", "Pod/sys/p", "spec.containers[0].livenessProbe"),
        ("WL008", "Pod/sys/p", "spec.containers[0].readinessProbe"),
    } <= found
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "sys"}}
    job["spec"] = {"template": template}
    assert not {r for r, _, _ in samples.triples(samples.run(job))} & {"WL007", "WL008"}


def test_leader_election_is_seen_in_the_lease_rbac_too() -> None:
    deployment = samples.good_deployment()
    deployment["spec"]["template"]["spec"]["containers"][0]["args"] = []
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "ctl", "namespace": "sys"},
        "rules": [
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "verbs": ["get", "update"],
            }
        ],
    }
    assert samples.run(deployment, samples.pdb(), samples.binding(), role) == []


def test_a_token_without_any_role_is_flagged_and_automount_off_is_not() -> None:
    found = samples.run(samples.good_deployment(), samples.pdb())
    assert samples.triples(found) == {("WL011", REF, f"{POD}.automountServiceAccountToken")}
    deployment = samples.good_deployment()
    deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] = False
    assert samples.run(deployment, samples.pdb()) == []
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "ctl", "namespace": "sys"},
        "automountServiceAccountToken": False,
    }
    assert samples.run(samples.good_deployment(), samples.pdb(), account) == []


def node_agent(host_dir: str) -> dict[str, Any]:
    daemonset = samples.good_deployment()
    daemonset["kind"] = "DaemonSet"
    daemonset["metadata"]["labels"] = {"app.kubernetes.io/name": "agent"}
    del daemonset["spec"]["replicas"]
    spec = daemonset["spec"]["template"]["spec"]
    spec["hostNetwork"] = True
    spec["volumes"] = [{"name": "host", "hostPath": {"path": host_dir}}]
    spec["containers"][0]["securityContext"]["privileged"] = True
    return daemonset


@pytest.mark.parametrize(
    ("host_dir", "agent"),
    [
        ("/opt/cni/bin", "CNI plugin"),
        ("/var/lib/kubelet/plugins/csi.example.org", "CSI node plugin"),
        ("/var/lib/kubelet/device-plugins", "device plugin"),
    ],
)
def test_a_node_agent_is_told_not_failed(host_dir: str, agent: str) -> None:
    found = [f for f in samples.run(node_agent(host_dir), samples.binding()) if f.rule != "EXT001"]
    host = {f.rule: f for f in found if f.rule in ("SEC006", "SEC007", "SEC008")}
    assert set(host) == {"SEC006", "SEC007", "SEC008"}
    assert all(f.severity is Severity.INFO and agent in f.message for f in host.values())


def test_the_same_host_access_on_an_ordinary_daemonset_is_an_error() -> None:
    found = samples.run(node_agent("/srv/data"), samples.binding())
    severities = {f.rule: f.severity for f in found}
    assert severities["SEC006"] is Severity.ERROR
    assert severities["SEC007"] is Severity.ERROR
    assert severities["SEC008"] is Severity.WARNING


def test_ignore_by_annotation_and_by_flag() -> None:
    broken = samples.good_deployment()
    set_path(broken, "spec.replicas", 1)
    assert {f.rule for f in samples.run(broken, samples.binding())} == {"WL001"}
    assert samples.run(broken, samples.binding(), disabled=("WL001",)) == []
    broken["metadata"]["annotations"] = {"audit.kubext.io/ignore": "WL002, WL001"}
    assert samples.run(broken, samples.binding()) == []


def rbac(kind: str, **rule: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "r"} | ({"namespace": "sys"} if kind == "Role" else {})
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": meta,
        "rules": [rule],
    }


RBAC: list[Any] = [
    pytest.param(
        rbac("ClusterRole", apiGroups=[""], resources=["pods"], verbs=["*"]),
        "RBAC001",
        "rules[0].verbs",
        Severity.ERROR,
        id="wildcard-verb",
    ),
    pytest.param(
        rbac("ClusterRole", apiGroups=["*"], resources=["pods"], verbs=["get"]),
        "RBAC001",
        "rules[0].apiGroups",
        Severity.ERROR,
        id="wildcard-group",
    ),
    pytest.param(
        rbac(
            "ClusterRole",
            apiGroups=["rbac.authorization.k8s.io"],
            resources=["clusterroles"],
            verbs=["bind"],
        ),
        "RBAC002",
        "rules[0].verbs",
        Severity.ERROR,
        id="bind",
    ),
    pytest.param(
        rbac("ClusterRole", apiGroups=[""], resources=["users"], verbs=["impersonate"]),
        "RBAC002",
        "rules[0].verbs",
        Severity.ERROR,
        id="impersonate",
    ),
    pytest.param(
        rbac("ClusterRole", apiGroups=[""], resources=["secrets"], verbs=["list"]),
        "RBAC003",
        "rules[0].resources",
        Severity.ERROR,
        id="secrets-cluster-wide",
    ),
    pytest.param(
        rbac("Role", apiGroups=[""], resources=["secrets"], verbs=["get"]),
        "RBAC003",
        "rules[0].resources",
        Severity.WARNING,
        id="secrets-in-namespace",
    ),
]


@pytest.mark.parametrize(("role", "rule", "path", "severity"), RBAC)
def test_rbac(role: dict[str, Any], rule: str, path: str, severity: Severity) -> None:
    [finding] = samples.run(role)
    assert (finding.rule, finding.field, finding.severity) == (rule, path, severity)


GOOD_RBAC: list[Callable[[], dict[str, Any]]] = [
    lambda: rbac(
        "ClusterRole", apiGroups=[""], resources=["secrets"], verbs=["get"], resourceNames=["mine"]
    ),
    lambda: rbac("ClusterRole", apiGroups=[""], resources=["secrets"], verbs=["create", "delete"]),
    lambda: rbac(
        "ClusterRole", apiGroups=["apps"], resources=["deployments"], verbs=["get", "list"]
    ),
]


@pytest.mark.parametrize("make", GOOD_RBAC)
def test_rbac_without_finding(make: Callable[[], dict[str, Any]]) -> None:
    assert samples.run(make()) == []


def test_namespaces_need_a_pod_security_label() -> None:
    bare = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}
    assert samples.triples(samples.run(bare)) == {("PSA001", "Namespace/apps", "metadata.labels")}
    bare["metadata"]["labels"] = {"pod-security.kubernetes.io/enforce": "restricted"}
    assert samples.run(bare) == []


def test_binding_cluster_admin_is_a_wildcard_grant() -> None:
    binding = samples.binding()
    binding["roleRef"] = {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "cluster-admin",
    }
    binding["kind"] = "ClusterRoleBinding"
    del binding["metadata"]["namespace"]
    [finding] = [f for f in samples.run(binding) if f.rule == "RBAC001"]
    assert (str(finding.ref), finding.field, finding.severity) == (
        "ClusterRoleBinding/ctl",
        "roleRef.name",
        Severity.ERROR,
    )
    assert finding.message == "binds cluster-admin (* on every resource)"
    binding["roleRef"]["name"] = "view"
    assert "RBAC001" not in {f.rule for f in samples.run(binding)}
