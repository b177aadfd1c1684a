"""Controllers and workloads: availability, leader election, resources, probes, images and the
ServiceAccount they run as."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kubext_audit.checks import pods
from kubext_audit.checks.model import Emit, Inventory, Obj, Severity, get, items, rule

REPLICATED = ("Deployment", "StatefulSet")
# What serves while it runs, so needs probes: the long-running workloads and bare Pods (not a
# Job's pods, which run to completion).
SERVING = pods.WORKLOADS | {"Pod"}
# app.kubernetes.io/component values that mark a controller (the seed's label, and ours).
CONTROLLER_COMPONENTS = frozenset(
    {"controller", "controller-manager", "operator", "scheduler", "manager"}
)


def is_controller(obj: Obj) -> bool:
    labels = get(obj, "metadata", "labels") or {}
    return labels.get("app.kubernetes.io/component") in CONTROLLER_COMPONENTS


def service_account(obj: Obj) -> str:
    spec = pods.pod_spec(obj)
    return str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")


def bound_roles(obj: Obj, inventory: Inventory) -> list[Obj]:
    """The Roles and ClusterRoles in the inventory bound to the workload's ServiceAccount."""
    namespace = str(get(obj, "metadata", "namespace") or "")
    account = service_account(obj)
    found: list[Obj] = []
    for binding in inventory.of_kind("RoleBinding", "ClusterRoleBinding"):
        binding_ns = str(get(binding, "metadata", "namespace") or "")
        for _, subject in items(binding, "subjects"):
            if subject.get("kind") != "ServiceAccount" or subject.get("name") != account:
                continue
            if (subject.get("namespace") or binding_ns) != namespace:
                continue
            role_kind, role_name = get(binding, "roleRef", "kind"), get(binding, "roleRef", "name")
            role = inventory.get(
                str(role_kind), str(role_name), binding_ns if role_kind == "Role" else ""
            )
            found.append(role or {"kind": role_kind, "metadata": {"name": role_name}})
    return found


def can_write_leases(roles: list[Obj]) -> bool:
    for role in roles:
        for _, rule_ in items(role, "rules"):
            groups, resources = rule_.get("apiGroups") or [], rule_.get("resources") or []
            verbs = rule_.get("verbs") or []
            on_leases = {"coordination.k8s.io", "*"} & set(groups) and {"leases", "*"} & set(
                resources
            )
            if on_leases and {"update", "patch", "*"} & set(verbs):
                return True
    return False


def leader_elect_flag(obj: Obj) -> bool:
    for _, container in pods.containers(obj):
        for arg in [*(container.get("args") or []), *(container.get("command") or [])]:
            if str(arg).startswith("--leader-elect") and not str(arg).endswith("=false"):
                return True
    return False


@rule(
    "WL001",
    Severity.WARNING,
    REPLICATED,
    title="controllers run more than one replica",
    rationale="With one replica, a node drain or a crash stops reconciliation (and admission, "
    "for a webhook's controller) until a new pod is scheduled and ready.",
    fix="Run 2 replicas with leader election (one acts, the other takes over).",
)
def controller_replicas(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    if is_controller(obj) and pods.replicas(obj) < 2:
        yield Emit(("spec", "replicas"), f"controller with {pods.replicas(obj)} replica")


@rule(
    "WL002",
    Severity.WARNING,
    REPLICATED,
    title="controllers elect a leader",
    rationale="Two replicas reconciling at once fight over the same objects; even one replica "
    "overlaps its successor during a rolling update.",
    fix="Use a coordination.k8s.io Lease (client-go's leaderelection, kopf peering, or our "
    "operator's leader module) and grant the ServiceAccount get/update on leases.",
)
def leader_election(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    if not is_controller(obj) or leader_elect_flag(obj):
        return
    if not can_write_leases(bound_roles(obj, inventory)):
        yield Emit(
            ("spec", "template", "spec", "serviceAccountName"),
            f"no --leader-elect flag and ServiceAccount {service_account(obj)} cannot update leases",
        )


def selects(pdb: Obj, obj: Obj) -> bool:
    if get(pdb, "metadata", "namespace") != get(obj, "metadata", "namespace"):
        return False
    return pods.labels_match(
        get(pdb, "spec", "selector"), get(obj, "spec", "template", "metadata", "labels")
    )


@rule(
    "WL003",
    Severity.WARNING,
    REPLICATED,
    title="replicated workloads have a PodDisruptionBudget",
    rationale="Without a PDB a node drain may evict every replica at once: the redundancy is "
    "lost exactly when it is needed.",
    fix="Add a PodDisruptionBudget selecting the pods with maxUnavailable: 1.",
)
def disruption_budget(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    if pods.replicas(obj) < 2:
        return
    if not any(selects(pdb, obj) for pdb in inventory.of_kind("PodDisruptionBudget")):
        yield Emit(("spec", "replicas"), f"{pods.replicas(obj)} replicas and no PDB selects them")


@rule(
    "WL004",
    Severity.INFO,
    REPLICATED,
    title="replicated workloads spread over nodes",
    rationale="Replicas that the scheduler puts on one node all go with it.",
    fix="Add podAntiAffinity on kubernetes.io/hostname (preferred is enough) or a "
    "topologySpreadConstraint.",
)
def anti_affinity(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    spec = pods.pod_spec(obj)
    if pods.replicas(obj) < 2:
        return
    if not get(spec, "affinity", "podAntiAffinity") and not spec.get("topologySpreadConstraints"):
        yield Emit(
            ("spec", "template", "spec", "affinity"),
            f"{pods.replicas(obj)} replicas with neither podAntiAffinity nor a spread constraint",
        )


def missing_resources(container: dict[str, Any], section: str) -> list[str]:
    values = get(container, "resources", section) or {}
    return [name for name in ("cpu", "memory") if name not in values]


@rule(
    "WL005",
    Severity.WARNING,
    pods.POD_KINDS,
    title="containers request CPU and memory",
    rationale="Without requests the scheduler places the pod as if it used nothing, and it is "
    "the first evicted under pressure (BestEffort).",
    fix="Set resources.requests.cpu and .memory to the container's usual use.",
)
def requests(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    for path, container in pods.containers(obj, init=True):
        missing = missing_resources(container, "requests")
        if missing:
            yield Emit(
                (*path, "resources", "requests"),
                f"container {container.get('name')}: no {' or '.join(missing)} request",
            )


@rule(
    "WL006",
    Severity.WARNING,
    pods.POD_KINDS,
    title="containers have CPU and memory limits",
    rationale="A container without a memory limit can take the node's memory and get other "
    "pods killed; one without a CPU limit can starve its neighbours.",
    fix="Set resources.limits.memory (and .cpu) above the requests.",
)
def limits(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    for path, container in pods.containers(obj, init=True):
        missing = missing_resources(container, "limits")
        if missing:
            yield Emit(
                (*path, "resources", "limits"),
                f"container {container.get('name')}: no {' or '.join(missing)} limit",
            )


@rule(
    "WL007",
    Severity.WARNING,
    SERVING,
    title="containers have a liveness probe",
    rationale="A hung process that does not exit is never restarted without one.",
    fix="Add livenessProbe on a /healthz that checks the process's own loops, not its "
    "dependencies.",
)
def liveness(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    for path, container in pods.containers(obj):
        if "livenessProbe" not in container:
            yield Emit((*path, "livenessProbe"), f"container {container.get('name')}: none")


@rule(
    "WL008",
    Severity.WARNING,
    SERVING,
    title="containers have a readiness probe",
    rationale="Without one a pod receives traffic (webhook calls, Service requests) and counts "
    "as available in a rollout before it can serve.",
    fix="Add readinessProbe on a /readyz that fails until the process can do its work.",
)
def readiness(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    for path, container in pods.containers(obj):
        if "readinessProbe" not in container:
            yield Emit((*path, "readinessProbe"), f"container {container.get('name')}: none")


def image_tag(image: str) -> str | None:
    """The tag of an image reference, None when it has none; '' for a digest."""
    if "@" in image:
        return ""
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


@rule(
    "WL009",
    Severity.ERROR,
    pods.POD_KINDS,
    title="images are pinned to a tag or digest (not latest)",
    rationale="`latest` or no tag means each node may run whatever was pushed last: a restart "
    "can change the code, and a rollback cannot go back.",
    fix="Use an immutable version tag or a @sha256 digest.",
)
def pinned_image(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    for path, container in pods.containers(obj, init=True):
        image = str(container.get("image") or "")
        tag = image_tag(image)
        if tag is None or tag == "latest":
            yield Emit(
                (*path, "image"),
                f"container {container.get('name')}: {image or 'no image'} is not pinned",
            )


@rule(
    "WL010",
    Severity.WARNING,
    pods.POD_KINDS,
    title="a dedicated ServiceAccount",
    rationale="Pods on the namespace's default ServiceAccount share its permissions with every "
    "other such pod; RBAC granted for one is granted for all.",
    fix="Create a ServiceAccount for the component and set serviceAccountName.",
)
def dedicated_service_account(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    if service_account(obj) == "default":
        base = pods.pod_spec_path(obj) or ("spec",)
        yield Emit((*base, "serviceAccountName"), "runs as the default ServiceAccount")


@rule(
    "WL011",
    Severity.WARNING,
    pods.POD_KINDS,
    title="no API token where no API access is granted",
    rationale="A mounted ServiceAccount token is a credential an attacker in the container can "
    "use; if the account is bound to no role it is not needed.",
    fix="Set automountServiceAccountToken: false on the pod (or the ServiceAccount), or bind "
    "the role it needs.",
)
def automount_token(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    spec = pods.pod_spec(obj)
    if spec.get("automountServiceAccountToken") is False:
        return
    namespace = str(get(obj, "metadata", "namespace") or "")
    account = inventory.get("ServiceAccount", service_account(obj), namespace)
    # The pod's own setting wins; unset, the ServiceAccount's applies.
    if (
        spec.get("automountServiceAccountToken") is None
        and get(account, "automountServiceAccountToken") is False
    ):
        return
    if not bound_roles(obj, inventory):
        base = pods.pod_spec_path(obj) or ("spec",)
        yield Emit(
            (*base, "automountServiceAccountToken"),
            f"token mounted, but ServiceAccount {service_account(obj)} is bound to no role",
        )


RULES = (
    controller_replicas,
    leader_election,
    disruption_budget,
    anti_affinity,
    requests,
    limits,
    liveness,
    readiness,
    pinned_image,
    dedicated_service_account,
    automount_token,
)
