"""Each chart as a Helm release whose pods run for real on the rig's real node, from images pulled
out of the rig's registry.

What runs for real: the images `./pants package` built (podman), pushed by
``kubext_rig.images.push`` to the real node's registry (distribution) and pulled from it by the
node's containerd (``imagePullPolicy: Always``); the pinned helm installing, upgrading and
uninstalling each chart against the real API server; the kubelet starting the services' containers
(runc, uid 65532, read-only root, PEX_ROOT on the /tmp emptyDir) networked by kubext-bridge; the
services talking to the API server through the ``kubernetes`` Service (kube-proxy). Per chart:
operator (2 replicas, exactly one Lease holder, which is one of them), webhooks (self-managed TLS;
the API server calls the pod through its Service and a privileged pod is denied), scheduler (a
pod with its schedulerName is bound, to the cluster's kwok node), deviceplugin (registers with
the real kubelet: the node's allocatable shows its simulated ``example.com/gpu``, and 0 once
uninstalled), cni last (its DaemonSet on the host network writes the kubext-bridge launcher and
the conflist into host dirs of the test's own, its daemon serving on the socket there; the rig's
own network, in containerd's CNI dirs, is left alone, and a pod started after the release still
gets Ready). `helm upgrade` with a changed pod annotation replaces every pod (new UIDs, Ready
again on the real node); `helm uninstall` leaves no pod and no cluster-scoped object of the
release. Fake: the scheduler's bound pod lands on a kwok node (no container); the device
plugin's devices are simulated; nothing calls the cni release's launcher.

The csi release runs with no upstream sidecar (their registry.k8s.io images cannot be pulled
here): the driver registers with the real kubelet itself and provisions with its built-in
provisioner. Its pod is privileged (mounts propagated back to the host, loop devices), as
csi-driver-host-path's is; its state dir is a host dir of the test's own, its kubelet dir the rig
node's. What runs for real there: the kubelet's plugin watcher registering the pod's driver
(CSINode), the scheduler picking the real node for a WaitForFirstConsumer claim, the built-in
provisioner's PV, the kubelet staging and publishing it into a write-read pod (the mount seen on
the host) and a second pod reading the file back, the PV deleted with the claim, the new pod
registering again after the upgrade, and no loop device, mount or CSINode entry left after the
uninstall.

On the real node of the cluster the environment names when it holds the machine's one, else on a
cluster of this file's own (offset 3000), under the real-node machine lock."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helmcharts import Helm  # pants: no-infer-dep
from kubernetes import client
from test_helm_install import leftovers, new_release  # pants: no-infer-dep

from kubext_rig import images, node, real_node_csi, real_node_testing, tools
from kubext_rig.testing import free_port, gone, wait_for

STATE = real_node_testing.state_for(tools.cache_dir() / "rn-helm")
INSTALL_TIMEOUT = "300s"  # a cold pull of ~200 MB and the pex unpacking, on a busy machine
ON_REAL_NODE: dict[str, Any] = node.placement()
TIMINGS: dict[str, float] = {}


@dataclass(frozen=True)
class Run:
    """One release under test: where it is and what it may use."""

    api: client.ApiClient
    rel: str
    ns: str  # the release namespace
    scoped: str  # a namespace of its own labelled kubext.io/helm-real=<scope>
    scope: str
    host_dir: Path  # a fresh host directory (the cni chart's dirs, the csi driver's state)
    node_state: Path  # the real node's rig state dir (its kubelet's root is under it)


@dataclass(frozen=True)
class Release:
    chart: str
    values: Callable[[Run], dict[str, Any]] = lambda run: {}
    behaves: Callable[[Run], None] = lambda run: None  # after install and after upgrade
    pods: int = 1
    after: Callable[[Run], None] = lambda run: None  # once uninstalled
    before: Callable[[Run], None] = lambda run: None  # before the install
    # Where the chart takes ON_REAL_NODE's nodeSelector and tolerations.
    placed: Callable[[dict[str, Any]], dict[str, Any]] = lambda placement: placement


def _operator_has_one_leader(run: Run) -> None:
    pods = {p.metadata.name for p in _pods(run.api, run.ns, run.rel)}

    def holder() -> str | None:
        try:
            lease = client.CoordinationV1Api(run.api).read_namespaced_lease(
                f"{run.rel}-operator", run.ns
            )
        except client.ApiException as exc:
            if exc.status == 404:  # not made yet (wait_for would return its status line)
                return None
            raise
        return lease.spec.holder_identity

    who = wait_for("the operator's Lease held", holder, timeout=90)
    # The identity is <pod name>_<random>: exactly one of the two replicas leads.
    assert len([p for p in pods if who.startswith(f"{p}_")]) == 1, (who, pods)


def _webhooks_values(run: Run) -> dict[str, Any]:
    return {
        "webhooks": {"namespaceSelector": {"matchLabels": {"kubext.io/helm-real": run.scope}}},
        # No Database CRD on this cluster unless the operator's release left it: not asked for.
        "conversion": {"injectCABundle": False},
    }


def _webhooks_deny_a_privileged_pod(run: Run) -> None:
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="privileged"),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="app",
                    image="registry.local/app:1.0",
                    security_context=client.V1SecurityContext(privileged=True),
                )
            ]
        ),
    )

    def refusal() -> str | None:
        try:
            client.CoreV1Api(run.api).create_namespaced_pod(run.scoped, pod, dry_run="All")
        except client.ApiException as exc:
            # Until the service has injected its CA the call fails on TLS: not yet its answer.
            return exc.body if "denied the request" in (exc.body or "") else None
        raise AssertionError("a privileged pod was admitted")

    body = wait_for("the webhook pod's denial", refusal, timeout=90)
    assert "privileged" in body, body


def _scheduler_binds(run: Run) -> None:
    core = client.CoreV1Api(run.api)
    name = f"scheduled-{os.urandom(2).hex()}"
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            scheduler_name="custom-scheduler",
            containers=[client.V1Container(name="app", image="registry.local/app:1.0")],
        ),
    )
    core.create_namespaced_pod(run.scoped, pod)
    try:
        bound = wait_for(
            "the pod bound by custom-scheduler",
            lambda: core.read_namespaced_pod(name, run.scoped).spec.node_name,
            timeout=90,
        )
        kwok = {n.metadata.name for n in core.list_node(label_selector="type=kwok").items}
        assert bound in kwok, bound  # the only nodes it tolerates
    finally:
        core.delete_namespaced_pod(name, run.scoped, grace_period_seconds=0)


def _gpu_allocatable(api: client.ApiClient) -> str | None:
    real = client.CoreV1Api(api).read_node(node.NODE_NAME)
    return (real.status.allocatable or {}).get("example.com/gpu")


def _deviceplugin_registers(run: Run) -> None:
    wait_for("example.com/gpu allocatable 2", lambda: _gpu_allocatable(run.api) == "2", timeout=90)


def _deviceplugin_gone(run: Run) -> None:
    # The kubelet drops the devices of a plugin that is gone from what can be allocated.
    wait_for("example.com/gpu allocatable 0", lambda: _gpu_allocatable(run.api) == "0", timeout=90)


def _cni_values(run: Run) -> dict[str, Any]:
    """The chart's dirs under a host dir of the test's own: the rig's network (its own daemon,
    launcher and conflist in containerd's dirs) is left as it is."""
    return {
        "cni": {"binDir": str(run.host_dir / "bin"), "confDir": str(run.host_dir / "net.d")},
        "stateDir": str(run.host_dir / "state"),
        "config": {
            "socket_path": str(run.host_dir / "run" / "plugin.sock"),
            "health": {"port": free_port()},  # host network: a port nothing else holds
        },
    }


def _cni_installed(run: Run) -> None:
    launcher = run.host_dir / "bin" / "kubext-bridge"
    conflist = run.host_dir / "net.d" / "10-kubext.conflist"
    wait_for(
        "the launcher and the conflist written", lambda: launcher.exists() and conflist.exists()
    )
    assert os.access(launcher, os.X_OK), launcher
    network = json.loads(conflist.read_text())
    assert [p["type"] for p in network["plugins"]] == ["kubext-bridge", "portmap"], network
    assert (run.host_dir / "run" / "plugin.sock").is_socket()


def _rig_network_still_works(run: Run) -> None:
    """The rig's own pod network after the cni release: a pod on the real node still gets Ready."""
    core = client.CoreV1Api(run.api)
    core.create_namespaced_pod(run.ns, real_node_testing.pod("after-cni", "pause"))
    wait_for("a pause pod Ready after the cni release", lambda: _ready(core, run.ns, "after-cni"))


def _ready(core: client.CoreV1Api, ns: str, name: str) -> bool:
    conditions = core.read_namespaced_pod(name, ns).status.conditions or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _csi_values(run: Run) -> dict[str, Any]:
    """No upstream sidecar: the driver's own registration and provisioner; the kubelet dir is the
    rig node's, the state dir one of the test's own (nothing of the machine's /var/lib)."""
    return {
        "kubeletDir": str(real_node_csi.kubelet_dir(run.node_state)),
        "config": {"state_dir": str(run.host_dir / "state")},
        "csiDriver": {"storageCapacity": False},  # the built-in provisioner publishes none
        "sidecars": {
            "nodeDriverRegistrar": {"enabled": False},
            "provisioner": {"enabled": False},
            "snapshotter": {"enabled": False},
        },
    }


def _csi_registered(run: Run) -> dict[str, Any] | None:
    return real_node_csi.registered(client.StorageV1Api(run.api))


def _csi_not_registered_yet(run: Run) -> None:
    """Nothing else serves csi.kubext.io on the node: the registration checked later is the
    pod's."""
    assert _csi_registered(run) is None, "csi.kubext.io is already registered on the node"


def _csi_state_on_host(run: Run) -> tuple[list[str], list[str]]:
    """Loop devices backed by the driver's images and mounts of its volumes on the host."""
    state = (run.host_dir / "state").resolve()
    loops = node.our_loop_devices(state)
    csi_mounts = (f"/{real_node_csi.DRIVER}/", "/kubernetes.io~csi/", f"{state}/")
    mounts = [m for m in real_node_testing.mount_points() if any(s in m for s in csi_mounts)]
    return loops, mounts


def _write_read_pod(run: Run, name: str, claim: str, args: list[str]) -> str:
    """A write-read pod on the real node with ``claim`` at /data; its log once it has one."""
    core = client.CoreV1Api(run.api)
    spec = real_node_testing.pod(
        name, "write-read", args, grace_seconds=2, restart_policy="Never", claim=claim
    )
    core.create_namespaced_pod(run.scoped, spec)

    def logged() -> str | None:
        pod = core.read_namespaced_pod(name, run.scoped)
        assert pod.status.phase not in ("Failed", "Succeeded"), pod.status
        if pod.status.phase != "Running":
            return None
        return core.read_namespaced_pod_log(name, run.scoped) or None

    return wait_for(f"pod {name} Running with a log line", logged, timeout=120)


def _delete_and_wait(read: Callable[[], Any], delete: Callable[[], Any], what: str) -> None:
    delete()
    wait_for(f"{what} gone", gone(read), timeout=120)


def _csi_registers_and_provisions(run: Run) -> None:
    core = client.CoreV1Api(run.api)
    entry = wait_for("csi.kubext.io in the real node's CSINode", lambda: _csi_registered(run))
    assert entry["topologyKeys"] == [real_node_csi.TOPOLOGY_KEY], entry
    # The release's (current) pod is the one the kubelet registered.
    (pod,) = (p for p in _pods(run.api, run.ns, run.rel) if not p.metadata.deletion_timestamp)
    wait_for(
        "the driver pod's registration accepted by the kubelet",
        lambda: "registered with the kubelet"
        in core.read_namespaced_pod_log(pod.metadata.name, run.ns, container="csi-driver"),
    )
    # A claim of the chart's StorageClass (WaitForFirstConsumer): provisioned once a pod uses it.
    claim, token = f"data-{os.urandom(2).hex()}", os.urandom(4).hex()
    core.create_namespaced_persistent_volume_claim(
        run.scoped,
        client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name=claim),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                storage_class_name=f"{run.rel}-csi",
                resources=client.V1VolumeResourceRequirements(requests={"storage": "64Mi"}),
            ),
        ),
    )

    def read_claim() -> client.V1PersistentVolumeClaim:
        return core.read_namespaced_persistent_volume_claim(claim, run.scoped)

    written = _write_read_pod(run, "writer", claim, ["write", "/data/hello", token])
    assert written.startswith("wrote /data/hello"), written
    bound = read_claim()
    assert bound.status.phase == "Bound", bound.status
    pv_name = bound.spec.volume_name
    pv = core.read_persistent_volume(pv_name)
    assert pv.metadata.annotations["pv.kubernetes.io/provisioned-by"] == real_node_csi.DRIVER
    # The driver's mount in its container reached the host (Bidirectional): the pod's volume.
    writer_uid = core.read_namespaced_pod("writer", run.scoped).metadata.uid
    published = f"/pods/{writer_uid}/volumes/kubernetes.io~csi/{pv_name}/mount"
    assert any(m.endswith(published) for m in real_node_testing.mount_points()), published
    _delete_and_wait(
        lambda: core.read_namespaced_pod("writer", run.scoped),
        lambda: core.delete_namespaced_pod("writer", run.scoped),
        "the writer pod",
    )
    text = _write_read_pod(run, "reader", claim, ["read", "/data/hello"])
    assert text.strip() == f"read /data/hello: {token}", text
    _delete_and_wait(
        lambda: core.read_namespaced_pod("reader", run.scoped),
        lambda: core.delete_namespaced_pod("reader", run.scoped),
        "the reader pod",
    )
    # Reclaim policy Delete: the built-in provisioner deletes the volume and its PV.
    _delete_and_wait(
        read_claim,
        lambda: core.delete_namespaced_persistent_volume_claim(claim, run.scoped),
        "the claim",
    )
    _delete_and_wait(lambda: core.read_persistent_volume(pv_name), lambda: None, "the PV")
    assert not list((run.host_dir / "state" / "volumes").glob("*.img"))  # DeleteVolume ran
    wait_for("no loop device or mount of the volume", lambda: _csi_state_on_host(run) == ([], []))


def _csi_gone(run: Run) -> None:
    """The driver's socket went with its pod: the kubelet dropped it from CSINode; nothing of
    its volumes is attached or mounted on the host."""
    wait_for("csi.kubext.io gone from the CSINode", lambda: _csi_registered(run) is None)
    socket_path = real_node_csi.kubelet_dir(run.node_state) / "plugins_registry"
    assert not (socket_path / f"{real_node_csi.DRIVER}-reg.sock").exists()
    assert _csi_state_on_host(run) == ([], [])


RELEASES = {
    "operator": Release("operator", behaves=_operator_has_one_leader, pods=2),
    "webhooks": Release(
        "webhooks", values=_webhooks_values, behaves=_webhooks_deny_a_privileged_pod, pods=2
    ),
    "scheduler": Release(
        "scheduler",
        values=lambda run: {"schedulerName": "custom-scheduler"},
        behaves=_scheduler_binds,
    ),
    "deviceplugin": Release(
        "deviceplugin", behaves=_deviceplugin_registers, after=_deviceplugin_gone
    ),
    "csi": Release(
        "csi",
        values=_csi_values,
        before=_csi_not_registered_yet,
        behaves=_csi_registers_and_provisions,
        after=_csi_gone,
        placed=lambda placement: {"node": placement},  # the node DaemonSet's block
    ),
    # Last: it runs on the node whose network every other release uses.
    "cni": Release(
        "cni", values=_cni_values, behaves=_cni_installed, after=_rig_network_still_works
    ),
}


def _pods(api: client.ApiClient, ns: str, rel: str) -> list[client.V1Pod]:
    selector = f"app.kubernetes.io/instance={rel}"
    return client.CoreV1Api(api).list_namespaced_pod(ns, label_selector=selector).items


def _running_on_the_real_node(
    api: client.ApiClient, ns: str, rel: str, count: int, repository: str
) -> set[str]:
    """The release's pods: ``count`` of them, each Running and Ready on the real node in real
    containers of the image pulled from ``repository``; their UIDs."""
    pods = [p for p in _pods(api, ns, rel) if p.metadata.deletion_timestamp is None]
    assert len(pods) == count, [p.metadata.name for p in pods]
    for p in pods:
        assert p.spec.node_name == node.NODE_NAME, (p.metadata.name, p.spec.node_name)
        assert p.status.phase == "Running", (p.metadata.name, p.status.phase)
        assert any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        for c in p.status.container_statuses or []:
            assert c.ready and (c.container_id or "").startswith("containerd://"), c
            assert c.image_id.startswith(f"{repository}@sha256:"), c.image_id
    return {p.metadata.uid for p in pods}


def _describe(api: client.ApiClient, ns: str) -> str:
    """Why pods are not ready (for a failed install's message)."""
    core = client.CoreV1Api(api)
    lines = []
    for p in core.list_namespaced_pod(ns).items:
        states = [(c.name, c.state.to_dict()) for c in p.status.container_statuses or []]
        lines.append(f"{p.metadata.name} {p.spec.node_name} {p.status.phase} {states}")
    for e in core.list_namespaced_event(ns).items[-15:]:
        lines.append(f"event {e.involved_object.name}: {e.reason} {e.message}")
    return "\n".join(lines)[-6000:]


def _logs(api: client.ApiClient, ns: str, rel: str) -> str:
    core = client.CoreV1Api(api)
    out = []
    for p in _pods(api, ns, rel):
        try:
            text = core.read_namespaced_pod_log(p.metadata.name, ns, tail_lines=15)
        except client.ApiException as exc:
            text = f"(no log: {exc.status})"
        out.append(f"--- {p.metadata.name}\n{text}")
    return "\n".join(out)[-6000:]


@contextlib.contextmanager
def _explained(what: str, api: client.ApiClient, ns: str, rel: str) -> Iterator[None]:
    """A failure inside names ``what`` and carries the pods' states, events and logs."""
    try:
        yield
    except Exception as exc:
        detail = f"{_describe(api, ns)}\n{_logs(api, ns, rel)}"
        raise AssertionError(f"{what}: {exc}\n{detail}") from None


def _helm(helm: Helm, *args: str) -> str:
    return helm.run(*args, "--kubeconfig", helm.kubeconfig, timeout=400)


@contextlib.contextmanager
def _scoped_namespace(core: client.CoreV1Api, scope: str) -> Iterator[str]:
    name = f"helm-real-target-{scope}"
    meta = client.V1ObjectMeta(
        name=name,
        labels={"kubext.io/helm-real": scope, real_node_testing.TEST_NAMESPACE_LABEL: "scoped"},
    )
    core.create_namespace(client.V1Namespace(metadata=meta))
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.mark.skipif(os.geteuid() != 0, reason="a real kubelet needs root")
def test_every_release_runs_on_the_real_node_upgrades_and_uninstalls_clean(
    helm: Helm, tmp_path: Path
) -> None:
    t_all = time.monotonic()
    with real_node_testing.machine_lock(), real_node_testing.up(STATE) as real_node:
        t0 = time.monotonic()
        pushed = images.push(list(RELEASES), registry=real_node.registry)
        TIMINGS["push"] = time.monotonic() - t0
        on_cluster = Helm(helm.binary, helm.charts, helm.work, real_node.info.kubeconfig)
        with real_node.api_client() as api:
            core = client.CoreV1Api(api)
            for name, case in RELEASES.items():
                t0 = time.monotonic()
                with real_node_testing.namespace(core, f"helm-{name}") as ns:
                    # A letter first: helm reads an all-digit or 1e5-like label value as a number.
                    scope = f"s{os.urandom(3).hex()}"
                    with _scoped_namespace(core, scope) as scoped:
                        host_dir = tmp_path / name
                        host_dir.mkdir()
                        run = Run(api, new_release(), ns, scoped, scope, host_dir, real_node.state)
                        _release_lifecycle(on_cluster, run, case, pushed[name])
                TIMINGS[name] = time.monotonic() - t0
    TIMINGS["total"] = time.monotonic() - t_all
    print("timings (s):", {k: round(v, 1) for k, v in TIMINGS.items()})


def _release_lifecycle(helm: Helm, run: Run, case: Release, image: str) -> None:
    """install, the pods and the behaviour, upgrade (new pods, the behaviour again), uninstall
    (no pod, no cluster-scoped object of the release)."""
    api, ns, rel = run.api, run.ns, run.rel
    repository, tag = image.rsplit(":", 1)
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Always"},
        **case.placed(ON_REAL_NODE),
        **case.values(run),
    }
    chart = str(helm.charts / case.chart)
    common = ["--namespace", ns, "--wait", "--timeout", INSTALL_TIMEOUT]
    case.before(run)
    with _explained(f"{case.chart} install", api, ns, rel):
        _helm(helm, "install", rel, chart, *common, *helm.values_file(values))
    try:
        with _explained(f"{case.chart} installed", api, ns, rel):
            # helm's --wait can pass a DaemonSet before its controller has counted the node.
            before = wait_for(
                f"{case.chart}: its pods Ready",
                lambda: _settled(api, ns, rel, case.pods, repository),
                timeout=180,
            )
            case.behaves(run)
        # A changed value rolls the pods: every one replaced, the new ones Ready on the node.
        rolled = {**values, "podAnnotations": {"kubext.io/rolled": "1"}}
        with _explained(f"{case.chart} upgraded", api, ns, rel):
            _helm(helm, "upgrade", rel, chart, *common, *helm.values_file(rolled))
            after = wait_for(
                f"{case.chart}: only new pods, Ready",
                lambda: _settled(api, ns, rel, case.pods, repository),
                timeout=180,
            )
            assert not before & after, (before, after)
            case.behaves(run)
    finally:
        _helm(helm, "uninstall", rel, "--namespace", ns, "--wait", "--timeout", "120s")
    wait_for(f"{case.chart}: no pod left", lambda: not _pods(api, ns, rel), timeout=120)
    assert leftovers(api, rel) == {}
    case.after(run)


def _settled(
    api: client.ApiClient, ns: str, rel: str, count: int, repository: str
) -> set[str] | None:
    try:
        return _running_on_the_real_node(api, ns, rel, count, repository)
    except AssertionError:
        return None
