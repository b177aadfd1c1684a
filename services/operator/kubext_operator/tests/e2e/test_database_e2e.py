"""Database on the real control plane: every engine reaches Running; updates, scale, deletion."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from .conftest import Operator, wait_for

GROUP, VERSION, PLURAL = "db.example.com", "v1", "databases"
STORAGE_CLASS = "kubext-e2e-manual"
PORTS = {"postgresql": 5432, "mysql": 3306, "mongodb": 27017}


@pytest.fixture
def volumes(kube_api: client.ApiClient, namespace: str) -> Iterator[Callable[..., None]]:
    """PersistentVolumes pre-bound to the claims a test expects (no provisioner on the rig)."""
    core, storage = client.CoreV1Api(kube_api), client.StorageV1Api(kube_api)
    with contextlib.suppress(client.ApiException):
        storage.create_storage_class(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": STORAGE_CLASS},
                "provisioner": "kubernetes.io/no-provisioner",
                "volumeBindingMode": "Immediate",
            }
        )
    made: list[str] = []

    def provide(*claims: str) -> None:
        for claim in claims:
            name = f"{namespace}-{claim}"[:63].rstrip("-")
            core.create_persistent_volume(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": name},
                    "spec": {
                        "capacity": {"storage": "1Gi"},
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": STORAGE_CLASS,
                        "persistentVolumeReclaimPolicy": "Retain",
                        "hostPath": {"path": f"/tmp/kubext-e2e/{name}"},
                        "claimRef": {"namespace": namespace, "name": claim},
                    },
                }
            )
            made.append(name)

    yield provide
    for name in made:
        with contextlib.suppress(client.ApiException):
            core.delete_persistent_volume(name)


def _database(name: str, type_: str, version: str, policy: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Database",
        "metadata": {"name": name},
        "spec": {
            "type": type_,
            "version": version,
            "storage": {"size": "1Gi", "storageClass": STORAGE_CLASS},
            "backup": {"enabled": True, "schedule": "0 2 * * *", "retention": 3},
            "monitoring": {"enabled": True, "metrics": ["connections", "queries"]},
            "deletionPolicy": policy,
        },
    }


def _running(custom, namespace: str, name: str, replicas: int = 1):
    def probe():
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        status = obj.get("status") or {}
        ok = (
            status.get("phase") == "Running"
            and status.get("readyReplicas") == replicas
            and status.get("observedGeneration") == obj["metadata"]["generation"]
        )
        return obj if ok else None

    return probe


@pytest.mark.parametrize(
    ("type_", "version", "image", "policy"),
    [
        pytest.param("postgresql", "16.2.0", "postgres:16.2", "Retain", id="postgresql"),
        pytest.param("mysql", "8.0.36", "mysql:8.0.36", "Delete", id="mysql"),
        pytest.param("mongodb", "7.0.5", "mongo:7.0.5", "Retain", id="mongodb"),
    ],
)
def test_each_engine_runs_and_is_deleted_by_policy(
    operator: Operator,
    custom: client.CustomObjectsApi,
    kube_api: client.ApiClient,
    namespace: str,
    volumes: Callable[..., None],
    type_: str,
    version: str,
    image: str,
    policy: str,
) -> None:
    apps, core, batch = (
        client.AppsV1Api(kube_api),
        client.CoreV1Api(kube_api),
        client.BatchV1Api(kube_api),
    )
    name = "db1"
    volumes(f"data-{name}-0", f"{name}-backup")
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _database(name, type_, version, policy)
    )
    obj = wait_for(f"{type_} Database Running", _running(custom, namespace, name), timeout=120)
    status = obj["status"]
    port = PORTS[type_]
    assert status["endpoints"] == {
        "primary": f"{name}-rw.{namespace}.svc:{port}",
        "readonly": [f"{name}-ro.{namespace}.svc:{port}"],
    }
    assert status["backupStatus"]["nextBackup"].endswith("T02:00:00Z")
    assert status["backupStatus"]["backupCount"] == 0
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (
        ready["status"] == "True" and ready["observedGeneration"] == obj["metadata"]["generation"]
    )

    secret = core.read_namespaced_secret(f"{name}-credentials", namespace)
    assert set(secret.data) == {"username", "password"}
    sts = apps.read_namespaced_stateful_set(name, namespace)
    assert sts.status.ready_replicas == 1
    containers = {c.name: c for c in sts.spec.template.spec.containers}
    assert containers["database"].image == image
    assert "exporter" in containers
    (claim,) = sts.spec.volume_claim_templates
    assert claim.spec.resources.requests["storage"] == "1Gi"
    assert claim.spec.storage_class_name == STORAGE_CLASS
    cron = batch.read_namespaced_cron_job(f"{name}-backup", namespace)
    assert cron.spec.schedule == "0 2 * * *"
    rw = core.read_namespaced_service(f"{name}-rw", namespace)
    assert rw.spec.selector["statefulset.kubernetes.io/pod-name"] == f"{name}-0"
    wait_for(
        "primary pod labelled",
        lambda: core.read_namespaced_pod(f"{name}-0", namespace).metadata.labels.get(
            "db.example.com/role"
        )
        == "primary",
        timeout=30,
    )

    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    wait_for(
        "Database gone",
        lambda: not custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)[
            "items"
        ],
        timeout=60,
    )
    wait_for(
        "StatefulSet collected",
        lambda: not apps.list_namespaced_stateful_set(namespace).items
        and not batch.list_namespaced_cron_job(namespace).items,
        timeout=60,
    )

    def claims() -> set[str]:
        return {
            c.metadata.name for c in core.list_namespaced_persistent_volume_claim(namespace).items
        }

    def secrets() -> set[str]:
        items = core.list_namespaced_secret(namespace).items
        return {s.metadata.name for s in items if s.metadata.name.startswith(name)}

    if policy == "Retain":
        wait_for("kept data", lambda: claims() == {f"data-{name}-0", f"{name}-backup"}, timeout=30)
        kept = core.read_namespaced_secret(f"{name}-credentials", namespace)
        assert not kept.metadata.owner_references
    else:
        wait_for("data removed", lambda: not claims() and not secrets(), timeout=90)


def test_database_update_and_scale(
    operator: Operator,
    custom: client.CustomObjectsApi,
    kube_api: client.ApiClient,
    namespace: str,
    volumes: Callable[..., None],
    kubectl,
) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    name = "pg"
    volumes(f"data-{name}-0", f"data-{name}-1", f"{name}-backup")
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _database(name, "postgresql", "15.5.0", "Delete")
    )
    obj = wait_for("Running", _running(custom, namespace, name), timeout=120)
    uid = obj["metadata"]["uid"]

    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": {"version": "15.6.0"}}
    )
    wait_for("Running on 15.6", _running(custom, namespace, name), timeout=120)
    sts = apps.read_namespaced_stateful_set(name, namespace)
    assert sts.spec.template.spec.containers[0].image == "postgres:15.6"

    def reasons() -> list[str]:
        events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.uid={uid}")
        return [e.reason for e in events.items]

    # Events are posted in the background (like client-go's recorder): wait for them to land.
    wait_for(
        "Updating and a second Running event",
        lambda: "Updating" in reasons() and reasons().count("Running") >= 2,
        timeout=60,  # a deadline, not a delay: generous for a loaded machine
    )

    kubectl("scale", f"db/{name}", "--replicas=2")
    wait_for("Running with 2 replicas", _running(custom, namespace, name, replicas=2), timeout=120)
    ro = core.read_namespaced_service(f"{name}-ro", namespace)
    assert ro.spec.selector["db.example.com/role"] == "replica"
    wait_for(
        "replica pod labelled",
        lambda: core.read_namespaced_pod(f"{name}-1", namespace).metadata.labels.get(
            "db.example.com/role"
        )
        == "replica",
        timeout=30,
    )


def _condition(custom, namespace: str, name: str, type_: str) -> dict[str, Any] | None:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    for cond in (obj.get("status") or {}).get("conditions") or ():
        if cond["type"] == type_:
            return cond
    return None


def test_backup_now_and_restore_run_as_jobs(
    operator: Operator,
    custom: client.CustomObjectsApi,
    kube_api: client.ApiClient,
    namespace: str,
    volumes: Callable[..., None],
    kubectl,
) -> None:
    batch, core = client.BatchV1Api(kube_api), client.CoreV1Api(kube_api)
    name = "ledger"
    volumes(f"data-{name}-0", f"{name}-backup")
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _database(name, "mysql", "8.0.36", "Delete")
    )
    wait_for("Running", _running(custom, namespace, name), timeout=120)

    def finished(type_: str, status: str):
        return lambda: (c := _condition(custom, namespace, name, type_)) and (
            c if c["status"] == status else None
        )

    kubectl("annotate", f"db/{name}", "db.example.com/backup-now=2026-11-27T10:00")
    done = wait_for("the backup Job done", finished("OnDemandBackupSucceeded", "True"), timeout=60)
    [job] = batch.list_namespaced_job(
        namespace, label_selector="app.kubernetes.io/component=backup"
    ).items
    assert job.metadata.name in done["message"]
    assert job.metadata.owner_references[0].name == name
    container = job.spec.template.spec.containers[0]
    assert container.image == "mysql:8.0.36" and "mysqldump" in container.command[-1]

    kubectl("annotate", f"db/{name}", "db.example.com/restore-from=latest")
    wait_for("the restore Job done", finished("RestoreSucceeded", "True"), timeout=60)
    [restore] = batch.list_namespaced_job(
        namespace, label_selector="app.kubernetes.io/component=restore"
    ).items
    env = {e.name: e.value for e in restore.spec.template.spec.containers[0].env}
    assert env["RESTORE_FROM"] == "latest" and restore.spec.backoff_limit == 0
    # Backup and restore pods are not database instances: the scale selector counts one.
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    selected = core.list_namespaced_pod(namespace, label_selector=obj["status"]["selector"])
    assert [p.metadata.name for p in selected.items] == [f"{name}-0"]

    kubectl("annotate", "--overwrite", f"db/{name}", "db.example.com/restore-from=../../etc/shadow")
    refused = wait_for("a refused request", finished("RestoreSucceeded", "False"), timeout=30)
    assert refused["reason"] == "InvalidRequest" and "dump's file name" in refused["message"]
    wait_for(
        "the previous restore Job deleted",
        lambda: not batch.list_namespaced_job(
            namespace, label_selector="app.kubernetes.io/component=restore"
        ).items,
        timeout=30,
    )

    kubectl("annotate", f"db/{name}", "db.example.com/backup-now-", "db.example.com/restore-from-")
    wait_for(
        "request Jobs and conditions gone",
        lambda: not batch.list_namespaced_job(namespace).items
        and _condition(custom, namespace, name, "OnDemandBackupSucceeded") is None
        and _condition(custom, namespace, name, "RestoreSucceeded") is None,
        timeout=30,
    )
    reasons = {e.reason for e in core.list_namespaced_event(namespace).items}
    assert {"BackupCompleted", "RestoreCompleted", "RestoreInvalidRequest"} <= reasons
