"""The reconciler against a fake API: which writes happen, and that repeats write nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from kubext_operator import kube, reconciler, store, views
from kubext_operator.planning import common
from kubext_operator.planning import database as db_plan
from kubext_operator.planning import webapp as wa_plan


class FakeApi:
    """Records writes; answers like the API server would for the calls the reconciler makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.bodies: dict[tuple[str, str], dict[str, Any]] = {}
        self.conflicts = 0
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}

    async def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("apply", body["kind"], body["metadata"]["name"]))
        self.bodies[(body["kind"], body["metadata"]["name"])] = body
        return {"metadata": {"generation": 1}}

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", body["kind"], body["metadata"].get("name", "")))
        if body["kind"] != "Event":
            self.bodies[(body["kind"], body["metadata"]["name"])] = body
        return {"metadata": {}}

    async def merge_patch(self, kind: str, ns: str, name: str, patch: dict, *, sub=None) -> dict:
        if sub is None and "finalizers" in patch.get("metadata", {}) and self.conflicts:
            self.conflicts -= 1
            raise kube.ApiError(409, "Conflict", "the object has been modified")
        self.calls.append(("patch" + (f"/{sub}" if sub else ""), kind, name))
        self.bodies[(f"{kind}/{sub}" if sub else f"{kind}/meta", name)] = patch
        return {}

    async def get(self, kind: str, ns: str, name: str) -> dict[str, Any]:
        return self.objects[(kind, name)]

    async def delete(self, kind: str, ns: str, name: str) -> None:
        self.calls.append(("delete", kind, name))

    async def list(self, kind: str, ns: str, *, selector: str) -> list[dict[str, Any]]:
        return []

    def writes(self, verb: str | None = None) -> list[tuple[str, str, str]]:
        return [c for c in self.calls if verb is None or c[0] == verb]


def _webapp(*, generation: int = 1, finalizers=(), deleting=False, created=None, **spec) -> dict:
    created = created or "2020-01-01T00:00:00Z"  # long settled
    return {
        "metadata": {
            "name": "shop",
            "namespace": "ns",
            "uid": "uid-1",
            "generation": generation,
            "resourceVersion": "7",
            "finalizers": list(finalizers),
            "creationTimestamp": created,
            **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {}),
        },
        "spec": {"replicas": 2, "image": "nginx:1.21", "port": 8080, **spec},
    }


class Clock:
    """Wall and monotonic time for the reconciler that move only when the test advances them."""

    def __init__(self, wall: str = "2026-01-01T00:00:00Z") -> None:
        self.wall = dt.datetime.fromisoformat(wall.replace("Z", "+00:00"))
        self.ticks = 1000.0

    def now(self) -> str:
        return self.wall.strftime("%Y-%m-%dT%H:%M:%SZ")

    def monotonic(self) -> float:
        return self.ticks

    def advance(self, seconds: float) -> None:
        self.wall += dt.timedelta(seconds=seconds)
        self.ticks += seconds


def _setup(
    body: dict, clock: Clock | None = None
) -> tuple[FakeApi, store.Store, reconciler.Reconciler]:
    api, cache, clock = FakeApi(), store.Store(), clock or Clock()
    cache.upsert_owner(views.owner_view("WebApp", body))
    rec = reconciler.Reconciler(
        api=api,  # type: ignore[arg-type]
        cache=cache,
        webapp_defaults=wa_plan.Defaults(),
        database_settings=db_plan.Settings(),
        identity="test",
        now=clock.now,
        monotonic=clock.monotonic,
    )
    return api, cache, rec


def _observe(api: FakeApi, cache: store.Store, *, ready: int) -> None:
    """Feed the cache what the watch would show after the applies (the Deployment ready)."""
    for (kind, _name), body in list(api.bodies.items()):
        if kind not in ("Deployment", "Service"):
            continue
        seen = {
            **body,
            "metadata": {**body["metadata"], "uid": f"{kind}-uid", "generation": 1},
            "status": {
                "replicas": ready,
                "readyReplicas": ready,
                "updatedReplicas": ready,
                "observedGeneration": 1,
            },
        }
        cache.upsert_child(views.child_view(kind, seen))


def run(coro):
    """Reconcile, then let the Events posted in the background land before the calls are read."""

    async def reconcile_and_drain():
        result = await coro
        others = asyncio.all_tasks() - {asyncio.current_task()}
        await asyncio.gather(*others)
        return result

    return asyncio.run(reconcile_and_drain())


KEY = ("WebApp", "ns", "shop")


def test_new_webapp_four_writes_then_nothing() -> None:
    api, cache, rec = _setup(_webapp())
    result = run(rec.reconcile(KEY))
    assert sorted(api.writes()) == [  # the finalizer and the children go out concurrently
        ("apply", "Deployment", "shop"),
        ("apply", "Service", "shop"),
        ("create", "Event", ""),
        ("patch", "WebApp", "shop"),  # finalizer
    ]
    # The Deployment was just created: the first status waits for its rollout, even though the
    # WebApp itself is old (it waited in the queue, or the operator was down).
    assert result.requeue_after is not None and 0 < result.requeue_after <= 5
    _observe(api, cache, ready=2)
    api.calls.clear()
    run(rec.reconcile(KEY))
    assert api.writes() == [("patch/status", "WebApp", "shop")]  # straight to Running
    assert api.bodies[("WebApp/status", "shop")]["status"]["phase"] == "Running"
    api.calls.clear()
    run(rec.reconcile(KEY))
    assert api.writes() == []


def test_a_slow_rollout_gets_pending_once_settled() -> None:
    clock = Clock()
    api, cache, rec = _setup(_webapp(), clock)  # status_settle 5 s
    assert run(rec.reconcile(KEY)).requeue_after == 5.0
    _observe(api, cache, ready=0)
    api.calls.clear()
    clock.advance(4.5)
    assert run(rec.reconcile(KEY)).requeue_after == pytest.approx(0.5)
    assert api.writes() == []  # still within the settle time
    clock.advance(0.5)
    run(rec.reconcile(KEY))
    assert api.writes() == [("patch/status", "WebApp", "shop")]
    assert api.bodies[("WebApp/status", "shop")]["status"]["phase"] == "Pending"


def test_children_made_by_a_predecessor_settle_from_the_webapps_age() -> None:
    made, _cache, predecessor = _setup(_webapp())  # the WebApp dates from 2020
    run(predecessor.reconcile(KEY))
    api, cache, restarted = _setup(_webapp(finalizers=[wa_plan.FINALIZER]))
    api.bodies = made.bodies
    _observe(api, cache, ready=0)  # the restarted process finds the children in its cache
    api.calls.clear()
    run(restarted.reconcile(KEY))
    assert api.writes() == [("patch/status", "WebApp", "shop")]  # no reason to wait
    assert api.bodies[("WebApp/status", "shop")]["status"]["phase"] == "Pending"


def test_a_fresh_webapp_waits_to_settle_before_writing_pending() -> None:
    clock = Clock()
    api, cache, rec = _setup(_webapp(created=clock.now()), clock)
    result = run(rec.reconcile(KEY))
    assert ("patch/status", "WebApp", "shop") not in api.writes()
    assert result.requeue_after == 5.0
    clock.advance(1.0)
    _observe(api, cache, ready=2)
    api.calls.clear()
    run(rec.reconcile(KEY))
    assert api.writes() == [("patch/status", "WebApp", "shop")]  # straight to Running


def test_a_young_webapp_with_a_predecessors_children_settles_from_its_creation() -> None:
    clock = Clock()
    created = clock.now()
    made, _cache, predecessor = _setup(_webapp(created=created), clock)
    run(predecessor.reconcile(KEY))
    clock.advance(2.0)  # then the operator restarted
    api, cache, restarted = _setup(_webapp(created=created, finalizers=[wa_plan.FINALIZER]), clock)
    api.bodies = made.bodies
    _observe(api, cache, ready=0)
    api.calls.clear()
    assert run(restarted.reconcile(KEY)).requeue_after == pytest.approx(3.0)
    assert api.writes() == []
    clock.advance(3.0)
    run(restarted.reconcile(KEY))
    assert api.writes() == [("patch/status", "WebApp", "shop")]
    assert api.bodies[("WebApp/status", "shop")]["status"]["phase"] == "Pending"


def test_cache_lag_does_not_cause_a_second_apply() -> None:
    api, _cache, rec = _setup(_webapp())
    run(rec.reconcile(KEY))
    api.calls.clear()
    run(rec.reconcile(KEY))  # the watch has not delivered the children yet
    assert api.writes() == []


def test_spec_change_reapplies_only_what_changed() -> None:
    api, cache, rec = _setup(_webapp())
    run(rec.reconcile(KEY))
    _observe(api, cache, ready=2)
    run(rec.reconcile(KEY))
    cache.upsert_owner(
        views.owner_view(
            "WebApp", _webapp(generation=2, finalizers=[wa_plan.FINALIZER], image="nginx:1.22")
        )
    )
    api.calls.clear()
    run(rec.reconcile(KEY))
    applied = api.writes("apply")
    assert applied == [("apply", "Deployment", "shop")]
    status = api.bodies[("WebApp/status", "shop")]["status"]
    assert status["phase"] == "Pending" and status["observedGeneration"] == 2


def test_invalid_spec_fails_once_with_a_warning() -> None:
    api, _cache, rec = _setup(_webapp(resources={"cpu": "1..5"}))
    run(rec.reconcile(KEY))
    assert ("apply", "Deployment", "shop") not in api.writes()
    status = api.bodies[("WebApp/status", "shop")]["status"]
    assert status["phase"] == "Failed"
    assert status["conditions"][0]["reason"] == "InvalidSpec"
    assert "spec.resources.cpu" in status["conditions"][0]["message"]
    api.calls.clear()
    run(rec.reconcile(KEY))
    assert api.writes() == []


def test_finalizer_conflict_is_retried_and_cleanup_runs_once() -> None:
    body = _webapp(finalizers=[wa_plan.FINALIZER, "other/x"], deleting=True)
    api, _cache, rec = _setup(body)
    api.objects[("WebApp", "shop")] = {"metadata": {**body["metadata"], "resourceVersion": "8"}}
    api.conflicts = 1
    run(rec.reconcile(KEY))
    assert api.writes("delete") == [("delete", "Deployment", "shop"), ("delete", "Service", "shop")]
    assert api.writes("patch") == [("patch", "WebApp", "shop")]
    patch = api.bodies[("WebApp/meta", "shop")]
    assert patch["metadata"] == {"finalizers": ["other/x"], "resourceVersion": "8"}
    api.calls.clear()
    run(rec.reconcile(KEY))  # the watch still shows our finalizer: no second cleanup
    assert api.writes("delete") == [] and api.writes("create") == []


def _database(**spec: Any) -> dict:
    return {
        "metadata": {
            "name": "db",
            "namespace": "ns",
            "uid": "uid-d",
            "generation": 1,
            "resourceVersion": "3",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"type": "mysql", "version": "8.0.36", "storage": {"size": "1Gi"}, **spec},
    }


def test_database_secret_is_created_once() -> None:
    api, cache, rec = _setup(_webapp())
    cache.upsert_owner(views.owner_view("Database", _database()))
    key = ("Database", "ns", "db")
    run(rec.reconcile(key))
    assert ("create", "Secret", "db-credentials") in api.writes()
    secret = api.bodies[("Secret", "db-credentials")]
    cache.upsert_child(
        views.child_view("Secret", {**secret, "metadata": {**secret["metadata"], "uid": "s"}})
    )
    rec.forget_child(("Secret", "ns", "db-credentials"))  # even after a restart of the operator
    api.calls.clear()
    run(rec.reconcile(key))
    assert [c for c in api.writes() if c[1] == "Secret"] == []


def test_database_invalid_version_is_failed() -> None:
    api, cache, rec = _setup(_webapp())
    cache.upsert_owner(views.owner_view("Database", _database(type="postgresql", version="13.7.2")))
    run(rec.reconcile(("Database", "ns", "db")))
    status = api.bodies[("Database/status", "db")]["status"]
    assert status["phase"] == "Failed"
    assert "MAJOR.MINOR" in status["conditions"][0]["message"]
    assert api.writes("apply") == []


@pytest.mark.parametrize("phase", ["Running"])
def test_database_running_after_children_ready(phase: str) -> None:
    api, cache, rec = _setup(_webapp())
    cache.upsert_owner(views.owner_view("Database", _database()))
    key = ("Database", "ns", "db")
    run(rec.reconcile(key))
    sts = api.bodies[("StatefulSet", "db")]
    cache.upsert_child(
        views.child_view(
            "StatefulSet",
            {
                **sts,
                "metadata": {**sts["metadata"], "uid": "x", "generation": 1},
                "status": {
                    "replicas": 1,
                    "readyReplicas": 1,
                    "updatedReplicas": 1,
                    "observedGeneration": 1,
                    "currentRevision": "r1",
                    "updateRevision": "r1",
                },
            },
        )
    )
    api.calls.clear()
    run(rec.reconcile(key))
    assert api.bodies[("Database/status", "db")]["status"]["phase"] == phase
    assert [c[0] for c in api.writes() if c[0] != "create"] == ["patch/status"]


def test_refused_child_is_reported_on_the_object_and_retried() -> None:
    api, _cache, rec = _setup(_webapp())

    async def refuse(body: dict[str, Any]) -> dict[str, Any]:
        if body["kind"] == "Service":
            raise kube.ApiError(
                500, "InternalError", "failed to allocate a serviceIP: range is full"
            )
        return {"metadata": {"generation": 1}}

    api.apply = refuse  # type: ignore[method-assign]
    with pytest.raises(kube.ApiError):
        run(rec.reconcile(KEY))  # the controller retries it with backoff
    status = api.bodies[("WebApp/status", "shop")]["status"]
    ready = status["conditions"][0]
    assert (status["phase"], ready["reason"]) == ("Failed", "ApplyFailed")
    assert "range is full" in ready["message"]


def test_backup_request_runs_one_job_and_a_new_request_replaces_it() -> None:
    backups = {"enabled": True, "schedule": "0 2 * * *"}
    body = _database(backup=backups)
    body["metadata"]["annotations"] = {db_plan.BACKUP_NOW: "first", "unrelated": "x"}
    api, cache, rec = _setup(_webapp())
    cache.upsert_owner(views.owner_view("Database", body))
    key = ("Database", "ns", "db")
    run(rec.reconcile(key))
    [(_, _, job)] = [c for c in api.writes("create") if c[1] == "Job"]
    secret = api.bodies[("Secret", "db-credentials")]
    seen_secret = {**secret, "metadata": {**secret["metadata"], "uid": "s"}}
    cache.upsert_child(views.child_view("Secret", seen_secret))
    api.calls.clear()
    run(rec.reconcile(key))  # the watch has not shown the Job yet: not created twice
    assert [c for c in api.writes() if c[1] == "Job"] == []

    made = api.bodies[("Job", job)]
    done = {"conditions": [{"type": "Complete", "status": "True"}], "completionTime": "T1"}
    seen = {**made, "metadata": {**made["metadata"], "uid": "j1"}, "status": done}
    cache.upsert_child(views.child_view("Job", seen))
    api.calls.clear()
    run(rec.reconcile(key))
    status = api.bodies[("Database/status", "db")]["status"]
    [cond] = [c for c in status["conditions"] if c["type"] == "OnDemandBackupSucceeded"]
    assert (cond["status"], cond["reason"]) == ("True", "Completed")
    assert ("create", "Event", "") in api.writes()  # BackupCompleted
    api.calls.clear()
    cache.upsert_owner(views.owner_view("Database", {**body, "status": status}))
    run(rec.reconcile(key))
    assert [c for c in api.writes() if c[1] in ("Job", "Event", "Database")] == []  # once

    body["metadata"]["annotations"] = {db_plan.BACKUP_NOW: "second"}
    cache.upsert_owner(views.owner_view("Database", {**body, "status": status}))
    run(rec.reconcile(key))
    assert ("delete", "Job", job) in api.writes()
    [(_, _, newer)] = [c for c in api.writes("create") if c[1] == "Job"]
    assert newer != job


class RecordedEvents:
    """In place of the EventRecorder: the Events the reconciler asked for."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def record(self, view: views.OwnerView, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


def test_database_whose_backups_cannot_be_scheduled_fails_once_and_is_not_retried() -> None:
    # "@every 0s" used to pass the model, and planning divided by zero on every reconcile.
    api, cache, rec = _setup(_webapp())
    recorded = rec.events = RecordedEvents()  # type: ignore[assignment]
    body = _database(backup={"enabled": True, "schedule": "@every 0s"})
    cache.upsert_owner(views.owner_view("Database", body))
    key = ("Database", "ns", "db")
    assert run(rec.reconcile(key)) == reconciler.Result()  # no requeue, no error to back off on
    status = api.bodies[("Database/status", "db")]["status"]
    [ready] = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert (status["phase"], ready["status"], ready["reason"]) == ("Failed", "False", "InvalidSpec")
    assert ready["message"].startswith("spec.backup.schedule: schedule '@every 0s': the interval")
    assert recorded.events == [("Warning", "InvalidSpec", ready["message"])]
    assert api.writes("apply") == [] and api.writes("create") == []  # nothing made from it
    api.calls.clear()
    run(rec.reconcile(key))  # a resync: nothing new to say
    assert api.writes() == [] and len(recorded.events) == 1


@pytest.mark.parametrize(("kind", "name"), [("WebApp", "shop"), ("Database", "db")])
def test_a_spec_planning_cannot_act_on_fails_once_and_is_not_retried(
    kind: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unplannable(*args: Any, **kwargs: Any) -> list:
        raise common.PlanError("spec.replicas: more than the plan can place")

    monkeypatch.setattr(wa_plan if kind == "WebApp" else db_plan, "plan_children", unplannable)
    api, cache, rec = _setup(_webapp())
    recorded = rec.events = RecordedEvents()  # type: ignore[assignment]
    cache.upsert_owner(views.owner_view("Database", _database()))
    key = (kind, "ns", name)
    assert run(rec.reconcile(key)) == reconciler.Result()
    status = api.bodies[(f"{kind}/status", name)]["status"]
    [ready] = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert (status["phase"], ready["status"], ready["reason"]) == ("Failed", "False", "InvalidSpec")
    assert ready["message"] == "spec.replicas: more than the plan can place"
    assert recorded.events == [("Warning", "InvalidSpec", ready["message"])]
    api.calls.clear()
    run(rec.reconcile(key))
    assert api.writes() == [] and len(recorded.events) == 1
