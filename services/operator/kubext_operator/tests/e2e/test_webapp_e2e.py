"""WebApp on the real control plane: Running on kwok nodes, scale, image change, delete, GC."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from .conftest import Operator, wait_for

GROUP, VERSION, PLURAL = "example.com", "v1", "webapps"


def _webapp(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WebApp",
        "metadata": {"name": name},
        "spec": {"replicas": 3, "image": "nginx:1.21", "port": 8080, **spec},
    }


def _get(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def _running(custom, namespace, name, replicas):
    def probe():
        obj = _get(custom, namespace, name)
        status = obj.get("status") or {}
        ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
        ok = (
            status.get("phase") == "Running"
            and status.get("readyReplicas") == replicas
            and status.get("observedGeneration") == obj["metadata"]["generation"]
            and ready
            and ready[0]["status"] == "True"
            and ready[0]["observedGeneration"] == obj["metadata"]["generation"]
        )
        return obj if ok else None

    return probe


def test_webapp_lifecycle(
    operator: Operator, custom: client.CustomObjectsApi, kube_api, namespace: str, kubectl
) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _webapp("shop"))
    obj = wait_for("WebApp Running 3/3", _running(custom, namespace, "shop", 3), timeout=90)
    uid = obj["metadata"]["uid"]
    assert "webapp.example.com/finalizer" in obj["metadata"]["finalizers"]

    deployment = apps.read_namespaced_deployment("shop", namespace)
    service = core.read_namespaced_service("shop", namespace)
    for child in (deployment, service):
        (ref,) = child.metadata.owner_references
        assert (ref.kind, ref.uid, ref.controller) == ("WebApp", uid, True)
    (container,) = deployment.spec.template.spec.containers
    assert container.resources.requests == {"cpu": "100m", "memory": "128Mi"}  # defaulted
    (port,) = service.spec.ports
    assert (service.spec.type, port.port, port.target_port) == ("ClusterIP", 80, 8080)
    selector = ",".join(f"{k}={v}" for k, v in deployment.spec.selector.match_labels.items())
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    assert len(pods) == 3
    assert all(
        p.spec.node_name.startswith("kwok-node-") and p.status.phase == "Running" for p in pods
    )
    events = wait_for(  # posted in the background, like client-go's event recorder
        "a Created event",
        lambda: core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.uid={uid},reason=Created"
        ).items,
        timeout=60,  # a deadline, not a delay: generous for a loaded machine
    )
    assert "Deployment shop" in events[0].message

    # Nothing changed: touching the object's metadata causes a reconcile but no write. "No
    # write" counts only once the operator has reconciled the touched object.
    wait_for("the operator idle", operator.idle, timeout=30)
    before, reconciled = operator.writes(), operator.reconciles("webapp")
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "shop", {"metadata": {"labels": {"touched": "yes"}}}
    )
    wait_for(
        "a reconcile of the touched WebApp",
        lambda: operator.reconciles("webapp") > reconciled,
        timeout=30,
    )
    wait_for("the operator idle", operator.idle, timeout=30)
    assert operator.writes() == before

    # kubectl scale goes through the scale subresource.
    kubectl("scale", "wa/shop", "--replicas=5")
    wait_for("WebApp Running 5/5", _running(custom, namespace, "shop", 5), timeout=90)
    assert apps.read_namespaced_deployment("shop", namespace).spec.replicas == 5
    scale = custom.get_namespaced_custom_object_scale(GROUP, VERSION, namespace, PLURAL, "shop")
    assert (
        scale["status"]["replicas"] == 5
        and "app.kubernetes.io/instance=shop" in scale["status"]["selector"]
    )

    # An image change rolls the Deployment out.
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "shop", {"spec": {"image": "nginx:1.22"}}
    )
    wait_for("WebApp Running on the new image", _running(custom, namespace, "shop", 5), timeout=120)
    images = {
        c.image
        for p in core.list_namespaced_pod(namespace, label_selector=selector).items
        if p.metadata.deletion_timestamp is None
        for c in p.spec.containers
    }
    assert images == {"nginx:1.22"}

    # Someone edits the Deployment: the operator takes its fields back.
    apps.patch_namespaced_deployment("shop", namespace, {"spec": {"replicas": 1}})
    wait_for(
        "Deployment replicas restored",
        lambda: apps.read_namespaced_deployment("shop", namespace).spec.replicas == 5,
        timeout=30,
    )

    # Delete: the finalizer runs, then the children and pods are gone.
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "shop")
    wait_for(
        "WebApp gone",
        lambda: not custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)[
            "items"
        ],
        timeout=60,
    )
    wait_for(
        "children garbage-collected",
        lambda: not apps.list_namespaced_deployment(namespace).items
        and not core.list_namespaced_service(namespace).items
        and not apps.list_namespaced_replica_set(namespace).items,
        timeout=60,
    )
    wait_for("pods gone", lambda: not core.list_namespaced_pod(namespace).items, timeout=90)
    deleted = core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.uid={uid},reason=Deleted"
    ).items
    assert len(deleted) == 1  # the cleanup ran once
