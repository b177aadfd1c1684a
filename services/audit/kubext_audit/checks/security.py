"""Security: container security contexts, host access, RBAC and Pod Security Admission."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kubext_audit.checks import pods
from kubext_audit.checks.model import Emit, Inventory, Obj, Path, Severity, get, items, rule

ESCALATION_VERBS = ("escalate", "bind", "impersonate")
SECRET_READS = frozenset({"get", "list", "watch", "*"})


def effective(container: dict[str, Any], spec: dict[str, Any], key: str) -> Any:
    """A security setting from the container, else from the pod's securityContext."""
    value = get(container, "securityContext", key)
    return get(spec, "securityContext", key) if value is None else value


def agent_note(obj: Obj) -> tuple[Severity | None, str]:
    """Node agents need host access by design: say so (info) rather than fail."""
    agent = pods.node_agent(obj)
    return (Severity.INFO, f" (a {agent}: needed on the node)") if agent else (None, "")


def each_container(obj: Obj) -> Iterator[tuple[Path, dict[str, Any], dict[str, Any]]]:
    spec = pods.pod_spec(obj)
    for path, container in pods.containers(obj, init=True):
        yield path, container, spec


@rule(
    "SEC001",
    Severity.ERROR,
    pods.POD_KINDS,
    title="runAsNonRoot",
    rationale="A process running as root in the container is root on the node after any "
    "container escape, and can write wherever the image lets root write.",
    fix="Set securityContext.runAsNonRoot: true and a non-zero runAsUser (the image's user).",
)
def run_as_non_root(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    severity, note = agent_note(obj)
    for path, container, spec in each_container(obj):
        user = effective(container, spec, "runAsUser")
        if effective(container, spec, "runAsNonRoot") is not True and not user:
            yield Emit(
                (*path, "securityContext", "runAsNonRoot"),
                f"container {container.get('name')}: may run as root{note}",
                severity=severity,
            )


@rule(
    "SEC002",
    Severity.WARNING,
    pods.POD_KINDS,
    title="readOnlyRootFilesystem",
    rationale="A writable root filesystem lets an attacker replace binaries and persist in the "
    "container; a read-only one confines writes to declared volumes.",
    fix="Set securityContext.readOnlyRootFilesystem: true and mount an emptyDir where the "
    "process writes (/tmp).",
)
def read_only_root(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    for path, container, _ in each_container(obj):
        if get(container, "securityContext", "readOnlyRootFilesystem") is not True:
            yield Emit(
                (*path, "securityContext", "readOnlyRootFilesystem"),
                f"container {container.get('name')}: root filesystem is writable",
            )


@rule(
    "SEC003",
    Severity.ERROR,
    pods.POD_KINDS,
    title="allowPrivilegeEscalation false",
    rationale="Unless false, a setuid binary in the image can raise the process's privileges "
    "above those it started with.",
    fix="Set securityContext.allowPrivilegeEscalation: false.",
)
def no_privilege_escalation(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    severity, note = agent_note(obj)
    for path, container, _ in each_container(obj):
        if get(container, "securityContext", "allowPrivilegeEscalation") is not False:
            yield Emit(
                (*path, "securityContext", "allowPrivilegeEscalation"),
                f"container {container.get('name')}: not false{note}",
                severity=severity,
            )


@rule(
    "SEC004",
    Severity.WARNING,
    pods.POD_KINDS,
    title="capabilities dropped (ALL)",
    rationale="The runtime's default capability set (NET_RAW, CHOWN, SETUID, ...) is more than "
    "most processes need, and NET_RAW allows spoofing on the pod network.",
    fix="Set securityContext.capabilities.drop: [ALL] and add back only what is needed.",
)
def drop_capabilities(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    severity, note = agent_note(obj)
    for path, container, _ in each_container(obj):
        dropped = get(container, "securityContext", "capabilities", "drop") or []
        if "ALL" not in dropped and "all" not in dropped:
            yield Emit(
                (*path, "securityContext", "capabilities", "drop"),
                f"container {container.get('name')}: does not drop ALL{note}",
                severity=severity,
            )


@rule(
    "SEC005",
    Severity.WARNING,
    pods.POD_KINDS,
    title="seccomp profile RuntimeDefault",
    rationale="Without a seccomp profile the container may make every system call, including "
    "the ones most kernel exploits use.",
    fix="Set securityContext.seccompProfile.type: RuntimeDefault (on the pod).",
)
def seccomp(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    for path, container, spec in each_container(obj):
        profile = effective(container, spec, "seccompProfile") or {}
        if profile.get("type") not in ("RuntimeDefault", "Localhost"):
            yield Emit(
                (*path, "securityContext", "seccompProfile"),
                f"container {container.get('name')}: {profile.get('type') or 'no'} profile",
            )


@rule(
    "SEC006",
    Severity.ERROR,
    pods.POD_KINDS,
    title="not privileged (unless a node agent)",
    rationale="A privileged container has every capability and every device of the node: it "
    "is the node. Only node agents (CNI, CSI node plugins) need it.",
    fix="Remove privileged: true; grant the one capability needed instead.",
)
def not_privileged(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    severity, note = agent_note(obj)
    for path, container, _ in each_container(obj):
        if get(container, "securityContext", "privileged") is True:
            yield Emit(
                (*path, "securityContext", "privileged"),
                f"container {container.get('name')}: privileged{note}",
                severity=severity,
            )


@rule(
    "SEC007",
    Severity.ERROR,
    pods.POD_KINDS,
    title="no host namespaces (unless a node agent)",
    rationale="hostNetwork, hostPID and hostIPC put the pod in the node's namespaces: it sees "
    "and reaches the node's processes and interfaces.",
    fix="Remove hostNetwork/hostPID/hostIPC unless the component configures the node itself.",
)
def no_host_namespaces(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    severity, note = agent_note(obj)
    base = pods.pod_spec_path(obj) or ("spec",)
    spec = pods.pod_spec(obj)
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key) is True:
            yield Emit((*base, key), f"{key}: true{note}", severity=severity)


@rule(
    "SEC008",
    Severity.WARNING,
    pods.POD_KINDS,
    title="no hostPath volumes (unless a node agent)",
    rationale="A hostPath volume exposes the node's filesystem to the container; writable, it "
    "is a way out of the container.",
    fix="Use emptyDir, a ConfigMap or a PersistentVolumeClaim instead.",
)
def no_host_path(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    severity, note = agent_note(obj)
    base = pods.pod_spec_path(obj) or ("spec",)
    for index, volume in items(pods.pod_spec(obj), "volumes"):
        host_path = get(volume, "hostPath", "path")
        if host_path:
            yield Emit(
                (*base, "volumes", index, "hostPath"),
                f"volume {volume.get('name')}: hostPath {host_path}{note}",
                severity=severity,
            )


RBAC = ("Role", "ClusterRole")


def each_rule(obj: Obj) -> Iterator[tuple[Path, dict[str, Any]]]:
    for index, rule_ in items(obj, "rules"):
        if isinstance(rule_, dict):
            yield ("rules", index), rule_


# Built-in ClusterRoles that grant `*` on every resource.
WILDCARD_ROLES = frozenset({"cluster-admin"})


@rule(
    "RBAC001",
    Severity.ERROR,
    (*RBAC, "RoleBinding", "ClusterRoleBinding"),
    title="no wildcards in RBAC rules",
    rationale="`*` grants every verb, resource or group, including ones added later (new CRDs, "
    "subresources): the grant grows without anyone deciding it.",
    fix="List the verbs, resources and apiGroups the component uses.",
)
def no_wildcards(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    if obj.get("kind") in ("RoleBinding", "ClusterRoleBinding"):
        role = get(obj, "roleRef", "name")
        if get(obj, "roleRef", "kind") == "ClusterRole" and role in WILDCARD_ROLES:
            yield Emit(("roleRef", "name"), f"binds {role} (* on every resource)")
        return
    for path, rule_ in each_rule(obj):
        for key in ("verbs", "resources", "apiGroups"):
            if "*" in (rule_.get(key) or []):
                yield Emit((*path, key), f"{key} has *")


@rule(
    "RBAC002",
    Severity.ERROR,
    RBAC,
    title="no escalation verbs",
    rationale="escalate and bind let the holder grant itself any role; impersonate lets it act "
    "as any user or group: each is every permission in the cluster.",
    fix="Remove escalate, bind and impersonate; if a component really needs one, restrict it "
    "with resourceNames.",
)
def no_escalation_verbs(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    for path, rule_ in each_rule(obj):
        verbs = [v for v in rule_.get("verbs") or [] if v in ESCALATION_VERBS]
        if verbs and not rule_.get("resourceNames"):
            yield Emit((*path, "verbs"), f"grants {', '.join(verbs)}")


@rule(
    "RBAC003",
    Severity.ERROR,
    RBAC,
    title="no reading every Secret",
    rationale="Reading Secrets without resourceNames reads every credential in scope (in a "
    "ClusterRole bound cluster-wide: in every namespace), service-account tokens included.",
    fix="Restrict the rule with resourceNames, or bind a Role per namespace; a component that "
    "creates Secrets can read back only its own by name.",
)
def no_secret_reads(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    for path, rule_ in each_rule(obj):
        resources = rule_.get("resources") or []
        groups = rule_.get("apiGroups") or []
        verbs = set(rule_.get("verbs") or []) & SECRET_READS
        on_secrets = ("secrets" in resources or "*" in resources) and (
            "" in groups or "*" in groups
        )
        if on_secrets and verbs and not rule_.get("resourceNames"):
            scope = "cluster-wide" if obj.get("kind") == "ClusterRole" else "in its namespace"
            yield Emit(
                (*path, "resources"),
                f"{'/'.join(sorted(verbs))} on every Secret {scope}",
                severity=None if obj.get("kind") == "ClusterRole" else Severity.WARNING,
            )


@rule(
    "PSA001",
    Severity.WARNING,
    ("Namespace",),
    title="Pod Security Admission enforce label",
    rationale="Without pod-security.kubernetes.io/enforce the namespace admits pods at the "
    "cluster default, usually privileged: nothing stops a pod that asks for the host.",
    fix="Label the namespace pod-security.kubernetes.io/enforce: restricted (privileged only "
    "for node agents' namespaces).",
)
def pod_security_label(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    labels = get(obj, "metadata", "labels") or {}
    if "pod-security.kubernetes.io/enforce" not in labels:
        yield Emit(("metadata", "labels"), "no pod-security.kubernetes.io/enforce label")


RULES = (
    run_as_non_root,
    read_only_root,
    no_privilege_escalation,
    drop_capabilities,
    seccomp,
    not_privileged,
    no_host_namespaces,
    no_host_path,
    no_wildcards,
    no_escalation_verbs,
    no_secret_reads,
    pod_security_label,
)
