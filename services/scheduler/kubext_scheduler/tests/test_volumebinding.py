"""VolumeBinding through the real framework and the standalone loop, against kube-scheduler's
volumebinding plugin (v1.35): each reason, static PV matching, the provisioning node, Reserve's
assumptions in the cache, PreBind's writes and its bounded wait."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import pytest

from kubext_scheduler import profiles_file
from kubext_scheduler.cache import ClusterCache
from kubext_scheduler.framework import profiles
from kubext_scheduler.framework.cycle_state import CycleState
from kubext_scheduler.framework.nodeinfo import NodeInfo, Snapshot
from kubext_scheduler.framework.status import Code
from kubext_scheduler.framework.volumes import VolumeAPIError, VolumeState
from kubext_scheduler.plugins import registry, volumebinding
from kubext_scheduler.queue import SchedulingQueue
from kubext_scheduler.scheduler import Scheduler
from kubext_scheduler.tests.objects import node, pod
from kubext_scheduler.tests.test_standalone import Clock, RecordingBinder

NAME = "kubext-scheduler"
TOPOLOGY = "topology.csi.kubext.io/node"
CSI = "csi.kubext.io"
NS = "default"


def sc(
    name: str = "csi",
    *,
    mode: str | None = "WaitForFirstConsumer",
    provisioner: str = CSI,
    allowed: list[str] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"metadata": {"name": name}, "provisioner": provisioner}
    if mode is not None:
        out["volumeBindingMode"] = mode
    if allowed is not None:
        out["allowedTopologies"] = [
            {"matchLabelExpressions": [{"key": TOPOLOGY, "values": allowed}]}
        ]
    return out


def pvc(
    name: str = "data",
    *,
    cls: str = "csi",
    size: str = "1Gi",
    modes: tuple[str, ...] = ("ReadWriteOnce",),
    volume: str = "",
    bound: bool = False,
    annotations: dict[str, str] | None = None,
    rv: str = "1",
    **extra: Any,
) -> dict[str, Any]:
    ann = dict(annotations or {})
    if bound:
        ann[volumebinding.ANN_BIND_COMPLETED] = "yes"
    spec: dict[str, Any] = {
        "storageClassName": cls,
        "accessModes": list(modes),
        "resources": {"requests": {"storage": size}},
    }
    if volume:
        spec["volumeName"] = volume
    return {
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "resourceVersion": rv,
            "annotations": ann,
            **extra,
        },
        "spec": spec,
        "status": {"phase": "Bound" if bound else "Pending"},
    }


def pv(
    name: str,
    *,
    on: str | None = None,
    cls: str = "csi",
    size: str = "1Gi",
    modes: tuple[str, ...] = ("ReadWriteOnce",),
    claim: str | None = None,
    phase: str = "Available",
    rv: str = "1",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "storageClassName": cls,
        "capacity": {"storage": size},
        "accessModes": list(modes),
    }
    if on is not None:
        spec["nodeAffinity"] = {
            "required": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": TOPOLOGY, "operator": "In", "values": [on]}]}
                ]
            }
        }
    if claim is not None:
        spec["claimRef"] = {"namespace": NS, "name": claim, "uid": f"uid-{claim}"}
    return {
        "metadata": {"name": name, "resourceVersion": rv},
        "spec": spec,
        "status": {"phase": phase},
    }


def csi_node(name: str) -> dict[str, Any]:
    return node(name, labels={TOPOLOGY: name})


def with_claims(p: dict[str, Any], *claims: str) -> dict[str, Any]:
    p["spec"]["volumes"] = [
        {"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}} for i, c in enumerate(claims)
    ]
    return p


def volumes_of(
    claims: list[dict[str, Any]], pvs: list[dict[str, Any]], classes: list[dict[str, Any]]
) -> VolumeState:
    return VolumeState(
        claims={f"{c['metadata']['namespace']}/{c['metadata']['name']}": c for c in claims},
        volumes={v["metadata"]["name"]: v for v in pvs},
        classes={c["metadata"]["name"]: c for c in classes},
    )


def default_framework() -> Any:
    data = {"apiVersion": profiles.V1, "kind": "KubeSchedulerConfiguration"}
    [fw] = profiles.load(data, registry.REGISTRY, registry.DEFAULTS).frameworks.values()
    return fw


NODES = ["n1", "n2", "n3"]


def schedule(
    p: dict[str, Any],
    claims: list[dict[str, Any]],
    pvs: list[dict[str, Any]] = (),  # type: ignore[assignment]
    classes: list[dict[str, Any]] | None = None,
) -> Any:
    snapshot = Snapshot(
        [NodeInfo.of(csi_node(n)) for n in NODES],
        volumes=volumes_of(claims, list(pvs), classes if classes is not None else [sc()]),
    )
    return default_framework().schedule(p, snapshot, rng=random.Random(0))


def reasons(result: Any) -> dict[str, tuple[str, ...]]:
    return {n: s.reasons for n, s in result.statuses.items()}


# --- PreFilter -------------------------------------------------------------------------------


def test_a_missing_claim_rejects_every_node_unresolvably_with_upstreams_message() -> None:
    result = schedule(with_claims(pod("p"), "data"), [])
    assert result.node_name is None
    assert result.status.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert result.status.plugin == "VolumeBinding"
    assert result.message() == '0/3 nodes are available: persistentvolumeclaim "data" not found.'


@pytest.mark.parametrize(
    ("claim", "message"),
    [
        pytest.param(
            pvc(cls="fast"), "pod has unbound immediate PersistentVolumeClaims", id="immediate"
        ),
        pytest.param(
            pvc(volume="pv-1"),
            "pod has unbound immediate PersistentVolumeClaims",
            id="prebound-not-completed",
        ),
        pytest.param(
            {**pvc(), "status": {"phase": "Lost"}},
            'persistentvolumeclaim "data" bound to non-existent persistentvolume ""',
            id="lost",
        ),
        pytest.param(
            pvc(deletionTimestamp="2026-01-01T00:00:00Z"),
            'persistentvolumeclaim "data" is being deleted',
            id="deleting",
        ),
    ],
)
def test_claims_the_scheduler_cannot_place(claim: dict[str, Any], message: str) -> None:
    result = schedule(
        with_claims(pod("p"), "data"), [claim], classes=[sc(), sc("fast", mode="Immediate")]
    )
    assert result.node_name is None
    assert result.status.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert result.status.reasons == (message,)


def test_an_ephemeral_volume_waits_for_its_claim_and_needs_to_own_it() -> None:
    p = pod("p")
    p["spec"]["volumes"] = [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {}}}]
    assert schedule(p, []).status.reasons == (
        'waiting for ephemeral volume controller to create the persistentvolumeclaim "p-scratch"',
    )
    stranger = pvc("p-scratch")
    assert schedule(p, [stranger]).status.reasons == (
        "PVC default/p-scratch was not created for pod default/p (pod is not owner)",
    )
    owned = pvc("p-scratch", ownerReferences=[{"uid": "uid-p", "controller": True}])
    assert schedule(p, [owned]).node_name in NODES


def test_a_class_without_binding_mode_is_an_error() -> None:
    result = schedule(with_claims(pod("p"), "data"), [pvc()], classes=[sc(mode=None)])
    assert result.status.code is Code.ERROR
    assert result.status.reasons == ('VolumeBindingMode not set for StorageClass "csi"',)


def test_a_pod_without_claims_skips_the_plugin() -> None:
    fw = default_framework()
    state = CycleState()
    state.snapshot = Snapshot([NodeInfo.of(csi_node("n1"))])
    assert fw.run_pre_filter(state, pod("p"), state.snapshot.nodes).is_success
    assert "VolumeBinding" in state.skip_filter


def test_without_a_volume_view_the_extender_leaves_volumes_to_kube_scheduler() -> None:
    fw = default_framework()
    state = CycleState()  # the extender runs single points: no snapshot
    p = with_claims(pod("p"), "data")
    assert fw.run_pre_filter(state, p, [NodeInfo.of(csi_node("n1"))]).is_success
    assert "VolumeBinding" in state.skip_filter


# --- Filter ----------------------------------------------------------------------------------


def test_a_bound_pvs_node_affinity_admits_only_its_node() -> None:
    claim = pvc(volume="pv-1", bound=True)
    result = schedule(with_claims(pod("p"), "data"), [claim], [pv("pv-1", on="n2", claim="data")])
    assert result.node_name == "n2"
    assert reasons(result) == {
        "n1": ("node(s) didn't match PersistentVolume's node affinity",),
        "n3": ("node(s) didn't match PersistentVolume's node affinity",),
    }


def test_a_claim_bound_to_a_missing_pv_fits_no_node() -> None:
    result = schedule(with_claims(pod("p"), "data"), [pvc(volume="gone", bound=True)])
    assert result.node_name is None
    assert result.message() == (
        "0/3 nodes are available: 3 node(s) unavailable due to one or more pvc(s) bound to "
        "non-existent pv(s)."
    )


@pytest.mark.parametrize(
    ("volume", "fits"),
    [
        pytest.param(pv("pv-a", on="n1"), True, id="matches"),
        pytest.param(pv("pv-a", on="n1", size="512Mi"), False, id="too-small"),
        pytest.param(pv("pv-a", on="n1", modes=("ReadOnlyMany",)), False, id="access-mode"),
        pytest.param(pv("pv-a", on="n1", cls="other"), False, id="other-class"),
        pytest.param(pv("pv-a", on="n1", phase="Released"), False, id="not-available"),
        pytest.param(pv("pv-a", on="n1", claim="someone-else"), False, id="claimed"),
    ],
)
def test_a_static_pv_matches_on_capacity_access_modes_class_and_node(
    volume: dict[str, Any], fits: bool
) -> None:
    """A class nobody provisions for: only a matching PV can satisfy the claim."""
    classes = [sc("local", provisioner="kubernetes.io/no-provisioner")]
    volume["spec"]["storageClassName"] = volume["spec"]["storageClassName"].replace("csi", "local")
    result = schedule(with_claims(pod("p"), "data"), [pvc(cls="local")], [volume], classes)
    bind_conflict = ("node(s) didn't find available persistent volumes to bind",)
    if fits:
        assert result.node_name == "n1"
        assert reasons(result) == {"n2": bind_conflict, "n3": bind_conflict}
    else:
        assert result.node_name is None
        assert reasons(result) == {n: bind_conflict for n in NODES}


def test_the_smallest_pv_that_fits_is_chosen() -> None:
    fw = default_framework()
    state = CycleState()
    nodes = [NodeInfo.of(csi_node("n1"))]
    state.snapshot = Snapshot(
        nodes,
        volumes=volumes_of(
            [pvc(size="1Gi")],
            [pv("big", on="n1", size="10Gi"), pv("fit", on="n1", size="2Gi")],
            [sc()],
        ),
    )
    p = with_claims(pod("p"), "data")
    assert fw.run_pre_filter(state, p, nodes).is_success
    assert fw.run_filter(state, p, nodes[0]).is_success
    found = state.read(volumebinding.STATE_KEY, volumebinding._State).by_node["n1"]
    assert [v["metadata"]["name"] for v, _ in found.static] == ["fit"]
    assert found.provision == []


def test_the_provisioning_node_follows_the_classs_allowed_topologies() -> None:
    p = with_claims(pod("p"), "data")
    result = schedule(p, [pvc()], classes=[sc(allowed=["n3"])])
    assert result.node_name == "n3"
    conflict = ("node(s) didn't find available persistent volumes to bind",)
    assert reasons(result) == {"n1": conflict, "n2": conflict}
    # No allowedTopologies: the provisioner can create the volume on any node.
    assert schedule(p, [pvc()]).feasible == NODES


def test_a_claim_whose_provisioning_started_stays_on_its_selected_node() -> None:
    claim = pvc(annotations={volumebinding.ANN_SELECTED_NODE: "n2"})
    result = schedule(with_claims(pod("p"), "data"), [claim])
    assert result.node_name == "n2"
    assert set(reasons(result)) == {"n1", "n3"}


def test_a_class_that_cannot_be_found_for_provisioning_is_an_error() -> None:
    """WaitForFirstConsumer, but the class vanished between PreFilter's read and Filter's: as
    upstream, the claim's class is needed to provision and its absence is an Error."""
    fw = default_framework()
    nodes = [NodeInfo.of(csi_node("n1"))]
    state = CycleState()
    state.snapshot = Snapshot(nodes, volumes=volumes_of([pvc()], [], [sc()]))
    p = with_claims(pod("p"), "data")
    assert fw.run_pre_filter(state, p, nodes).is_success
    state.snapshot = Snapshot(nodes, volumes=volumes_of([pvc()], [], []))
    outcome = fw.run_filter(state, p, nodes[0])
    assert outcome.code is Code.ERROR
    assert outcome.reasons == ('VolumeBinding: failed to find storage class "csi"',)


# --- Reserve, PreBind and the loop ------------------------------------------------------------


class FakeVolumeAPI:
    """The API server's side of PV/PVC updates; ``provision`` plays external-provisioner and the
    PV controller at once: a selected-node claim gets a PV on that node and is Bound."""

    def __init__(self, cache: ClusterCache, *, provision: bool = True, refuse: bool = False):
        self.cache, self.provision, self.refuse = cache, provision, refuse
        self.claims: list[Mapping[str, Any]] = []
        self.volumes: list[Mapping[str, Any]] = []

    def update_volume(self, volume: Mapping[str, Any]) -> Mapping[str, Any]:
        if self.refuse:
            raise VolumeAPIError("updating pv 'x': the object has been modified")
        stored = {**volume, "metadata": {**volume["metadata"], "resourceVersion": "5"}}
        self.volumes.append(stored)
        self.cache.set_volume(stored)
        claim = self.cache.api_claim(f"{NS}/{volume['spec']['claimRef']['name']}")
        assert claim is not None
        # The PV controller completes the claim's side.
        self.cache.set_claim(
            pvc(
                claim["metadata"]["name"],
                volume=volume["metadata"]["name"],
                bound=True,
                rv="6",
            )
        )
        return stored

    def update_claim(self, claim: Mapping[str, Any]) -> Mapping[str, Any]:
        if self.refuse:
            raise VolumeAPIError("updating pvc default/data: forbidden")
        stored = {**claim, "metadata": {**claim["metadata"], "resourceVersion": "2"}}
        self.claims.append(stored)
        self.cache.set_claim(stored)
        if self.provision:
            selected = claim["metadata"]["annotations"][volumebinding.ANN_SELECTED_NODE]
            name = claim["metadata"]["name"]
            self.cache.set_volume(pv(f"pvc-{name}", on=selected, claim=name, phase="Bound"))
            self.cache.set_claim(
                {
                    **pvc(name, volume=f"pvc-{name}", bound=True, rv="3"),
                    "metadata": {
                        **stored["metadata"],
                        "resourceVersion": "3",
                        "annotations": {
                            **stored["metadata"]["annotations"],
                            volumebinding.ANN_BIND_COMPLETED: "yes",
                        },
                    },
                }
            )
        return stored


def make(clock: Clock, binder: RecordingBinder, api_for: Any, *, timeout_s: int = 600) -> Scheduler:
    data = {
        "apiVersion": profiles.V1,
        "kind": "KubeSchedulerConfiguration",
        "profiles": [
            {
                "schedulerName": NAME,
                "pluginConfig": [
                    {"name": "VolumeBinding", "args": {"bindTimeoutSeconds": timeout_s}}
                ],
            }
        ],
    }
    frameworks = profiles.load(data, registry.REGISTRY, registry.DEFAULTS).frameworks
    cache = ClusterCache()
    queue = SchedulingQueue(next(iter(frameworks.values())).less, clock=clock)
    sched = Scheduler(
        frameworks,
        binder,
        cache=cache,
        queue=queue,
        rng=random.Random(0),
        clock=clock,
        volume_api=api_for(cache),
    )
    for fw in frameworks.values():
        for plugin in fw.plugins["preBind"]:
            if isinstance(plugin, volumebinding.VolumeBinding):
                plugin.clock = clock  # the bounded wait runs on the test's clock
    return sched


def ours(name: str, *claims: str) -> dict[str, Any]:
    return with_claims(pod(name, schedulerName=NAME), *claims)


def test_prebind_annotates_the_claim_with_the_chosen_node_and_binds_once_it_is_bound() -> None:
    clock, binder = Clock(), RecordingBinder()
    apis: list[FakeVolumeAPI] = []

    def api_for(cache: ClusterCache) -> FakeVolumeAPI:
        apis.append(FakeVolumeAPI(cache))
        return apis[0]

    sched = make(clock, binder, api_for)
    sched.nodes_listed([csi_node("n1"), csi_node("n2")])
    sched.storage_classes_listed([sc(allowed=["n2"])])
    sched.claims_listed([pvc()])
    sched.pods_listed([ours("p", "data")])
    assert sched.schedule_one(timeout=0)
    [written] = apis[0].claims
    assert written["metadata"]["annotations"][volumebinding.ANN_SELECTED_NODE] == "n2"
    assert binder.bound == [("p", "n2")]
    assert binder.failures == []


def test_a_static_pv_is_bound_by_its_claimref_and_not_given_to_a_second_claim() -> None:
    clock, binder = Clock(), RecordingBinder()
    holder: list[FakeVolumeAPI] = []

    def api_for(cache: ClusterCache) -> FakeVolumeAPI:
        holder.append(FakeVolumeAPI(cache, provision=False))
        return holder[0]

    sched = make(clock, binder, api_for)
    local = sc("local", provisioner="kubernetes.io/no-provisioner")
    sched.nodes_listed([csi_node("n1"), csi_node("n2")])
    sched.storage_classes_listed([local])
    sched.volumes_listed([pv("only", on="n1", cls="local")])
    sched.claims_listed([pvc("a", cls="local"), pvc("b", cls="local")])
    sched.pods_listed([ours("pa", "a")])
    assert sched.schedule_one(timeout=0)
    [written] = holder[0].volumes
    assert written["spec"]["claimRef"]["name"] == "a"
    assert written["metadata"]["annotations"][volumebinding.ANN_BOUND_BY_CONTROLLER] == "yes"
    assert binder.bound == [("pa", "n1")]
    # The PV now belongs to "a": the second claim finds none.
    sched.pod_event("ADDED", ours("pb", "b"))
    assert sched.schedule_one(timeout=0)
    [(name, reason, message)] = binder.failures
    assert (name, reason) == ("pb", "Unschedulable")
    assert message == (
        "0/2 nodes are available: 2 node(s) didn't find available persistent volumes to bind."
    )


def test_reserve_assumes_in_the_cache_and_unreserve_restores() -> None:
    cache = ClusterCache()
    cache.replace_nodes([csi_node("n1")])
    cache.replace_storage_classes([sc()])
    cache.replace_claims([pvc()])
    fw = default_framework()
    [plugin] = [p for p in fw.plugins["reserve"] if p.name == "VolumeBinding"]
    assert isinstance(plugin, volumebinding.VolumeBinding)
    plugin.set_volumes(cache, None)
    snapshot, _ = cache.snapshot()
    state = CycleState()
    p = with_claims(pod("p"), "data")
    result = fw.schedule(p, snapshot, state=state)
    assert result.node_name == "n1"
    assert fw.run_reserve(state, p, "n1").is_success
    seen = cache.snapshot()[0].volumes.claim(NS, "data")
    assert seen is not None
    assert seen["metadata"]["annotations"][volumebinding.ANN_SELECTED_NODE] == "n1"
    assert cache.api_claim(f"{NS}/data") == pvc()  # the API's copy is untouched
    fw.run_unreserve(state, p, "n1")
    assert cache.snapshot()[0].volumes.claim(NS, "data") == pvc()
    # A newer copy from the informer replaces an assumption.
    assert fw.run_reserve(state, p, "n1").is_success
    cache.set_claim(pvc(rv="7"))
    assert cache.snapshot()[0].volumes.claim(NS, "data") == pvc(rv="7")


def test_a_claim_never_bound_times_out_with_a_binding_error_and_is_retried() -> None:
    clock, binder = Clock(), RecordingBinder()
    cache_of: list[ClusterCache] = []

    def api_for(cache: ClusterCache) -> FakeVolumeAPI:
        cache_of.append(cache)
        return FakeVolumeAPI(cache, provision=False)  # no provisioner answers

    sched = make(clock, binder, api_for, timeout_s=30)
    waits: list[float] = []

    def wait(timeout: float) -> None:
        waits.append(timeout)
        clock.now += timeout

    cache_of[0].wait_volume_event = wait  # type: ignore[method-assign]
    sched.nodes_listed([csi_node("n1")])
    sched.storage_classes_listed([sc()])
    sched.claims_listed([pvc()])
    sched.pods_listed([ours("p", "data")])
    assert sched.schedule_one(timeout=0)
    assert binder.bound == []
    [(name, reason, message)] = binder.failures
    assert (name, reason) == ("p", "SchedulerError")
    assert message == (
        "VolumeBinding: binding volumes: timed out after 30s waiting for PersistentVolumeClaims "
        '"default/data" to be bound'
    )
    assert sum(waits) == 30 and max(waits) == 1.0  # polled each second, no longer than asked
    assert sched.queue.lengths()["backoff"] == 1
    # Unreserved: the API's copy (with the annotation we wrote) is what the next cycle sees.
    seen = cache_of[0].snapshot()[0].volumes.claim(NS, "data")
    assert seen == cache_of[0].api_claim(f"{NS}/data")


def test_a_provisioner_that_gives_up_fails_the_binding_at_once() -> None:
    clock, binder = Clock(), RecordingBinder()

    class GivesUp(FakeVolumeAPI):
        def update_claim(self, claim: Mapping[str, Any]) -> Mapping[str, Any]:
            stored = super().update_claim(claim)
            # external-provisioner removes selected-node when it cannot provision there.
            self.cache.set_claim(pvc(rv="3"))
            return stored

    sched = make(clock, binder, lambda cache: GivesUp(cache, provision=False))
    sched.nodes_listed([csi_node("n1")])
    sched.storage_classes_listed([sc()])
    sched.claims_listed([pvc()])
    sched.pods_listed([ours("p", "data")])
    assert sched.schedule_one(timeout=0)
    assert binder.bound == []
    [(_, reason, message)] = binder.failures
    assert reason == "SchedulerError"
    assert message == 'VolumeBinding: binding volumes: provisioning failed for PVC "data"'


def test_a_refused_update_is_a_binding_error_and_the_assumption_is_restored() -> None:
    clock, binder = Clock(), RecordingBinder()
    caches: list[ClusterCache] = []

    def api_for(cache: ClusterCache) -> FakeVolumeAPI:
        caches.append(cache)
        return FakeVolumeAPI(cache, refuse=True)

    sched = make(clock, binder, api_for)
    sched.nodes_listed([csi_node("n1")])
    sched.storage_classes_listed([sc()])
    sched.claims_listed([pvc()])
    sched.pods_listed([ours("p", "data")])
    assert sched.schedule_one(timeout=0)
    [(_, reason, message)] = binder.failures
    assert reason == "SchedulerError"
    assert message == "VolumeBinding: binding volumes: updating pvc default/data: forbidden"
    assert caches[0].snapshot()[0].volumes.claim(NS, "data") == pvc()


def test_a_claim_event_moves_a_waiting_pod_back() -> None:
    clock, binder = Clock(), RecordingBinder()
    sched = make(clock, binder, lambda cache: FakeVolumeAPI(cache))
    sched.nodes_listed([csi_node("n1")])
    sched.storage_classes_listed([sc()])
    sched.pods_listed([ours("p", "data")])
    assert sched.schedule_one(timeout=0)
    assert binder.failures[-1][2] == (
        '0/1 nodes are available: persistentvolumeclaim "data" not found.'
    )
    assert sched.queue.lengths()["unschedulable"] == 1
    sched.claim_event("ADDED", pvc())
    assert sched.queue.lengths()["unschedulable"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            {"bindTimeoutSeconds": -1},
            "profiles[0].pluginConfig[0].args.bindTimeoutSeconds: Input should be greater than "
            "or equal to 0",
        ),
        ({"shape": []}, "profiles[0].pluginConfig[0].args.shape: unknown field"),
    ],
)
def test_bad_args_name_the_field(args: dict[str, Any], message: str) -> None:
    data = {
        "apiVersion": profiles.V1,
        "kind": "KubeSchedulerConfiguration",
        "profiles": [{"pluginConfig": [{"name": "VolumeBinding", "args": args}]}],
    }
    with pytest.raises(profiles.ProfileError) as caught:
        profiles.load(data, registry.REGISTRY, registry.DEFAULTS)
    assert str(caught.value).startswith(message), str(caught.value)


def test_the_default_profile_enables_it_at_its_points_without_score() -> None:
    fw = profiles_file.load(None).frameworks[NAME]
    assert fw.points_of("VolumeBinding") == ["preFilter", "filter", "reserve", "preBind"]
