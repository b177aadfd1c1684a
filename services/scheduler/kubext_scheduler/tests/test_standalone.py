"""The cluster cache, the scheduling queue and the scheduler loop, with a recording binder."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from typing import Any

import pytest

from kubext_scheduler import extender, profiles_file
from kubext_scheduler.cache import ClusterCache
from kubext_scheduler.queue import SchedulingQueue
from kubext_scheduler.scheduler import BindError, Scheduler, node_change_may_help
from kubext_scheduler.tests.objects import container, node, pod

NAME = "kubext-scheduler"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingBinder:
    def __init__(self, refuse: set[str] | None = None) -> None:
        self.bound: list[tuple[str, str]] = []
        self.failures: list[tuple[str, str, str]] = []
        self.scheduled_events: list[tuple[str, str]] = []
        self.refuse = refuse or set()

    def bind(self, p: Mapping[str, Any], node_name: str) -> None:
        if p["metadata"]["name"] in self.refuse:
            raise BindError('pod "x" is already assigned to node "other"')
        self.bound.append((p["metadata"]["name"], node_name))

    def scheduled(self, p: Mapping[str, Any], node_name: str) -> None:
        self.scheduled_events.append((p["metadata"]["name"], node_name))

    def failed(self, p: Mapping[str, Any], message: str, *, reason: str) -> None:
        self.failures.append((p["metadata"]["name"], reason, message))

    nominated: list[tuple[str, str]]
    preempted: list[tuple[str, str, str]]

    def nominate(self, p: Mapping[str, Any], node_name: str) -> None:
        self.__dict__.setdefault("nominated", []).append((p["metadata"]["name"], node_name))

    def preempt(
        self, victim: Mapping[str, Any], *, preemptor: Mapping[str, Any], node_name: str
    ) -> None:
        self.__dict__.setdefault("preempted", []).append(
            (victim["metadata"]["name"], preemptor["metadata"]["name"], node_name)
        )


def pending(name: str, cpu: str = "1", **spec: Any) -> dict[str, Any]:
    return pod(name, containers=[container(cpu=cpu)], schedulerName=NAME, **spec)


def make(clock: Clock, binder: RecordingBinder) -> Scheduler:
    frameworks = profiles_file.load(None).frameworks
    queue = SchedulingQueue(
        next(iter(frameworks.values())).less,
        initial_backoff_s=1,
        max_backoff_s=10,
        clock=clock,
    )
    return Scheduler(frameworks, binder, queue=queue, rng=random.Random(0), clock=clock)


def bound_version(p: dict[str, Any], node_name: str) -> dict[str, Any]:
    return {**p, "spec": {**p["spec"], "nodeName": node_name}}


# --- the cache ------------------------------------------------------------------------------


def test_assumed_pods_count_until_bound_and_finished_pods_free_their_room() -> None:
    cache = ClusterCache()
    cache.set_node(node("n1", cpu="2"))
    first = pending("a", cpu="1500m")
    cache.assume(first, "n1")
    [info], _ = cache.snapshot()[0].nodes, None
    assert info.requested.milli_cpu == 1500
    # The watch shows it bound: counted once, no longer assumed.
    cache.set_pod(bound_version(first, "n1"))
    assert not cache.is_assumed(first)
    assert cache.snapshot()[0].nodes[0].requested.milli_cpu == 1500
    done = {**bound_version(first, "n1"), "status": {"phase": "Succeeded"}}
    cache.set_pod(done)
    assert cache.snapshot()[0].nodes[0].requested.milli_cpu == 0


def test_a_node_with_invalid_allocatable_is_left_out_with_a_reason() -> None:
    cache = ClusterCache()
    cache.set_node(node("good"))
    cache.set_node(node("bad", cpu="lots"))
    snapshot, broken = cache.snapshot()
    assert [n.name for n in snapshot.nodes] == ["good"]
    assert list(broken) == ["bad"] and "cannot be read" in broken["bad"]


def test_the_extender_counts_the_pods_the_cache_has_on_each_node() -> None:
    cache = ClusterCache()
    cache.set_pod(bound_version(pending("busy", cpu="1500m"), "n1"))
    framework = profiles_file.load(None).frameworks[NAME]
    ext = extender.Extender(framework, cache.pods_on)
    body = json.dumps(
        {
            "pod": pending("new", cpu="1"),
            "nodes": {"items": [node("n1", cpu="2"), node("n2", cpu="2")]},
        }
    ).encode()
    result = ext.filter(body)
    assert [n["metadata"]["name"] for n in result["Nodes"]["items"]] == ["n2"]
    assert result["FailedNodes"] == {"n1": "Insufficient CPU: requested 1000m, available 500m"}


# --- the queue ------------------------------------------------------------------------------


def test_queue_pops_by_priority_then_age() -> None:
    clock = Clock()
    sched = make(clock, RecordingBinder())
    sched.queue.add(pending("old-low"))
    clock.now += 1
    sched.queue.add(pending("new-high", priority=10))
    clock.now += 1
    sched.queue.add(pending("new-low"))
    order = [sched.queue.pop(0).pod["metadata"]["name"] for _ in range(3)]  # type: ignore[union-attr]
    assert order == ["new-high", "old-low", "new-low"]


def test_a_pods_update_reorders_it_and_equals_pop_in_arrival_order() -> None:
    clock = Clock()
    sched = make(clock, RecordingBinder())
    for name in ("a", "b", "c"):
        sched.queue.add(pending(name))  # same priority, same timestamp: arrival order
    sched.queue.add(pending("c", priority=5))  # raised while queued: it goes first
    sched.queue.delete(pending("a"))
    order = [sched.queue.pop(0).pod["metadata"]["name"] for _ in range(2)]  # type: ignore[union-attr]
    assert order == ["c", "b"]
    assert sched.queue.pop(0) is None


def test_pop_costs_log_n_comparisons_not_a_scan() -> None:
    calls = 0
    [fw] = profiles_file.load(None).frameworks.values()

    def less(a: Any, b: Any) -> bool:
        nonlocal calls
        calls += 1
        return fw.less(a, b)

    clock = Clock()
    queue = SchedulingQueue(less, clock=clock)
    n = 2000
    for i in range(n):
        clock.now += 1
        queue.add(pending(f"p{i}", priority=i % 7))
    popped = [queue.pop(0) for _ in range(n)]
    keys = [(-(p.pod["spec"].get("priority") or 0), p.timestamp) for p in popped if p]
    assert len(keys) == n and keys == sorted(keys)
    # A scan per pop would compare ~n^2/2 = 2,000,000 times; a heap ~2 n log2 n.
    assert calls < 30 * n


def test_backoff_doubles_from_initial_to_max() -> None:
    queue = SchedulingQueue(lambda a, b: False, initial_backoff_s=1, max_backoff_s=10)
    assert [queue.backoff_s(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_an_unschedulable_pod_waits_for_an_event_then_its_backoff() -> None:
    clock = Clock()
    queue = SchedulingQueue(lambda a, b: False, initial_backoff_s=1, max_backoff_s=10, clock=clock)
    queue.add(pending("p"))
    info = queue.pop(0)
    assert info is not None and info.attempts == 1
    queue.unschedulable(info)
    clock.now += 30
    assert queue.pop(0) is None, "no cluster event yet: it must stay unschedulable"
    assert queue.lengths() == {"active": 0, "backoff": 0, "unschedulable": 1}
    queue.move_all()
    again = queue.pop(0)
    assert again is not None and again.attempts == 2
    # Second failure, then an event at once: 2 s of backoff (initial doubled) first.
    queue.unschedulable(again)
    queue.move_all()
    assert queue.lengths()["backoff"] == 1
    clock.now += 1.9
    assert queue.pop(0) is None
    clock.now += 0.2
    third = queue.pop(0)
    assert third is not None and third.attempts == 3


def test_an_event_during_the_attempt_retries_after_the_backoff_without_another_event() -> None:
    clock = Clock()
    queue = SchedulingQueue(lambda a, b: False, initial_backoff_s=1, max_backoff_s=10, clock=clock)
    queue.add(pending("p"))
    info = queue.pop(0)
    assert info is not None
    queue.move_all()  # a node was added while the cycle ran
    queue.unschedulable(info)
    assert queue.lengths() == {"active": 0, "backoff": 1, "unschedulable": 0}
    clock.now += 1
    assert queue.pop(0) is not None


def test_unschedulable_pods_are_flushed_after_five_minutes() -> None:
    clock = Clock()
    queue = SchedulingQueue(lambda a, b: False, clock=clock)
    queue.add(pending("p"))
    info = queue.pop(0)
    assert info is not None
    queue.unschedulable(info)
    clock.now += 299
    assert queue.pop(0) is None
    clock.now += 2
    assert queue.pop(0) is not None


def test_a_pod_deleted_while_scheduled_is_not_requeued() -> None:
    clock = Clock()
    queue = SchedulingQueue(lambda a, b: False, clock=clock)
    queue.add(pending("p"))
    info = queue.pop(0)
    assert info is not None
    queue.delete(info.pod)
    queue.unschedulable(info)
    queue.move_all()
    assert queue.lengths() == {"active": 0, "backoff": 0, "unschedulable": 0}


# --- the scheduler --------------------------------------------------------------------------


def test_pods_of_our_profile_are_bound_to_a_node_that_fits() -> None:
    clock, binder = Clock(), RecordingBinder()
    sched = make(clock, binder)
    sched.nodes_listed([node("small", cpu="1"), node("big", cpu="4")])
    sched.pods_listed(
        [
            pending("ours", cpu="2"),
            pod("theirs", containers=[container(cpu="1")], schedulerName="default-scheduler"),
        ]
    )
    assert sched.schedule_one(timeout=0)
    assert not sched.schedule_one(timeout=0), "only the pod naming our profile is queued"
    assert binder.bound == [("ours", "big")]
    assert binder.scheduled_events == [("ours", "big")]
    # Assumed until the watch shows the binding: the next pod sees its cpu used.
    sched.pod_event("ADDED", pending("next", cpu="2500m"))
    assert sched.schedule_one(timeout=0)
    assert binder.failures == [
        ("next", "Unschedulable", "0/2 nodes are available: 2 Insufficient cpu.")
    ]


def test_an_unschedulable_pod_is_placed_once_a_node_with_room_appears() -> None:
    clock, binder = Clock(), RecordingBinder()
    sched = make(clock, binder)
    beat_before, beat_after = node("small", cpu="1"), node("small", cpu="1")
    beat_before["status"]["conditions"] = [
        {"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-12-01T10:00:00Z"}
    ]
    beat_after["status"]["conditions"] = [
        {"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-12-01T10:00:20Z"}
    ]
    sched.nodes_listed([beat_before])
    sched.pods_listed([pending("p", cpu="2")])
    sched.schedule_one(timeout=0)
    assert binder.failures == [
        ("p", "Unschedulable", "0/1 nodes are available: 1 Insufficient cpu.")
    ]
    # A heartbeat (a condition's timestamp only) is no reason to retry.
    assert not node_change_may_help(beat_before, beat_after)
    sched.node_event("MODIFIED", beat_after)
    clock.now += 1
    assert not sched.schedule_one(timeout=0)
    sched.node_event("ADDED", node("roomy", cpu="8"))
    clock.now += 1
    assert sched.schedule_one(timeout=0)
    assert binder.bound == [("p", "roomy")]


def test_a_refused_binding_is_forgotten_and_retried_after_backoff() -> None:
    clock, binder = Clock(), RecordingBinder(refuse={"p"})
    sched = make(clock, binder)
    sched.nodes_listed([node("n1", cpu="2")])
    sched.pods_listed([pending("p", cpu="2")])
    sched.schedule_one(timeout=0)
    [(name, reason, message)] = binder.failures
    assert (name, reason) == ("p", "SchedulerError") and "already assigned" in message
    assert not sched.cache.is_assumed(pending("p")), "a failed binding must not hold the node"
    assert sched.queue.lengths()["backoff"] == 1
    binder.refuse.clear()
    clock.now += 1
    assert sched.schedule_one(timeout=0)
    assert binder.bound == [("p", "n1")]


def test_a_pod_bound_by_the_watch_leaves_the_queue_and_counts_on_its_node() -> None:
    clock, binder = Clock(), RecordingBinder()
    sched = make(clock, binder)
    sched.nodes_listed([node("n1", cpu="2")])
    p = pending("p", cpu="2")
    sched.pod_event("ADDED", p)
    sched.pod_event("MODIFIED", bound_version(p, "n1"))  # bound by someone else meanwhile
    assert not sched.schedule_one(timeout=0)
    assert sched.cache.pods_on(["n1"])[0]["metadata"]["name"] == "p"
    # Deleting a bound pod frees room: an unschedulable pod is retried.
    sched.pod_event("ADDED", pending("q", cpu="2"))
    sched.schedule_one(timeout=0)
    assert binder.failures[-1][0] == "q"
    sched.pod_event("DELETED", bound_version(p, "n1"))
    clock.now += 1
    assert sched.schedule_one(timeout=0)
    assert binder.bound == [("q", "n1")]


def test_an_invalid_pod_gets_a_failure_not_a_crash() -> None:
    clock, binder = Clock(), RecordingBinder()
    sched = make(clock, binder)
    sched.nodes_listed([node("n1")])
    sched.pods_listed([pending("bad", cpu="lots")])
    assert sched.schedule_one(timeout=0)
    [(name, reason, message)] = binder.failures
    assert (name, reason) == ("bad", "SchedulerError")
    assert "lots" in message


@pytest.mark.parametrize("field", ["allocatable", "labels", "taints", "unschedulable"])
def test_node_changes_that_may_help(field: str) -> None:
    old = node("n", cpu="1")
    new = json.loads(json.dumps(old))
    if field == "allocatable":
        new["status"]["allocatable"]["cpu"] = "2"
    elif field == "labels":
        new["metadata"]["labels"]["zone"] = "a"
    elif field == "taints":
        new["spec"]["taints"] = [{"key": "k", "effect": "NoSchedule"}]
    else:
        new["spec"]["unschedulable"] = True
    assert node_change_may_help(old, new)


def test_a_high_priority_pod_preempts_through_the_binder_and_is_bound_once_the_victim_is_gone() -> (
    None
):
    clock, binder = Clock(), RecordingBinder()
    sched = make(clock, binder)
    sched.nodes_listed([node("n1", cpu="2")])
    low = bound_version(pending("low", cpu="2", priority=1), "n1")
    sched.pods_listed([low])
    high = pending("high", cpu="2", priority=100)
    sched.pod_event("ADDED", high)
    assert sched.schedule_one(timeout=0)
    assert binder.nominated == [("high", "n1")]
    assert binder.preempted == [("low", "high", "n1")]
    assert binder.bound == [] and binder.failures[-1][:2] == ("high", "Unschedulable")
    # The victim's deletion is seen by the watch: the pod is moved back and bound there.
    sched.pod_event("DELETED", low)
    clock.now += 11  # past the backoff
    assert sched.schedule_one(timeout=0)
    assert binder.bound == [("high", "n1")]


# --- namespaces and PodDisruptionBudgets from their informers -------------------------------


def pdb(name: str, match: dict[str, str], *, allowed: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"matchLabels": match}, "minAvailable": 1},
        "status": {"disruptionsAllowed": allowed},
    }


def labelled(p: dict[str, Any], **labels: str) -> dict[str, Any]:
    return {**p, "metadata": {**p["metadata"], "labels": labels}}


def test_a_pdb_from_the_informer_steers_preemption_to_the_unprotected_node() -> None:
    clock, binder = Clock(), RecordingBinder()
    sched = make(clock, binder)
    sched.nodes_listed([node("n1", cpu="1"), node("n2", cpu="1")])
    # Equal victims: without a PDB the first node (n1) wins the last tie-break.
    on_n1 = labelled(bound_version(pending("low-1", cpu="1", priority=1), "n1"), app="guarded")
    on_n2 = labelled(bound_version(pending("low-2", cpu="1", priority=1), "n2"), app="free")
    sched.pods_listed([on_n1, on_n2])
    sched.pdbs_listed([])
    sched.pdb_event("ADDED", pdb("guard", {"app": "guarded"}, allowed=0))
    sched.pod_event("ADDED", pending("high", cpu="1", priority=100))
    assert sched.schedule_one(timeout=0)
    assert binder.nominated == [("high", "n2")]
    assert binder.preempted == [("low-2", "high", "n2")]

    # The PDB is deleted (the watch says so): the next preemptor takes n1's victim again.
    sched.pdb_event("DELETED", pdb("guard", {"app": "guarded"}, allowed=0))
    sched.pod_event("ADDED", pending("high-2", cpu="1", priority=100))
    clock.now += 11
    while sched.schedule_one(timeout=0):
        if binder.nominated[-1][0] == "high-2":
            break
    assert binder.nominated[-1] == ("high-2", "n1")


def test_namespace_labels_from_the_informer_reach_namespace_selectors() -> None:
    clock, binder = Clock(), RecordingBinder()
    sched = make(clock, binder)
    sched.nodes_listed([node("n1"), node("n2")])
    db = bound_version(pending("db", cpu="100m"), "n1")
    db = labelled({**db, "metadata": {**db["metadata"], "namespace": "data"}}, app="db")
    sched.pods_listed([db])
    affinity = {
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {"app": "db"}},
                    "namespaceSelector": {"matchLabels": {"team": "storage"}},
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        }
    }
    sched.namespaces_listed([{"metadata": {"name": "data", "labels": {"team": "web"}}}])
    sched.pod_event("ADDED", pending("app", cpu="100m", affinity=affinity))
    assert sched.schedule_one(timeout=0)
    assert binder.bound == [] and binder.failures[-1][:2] == ("app", "Unschedulable")

    # The namespace is relabelled: the selector now picks db's namespace, so app joins db.
    relabelled = {"metadata": {"name": "data", "labels": {"team": "storage"}}}
    sched.namespace_event("MODIFIED", relabelled)
    sched.queue.move_all()
    clock.now += 11
    assert sched.schedule_one(timeout=0)
    assert binder.bound == [("app", "n1")]
    sched.namespace_event("DELETED", relabelled)
    assert sched.cache.snapshot()[0].labels_of_namespace("data") == {
        "kubernetes.io/metadata.name": "data"
    }


# --- nominated pods count in other pods' filters ---------------------------------------------


def test_a_lower_priority_pod_does_not_take_the_room_a_preemptor_was_nominated_to() -> None:
    clock, binder = Clock(), RecordingBinder()
    sched = make(clock, binder)
    sched.nodes_listed([node("n1", cpu="2")])
    victim = bound_version(pending("victim", cpu="2", priority=1), "n1")
    sched.pods_listed([victim])
    sched.pod_event("ADDED", pending("high", cpu="2", priority=100))
    assert sched.schedule_one(timeout=0)
    assert binder.nominated == [("high", "n1")]
    sched.pod_event("DELETED", victim)  # the preemptor waits out its backoff ...
    sched.pod_event("ADDED", pending("mid", cpu="2", priority=50))
    assert sched.schedule_one(timeout=0)  # ... so mid is tried first: n1's room is promised
    assert binder.bound == []
    assert binder.failures[-1][0] == "mid" and "1 Insufficient cpu" in binder.failures[-1][2]
    clock.now += 11
    assert sched.schedule_one(timeout=0)
    assert binder.bound == [("high", "n1")]


def test_nominations_from_the_watch_count_only_for_pods_of_lower_or_equal_priority() -> None:
    clock, binder = Clock(), RecordingBinder()
    sched = make(clock, binder)
    sched.nodes_listed([node("n1", cpu="2")])
    # A preemptor nominated to n1 by an earlier leader (its status says so).
    waiting = {**pending("waiting", cpu="2", priority=100), "status": {"nominatedNodeName": "n1"}}
    sched.pods_listed([waiting])
    sched.queue.delete(waiting)  # not this test's subject: only its nomination matters
    sched.pod_event("ADDED", pending("same", cpu="1", priority=100))
    assert sched.schedule_one(timeout=0)
    assert binder.bound == [] and binder.failures[-1][0] == "same"
    sched.pod_event("ADDED", pending("higher", cpu="1", priority=101))
    assert sched.schedule_one(timeout=0)
    assert binder.bound == [("higher", "n1")]
    # The nomination goes with the pod (deleted): a pod of its priority fits again.
    sched.pod_event("DELETED", waiting)
    clock.now += 11
    assert sched.schedule_one(timeout=0)
    assert binder.bound[-1] == ("same", "n1")


def test_preemption_does_not_pick_a_node_whose_freed_room_is_promised_to_a_nominated_pod() -> None:
    clock, binder = Clock(), RecordingBinder()
    sched = make(clock, binder)
    sched.nodes_listed([node("n1", cpu="2"), node("n2", cpu="2")])
    promised = {
        **pending("promised", cpu="1", priority=100),
        "status": {"nominatedNodeName": "n1"},
    }
    # Equal victims: without the nomination n1 (first) would be chosen.
    low_1 = bound_version(pending("low-1", cpu="1", priority=1), "n1")
    low_2 = bound_version(pending("low-2", cpu="2", priority=1), "n2")
    sched.pods_listed([low_1, low_2, promised])
    sched.queue.delete(promised)
    sched.pod_event("ADDED", pending("preemptor", cpu="2", priority=50))
    assert sched.schedule_one(timeout=0)
    assert binder.nominated == [("preemptor", "n2")]
    assert binder.preempted == [("low-2", "preemptor", "n2")]
