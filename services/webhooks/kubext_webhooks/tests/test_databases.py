"""Database admission (rules beyond the schema, defaults) and v1 <-> v1beta1 conversion."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubext import cron
from kubext.crds import database
from kubext_webhooks import conversion, databases, review
from kubext_webhooks.tests import pods

SETTINGS = databases.DatabaseSettings()
DB_KIND = {"group": "db.example.com", "version": "v1", "kind": "Database"}


def spec(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "postgresql",
        "version": "16.2.0",
        "storage": {"size": "100Gi", "storageClass": "fast-ssd"},
        "backup": {"enabled": True, "schedule": "0 2 * * *", "retention": 30},
    }
    body.update(over)
    return body


def db(body: dict[str, Any], api_version: str = conversion.V1) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": "Database",
        "metadata": {"name": "pg", "namespace": "prod"},
        "spec": body,
    }


def validate(body, *, old=None, operation="CREATE") -> review.Decision:
    request = pods.review(
        db(body), operation=operation, old=db(old) if old is not None else None, kind=DB_KIND
    )
    return databases.validate(review.parse_admission(request), SETTINGS)


def test_seed_example_is_admitted() -> None:
    assert validate(spec()).allowed


@pytest.mark.parametrize(
    ("over", "path", "words"),
    [
        pytest.param(
            {"version": "9.6.0"}, "spec.version", "postgresql 9.6.0 is not supported", id="old-pg"
        ),
        pytest.param(
            {"type": "mysql", "version": "8.1.0"},
            "spec.version",
            "supported: 5.7, 8.0, 8.4",
            id="mysql-8.1",
        ),
        pytest.param(
            {"backup": {"enabled": True, "schedule": "61 * * * *"}},
            "spec.backup.schedule",
            "minute field '61': 61 is above the maximum 59",
            id="bad-cron",
        ),
        pytest.param(
            {"backup": {"enabled": True, "schedule": "@reboot"}},
            "spec.backup.schedule",
            "unsupported descriptor",
            id="reboot",
        ),
        pytest.param(
            {"backup": {"enabled": True, "schedule": "*/5 * * * *", "retention": 300}},
            "spec.backup.schedule",
            "every 5m",
            id="too-often",
        ),
        pytest.param(
            {"backup": {"enabled": True, "schedule": "@hourly", "retention": 7}},
            "spec.backup.retention",
            "covers only 7h",
            id="short-history",
        ),
        pytest.param(
            {"backup": {"enabled": True, "schedule": "@yearly", "retention": 10}},
            "spec.backup.retention",
            "the most allowed",
            id="long-history",
        ),
        pytest.param(
            {"backup": {"enabled": True, "schedule": "@every 30m"}},
            "spec.backup.schedule",
            "every 30m",
            id="every",
        ),
        pytest.param(
            {"storage": {"size": "100G"}, "replicas": 11},
            "spec.replicas",
            "less than or equal to 10",
            id="schema",
        ),
    ],
)
def test_rules_beyond_the_schema(over, path: str, words: str) -> None:
    decision = validate(spec(**over))
    assert not decision.allowed
    assert f"{path}: " in decision.message and words in decision.message
    assert decision.message.startswith("Database team-a/pg is invalid: ")


@pytest.mark.parametrize(
    "schedule", ["0 2 * * 1-5", "@daily", "0 0,12 * * *", "@every 24h", "30 1 1 * *"]
)
def test_sensible_schedules_pass(schedule: str) -> None:
    assert validate(spec(backup={"enabled": True, "schedule": schedule, "retention": 14})).allowed


# Every interval and any history allowed: only whether the schedule can run is judged.
ANY_INTERVAL = databases.DatabaseSettings(
    min_backup_interval_seconds=0, min_backup_history_seconds=0, max_backup_history_seconds=1e12
)


@pytest.mark.parametrize(
    "schedule",
    [
        *["0 2 * * *", "@daily", "@midnight", "@yearly", "0 0 * * mon-fri", "0 0 29 2 *"],
        *["@every 1h30m", "@every 1.5h", "@every 250ms", "@every 0s", "@every -1h", "@every 1x"],
        *["@reboot", "0 0 * * 7", "0 0 L * *", "0 0 30 2 *", "61 * * * *", "0 0 2 * * *", ""],
    ],
)
def test_admission_judges_a_schedule_as_the_parser_does(schedule: str) -> None:
    problem = cron.schedule_problem(schedule)
    body = spec(backup={"enabled": True, "schedule": schedule, "retention": 7})
    found = databases.problems(body, None, ANY_INTERVAL)
    assert found == ([] if problem is None else [f"spec.backup.schedule: {problem}"])


def test_intervals_are_the_cronjobs() -> None:
    assert set(databases.schedule_intervals("@every 90m")) == {5400}
    assert set(databases.schedule_intervals("@every 250ms")) == {1}  # whole seconds, at least 1
    assert set(databases.schedule_intervals("0 */6 * * *")) == {6 * 3600}
    assert sorted(set(databases.schedule_intervals("0 0 * * 1,3"))) == [2 * 86400, 5 * 86400]


def test_disabled_backup_schedule_is_not_judged() -> None:
    assert validate(
        spec(backup={"enabled": False, "schedule": "* * * * *", "retention": 1})
    ).allowed


def test_update_rules_type_immutable_storage_never_shrinks() -> None:
    old = spec()
    assert validate(spec(storage={"size": "200Gi"}), old=old, operation="UPDATE").allowed
    shrink = validate(spec(storage={"size": "50Gi"}), old=old, operation="UPDATE")
    assert (
        not shrink.allowed
        and "spec.storage.size: storage cannot shrink (from 100Gi to 50Gi)" in shrink.message
    )
    # 100Gi is 107374182400 bytes; 107G is fewer bytes, so it is a shrink too.
    assert not validate(spec(storage={"size": "107G"}), old=old, operation="UPDATE").allowed
    retype = validate(spec(type="mysql", version="8.0.36"), old=old, operation="UPDATE")
    assert not retype.allowed
    assert (
        "spec.type: the database type is immutable (was 'postgresql', now 'mysql')"
        in retype.message
    )
    assert "storage" not in retype.message


def test_all_problems_at_once() -> None:
    decision = validate(
        spec(
            type="mysql",
            version="5.6.0",
            storage={"size": "1Gi"},
            backup={"enabled": True, "schedule": "@hourly", "retention": 2},
        ),
        old=spec(),
        operation="UPDATE",
    )
    for path in ("spec.version", "spec.backup.retention", "spec.type", "spec.storage.size"):
        assert f"{path}: " in decision.message


def test_v1beta1_objects_are_judged_as_v1() -> None:
    beta = db(
        {"engine": "postgresql", "version": "9.6.0", "storageSize": "1Gi"}, conversion.V1BETA1
    )
    request = review.parse_admission(pods.review(beta, kind={**DB_KIND, "version": "v1beta1"}))
    decision = databases.validate(request, SETTINGS)
    assert not decision.allowed and "spec.version" in decision.message


def test_wrong_kind_and_missing_spec() -> None:
    req = review.parse_admission(pods.review(pods.compliant_pod()))
    assert databases.validate(req, SETTINGS).code == 400
    req = review.parse_admission(
        pods.review({"apiVersion": conversion.V1, "kind": "Database"}, kind=DB_KIND)
    )
    decision = databases.validate(req, SETTINGS)
    assert not decision.allowed and "spec: a Database needs a spec object" in decision.message


def test_defaults_are_made_explicit_and_idempotent() -> None:
    body = {
        "type": "mysql",
        "version": "8.0.36",
        "storage": {"size": "10Gi"},
        "backup": {"enabled": True, "schedule": "@daily"},
        "monitoring": {"enabled": True},
    }
    ops = databases.defaults_patch(body)
    patched = jsonpatch.JsonPatch(
        [{**op, "path": op["path"].removeprefix("/spec")} for op in ops]
    ).apply(copy.deepcopy(body))
    assert patched["replicas"] == 1 and patched["deletionPolicy"] == "Retain"
    assert patched["backup"] == {"enabled": True, "schedule": "@daily", "retention": 7}
    assert patched["monitoring"]["metrics"] == list(database.METRICS)
    assert "storageClass" not in patched["storage"]  # no default exists: left absent
    assert databases.defaults_patch(patched) == []
    database.DatabaseSpec.model_validate(patched)


def test_mutate_leaves_invalid_specs_to_validation() -> None:
    req = review.parse_admission(pods.review(db({"type": "oracle"}), kind=DB_KIND))
    assert databases.mutate(req).patch == []


# --- conversion --------------------------------------------------------------------------

V1_FULL = {
    "type": "postgresql",
    "version": "13.7.0",
    "storage": {"size": "100Gi", "storageClass": "fast-ssd"},
    "backup": {"enabled": True, "schedule": "0 2 * * *", "retention": 30},
    "monitoring": {"enabled": True, "metrics": ["cpu", "memory"]},
    "replicas": 3,
    "deletionPolicy": "Delete",
}
BETA_FULL = {
    "engine": "postgresql",
    "version": "13.7.0",
    "storageSize": "100Gi",
    "storageClassName": "fast-ssd",
    "backupEnabled": True,
    "backupSchedule": "0 2 * * *",
    "backupRetention": 30,
    "monitoringEnabled": True,
    "metrics": ["cpu", "memory"],
    "replicas": 3,
    "deletionPolicy": "Delete",
}


def _with_status(obj: dict[str, Any]) -> dict[str, Any]:
    obj["status"] = {
        "phase": "Running",
        "readyReplicas": 3,
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    obj["metadata"]["annotations"] = {"team": "db"}
    return obj


def test_full_objects_convert_both_ways_without_annotations() -> None:
    v1 = _with_status(db(copy.deepcopy(V1_FULL)))
    beta = conversion.convert(v1, conversion.V1BETA1)
    assert beta["apiVersion"] == conversion.V1BETA1 and beta["spec"] == BETA_FULL
    assert beta["status"] == v1["status"] and beta["metadata"]["annotations"] == {"team": "db"}
    assert conversion.convert(beta, conversion.V1) == v1
    # The library's own converters agree on valid objects.
    assert database.spec_v1_to_v1beta1(V1_FULL) == BETA_FULL
    assert database.spec_v1beta1_to_v1(BETA_FULL) == V1_FULL


def test_fields_without_counterpart_travel_in_an_annotation() -> None:
    v1 = db(
        {
            **copy.deepcopy(V1_FULL),
            "backup": {},
            "futureField": {"x": 1},
            "storage": {"size": "1Gi", "iops": 300},
        }
    )
    beta = conversion.convert(v1, conversion.V1BETA1)
    saved = json.loads(beta["metadata"]["annotations"][conversion.RESIDUE_ANNOTATION])
    assert saved == {
        "apiVersion": conversion.V1,
        "spec": {"backup": {}, "futureField": {"x": 1}, "storage": {"iops": 300}},
    }
    back = conversion.convert(beta, conversion.V1)
    assert back == v1 and "annotations" not in back["metadata"]

    beta_only = db({**BETA_FULL, "legacyFlag": True}, conversion.V1BETA1)
    there = conversion.convert(beta_only, conversion.V1)
    assert "legacyFlag" not in there["spec"]
    assert conversion.convert(there, conversion.V1BETA1) == beta_only


def test_same_version_is_returned_unchanged_and_bad_objects_fail_precisely() -> None:
    v1 = db(copy.deepcopy(V1_FULL))
    assert conversion.convert(v1, conversion.V1) is v1
    with pytest.raises(
        conversion.ConversionError, match="cannot convert to apiVersion 'db.example.com/v2'"
    ):
        conversion.convert(v1, "db.example.com/v2")
    with pytest.raises(conversion.ConversionError, match="expected kind Database, got 'Pod'"):
        conversion.convert({"apiVersion": conversion.V1, "kind": "Pod"}, conversion.V1BETA1)
    with pytest.raises(conversion.ConversionError, match="spec must be an object"):
        conversion.convert({**v1, "spec": [1]}, conversion.V1BETA1)


def test_stored_objects_that_no_longer_validate_still_convert() -> None:
    # @reboot passed the seed's CRD pattern; a conversion webhook must still serve it.
    v1 = db({**copy.deepcopy(V1_FULL), "backup": {"enabled": True, "schedule": "@reboot"}})
    beta = conversion.convert(v1, conversion.V1BETA1)
    assert beta["spec"]["backupSchedule"] == "@reboot"
    assert conversion.convert(beta, conversion.V1) == v1


_scalar = st.one_of(st.integers(-5, 5), st.booleans(), st.text(max_size=5), st.none())
_extra = st.dictionaries(st.sampled_from(["zeta", "extra", "storage2"]), _scalar, max_size=2)
_v1_specs = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(database.TYPES),
        "version": st.text(max_size=6),
        "storage": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "size": st.text(max_size=4),
                    "storageClass": st.text(max_size=4),
                    "iops": st.integers(),
                },
            ),
            st.text(max_size=3),
        ),
        "backup": st.fixed_dictionaries(
            {},
            optional={
                "enabled": st.booleans(),
                "schedule": st.text(max_size=5),
                "retention": st.integers(),
                "x": _scalar,
            },
        ),
        "monitoring": st.fixed_dictionaries(
            {},
            optional={
                "enabled": st.booleans(),
                "metrics": st.lists(st.sampled_from(database.METRICS)),
            },
        ),
        "replicas": st.integers(),
        "deletionPolicy": st.sampled_from(["Retain", "Delete"]),
        "future": _extra,
    },
)
_beta_specs = st.fixed_dictionaries(
    {}, optional={key: _scalar for _, key in database.FIELD_MAP} | {"legacy": _extra}
)
_annotations = st.one_of(
    st.none(), st.dictionaries(st.sampled_from(["a", "b/c"]), st.text(max_size=3), max_size=2)
)


@settings(max_examples=300, deadline=None, database=None)
@given(body=_v1_specs, annotations=_annotations)
def test_v1_round_trip_is_lossless(body: dict[str, Any], annotations) -> None:
    obj = db(body)
    if annotations is not None:
        obj["metadata"]["annotations"] = annotations
    there = conversion.convert(obj, conversion.V1BETA1)
    back = conversion.convert(there, conversion.V1)
    if annotations == {}:
        back["metadata"].setdefault("annotations", {})  # {} and absent are the same to the API
    assert back == obj


@settings(max_examples=300, deadline=None, database=None)
@given(body=_beta_specs, annotations=_annotations)
def test_v1beta1_round_trip_is_lossless(body: dict[str, Any], annotations) -> None:
    obj = db(body, conversion.V1BETA1)
    if annotations is not None:
        obj["metadata"]["annotations"] = annotations
    back = conversion.convert(conversion.convert(obj, conversion.V1), conversion.V1BETA1)
    if annotations == {}:
        back["metadata"].setdefault("annotations", {})
    assert back == obj
