"""Crash and HA: kill -9 mid-burst converges without duplicates or orphans; one of two acts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from kubernetes import client

from .conftest import Operator, wait_for

GROUP, VERSION, PLURAL = "example.com", "v1", "webapps"
COUNT = 50


def _webapp(name: str) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WebApp",
        "metadata": {"name": name},
        "spec": {"replicas": 1, "image": "nginx:1.21", "port": 8080},
    }


def _all_running(custom: client.CustomObjectsApi, namespace: str, count: int) -> Callable[[], bool]:
    def probe() -> bool:
        items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
        running = [i for i in items if (i.get("status") or {}).get("phase") == "Running"]
        return len(items) == count and len(running) == count

    return probe


def test_kill_9_during_creation_converges(
    operator_factory: Callable[..., Operator],
    custom: client.CustomObjectsApi,
    kube_api: client.ApiClient,
    namespace: str,
) -> None:
    first = operator_factory().start()
    created: list[str] = []

    def create_all() -> None:
        for n in range(COUNT):
            name = f"app-{n:02d}"
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _webapp(name))
            created.append(name)
            time.sleep(0.02)

    creator = threading.Thread(target=create_all)
    creator.start()
    wait_for("some WebApps created", lambda: len(created) >= COUNT // 3, timeout=30, every=0.05)
    first.kill9()
    creator.join(timeout=60)
    assert len(created) == COUNT

    operator_factory().start()  # waits out the dead leader's Lease, then takes over
    wait_for(f"{COUNT} WebApps Running", _all_running(custom, namespace, COUNT), timeout=180)

    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    webapps = {
        i["metadata"]["name"]: i
        for i in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
    }
    deployments = apps.list_namespaced_deployment(namespace).items
    services = core.list_namespaced_service(namespace).items
    for children in (deployments, services):
        names = sorted(c.metadata.name for c in children)
        assert names == sorted(webapps), "exactly one child of each kind per WebApp"
        for child in children:
            (ref,) = child.metadata.owner_references
            assert ref.uid == webapps[child.metadata.name]["metadata"]["uid"]  # no orphans
    replica_sets = apps.list_namespaced_replica_set(namespace).items
    assert len(replica_sets) == COUNT  # no Deployment was rewritten into a second rollout
    for obj in webapps.values():
        assert obj["metadata"]["finalizers"].count("webapp.example.com/finalizer") == 1


def test_two_replicas_only_the_leader_acts(
    operator_factory: Callable[..., Operator],
    custom: client.CustomObjectsApi,
    namespace: str,
) -> None:
    a = operator_factory().start()
    wait_for(
        "a leads",
        lambda: a.metrics().get('leader_election_master_status{name="kubext-operator"}') == 1,
    )
    b = operator_factory().start()
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _webapp("one"))
    wait_for("WebApp Running", _all_running(custom, namespace, 1), timeout=60)
    assert b.metrics().get('leader_election_master_status{name="kubext-operator"}') == 0
    assert b.writes(leases=True) == 0  # the standby never wrote, not even to the Lease
    assert a.writes() > 0

    a.stop()  # a clean stop releases the Lease: the standby takes over at once
    wait_for(
        "b leads",
        lambda: b.metrics().get('leader_election_master_status{name="kubext-operator"}') == 1,
        timeout=20,
    )
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _webapp("two"))
    wait_for("both Running", _all_running(custom, namespace, 2), timeout=60)
