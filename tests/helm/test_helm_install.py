"""Each chart installs into a fresh namespace of the rig's real API server: its workloads become
ready (kwok runs the pods), its RBAC grants what the service needs and nothing else (asked of
the API server's own authorizer), and `helm uninstall` leaves nothing behind."""

from __future__ import annotations

import contextlib
import json
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from helmcharts import Helm, HelmError  # pants: no-infer-dep
from kubernetes import client


@dataclass(frozen=True)
class Access:
    """One request the chart's ServiceAccount may or may not make. In names and namespaces,
    {rel} is the release and {ns} its namespace; namespace None asks cluster-wide."""

    verb: str
    resource: str
    group: str = ""
    subresource: str = ""
    name: str = ""
    namespace: str | None = "{ns}"


@dataclass(frozen=True)
class Case:
    chart: str
    service_account: str  # {rel}-... as the chart names it
    workloads: list[tuple[str, str]]  # (kind, name)
    values: Callable[[str], dict[str, Any]] = lambda rel: {}
    allowed: list[Access] = field(default_factory=list)
    denied: list[Access] = field(default_factory=list)
    extra_accounts: dict[str, tuple[list[Access], list[Access]]] = field(default_factory=dict)


NOTHING_SECRET = [Access("get", "secrets"), Access("list", "secrets", namespace=None)]
CASES = {
    "operator": Case(
        chart="operator",
        service_account="{rel}-operator",
        workloads=[("Deployment", "{rel}-operator")],
        allowed=[
            Access("create", "statefulsets", "apps", namespace="default"),
            Access("watch", "webapps", "example.com", namespace=None),
            Access("patch", "databases", "db.example.com", "status", namespace="default"),
            Access("update", "webapps", "example.com", "finalizers", namespace="default"),
            Access("create", "cronjobs", "batch", namespace="default"),
            Access("delete", "jobs", "batch", namespace="default"),
            Access("patch", "pods", namespace="default"),
            Access("update", "leases", "coordination.k8s.io", name="{rel}-operator"),
        ],
        denied=[
            Access("update", "leases", "coordination.k8s.io", name="another-operator"),
            Access(
                "update",
                "leases",
                "coordination.k8s.io",
                name="{rel}-operator",
                namespace="default",
            ),
            Access("delete", "nodes", namespace=None),
            Access("create", "clusterroles", "rbac.authorization.k8s.io", namespace=None),
            Access("delete", "webapps", "example.com", namespace="default"),
            Access("get", "configmaps", namespace="default"),
        ],
    ),
    "scheduler": Case(
        chart="scheduler",
        service_account="{rel}-scheduler",
        workloads=[("Deployment", "{rel}-scheduler")],
        allowed=[
            Access("create", "pods", subresource="binding", namespace="default"),
            Access("watch", "nodes", namespace=None),
            Access("watch", "persistentvolumeclaims", namespace=None),
            Access("update", "leases", "coordination.k8s.io", name="kubext-scheduler"),
        ],
        denied=[
            Access("update", "leases", "coordination.k8s.io", name="someone-else"),
            Access("create", "deployments", "apps", namespace="default"),
            *NOTHING_SECRET,
        ],
    ),
    "cni": Case(
        chart="cni",
        service_account="{rel}-cni",
        workloads=[("DaemonSet", "{rel}-cni")],
        denied=[Access("get", "nodes", namespace=None), Access("list", "pods", namespace=None)],
    ),
    "csi": Case(
        chart="csi",
        service_account="{rel}-csi-node",
        workloads=[("DaemonSet", "{rel}-csi-node")],
        values=lambda rel: {"config": {"driver_name": f"{rel}.csi.kubext.io"}},
        allowed=[
            Access("create", "persistentvolumes", namespace=None),
            Access("delete", "persistentvolumes", namespace=None),
            Access("update", "persistentvolumeclaims", namespace="default"),
            Access("watch", "storageclasses", "storage.k8s.io", namespace=None),
            Access("create", "events", namespace="default"),
            Access("list", "volumesnapshots", "snapshot.storage.k8s.io", namespace="default"),
            Access(
                "update",
                "volumesnapshotcontents",
                "snapshot.storage.k8s.io",
                subresource="status",
                namespace=None,
            ),
            # Capacity tracking (on by default), in the release namespace only.
            Access("create", "csistoragecapacities", "storage.k8s.io"),
            Access("get", "pods"),
        ],
        denied=[
            Access("create", "csistoragecapacities", "storage.k8s.io", namespace="default"),
            Access("get", "pods", namespace="default"),
            # --node-deployment: no nodes or CSINodes to watch, no leader to elect.
            Access("get", "nodes", namespace=None),
            Access("list", "csinodes", "storage.k8s.io", namespace=None),
            Access("create", "leases", "coordination.k8s.io"),
            # No resizer, no attacher.
            Access("patch", "persistentvolumeclaims", subresource="status", namespace="default"),
            Access(
                "patch", "volumeattachments", "storage.k8s.io", subresource="status", namespace=None
            ),
            Access("create", "pods", namespace="default"),
            *NOTHING_SECRET,
        ],
    ),
    "csi-single-node": Case(
        chart="csi",
        service_account="{rel}-csi-node",
        workloads=[("DaemonSet", "{rel}-csi-node")],
        values=lambda rel: {
            "config": {"driver_name": f"{rel}.csi.kubext.io"},
            "csiDriver": {"attachRequired": True, "storageCapacity": False},
            "storageClass": {"allowVolumeExpansion": True},
            "sidecars": {"snapshotter": {"enabled": False}, "resizer": {"enabled": True}},
        },
        allowed=[
            Access("patch", "persistentvolumeclaims", subresource="status", namespace="default"),
            Access(
                "patch", "volumeattachments", "storage.k8s.io", subresource="status", namespace=None
            ),
            # The Leases csi-resizer and csi-attacher elect in: created, then only these two.
            Access("create", "leases", "coordination.k8s.io"),
            Access(
                "update",
                "leases",
                "coordination.k8s.io",
                name="external-resizer-{rel}-csi-kubext-io",
            ),
            Access(
                "get",
                "leases",
                "coordination.k8s.io",
                name="external-attacher-leader-{rel}-csi-kubext-io",
            ),
        ],
        denied=[
            Access("update", "leases", "coordination.k8s.io", name="kube-scheduler"),
            Access(
                "update",
                "leases",
                "coordination.k8s.io",
                name="external-resizer-{rel}-csi-kubext-io",
                namespace="default",
            ),
            Access("create", "csistoragecapacities", "storage.k8s.io"),
            Access(
                "update",
                "volumesnapshotcontents",
                "snapshot.storage.k8s.io",
                subresource="status",
                namespace=None,
            ),
            *NOTHING_SECRET,
        ],
    ),
    "deviceplugin": Case(
        chart="deviceplugin",
        service_account="{rel}-deviceplugin",
        workloads=[("DaemonSet", "{rel}-deviceplugin")],
        denied=[
            Access("get", "nodes", namespace=None),
            Access("patch", "nodes", subresource="status", namespace=None),
        ],
    ),
}
CLUSTER_SCOPED_LISTS = {
    "ClusterRole": lambda api, sel: client.RbacAuthorizationV1Api(api).list_cluster_role(
        label_selector=sel
    ),
    "ClusterRoleBinding": lambda api, sel: client.RbacAuthorizationV1Api(
        api
    ).list_cluster_role_binding(label_selector=sel),
    "ValidatingWebhookConfiguration": lambda api, sel: client.AdmissionregistrationV1Api(
        api
    ).list_validating_webhook_configuration(label_selector=sel),
    "MutatingWebhookConfiguration": lambda api, sel: client.AdmissionregistrationV1Api(
        api
    ).list_mutating_webhook_configuration(label_selector=sel),
    "CSIDriver": lambda api, sel: client.StorageV1Api(api).list_csi_driver(label_selector=sel),
    "StorageClass": lambda api, sel: client.StorageV1Api(api).list_storage_class(
        label_selector=sel
    ),
}


def new_release() -> str:
    return f"h{uuid.uuid4().hex[:7]}"


def allowed(
    api: client.ApiClient, *, namespace: str, account: str, access: Access, rel: str
) -> bool:
    """The API server's own authorizer, asked on behalf of the ServiceAccount."""
    fill = {"rel": rel, "ns": namespace}
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{namespace}:{account}",
            groups=[
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace}",
                "system:authenticated",
            ],
            resource_attributes=client.V1ResourceAttributes(
                verb=access.verb,
                group=access.group,
                resource=access.resource,
                subresource=access.subresource or None,
                name=access.name.format(**fill) or None,
                namespace=access.namespace.format(**fill) if access.namespace else None,
            ),
        )
    )
    return bool(client.AuthorizationV1Api(api).create_subject_access_review(review).status.allowed)


def assert_ready(api: client.ApiClient, namespace: str, kind: str, name: str) -> None:
    apps = client.AppsV1Api(api)
    if kind == "Deployment":
        deployment = apps.read_namespaced_deployment_status(name, namespace)
        assert (deployment.status.ready_replicas or 0) == deployment.spec.replicas >= 1, name
    else:
        nodes = client.CoreV1Api(api).list_node(label_selector="type=kwok").items
        status = apps.read_namespaced_daemon_set_status(name, namespace).status
        assert status.number_ready == status.desired_number_scheduled == len(nodes) >= 1, name


def leftovers(api: client.ApiClient, release: str) -> dict[str, list[str]]:
    selector = f"app.kubernetes.io/instance={release}"
    found = {
        kind: [o.metadata.name for o in list_(api, selector).items]
        for kind, list_ in CLUSTER_SCOPED_LISTS.items()
    }
    return {kind: names for kind, names in found.items() if names}


@contextlib.contextmanager
def installed(
    helm: Helm, chart: str, *, release: str, namespace: str, values: dict[str, Any]
) -> Iterator[None]:
    helm.install(chart, release=release, namespace=namespace, values=values)
    try:
        yield
    finally:
        helm.uninstall(release=release, namespace=namespace)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_install_becomes_ready_with_least_privilege_and_uninstalls_clean(
    helm_on_cluster: Helm, kube_api: client.ApiClient, namespace: str, case: Case
) -> None:
    rel = new_release()
    with installed(
        helm_on_cluster, case.chart, release=rel, namespace=namespace, values=case.values(rel)
    ):
        for kind, name in case.workloads:
            assert_ready(kube_api, namespace, kind, name.format(rel=rel))
        # What the release owns cluster-wide, found by its instance label (so the check after
        # uninstall below looks at the right objects); cni and deviceplugin own none.
        assert bool(leftovers(kube_api, rel)) is (case.chart not in ("cni", "deviceplugin"))
        accounts = {case.service_account: (case.allowed, case.denied), **case.extra_accounts}
        for account, (grants, refusals) in accounts.items():
            account = account.format(rel=rel)
            client.CoreV1Api(kube_api).read_namespaced_service_account(account, namespace)
            check = {
                a: allowed(kube_api, namespace=namespace, account=account, access=a, rel=rel)
                for a in grants + refusals
            }
            assert [a for a in grants if not check[a]] == [], f"{account} lacks rights it needs"
            assert [a for a in refusals if check[a]] == [], f"{account} has rights it must not"
    assert leftovers(kube_api, rel) == {}
    assert client.AppsV1Api(kube_api).list_namespaced_deployment(namespace).items == []
    assert client.AppsV1Api(kube_api).list_namespaced_daemon_set(namespace).items == []


@contextlib.contextmanager
def closed_local_port() -> Iterator[int]:
    """A 127.0.0.1 port held but not listening: connecting to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@contextlib.contextmanager
def labelled_namespace(api: client.ApiClient, labels: dict[str, str]) -> Iterator[str]:
    core = client.CoreV1Api(api)
    name = f"helm-webhook-target-{uuid.uuid4().hex[:6]}"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
    )
    try:
        yield name
    finally:
        core.delete_namespace(name)


def dry_run_pod(api: client.ApiClient, namespace: str) -> None:
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="probe"),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="app", image="registry.local/app:1")]
        ),
    )
    client.CoreV1Api(api).create_namespaced_pod(namespace, pod, dry_run="All")


def test_webhooks_install_fails_closed_only_where_it_is_scoped(
    helm_on_cluster: Helm, kube_api: client.ApiClient, namespace: str
) -> None:
    """The webhooks chart installed for real, its configurations called by the API server.

    Scoped to one labelled namespace and pointed at a local port where nothing answers, a
    failurePolicy Fail webhook must refuse pods there and nowhere else: not in its own
    namespace, not in namespaces without the label (so other tests' pods never meet it).
    """
    rel = new_release()
    label = {"kubext.io/helm-test": rel}
    name = f"{rel}-webhooks"
    with closed_local_port() as port, labelled_namespace(kube_api, label) as target:
        values = {
            "webhooks": {
                "url": f"https://127.0.0.1:{port}",
                "namespaceSelector": {"matchLabels": label},
            },
        }
        with installed(
            helm_on_cluster, "webhooks", release=rel, namespace=namespace, values=values
        ):
            assert_ready(kube_api, namespace, "Deployment", name)
            registration = client.AdmissionregistrationV1Api(kube_api)
            validating = registration.read_validating_webhook_configuration(name)
            mutating = registration.read_mutating_webhook_configuration(name)
            assert {h.failure_policy for h in validating.webhooks + mutating.webhooks} == {"Fail"}
            with pytest.raises(client.ApiException) as refused:
                dry_run_pod(kube_api, target)
            message = json.loads(refused.value.body)["message"]
            assert 'failed calling webhook "pods.mutate.webhooks.kubext.io"' in message
            assert "connection refused" in message
            dry_run_pod(kube_api, namespace)  # its own namespace is never sent to it
            dry_run_pod(kube_api, "default")  # nor is any namespace without the label
            service_account = {"namespace": namespace, "account": name, "rel": rel}
            assert allowed(
                kube_api,
                **service_account,
                access=Access(
                    "patch",
                    "validatingwebhookconfigurations",
                    "admissionregistration.k8s.io",
                    name=name,
                    namespace=None,
                ),
            )
            assert not allowed(
                kube_api,
                **service_account,
                access=Access(
                    "patch",
                    "validatingwebhookconfigurations",
                    "admissionregistration.k8s.io",
                    name="other",
                    namespace=None,
                ),
            )
            assert allowed(kube_api, **service_account, access=Access("create", "secrets"))
            assert allowed(
                kube_api, **service_account, access=Access("update", "secrets", name=f"{name}-tls")
            )
            assert not allowed(
                kube_api, **service_account, access=Access("get", "secrets", name="other")
            )
            assert not allowed(
                kube_api, **service_account, access=Access("get", "secrets", namespace="default")
            )
            assert allowed(
                kube_api, **service_account, access=Access("get", "namespaces", namespace=None)
            )
        assert leftovers(kube_api, rel) == {}
        dry_run_pod(kube_api, target)  # uninstalled: nothing stands in the way any more


def test_cert_manager_mode_without_cert_manager_installs_nothing(
    helm_on_cluster: Helm, kube_api: client.ApiClient, namespace: str
) -> None:
    rel = new_release()
    with pytest.raises(HelmError, match=r"certManager\.enabled needs cert-manager"):
        helm_on_cluster.install(
            "webhooks", release=rel, namespace=namespace, values={"certManager": {"enabled": True}}
        )
    with pytest.raises(HelmError, match="not found"):
        helm_on_cluster.run(
            "status", rel, "--namespace", namespace, "--kubeconfig", helm_on_cluster.kubeconfig
        )
    assert leftovers(kube_api, rel) == {}
