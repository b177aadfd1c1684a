"""The standalone scheduler: informer events in, one scheduling cycle per popped pod, binds out.

No Kubernetes client here: the API side is the ``Binder`` port (``cluster.KubeBinder``) and the
informers call ``pod_event``/``node_event``. Decisions stay in the framework; this module only
sequences kube-scheduler's cycle: pop, snapshot, schedule, assume, Reserve, Permit, then the
binding cycle (PreBind, Bind, PostBind) off the scheduling thread; on failure Unreserve,
forget the assumption, tell the API (a FailedScheduling Event) and re-queue.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import Any, Protocol

import prometheus_client

from kubext_scheduler.cache import ClusterCache, node_name_of, nominated_node_of
from kubext_scheduler.framework import runtime, status
from kubext_scheduler.framework.cycle_state import CycleState
from kubext_scheduler.framework.interfaces import QueuedPodInfo
from kubext_scheduler.framework.nodeinfo import name_of
from kubext_scheduler.framework.runtime import Framework
from kubext_scheduler.framework.status import Code, Status
from kubext_scheduler.framework.volumes import NeedsVolumes, VolumeAPI
from kubext_scheduler.queue import SchedulingQueue

log = logging.getLogger(__name__)
Obj = Mapping[str, Any]

ATTEMPTS = prometheus_client.Counter(
    "scheduler_schedule_attempts",
    "Attempts to schedule pods, by result (scheduled, unschedulable, error) and profile.",
    ["result", "profile"],
)
ATTEMPT_DURATION = prometheus_client.Histogram(
    "scheduler_scheduling_attempt_duration_seconds",
    "Scheduling attempt latency (the algorithm and the binding cycle), by result and profile.",
    ["result", "profile"],
    buckets=[0.001 * 2**i for i in range(15)],
)
PENDING = prometheus_client.Gauge(
    "scheduler_pending_pods", "Pending pods, by queue (active, backoff, unschedulable).", ["queue"]
)


class BindError(Exception):
    """The API server refused the binding (the pod is gone, already bound, ...)."""


class Binder(Protocol):
    """The API side of the scheduler (cluster.KubeBinder; a recorder in the tests)."""

    def bind(self, pod: Obj, node_name: str) -> None:
        """POST pods/binding; raises BindError."""

    def scheduled(self, pod: Obj, node_name: str) -> None:
        """The Scheduled Event."""

    def failed(self, pod: Obj, message: str, *, reason: str) -> None:
        """The FailedScheduling Event and the PodScheduled=False condition with ``reason``
        (Unschedulable or SchedulerError)."""

    def nominate(self, pod: Obj, node_name: str) -> None:
        """Set the pod's status.nominatedNodeName (preemption)."""

    def preempt(self, victim: Obj, *, preemptor: Obj, node_name: str) -> None:
        """Mark ``victim`` DisruptionTarget (PreemptionByScheduler), write its Preempted Event
        and delete it; never raises (a victim already gone is fine)."""


def node_change_may_help(old: Obj | None, new: Obj) -> bool:
    """Could this node update make an unschedulable pod fit? (kube-scheduler ignores heartbeats:
    only allocatable, labels, taints and unschedulable count; and a node turning Ready.)"""
    if old is None:
        return True

    def relevant(node: Obj) -> tuple[object, ...]:
        meta, spec, st = (
            node.get("metadata") or {},
            node.get("spec") or {},
            node.get("status") or {},
        )
        ready = [c.get("status") for c in st.get("conditions") or () if c.get("type") == "Ready"]
        return (
            st.get("allocatable"),
            meta.get("labels"),
            spec.get("taints"),
            spec.get("unschedulable"),
            ready,
        )

    return relevant(old) != relevant(new)


class Scheduler:
    def __init__(
        self,
        frameworks: Mapping[str, Framework],
        binder: Binder,
        *,
        cache: ClusterCache | None = None,
        queue: SchedulingQueue | None = None,
        executor: Executor | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        schedule_pods: bool = True,
        volume_api: VolumeAPI | None = None,
    ) -> None:
        if not frameworks:
            raise ValueError("at least one profile is needed")
        self.frameworks = dict(frameworks)
        self.binder = binder
        self.cache = cache or ClusterCache()
        # Every profile has the same QueueSort (profiles.load holds it): one queue for all.
        first = next(iter(self.frameworks.values()))
        self.queue = queue or SchedulingQueue(first.less)
        # None: the binding cycle runs inline (the tests); else on the executor's threads.
        self.executor = executor
        self.rng = rng or random.Random()
        self._clock = clock
        # False: only the cache is kept (for the extender); no pod is queued.
        self.schedule_pods = schedule_pods
        # VolumeBinding assumes in this cache and writes PVs/PVCs through volume_api (None:
        # a pod whose claims need binding fails its PreBind with an error).
        for framework in self.frameworks.values():
            for plugin in {id(p): p for ps in framework.plugins.values() for p in ps}.values():
                if isinstance(plugin, NeedsVolumes):
                    plugin.set_volumes(self.cache, volume_api)
        for name in ("active", "backoff", "unschedulable"):
            PENDING.labels(name).set_function(lambda name=name: self.queue.lengths()[name])

    # --- informer events --------------------------------------------------------------------

    def responsible_for(self, pod: Obj) -> bool:
        """Pending, not being deleted, and asking for one of our profiles."""
        spec = pod.get("spec") or {}
        return (
            self.schedule_pods
            and not node_name_of(pod)
            and spec.get("schedulerName") in self.frameworks
            and not (pod.get("metadata") or {}).get("deletionTimestamp")
            and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        )

    def pod_event(self, kind: str, pod: Obj) -> None:
        if kind == "DELETED":
            self.cache.delete_pod(pod)
            self.queue.delete(pod)
            if node_name_of(pod) or nominated_node_of(pod):
                self.queue.move_all()  # its room is free, or no longer promised to it
            return
        if node_name_of(pod):
            self.cache.set_pod(pod)
            self.queue.delete(pod)  # bound, by us or by anyone
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                self.queue.move_all()
        elif self.responsible_for(pod):
            # Only our own pods' nominations count, as kube-scheduler's nominator is its queue's.
            self.cache.set_nominated(pod)
            if not self.cache.is_assumed(pod):
                self.queue.add(pod)  # an assumed pod is being bound: the watch is behind
        else:
            self.cache.clear_nominated(pod)  # not ours, finished or being deleted
            self.queue.delete(pod)

    def pods_listed(self, pods: list[Obj]) -> None:
        """A (re)list: the cache is replaced, every pending pod of ours queued."""
        self.cache.replace_pods(pods, nominated=[p for p in pods if self.responsible_for(p)])
        for pod in pods:
            if self.responsible_for(pod):
                self.queue.add(pod)
        self.queue.move_all()

    def node_event(self, kind: str, node: Obj) -> None:
        if kind == "DELETED":
            self.cache.delete_node(name_of(node))
            return
        old = self.cache.set_node(node)
        if node_change_may_help(old, node):
            self.queue.move_all()

    def nodes_listed(self, nodes: list[Obj]) -> None:
        self.cache.replace_nodes(nodes)
        self.queue.move_all()

    # Namespaces and PDBs only feed the snapshot: kube-scheduler re-queues no pod on their
    # events (a namespace's labels or a PDB never make a rejected node feasible by themselves).

    def namespace_event(self, kind: str, namespace: Obj) -> None:
        if kind == "DELETED":
            self.cache.delete_namespace(name_of(namespace))
        else:
            self.cache.set_namespace(namespace)

    def namespaces_listed(self, namespaces: list[Obj]) -> None:
        self.cache.replace_namespaces(namespaces)

    def pdb_event(self, kind: str, pdb: Obj) -> None:
        if kind == "DELETED":
            self.cache.delete_pdb(pdb)
        else:
            self.cache.set_pdb(pdb)

    def pdbs_listed(self, pdbs: list[Obj]) -> None:
        self.cache.replace_pdbs(pdbs)

    # PVCs, PVs and StorageClasses feed VolumeBinding; an added or updated one may make a
    # waiting pod fit (a claim bound, a PV created), as VolumeBinding's EventsToRegister says.

    def claim_event(self, kind: str, claim: Obj) -> None:
        if kind == "DELETED":
            self.cache.delete_claim(claim)
            return
        self.cache.set_claim(claim)
        self.queue.move_all()

    def claims_listed(self, claims: list[Obj]) -> None:
        self.cache.replace_claims(claims)
        self.queue.move_all()

    def volume_event(self, kind: str, volume: Obj) -> None:
        if kind == "DELETED":
            self.cache.delete_volume(volume)
            return
        self.cache.set_volume(volume)
        self.queue.move_all()

    def volumes_listed(self, volumes: list[Obj]) -> None:
        self.cache.replace_volumes(volumes)
        self.queue.move_all()

    def storage_class_event(self, kind: str, storage_class: Obj) -> None:
        if kind == "DELETED":
            self.cache.delete_storage_class(storage_class)
            return
        self.cache.set_storage_class(storage_class)
        self.queue.move_all()

    def storage_classes_listed(self, classes: list[Obj]) -> None:
        self.cache.replace_storage_classes(classes)
        self.queue.move_all()

    # --- the scheduling cycle ---------------------------------------------------------------

    def run(self, stop: Callable[[], bool]) -> None:
        while not stop():
            self.schedule_one(timeout=0.5)

    def schedule_one(self, *, timeout: float | None = None) -> bool:
        """One cycle for the next pod; False when none was ready within ``timeout``."""
        info = self.queue.pop(timeout)
        if info is None:
            return False
        started = self._clock()
        pod = info.pod
        framework = self.frameworks.get((pod.get("spec") or {}).get("schedulerName"))
        if framework is None or self.cache.is_assumed(pod):  # not ours, or being bound
            self.queue.done(info)
            return True
        state = CycleState()
        snapshot, broken = self.cache.snapshot()
        result = framework.schedule(pod, snapshot, state=state, rng=self.rng)
        if result.node_name is None:
            if result.nominated_node_name:
                # DefaultPreemption's plan: the pod is placed by a later cycle, once the
                # victims' deletions free the room (AssignedPodDelete moves it back).
                self.binder.nominate(pod, result.nominated_node_name)
                # Counted there at once (the watch's copy follows), so no lower-priority pod
                # takes the room the victims free.
                self.cache.set_nominated(
                    {
                        **pod,
                        "status": {
                            **(pod.get("status") or {}),
                            "nominatedNodeName": result.nominated_node_name,
                        },
                    }
                )
                for victim in result.victims:
                    self.binder.preempt(victim, preemptor=pod, node_name=result.nominated_node_name)
            rejected = {**result.statuses, **{n: status.unresolvable(r) for n, r in broken.items()}}
            message = runtime.fit_error_message(
                result.evaluated + len(broken), rejected, result.status
            )
            if result.status is not None and result.status.code is Code.ERROR:
                self._fail(info, framework, result.status.message, started, error=True)
            else:
                self._fail(info, framework, message, started, error=False)
            return True
        node_name = result.node_name
        assumed = self.cache.assume(pod, node_name)
        reserved = framework.run_reserve(state, assumed, node_name)
        if not reserved.is_success:
            self.cache.forget(pod)
            self._fail(info, framework, _why(reserved), started, error=reserved.code is Code.ERROR)
            return True
        permit, _ = framework.run_permit(state, assumed, node_name)
        if permit.code is Code.WAIT:
            # No plugin of ours waits, and there is no waiting-pods API to allow one: a Wait
            # is rejected at once rather than holding a node for nothing.
            permit = status.unschedulable("Permit Wait is not supported by this scheduler")
        if not permit.is_success:
            framework.run_unreserve(state, assumed, node_name)
            self.cache.forget(pod)
            self._fail(info, framework, _why(permit), started, error=permit.code is Code.ERROR)
            return True
        if self.executor is None:
            self._binding_cycle(info, framework, state, assumed, node_name, started)
        else:
            self.executor.submit(
                self._binding_cycle, info, framework, state, assumed, node_name, started
            )
        return True

    def _binding_cycle(
        self,
        info: QueuedPodInfo,
        framework: Framework,
        state: CycleState,
        assumed: Obj,
        node_name: str,
        started: float,
    ) -> None:
        try:
            outcome = framework.run_pre_bind(state, assumed, node_name)
            if outcome.is_success:
                outcome = framework.run_bind(state, assumed, node_name)
                if outcome.code is Code.SKIP:  # no Bind plugin bound it: the default binder
                    try:
                        self.binder.bind(info.pod, node_name)
                        outcome = status.SUCCESS
                    except BindError as exc:
                        outcome = status.error(f"binding rejected: {exc}")
        except Exception as exc:  # a plugin bug: the pod is retried, the loop survives
            log.exception("binding cycle failed", extra={"pod": _ref(info.pod)})
            outcome = status.error(f"binding cycle failed: {exc}")
        if not outcome.is_success:
            framework.run_unreserve(state, assumed, node_name)
            self.cache.forget(info.pod)
            self._fail(info, framework, _why(outcome), started, error=True)
            return
        framework.run_post_bind(state, assumed, node_name)
        self.queue.done(info)
        ATTEMPTS.labels("scheduled", framework.scheduler_name).inc()
        ATTEMPT_DURATION.labels("scheduled", framework.scheduler_name).observe(
            self._clock() - started
        )
        log.info("pod bound", extra={"pod": _ref(info.pod), "node": node_name})
        self.binder.scheduled(info.pod, node_name)

    def _fail(
        self,
        info: QueuedPodInfo,
        framework: Framework,
        message: str,
        started: float,
        *,
        error: bool,
    ) -> None:
        result = "error" if error else "unschedulable"
        if error:
            self.queue.retry(info)
        else:
            self.queue.unschedulable(info)
        ATTEMPTS.labels(result, framework.scheduler_name).inc()
        ATTEMPT_DURATION.labels(result, framework.scheduler_name).observe(self._clock() - started)
        log.info(
            "pod not scheduled",
            extra={"pod": _ref(info.pod), "result": result, "reason": message},
        )
        self.binder.failed(info.pod, message, reason="SchedulerError" if error else "Unschedulable")


def _why(outcome: Status) -> str:
    return f"{outcome.plugin}: {outcome.message}" if outcome.plugin else outcome.message


def _ref(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"
