"""The API server itself rejects invalid custom resources with the schema's message."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client


def _webapp(**spec: Any) -> dict[str, Any]:
    body = {"replicas": 1, "image": "nginx", "port": 80, **spec}
    return {
        "apiVersion": "example.com/v1",
        "kind": "WebApp",
        "metadata": {"name": "bad"},
        "spec": {k: v for k, v in body.items() if v is not None},
    }


def _database(**spec: Any) -> dict[str, Any]:
    body = {"type": "postgresql", "version": "13.7.0", "storage": {"size": "1Gi"}, **spec}
    return {
        "apiVersion": "db.example.com/v1",
        "kind": "Database",
        "metadata": {"name": "bad"},
        "spec": {k: v for k, v in body.items() if v is not None},
    }


CASES = [
    pytest.param(
        _webapp(replicas=0),
        "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
        id="replicas-0",
    ),
    pytest.param(
        _webapp(replicas=101),
        "spec.replicas in body should be less than or equal to 100",
        id="replicas-101",
    ),
    pytest.param(
        _webapp(port=70000), "spec.port in body should be less than or equal to 65535", id="port"
    ),
    pytest.param(_webapp(image=None), "spec.image: Required value", id="image-required"),
    pytest.param(
        _webapp(resources={"cpu": "lots"}), "spec.resources.cpu in body should match", id="quantity"
    ),
    pytest.param(_database(type="oracle"), 'spec.type: Unsupported value: "oracle"', id="db-type"),
    pytest.param(
        _database(version="13.7"),
        "spec.version in body should match '^[0-9]+\\.[0-9]+\\.[0-9]+$'",
        id="db-version",
    ),
    pytest.param(
        _database(storage={"size": "100GB"}),
        "spec.storage.size in body should match '^[0-9]+[KMGT]i?$'",
        id="db-size",
    ),
    pytest.param(_database(storage={}), "spec.storage.size: Required value", id="db-size-required"),
    pytest.param(
        _database(backup={"retention": 400}),
        "spec.backup.retention in body should be less than or equal to 365",
        id="db-retention",
    ),
    pytest.param(
        _database(backup={"schedule": "whenever"}),
        "spec.backup.schedule in body should match",
        id="db-schedule",
    ),
    pytest.param(
        _database(backup={"schedule": "@every 0s"}),  # a CronJob would run it every second
        "spec.backup.schedule in body should match",
        id="db-schedule-every-zero",
    ),
    pytest.param(
        _database(backup={"enabled": True}),
        "backup.schedule is required when backup.enabled is true",
        id="db-cel",
    ),
    pytest.param(
        _database(monitoring={"metrics": ["iops"]}),
        'spec.monitoring.metrics[0]: Unsupported value: "iops"',
        id="db-metric",
    ),
]


@pytest.mark.parametrize(("body", "message"), CASES)
def test_invalid_custom_resources_are_rejected(
    crds: None, kube_api: client.ApiClient, namespace: str, body: dict[str, Any], message: str
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    group, version = body["apiVersion"].split("/")
    plural = "webapps" if body["kind"] == "WebApp" else "databases"
    with pytest.raises(client.ApiException) as exc:
        custom.create_namespaced_custom_object(group, version, namespace, plural, body)
    assert exc.value.status == 422
    status = json.loads(exc.value.body)
    assert status["reason"] == "Invalid"
    assert message in status["message"], status["message"]


@pytest.mark.parametrize("schedule", ["@midnight", "@every 1.5h", "0 0 * * mon-fri"])
def test_schedules_a_cronjob_accepts_are_admitted(
    crds: None, kube_api: client.ApiClient, namespace: str, schedule: str
) -> None:
    # The seed's pattern refused these; the schema now carries kubext.cron's syntax.
    custom = client.CustomObjectsApi(kube_api)
    body = _database(backup={"enabled": True, "schedule": schedule, "retention": 30})
    created = custom.create_namespaced_custom_object(
        "db.example.com", "v1", namespace, "databases", body, dry_run="All"
    )
    assert created["spec"]["backup"]["schedule"] == schedule
