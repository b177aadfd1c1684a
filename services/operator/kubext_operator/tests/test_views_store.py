"""Projections keep what reconciling needs; the store maps children to their owners."""

from __future__ import annotations

import pytest

from kubext_operator import store, views
from kubext_operator.planning import common
from kubext_operator.planning import database as db_plan


def _deployment(**status) -> dict:
    return {
        "metadata": {
            "name": "shop",
            "namespace": "ns",
            "uid": "d1",
            "generation": 3,
            "annotations": {common.ANNOTATION_SPEC_HASH: "h1", "big": "x" * 10_000},
            "ownerReferences": [
                {"kind": "WebApp", "name": "shop", "uid": "w1", "controller": True}
            ],
            "managedFields": [{"manager": "x"}] * 50,
        },
        "spec": {"replicas": 3},
        "status": status,
    }


def test_deployment_view_has_facts_not_the_body() -> None:
    view = views.child_view(
        "Deployment",
        _deployment(
            replicas=3,
            readyReplicas=2,
            updatedReplicas=3,
            observedGeneration=3,
            conditions=[
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": "too slow",
                }
            ],
        ),
    )
    assert (view.owner_kind, view.owner_name, view.owner_uid, view.spec_hash) == (
        "WebApp",
        "shop",
        "w1",
        "h1",
    )
    assert dict(view.facts) == {
        "replicas": 3,
        "ready": 2,
        "updated": 3,
        "generation_observed": True,
        "failure": "too slow",
    }
    assert not hasattr(view, "__dict__")  # slots: no stray body


def test_pod_view_belongs_to_its_database_by_label() -> None:
    pod = {
        "metadata": {
            "name": "db-0",
            "namespace": "ns",
            "uid": "p",
            "labels": {common.LABEL_INSTANCE: "db", db_plan.ROLE_LABEL: "primary"},
        }
    }
    view = views.child_view("Pod", pod)
    assert (view.owner_kind, view.owner_name, dict(view.facts)) == (
        "Database",
        "db",
        {"role": "primary"},
    )


def test_store_indexes_children_by_owner_and_forgets_them() -> None:
    cache = store.Store()
    owner = cache.upsert_child(views.child_view("Deployment", _deployment()))
    assert owner == ("WebApp", "ns", "shop")
    assert [c.kind for c in cache.children_of(owner)] == ["Deployment"]
    assert cache.delete_child(("Deployment", "ns", "shop")) == owner
    assert cache.children_of(owner) == [] and len(cache) == 0


@pytest.mark.parametrize(
    ("status", "generation", "expected"),
    [
        ({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 3}, 2, True),
        ({"observedGeneration": 2, "readyReplicas": 2, "updatedReplicas": 3}, 2, False),
        ({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 2}, 2, False),
        ({"observedGeneration": 1, "readyReplicas": 3, "updatedReplicas": 3}, 2, False),
        ({}, 1, False),  # just created: its controller has not looked at it yet
    ],
)
def test_rolled_out_needs_the_spec_seen_and_every_replica_updated_and_ready(
    status: dict, generation: int, expected: bool
) -> None:
    body = {"metadata": {"generation": generation}, "spec": {"replicas": 3}, "status": status}
    assert views.rolled_out("Deployment", body) is expected
    assert views.rolled_out("Service", body) is False
