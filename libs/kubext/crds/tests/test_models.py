"""The models enforce the seed's validation rules, and v1 <-> v1beta1 conversion is lossless."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from kubext import cron
from kubext.crds import database, webapp


def _webapp(**over: Any) -> dict[str, Any]:
    return {"replicas": 3, "image": "nginx:1.21", "port": 80, **over}


def _db(**over: Any) -> dict[str, Any]:
    return {"type": "postgresql", "version": "13.7.0", "storage": {"size": "100Gi"}, **over}


def test_seed_webapp_example_is_valid() -> None:
    spec = webapp.WebAppSpec.model_validate(_webapp(resources={"cpu": "500m", "memory": "512Mi"}))
    assert spec.resources is not None and spec.resources.memory == "512Mi"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        pytest.param(_webapp(replicas=0), "replicas", id="replicas-below-1"),
        pytest.param(_webapp(replicas=101), "replicas", id="replicas-above-100"),
        pytest.param(_webapp(port=0), "port", id="port-0"),
        pytest.param(_webapp(port=65536), "port", id="port-65536"),
        pytest.param({"replicas": 1, "port": 80}, "image", id="image-required"),
        pytest.param(_webapp(resources={"cpu": "lots"}), "resources.cpu", id="bad-quantity"),
        pytest.param(_webapp(resources={"memory": "1..2Gi"}), "resources.memory", id="two-dots"),
        pytest.param(_webapp(extra=1), "extra", id="unknown-field"),
    ],
)
def test_invalid_webapp_is_rejected_at_the_field(body: dict[str, Any], where: str) -> None:
    with pytest.raises(pydantic.ValidationError) as exc:
        webapp.WebAppSpec.model_validate(body)
    assert ".".join(map(str, exc.value.errors()[0]["loc"])) == where


def test_seed_database_example_is_valid() -> None:
    body = _db(
        storage={"size": "100Gi", "storageClass": "fast-ssd"},
        backup={"enabled": True, "schedule": "0 2 * * *", "retention": 30},
        monitoring={
            "enabled": True,
            "metrics": ["cpu", "memory", "disk", "connections", "queries"],
        },
    )
    spec = database.DatabaseSpec.model_validate(body)
    assert spec.storage.storage_class == "fast-ssd"
    assert spec.replicas == 1 and spec.deletion_policy == "Retain"
    assert spec.to_dict()["storage"] == {"size": "100Gi", "storageClass": "fast-ssd"}


@pytest.mark.parametrize(
    ("body", "where"),
    [
        pytest.param(_db(type="oracle"), "type", id="type-enum"),
        pytest.param(_db(version="13.7"), "version", id="version-two-parts"),
        pytest.param(_db(version="v13.7.0"), "version", id="version-prefix"),
        pytest.param(_db(storage={"size": "100GB"}), "storage.size", id="size-suffix"),
        pytest.param(_db(storage={}), "storage.size", id="size-required"),
        pytest.param(_db(backup={"retention": 0}), "backup.retention", id="retention-0"),
        pytest.param(_db(backup={"retention": 366}), "backup.retention", id="retention-366"),
        pytest.param(_db(backup={"schedule": "soon"}), "backup.schedule", id="schedule-pattern"),
        pytest.param(_db(backup={"schedule": "@reboot"}), "backup.schedule", id="reboot"),
        pytest.param(_db(backup={"schedule": "0 0 2 * * *"}), "backup.schedule", id="six-fields"),
        pytest.param(_db(backup={"schedule": "99 2 * * *"}), "backup.schedule", id="minute-99"),
        pytest.param(_db(backup={"enabled": True}), "backup", id="enabled-without-schedule"),
        pytest.param(_db(monitoring={"metrics": ["iops"]}), "monitoring.metrics.0", id="metric"),
        pytest.param(_db(replicas=0), "replicas", id="replicas-0"),
        pytest.param(_db(deletionPolicy="Orphan"), "deletionPolicy", id="deletion-policy"),
    ],
)
def test_invalid_database_is_rejected_at_the_field(body: dict[str, Any], where: str) -> None:
    with pytest.raises(pydantic.ValidationError) as exc:
        database.DatabaseSpec.model_validate(body)
    assert ".".join(map(str, exc.value.errors()[0]["loc"])) == where


@pytest.mark.parametrize(
    "schedule",
    [
        *["0 2 * * *", "*/15 * * * *", "@daily", "@midnight", "0 0 * * mon-fri", "0 0 1,15 * *"],
        *["@every 1h30m", "@every 1.5h", "@every 0s", "@every -1h", "@every 1h 30m", "@reboot"],
        *["0 0 * * 7", "0 0 L * *", "0 0 30 2 *", "99 2 * * *", "0 0 2 * * *", "soon", ""],
    ],
)
def test_the_model_judges_a_schedule_as_the_parser_does(schedule: str) -> None:
    problem = cron.schedule_problem(schedule)
    v1 = {"enabled": True, "schedule": schedule}
    v1beta1 = {"engine": "mysql", "version": "8.0.36", "storageSize": "1Gi", "backupEnabled": True}
    for model, body in (
        (database.Backup, v1),
        (database.DatabaseSpecV1beta1, {**v1beta1, "backupSchedule": schedule}),
    ):
        if problem is None:
            model.model_validate(body)
            continue
        with pytest.raises(pydantic.ValidationError) as exc:
            model.model_validate(body)
        assert exc.value.errors()[0]["msg"] == f"Value error, {problem}"


FULL_V1 = _db(
    storage={"size": "10Gi", "storageClass": "fast"},
    backup={"enabled": True, "schedule": "0 2 * * *", "retention": 30},
    monitoring={"enabled": True, "metrics": ["cpu", "queries"]},
    replicas=3,
    deletionPolicy="Delete",
)
FULL_V1BETA1 = {
    "engine": "postgresql",
    "version": "13.7.0",
    "storageSize": "10Gi",
    "storageClassName": "fast",
    "backupEnabled": True,
    "backupSchedule": "0 2 * * *",
    "backupRetention": 30,
    "monitoringEnabled": True,
    "metrics": ["cpu", "queries"],
    "replicas": 3,
    "deletionPolicy": "Delete",
}


def test_conversion_maps_every_field() -> None:
    assert database.spec_v1_to_v1beta1(FULL_V1) == FULL_V1BETA1
    assert database.spec_v1beta1_to_v1(FULL_V1BETA1) == FULL_V1


@pytest.mark.parametrize("body", [_db(), FULL_V1, _db(backup={"retention": 3})])
def test_conversion_round_trips_exactly(body: dict[str, Any]) -> None:
    assert database.spec_v1beta1_to_v1(database.spec_v1_to_v1beta1(body)) == body


def test_conversion_refuses_invalid_input() -> None:
    with pytest.raises(pydantic.ValidationError):
        database.spec_v1beta1_to_v1({**FULL_V1BETA1, "backupEnabled": True, "backupSchedule": None})
    with pytest.raises(pydantic.ValidationError):
        database.spec_v1_to_v1beta1(_db(type="oracle"))
