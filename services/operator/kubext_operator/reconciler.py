"""Reconcile one WebApp or Database: plan (pure), then write only what differs.

Level-based, like controller-runtime: every call looks at the whole object and its children,
whatever event caused it. Writes are skipped when the cache (or this process's own last write,
which the cache may not show yet) already matches the plan: no re-patching of identical
children, no status churn.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

import pydantic

from kubext import config
from kubext.crds import database as db_crd
from kubext.crds import webapp as wa_crd
from kubext_operator import kube, store, views
from kubext_operator.events import EventRecorder
from kubext_operator.planning import common, engines
from kubext_operator.planning import database as db_plan
from kubext_operator.planning import webapp as wa_plan

log = logging.getLogger("kubext_operator.reconciler")

API_VERSIONS = {"WebApp": wa_crd.API_VERSION, "Database": db_crd.API_VERSION}
CONFLICT_RETRIES = 5


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    requeue_after: float | None = None


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _problem(exc: pydantic.ValidationError) -> str:
    """The first problem, worded as the webhooks' Database admission words it."""
    return config.validation_problems(exc, root="spec", unknown="unknown field")[0]


class Reconciler:
    def __init__(
        self,
        *,
        api: kube.Api,
        cache: store.Store,
        webapp_defaults: wa_plan.Defaults,
        database_settings: db_plan.Settings,
        identity: str,
        status_settle: float = 5.0,
        now: Callable[[], str] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        password: Callable[[], str] = lambda: secrets.token_urlsafe(24),
        events: EventRecorder | None = None,
    ) -> None:
        self.api, self.cache = api, cache
        self.webapp_defaults, self.database_settings = webapp_defaults, database_settings
        self.identity, self.now, self.password = identity, now, password
        self.monotonic = monotonic
        self.status_settle = status_settle
        self.events = events or EventRecorder(
            api, identity=identity, api_versions=API_VERSIONS, now=now
        )
        # What this process wrote last, which the watch cache may not show yet.
        self._applied: dict[store.Key, tuple[str, int]] = {}
        self._status: dict[str, dict[str, Any]] = {}
        self._finalizer_added: set[str] = set()
        # When this process created a new WebApp's Deployment (monotonic): its first status
        # waits for the rollout from then, not from the WebApp's creation (see _webapp_body).
        self._rollout_started: dict[str, float] = {}
        self._cleaned: set[str] = set()

    # -- cache notifications -------------------------------------------------------------

    def forget_child(self, key: store.Key) -> None:
        """The child is gone: the next reconcile must create it again."""
        self._applied.pop(key, None)

    def forget_owner(self, uid: str) -> None:
        self._status.pop(uid, None)
        self._finalizer_added.discard(uid)
        self._cleaned.discard(uid)
        self._rollout_started.pop(uid, None)

    # -- entry point -----------------------------------------------------------------------

    async def reconcile(self, key: store.Key) -> Result:
        view = self.cache.owner(key)
        if view is None:
            return Result()  # deleted; garbage collection removes the children
        try:
            if view.kind == "WebApp":
                return await self._webapp(view)
            return await self._database(view)
        except common.PlanError as exc:
            return await self._unplannable(view, str(exc))

    async def _unplannable(self, view: views.OwnerView, problem: str) -> Result:
        """A spec validation let through but planning refuses: Failed, said once, no retry
        (backing off cannot help; a change of the spec queues the object again)."""
        previous = self._previous_status(view)
        if view.kind == "Database":
            return await self._database_failed(view, "InvalidSpec", problem, previous)
        new = wa_plan.invalid_status(
            owner=self._owner(view), problem=problem, previous=previous, now=self.now()
        )
        if await self._write_status(view, new, previous):
            self.event(view, "Warning", "InvalidSpec", problem)
        return Result()

    @staticmethod
    def _owner(view: views.OwnerView) -> common.Owner:
        return common.Owner(
            API_VERSIONS[view.kind], view.kind, view.name, view.namespace, view.uid, view.generation
        )

    # -- WebApp ----------------------------------------------------------------------------

    async def _webapp(self, view: views.OwnerView) -> Result:
        owner = self._owner(view)
        if view.deleting:
            return await self._finalize(view, wa_plan.FINALIZER, self._cleanup_webapp)
        finalizer = asyncio.ensure_future(self._ensure_finalizer(view, wa_plan.FINALIZER))
        try:
            return await self._webapp_body(view, owner)
        finally:
            await finalizer  # concurrent with the children: they are owned, GC covers a race

    async def _webapp_body(self, view: views.OwnerView, owner: common.Owner) -> Result:
        previous = self._previous_status(view)
        try:
            spec = wa_crd.WebAppSpec.model_validate(dict(view.spec))
        except pydantic.ValidationError as exc:
            problem = _problem(exc)
            new = wa_plan.invalid_status(
                owner=owner, problem=problem, previous=previous, now=self.now()
            )
            if await self._write_status(view, new, previous):
                self.event(view, "Warning", "InvalidSpec", problem)
            return Result()
        desired = wa_plan.plan_children(owner, spec, self.webapp_defaults)
        if not await self._children_are_ours(view, desired):
            return Result(requeue_after=2.0)
        try:
            changes = await self._apply(view, desired)
        except kube.ApiError as exc:
            # Say why on the object; then retry with backoff unless retrying cannot help.
            failed = wa_plan.invalid_status(
                owner=owner,
                problem=exc.message,
                previous=previous,
                now=self.now(),
                reason="ApplyFailed",
            )
            if await self._write_status(view, failed, previous):
                self.event(view, "Warning", "ApplyFailed", exc.message)
            if exc.invalid:
                return Result()
            raise
        if _change("created", "Deployment", view.name) in changes:
            self._rollout_started[view.uid] = self.monotonic()
        if changes:
            summary = f"replicas {spec.replicas}, image {spec.image}"
            self.event(view, "Normal", _reason(changes), f"{'; '.join(changes)} ({summary})")
        deployment = self.cache.child(("Deployment", view.namespace, view.name))
        new = wa_plan.status(
            owner=owner,
            spec=spec,
            deployment=deployment.facts if deployment else None,
            deployment_current=self._current(desired[0], deployment),
            previous=previous,
            now=self.now(),
        )
        if new["phase"] == "Pending" and not previous.get("phase"):
            # A new WebApp's first status waits until it is Ready or has settled: one status
            # write instead of Pending-then-Running for WebApps that come up quickly. The wait
            # runs from the Deployment's creation when this process made it: time spent in the
            # operator's queue during a burst says nothing about whether the rollout is slow.
            started = self._rollout_started.get(view.uid)
            waited = (
                self.monotonic() - started
                if started is not None
                else _seconds_between(view.created, self.now())
            )
            wait = self.status_settle - waited
            if wait > 0:
                return Result(requeue_after=min(wait, self.status_settle))
        if await self._write_status(view, new, previous):
            self._rollout_started.pop(view.uid, None)
        return Result()

    async def _cleanup_webapp(self, view: views.OwnerView) -> None:
        # Remove the children now rather than when the garbage collector gets to them, so that
        # a WebApp re-created under the same name does not meet its predecessor's Deployment.
        for kind in ("Deployment", "Service"):
            await self.api.delete(kind, view.namespace, view.name)
        self.event(view, "Normal", "Deleted", f"deleted Deployment and Service {view.name}")

    # -- Database --------------------------------------------------------------------------

    async def _database(self, view: views.OwnerView) -> Result:
        owner = self._owner(view)
        if view.deleting:
            return await self._finalize(view, db_plan.FINALIZER, self._cleanup_database)
        await self._ensure_finalizer(view, db_plan.FINALIZER)
        previous = self._previous_status(view)
        try:
            spec = db_crd.DatabaseSpec.model_validate(dict(view.spec))
            problem = engines.version_problem(spec.type, spec.version)
        except pydantic.ValidationError as exc:
            problem = _problem(exc)
        if problem:
            return await self._database_failed(view, "InvalidSpec", problem, previous)
        reqs = db_plan.requests(view.name, spec, view.requests)
        desired = db_plan.plan_children(
            owner, spec, self.database_settings, password=self.password(), reqs=reqs
        )
        if not await self._children_are_ours(view, desired):
            return Result(requeue_after=2.0)
        try:
            changes = await self._apply(view, desired)
        except kube.ApiError as exc:
            if not exc.invalid:
                raise
            return await self._database_failed(view, "ApplyFailed", exc.message, previous)
        changes += await self._prune(view, desired, db_plan.PRUNABLE_KINDS)
        if changes:
            summary = f"{spec.type} {spec.version}, {spec.replicas} replica(s)"
            self.event(view, "Normal", _reason(changes), f"{'; '.join(changes)} ({summary})")
        await self._label_pods(view)
        sts = self.cache.child(("StatefulSet", view.namespace, view.name))
        cron = self.cache.child(("CronJob", view.namespace, f"{view.name}-backup"))
        new = db_plan.status(
            owner=owner,
            spec=spec,
            statefulset=sts.facts if sts else None,
            statefulset_current=self._current(desired[1], sts),
            cronjob=cron.facts if cron else None,
            previous=previous,
            created=view.created,
            now=self.now(),
            reqs=reqs,
            jobs={
                req.job_name: job.facts
                for req in reqs
                if (job := self.cache.child(("Job", view.namespace, req.job_name)))
            },
        )
        log.debug(
            "database observed",
            extra={
                "object": f"{view.namespace}/{view.name}",
                "statefulset": dict(sts.facts) if sts else None,
                "sts_hash": sts.spec_hash if sts else None,
                "desired_hash": desired[1].spec_hash,
                "sts_generation": sts.generation if sts else None,
            },
        )
        await self._write_status(view, new, previous)
        if previous.get("phase") != new["phase"] and new["phase"] in ("Running", "Updating"):
            self.event(view, "Normal", new["phase"], f"phase {new['phase']}")
        for req in reqs:  # a request's outcome, once
            outcome = common.condition_state(new.get("conditions"), req.condition)
            if outcome.get("status") in ("True", "False") and outcome != common.condition_state(
                previous.get("conditions"), req.condition
            ):
                type_ = "Normal" if outcome["status"] == "True" else "Warning"
                self.event(
                    view, type_, f"{req.action.title()}{outcome['reason']}", outcome["message"]
                )
        return Result(
            requeue_after=_until(new.get("backupStatus", {}).get("nextBackup"), self.now())
        )

    async def _database_failed(
        self, view: views.OwnerView, reason: str, problem: str, previous: Mapping[str, Any]
    ) -> Result:
        new = db_plan.failed_status(
            owner=self._owner(view),
            reason=reason,
            problem=problem,
            previous=previous,
            now=self.now(),
        )
        if await self._write_status(view, new, previous):
            self.event(view, "Warning", reason, problem)
        return Result()

    async def _label_pods(self, view: views.OwnerView) -> None:
        pods = {
            child.name: child.facts.get("role")
            for child in self.cache.children_of(("Database", view.namespace, view.name))
            if child.kind == "Pod"
        }
        for pod, role in db_plan.pod_roles(view.name, pods).items():
            patch = {"metadata": {"labels": {db_plan.ROLE_LABEL: role}}}
            try:
                await self.api.merge_patch("Pod", view.namespace, pod, patch)
            except kube.ApiError as exc:
                if not exc.not_found:
                    raise

    async def _cleanup_database(self, view: views.OwnerView) -> None:
        policy = str(view.spec.get("deletionPolicy") or "Retain")
        previous = self._previous_status(view)
        new = db_plan.deleting_status(owner=self._owner(view), previous=previous, now=self.now())
        await self._write_status(view, new, previous)
        keep = [
            ("Secret", db_plan.secret_name(view.name)),
            ("PersistentVolumeClaim", f"{view.name}-backup"),
        ]
        if policy == "Retain":
            # Orphan what holds data or the key to it; the StatefulSet's retention policy keeps
            # the data volumes (whenDeleted: Retain).
            for kind, name in keep:
                try:
                    await self.api.merge_patch(
                        kind, view.namespace, name, {"metadata": {"ownerReferences": None}}
                    )
                except kube.ApiError as exc:
                    if not exc.not_found:
                        raise
            message = (
                f"deletionPolicy Retain: kept volumes data-{view.name}-*, {view.name}-backup "
                f"and Secret {db_plan.secret_name(view.name)}"
            )
        else:
            selector = common.selector_string(db_plan.selector(view.name))
            for claim in await self.api.list(
                "PersistentVolumeClaim", view.namespace, selector=selector
            ):
                await self.api.delete(
                    "PersistentVolumeClaim", view.namespace, claim["metadata"]["name"]
                )
            message = "deletionPolicy Delete: deleting volumes, backups and credentials"
        self.event(view, "Normal", "Deleting", message)

    # -- shared steps ----------------------------------------------------------------------

    def _previous_status(self, view: views.OwnerView) -> dict[str, Any]:
        return dict(self._status.get(view.uid) or view.status)

    def _current(self, desired: common.Desired, observed: views.ChildView | None) -> bool:
        if observed is None:
            return False
        return common.is_current(
            desired=desired, observed_hash=observed.spec_hash, facts=dict(observed.facts)
        )

    async def _children_are_ours(
        self, view: views.OwnerView, desired: list[common.Desired]
    ) -> bool:
        """A child left by a deleted namesake (another uid) must be gone before we apply."""
        for want in desired:
            seen = self.cache.child((want.kind, view.namespace, want.name))
            if seen is not None and seen.owner_uid not in (None, view.uid):
                log.info(
                    "waiting for a predecessor's child to go",
                    extra={
                        "object": f"{view.namespace}/{view.name}",
                        "child": f"{want.kind}/{want.name}",
                    },
                )
                return False
        return True

    async def _apply(self, view: views.OwnerView, desired: list[common.Desired]) -> list[str]:
        """Write every child that differs from the plan, concurrently (one round trip instead
        of one per child); returns what was done, for the event. The first error is raised
        after every write has finished, so the successful ones are remembered."""
        results = await asyncio.gather(
            *(self._apply_one(view, want) for want in desired), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        return [r for r in results if isinstance(r, str) and r]

    async def _apply_one(self, view: views.OwnerView, want: common.Desired) -> str:
        key = (want.kind, view.namespace, want.name)
        seen = self.cache.child(key)
        expected = self._applied.get(key)
        if not common.needs_apply(
            want,
            observed_hash=seen.spec_hash if seen else None,
            observed_generation=seen.generation if seen else None,
            expected_hash=expected[0] if expected else None,
            synced_generation=expected[1] if expected else None,
        ):
            if seen is not None and seen.spec_hash == want.spec_hash and expected is None:
                self._applied[key] = (want.spec_hash, seen.generation)
            return ""
        if want.create_only:
            try:
                answer = await self.api.create(want.body)
                verb = "created"
            except kube.ApiError as exc:
                if not exc.already_exists:
                    raise
                answer, verb = {}, ""  # kept from before (e.g. retained credentials)
        else:
            answer = await self.api.apply(want.body)
            verb = "created" if seen is None and expected is None else "updated"
        generation = int((answer.get("metadata") or {}).get("generation") or 0)
        self._applied[key] = (want.spec_hash, generation)
        log.info(
            "applied",
            extra={
                "object": f"{view.namespace}/{view.name}",
                "kind": view.kind,
                "child": f"{want.kind}/{want.name}",
                "verb": verb or "kept",
            },
        )
        return _change(verb, want.kind, want.name) if verb else ""

    async def _prune(
        self, view: views.OwnerView, desired: list[common.Desired], kinds: tuple[str, ...]
    ) -> list[str]:
        wanted = {(d.kind, d.name) for d in desired}
        removed = []
        for child in self.cache.children_of((view.kind, view.namespace, view.name)):
            unwanted = child.kind in kinds and (child.kind, child.name) not in wanted
            if unwanted and child.owner_uid == view.uid:
                await self.api.delete(child.kind, view.namespace, child.name)
                self.forget_child((child.kind, child.namespace, child.name))
                removed.append(_change("deleted", child.kind, child.name))
        return removed

    async def _write_status(
        self, view: views.OwnerView, new: dict[str, Any], previous: Mapping[str, Any]
    ) -> bool:
        """Patch the status subresource unless nothing changed; True when it wrote."""
        if common.same_status(previous, new):
            return False
        patch = dict(new)
        for stale in set(previous) - set(new):
            patch[stale] = None
        try:
            await self.api.merge_patch(
                view.kind, view.namespace, view.name, {"status": patch}, sub="status"
            )
        except kube.ApiError as exc:
            if exc.not_found:
                return False
            raise
        self._status[view.uid] = new
        log.info(
            "status written",
            extra={
                "object": f"{view.namespace}/{view.name}",
                "kind": view.kind,
                "phase": new.get("phase"),
            },
        )
        return True

    async def _ensure_finalizer(self, view: views.OwnerView, finalizer: str) -> None:
        if finalizer in view.finalizers or view.uid in self._finalizer_added:
            return
        await self._edit_finalizers(
            view, lambda names: [*names, finalizer] if finalizer not in names else None
        )
        self._finalizer_added.add(view.uid)

    async def _finalize(self, view: views.OwnerView, finalizer: str, cleanup: Callable) -> Result:
        if finalizer not in view.finalizers:
            return Result()
        if view.uid not in self._cleaned:
            log.info(
                "cleaning up", extra={"object": f"{view.namespace}/{view.name}", "kind": view.kind}
            )
            await cleanup(view)
            self._cleaned.add(view.uid)  # once: a retried removal does not clean up again
        await self._edit_finalizers(
            view, lambda names: [n for n in names if n != finalizer] if finalizer in names else None
        )
        return Result()

    async def _edit_finalizers(
        self, view: views.OwnerView, edit: Callable[[list[str]], list[str] | None]
    ) -> None:
        """Change metadata.finalizers under optimistic concurrency, re-reading on conflict."""
        names, version = list(view.finalizers), view.resource_version
        for attempt in range(CONFLICT_RETRIES):
            wanted = edit(names)
            if wanted is None:
                return
            patch = {"metadata": {"finalizers": wanted, "resourceVersion": version}}
            try:
                await self.api.merge_patch(view.kind, view.namespace, view.name, patch)
                return
            except kube.ApiError as exc:
                if exc.not_found:
                    return
                if not exc.conflict or attempt == CONFLICT_RETRIES - 1:
                    raise
            fresh = await self.api.get(view.kind, view.namespace, view.name)
            names = list(fresh["metadata"].get("finalizers") or [])
            version = fresh["metadata"]["resourceVersion"]

    def event(self, view: views.OwnerView, type_: str, reason: str, message: str) -> None:
        """Record a core/v1 Event on the object, in the background (see :mod:`events`)."""
        self.events.record(view, type_, reason, message)


def _change(verb: str, kind: str, name: str) -> str:
    """One entry of a reconcile's changes, as the event message lists them."""
    return f"{verb} {kind} {name}"


def _reason(changes: list[str]) -> str:
    return "Created" if all(c.startswith("created") for c in changes) else "Updated"


def _timestamp(moment: str) -> dt.datetime:
    return dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))


def _seconds_between(created: str, now: str) -> float:
    """Seconds from ``created`` to ``now`` (API timestamps); 0 when unknown."""
    if not created:
        return 0.0
    return max(0.0, (_timestamp(now) - _timestamp(created)).total_seconds())


def _until(moment: str | None, now: str) -> float | None:
    """Seconds from ``now`` until ``moment`` (plus one), to refresh nextBackup once it is due."""
    if not moment:
        return None
    return max(1.0, (_timestamp(moment) - _timestamp(now)).total_seconds() + 1.0)
