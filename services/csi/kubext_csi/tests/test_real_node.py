"""The driver with the real kubelet of the rig's real node (`up --real-node`).

What is real: the pinned kubelet's plugin watcher (our registration socket), its CSI volume
manager (NodeStage/NodePublish/NodeExpand/NodeGetVolumeStats/NodeUnpublish/NodeUnstage over our
socket, mount and raw block volumes), its volume stats in /stats/summary, the PV controller
binding claims, the API server's PersistentVolumeClaimResize admission, containerd/runc putting
the published path or device into containers, and an ephemeral inline `csi:` volume of a pod
(the kubelet calls NodePublishVolume/NodeUnpublishVolume alone: no CreateVolume, no stage). The driver runs as a root host process with
registration and the built-in provisioner on, one for the whole module (killed and restarted
once); the built-in provisioner, the scheduler's selected-node and the PV controller make and
bind one claim's volume and delete it with its PV (Delete policy); the other tests call
CreateVolume as external-provisioner would and do external-resizer's part of an expansion
(ControllerExpandVolume, the PV's capacity, the claim's resize status); the module creates the CSIDriver
(attachRequired: false: no external-attacher runs; podInfoOnMount and volumeLifecycleModes
[Persistent, Ephemeral], as the chart's). No fake: the rig's kwok node is not used.
One kubelet per machine: the real-node file lock."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from kubernetes import client

from kubext_csi import system
from kubext_proto.csi.v1 import csi_pb2, csi_pb2_grpc
from kubext_rig import node, real_node_csi, real_node_testing, tools
from kubext_rig.testing import gone, wait_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="a real kubelet and loop devices need root"
)

STATE = real_node_testing.state_for(tools.cache_dir() / "real-node-csi")
DRIVER = real_node_csi.DRIVER
TOPOLOGY_KEY = real_node_csi.TOPOLOGY_KEY
NS = "csi-real-node"
EXPANDABLE = "kubext-csi-real-node"  # a StorageClass of ours with allowVolumeExpansion
DYNAMIC = "kubext-csi-real-node-wffc"  # WaitForFirstConsumer, Delete: the built-in provisioner's
BLOCK_DEVICE = "/dev/kubext-block"  # where the raw block volume appears in the container
TEXT = "kubext-csi on a real kubelet"
INLINE_SIZE = 48 << 20  # the inline volume's `size` attribute, 48Mi


class Driver:
    """The driver as a root host process on the real node's dirs; its JSON log in one file
    across restarts."""

    def __init__(self, real: real_node_testing.RealNode, log_path: Path) -> None:
        self.real = real
        self.log_path = log_path
        # The built-in provisioner on (it leaves the other tests' claims alone: they name their
        # PV); a short resync so a missed watch event costs seconds, not a minute.
        provisioner = {"enabled": True, "kubeconfig": real.info.kubeconfig, "resync_period": 5}
        self.config = real_node_csi.driver_config(
            real.state, pool_size="1Gi", provisioner=provisioner
        )
        self.csi_dir = real_node_csi.csi_dir(real.state)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.csi_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = self.csi_dir / "csi.yaml"
        cfg_path.write_text(yaml.safe_dump(self.config))
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kubext_csi", "--config", str(cfg_path)],
                env=self.real.env(),
                stderr=log,
                preexec_fn=real_node_testing.die_with_parent,
            )

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=30)
        self.proc = None
        return rc

    def log(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.log_path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                entries.append(json.loads(line))
        return entries

    def logged(self, msg: str, volume_id: str) -> int:
        return sum(1 for e in self.log() if e.get("msg") == msg and e.get("volume_id") == volume_id)

    def registrations(self) -> int:
        """How often the kubelet has registered the driver (NotifyRegistrationStatus, ok)."""
        return sum(1 for e in self.log() if e.get("msg") == "registered with the kubelet")

    def image(self, volume_id: str) -> Path:
        return self.csi_dir / "state" / "volumes" / f"{volume_id}.img"

    @property
    def ephemeral_dir(self) -> Path:
        """Where the driver mounts its inline volumes' filesystems (their staging paths)."""
        return self.csi_dir / "state" / "ephemeral"

    def records(self, volume_id: str) -> dict[str, list[tuple[Any, ...]]]:
        """The volume's rows in the driver's state (read-only, beside the running driver)."""
        db = self.csi_dir / "state" / "state.db"
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            return {
                "volumes": conn.execute(
                    "SELECT capacity, ephemeral FROM volumes WHERE id = ?", (volume_id,)
                ).fetchall(),
                "stages": conn.execute(
                    "SELECT staging_path FROM stages WHERE volume_id = ?", (volume_id,)
                ).fetchall(),
                "publishes": conn.execute(
                    "SELECT target_path FROM publishes WHERE volume_id = ?", (volume_id,)
                ).fetchall(),
            }


@dataclasses.dataclass
class Env:
    real: real_node_testing.RealNode
    driver: Driver
    core: client.CoreV1Api
    storage: client.StorageV1Api
    controller: csi_pb2_grpc.ControllerStub
    node_service: csi_pb2_grpc.NodeStub
    registered_after: float

    @property
    def kubelet_dir(self) -> Path:
        return real_node_csi.kubelet_dir(self.real.state)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One real-node cluster and one driver process for the module."""
    log_path = tmp_path_factory.mktemp("csi") / "driver.log"
    with real_node_testing.machine_lock(), real_node_testing.up(STATE) as real:
        driver = Driver(real, log_path)
        # The driver's state is this module's: `up --fresh` leaves node/csi alone, and a failed
        # run's volume would answer this run's CreateVolume of the same name.
        system.release_under(driver.csi_dir)
        shutil.rmtree(driver.csi_dir / "state", ignore_errors=True)
        try:
            t0 = time.monotonic()
            driver.start()
            with (
                real.api_client() as api,
                grpc.insecure_channel(driver.config["endpoint"]) as channel,
            ):
                core = client.CoreV1Api(api)
                storage = client.StorageV1Api(api)
                try:
                    _kept_if_there(lambda: real_node_csi.create_csi_driver(storage))
                    _kept_if_there(lambda: real_node_csi.create_storage_class(storage, EXPANDABLE))
                    _kept_if_there(
                        lambda: real_node_csi.create_storage_class(
                            storage,
                            DYNAMIC,
                            reclaim_policy="Delete",
                            volume_binding_mode="WaitForFirstConsumer",
                        )
                    )
                    namespace = client.V1Namespace(metadata=client.V1ObjectMeta(name=NS))
                    core.create_namespace(namespace)
                    wait_for(
                        "CSINode lists the driver",
                        lambda: real_node_csi.registered(storage),
                        timeout=60,
                    )
                    after = time.monotonic() - t0
                    print(f"csi: registered in CSINode after {after:.1f} s")
                    yield Env(
                        real,
                        driver,
                        core,
                        storage,
                        csi_pb2_grpc.ControllerStub(channel),
                        csi_pb2_grpc.NodeStub(channel),
                        after,
                    )
                finally:
                    if real.shared:  # `down` removes nothing there: what we made goes now
                        _remove_ours(core, storage)
        finally:
            if driver.proc is not None:
                rc = driver.stop()
                # After a failed test only: its volumes' loop devices would outlive `down`.
                system.release_under(driver.csi_dir)
                reg = real_node_csi.kubelet_dir(real.state) / "plugins_registry"
                reg_socket = reg / f"{DRIVER}-reg.sock"
                # Checked before `down`, which runs on the way out of `up`.
                assert rc == 0, log_path.read_text()[-3000:]
                assert not reg_socket.exists(), "a clean shutdown removes the registration socket"


def _kept_if_there(create: Any) -> None:
    """Creates, or keeps what is already there (the shared cluster may have it from a bench)."""
    try:
        create()
    except client.ApiException as exc:
        if exc.status != 409:
            raise


def _remove_ours(core: client.CoreV1Api, storage: client.StorageV1Api) -> None:
    """The namespace, the PVs of its claims and the StorageClass this module made."""
    for pv in core.list_persistent_volume().items:
        ref = pv.spec.claim_ref
        if pv.spec.csi and pv.spec.csi.driver == DRIVER and ref and ref.namespace == NS:
            with contextlib.suppress(client.ApiException):
                core.delete_persistent_volume(pv.metadata.name)
    for remove in (
        lambda: core.delete_namespace(NS),
        lambda: storage.delete_storage_class(EXPANDABLE),
        lambda: storage.delete_storage_class(DYNAMIC),
    ):
        with contextlib.suppress(client.ApiException):
            remove()


# --- the tests ---------------------------------------------------------------------------------


def test_kubelet_registers_the_driver_with_its_topology(env: Env) -> None:
    entry = real_node_csi.registered(env.storage)
    assert entry is not None
    assert entry["nodeID"] == node.NODE_NAME
    assert entry["topologyKeys"] == [TOPOLOGY_KEY]
    labels = env.core.read_node(node.NODE_NAME).metadata.labels
    assert labels.get(TOPOLOGY_KEY) == node.NODE_NAME, "the kubelet labels the node"


def test_filesystem_volume_keeps_a_file_across_pods_and_is_cleaned_up(env: Env) -> None:
    volume = _volume(env, "fs")
    t1 = time.monotonic()
    _run_pod(env, "fs-writer", "fs", ["write", "/data/hello.txt", TEXT])
    print(f"csi: writer Running {time.monotonic() - t1:.1f} s after create")
    image = env.driver.image(volume.volume_id)
    assert _our_mounts(env), "the kubelet staged and published the volume"
    assert _loops_of(image), "staging attached the image to a loop device"
    _delete_pod(env, "fs-writer")
    log = _run_pod(env, "fs-reader", "fs", ["read", "/data/hello.txt"])
    assert log.strip() == f"read /data/hello.txt: {TEXT}"
    _delete_pod(env, "fs-reader")
    _wait_cleaned(env, image)
    _delete_volume(env, volume, "fs")
    assert not image.exists()


def test_raw_block_volume_reaches_pods_as_a_device(env: Env) -> None:
    volume = _volume(env, "block", block=True)
    image = env.driver.image(volume.volume_id)
    log = _run_pod(env, "block-writer", "block", ["write", BLOCK_DEVICE, TEXT], block=True)
    assert log.strip() == f"wrote {BLOCK_DEVICE}"
    # The bytes went through the loop device into the driver's backing file, unformatted.
    assert image.read_bytes()[: len(TEXT) + 1] == f"{TEXT}\n".encode()
    _delete_pod(env, "block-writer")
    log = _run_pod(env, "block-reader", "block", ["read", BLOCK_DEVICE], block=True)
    assert log.strip() == f"read {BLOCK_DEVICE}: {TEXT}"
    _delete_pod(env, "block-reader")
    _wait_cleaned(env, image)
    _delete_volume(env, volume, "block")


def test_expansion_while_unused_shows_in_the_next_pods_filesystem(env: Env) -> None:
    volume = _volume(env, "grow", storage_class=EXPANDABLE)
    image = env.driver.image(volume.volume_id)
    _run_pod(env, "grow-writer", "grow", ["write", "/data/kept.txt", TEXT])
    before = os.statvfs(_in_pod(env, "grow-writer", "/data"))
    _delete_pod(env, "grow-writer")
    _wait_cleaned(env, image)

    bigger = 128 << 20
    claim = "claim-grow"
    # The user's edit; the admission lets it through only for a class allowing expansion.
    env.core.patch_namespaced_persistent_volume_claim(
        claim, NS, {"spec": {"resources": {"requests": {"storage": "128Mi"}}}}
    )
    response = real_node_csi.expand_as_resizer(
        env.core,
        env.controller,
        volume.volume_id,
        pv="pv-grow",
        claim=claim,
        namespace=NS,
        size_bytes=bigger,
    )
    assert response.capacity_bytes == bigger
    assert response.node_expansion_required, "a filesystem volume is finished on the node"
    assert image.stat().st_size == bigger

    log = _run_pod(env, "grow-reader", "grow", ["read", "/data/kept.txt"])
    assert log.strip() == f"read /data/kept.txt: {TEXT}"
    after = os.statvfs(_in_pod(env, "grow-reader", "/data"))
    old_size, new_size = before.f_blocks * before.f_frsize, after.f_blocks * after.f_frsize
    print(f"csi: the pod's filesystem {old_size >> 20} MiB before, {new_size >> 20} MiB after")
    # ext4 keeps a few MiB (journal, inode tables) out of df's size.
    assert old_size <= 64 << 20 < 0.85 * bigger <= new_size <= bigger, (old_size, new_size)

    def finished() -> client.V1PersistentVolumeClaimStatus | None:
        status = env.core.read_namespaced_persistent_volume_claim(claim, NS).status
        return status if status.capacity["storage"] == "128Mi" else None

    # The kubelet called NodeExpandVolume and, that done, set the claim's capacity itself.
    status = wait_for("the kubelet finishes the claim's resize", finished, timeout=60)
    assert not status.allocated_resource_statuses, status
    assert env.driver.logged("expanded volume on node", volume.volume_id) >= 1
    _delete_pod(env, "grow-reader")
    _wait_cleaned(env, image)
    _delete_volume(env, volume, "grow")


def test_kubelet_volume_stats_are_the_drivers(env: Env) -> None:
    volume = _volume(env, "stats")
    _run_pod(env, "stats-writer", "stats", ["write", "/data/stats.txt", TEXT * 100])
    pod = env.core.read_namespaced_pod("stats-writer", NS)
    target = env.kubelet_dir / "pods" / pod.metadata.uid / "volumes" / "kubernetes.io~csi"
    target = target / "pv-stats" / "mount"
    assert target.is_dir(), "the kubelet's target path for the volume"

    def same() -> tuple[dict[str, int], dict[str, int]] | None:
        ours = _driver_stats(env, volume.volume_id, str(target))
        theirs = _kubelet_stats(env, "stats-writer")
        return (ours, theirs) if ours == theirs else None

    # The kubelet gathers volume stats every volumeStatsAggPeriod (10 s on the rig's node).
    ours, _ = wait_for("/stats/summary shows the driver's numbers", same, timeout=90)
    assert ours["capacityBytes"] > 50 << 20 and ours["usedBytes"] > 0
    _delete_pod(env, "stats-writer")
    _wait_cleaned(env, env.driver.image(volume.volume_id))
    _delete_volume(env, volume, "stats")


def test_driver_restart_while_a_pod_uses_its_volume(env: Env) -> None:
    volume = _volume(env, "restart")
    image = env.driver.image(volume.volume_id)
    _run_pod(env, "restart-writer", "restart", ["write", "/data/kept.txt", TEXT])
    registrations = env.driver.registrations()

    # A crash, not a clean stop: the registration socket stays behind, the new process replaces it.
    assert env.driver.stop(signal.SIGKILL) == -signal.SIGKILL
    env.driver.start()

    def registered_again() -> bool:
        again = env.driver.registrations()
        return again > registrations

    wait_for("the kubelet registers the restarted driver", registered_again, timeout=60)
    kept = Path(_in_pod(env, "restart-writer", "/data/kept.txt")).read_text()
    assert kept == f"{TEXT}\n", "the pod still sees its data through its own mount"
    assert _loops_of(image), "the restart kept the loop device in use"

    unpublished = env.driver.logged("unpublished volume", volume.volume_id)
    _delete_pod(env, "restart-writer")
    _wait_cleaned(env, image)
    assert env.driver.logged("unpublished volume", volume.volume_id) == unpublished + 1
    _delete_volume(env, volume, "restart")


def test_ephemeral_inline_volume_lives_as_its_pod(env: Env) -> None:
    modes = env.storage.read_csi_driver(DRIVER).spec.volume_lifecycle_modes
    assert modes == ["Persistent", "Ephemeral"], "the kubelet refuses inline volumes without it"
    log = _run_pod(
        env, "inline-writer", "", ["write", "/data/inline.txt", TEXT], inline={"size": "48Mi"}
    )
    assert log.strip() == "wrote /data/inline.txt"
    uid = env.core.read_namespaced_pod("inline-writer", NS).metadata.uid
    # The kubelet names an inline volume itself (makeVolumeHandle: pod uid + volume name).
    volume_id = "csi-" + hashlib.sha256(f"{uid}data".encode()).hexdigest()
    target = env.kubelet_dir / "pods" / uid / "volumes" / "kubernetes.io~csi" / "data" / "mount"
    staging = env.driver.ephemeral_dir / volume_id
    image = env.driver.image(volume_id)

    assert env.driver.records(volume_id) == {
        "volumes": [(INLINE_SIZE, 1)],
        "stages": [(str(staging),)],
        "publishes": [(str(target),)],
    }
    listed = env.controller.ListVolumes(csi_pb2.ListVolumesRequest(), timeout=30)
    sizes = {e.volume.volume_id: e.volume.capacity_bytes for e in listed.entries}
    assert sizes.get(volume_id) == INLINE_SIZE, sizes
    assert image.stat().st_size == INLINE_SIZE
    assert _loops_of(image), "publishing attached the new image to a loop device"
    mounts = _our_mounts(env)
    assert str(staging) in mounts and str(target) in mounts, mounts
    # The pod's file, as its container sees it and in the driver's own mount of the volume.
    assert Path(_in_pod(env, "inline-writer", "/data/inline.txt")).read_text() == f"{TEXT}\n"
    assert (staging / "inline.txt").read_text() == f"{TEXT}\n"
    fs = os.statvfs(_in_pod(env, "inline-writer", "/data"))
    # The size attribute, not the 1Gi default; ext4 keeps about 8 MiB of 48 out of df's size.
    assert 0.75 * INLINE_SIZE < fs.f_blocks * fs.f_frsize <= INLINE_SIZE, fs

    _delete_pod(env, "inline-writer")
    _wait_cleaned(env, image)
    assert not image.exists() and not staging.exists() and not target.exists()

    def forgotten() -> bool:
        return not any(env.driver.records(volume_id).values())

    wait_for("the driver's state forgets the inline volume", forgotten, timeout=30)
    listed = env.controller.ListVolumes(csi_pb2.ListVolumesRequest(), timeout=30)
    assert volume_id not in {e.volume.volume_id for e in listed.entries}
    assert env.driver.logged("deleted ephemeral volume", volume_id) == 1


def test_built_in_provisioner_provisions_binds_and_deletes(env: Env) -> None:
    """A claim of a WaitForFirstConsumer class with reclaim policy Delete and no PV: the
    scheduler selects the real node for the pod, the driver's own provisioner creates the volume
    and its PV, the PV controller binds them, the pod writes; once pod and claim are deleted the
    provisioner deletes the volume and the PV."""
    claim_name = "claim-dynamic"
    env.core.create_namespaced_persistent_volume_claim(
        NS,
        client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name=claim_name),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                storage_class_name=DYNAMIC,
                resources=client.V1VolumeResourceRequirements(requests={"storage": "64Mi"}),
            ),
        ),
    )
    time.sleep(2)
    pending = env.core.read_namespaced_persistent_volume_claim(claim_name, NS)
    assert pending.status.phase == "Pending", "WaitForFirstConsumer: nothing before the pod"
    t0 = time.monotonic()
    log = _run_pod(env, "dynamic-writer", "dynamic", ["write", "/data/hello.txt", TEXT])
    print(f"csi: provisioned pod Running {time.monotonic() - t0:.1f} s after create")
    assert log.strip() == "wrote /data/hello.txt"

    claim = env.core.read_namespaced_persistent_volume_claim(claim_name, NS)
    pv_name = f"pvc-{claim.metadata.uid}"
    assert claim.status.phase == "Bound" and claim.spec.volume_name == pv_name
    annotations = claim.metadata.annotations
    assert annotations["volume.kubernetes.io/selected-node"] == node.NODE_NAME
    assert annotations["volume.kubernetes.io/storage-provisioner"] == DRIVER
    pv = env.core.read_persistent_volume(pv_name)
    assert pv.metadata.annotations["pv.kubernetes.io/provisioned-by"] == DRIVER
    assert "external-provisioner.volume.kubernetes.io/finalizer" in pv.metadata.finalizers
    assert pv.spec.persistent_volume_reclaim_policy == "Delete"
    assert pv.spec.capacity["storage"] == "64Mi"
    term = pv.spec.node_affinity.required.node_selector_terms[0].match_expressions[0]
    assert (term.key, term.values) == (TOPOLOGY_KEY, [node.NODE_NAME])
    volume_id = pv.spec.csi.volume_handle
    image = env.driver.image(volume_id)
    assert image.stat().st_size == 64 << 20
    assert Path(_in_pod(env, "dynamic-writer", "/data/hello.txt")).read_text() == f"{TEXT}\n"
    events = env.core.list_namespaced_event(
        NS, field_selector=f"involvedObject.name={claim_name}"
    ).items
    assert "ProvisioningSucceeded" in {e.reason for e in events}, [e.reason for e in events]

    _delete_pod(env, "dynamic-writer")
    _wait_cleaned(env, image)
    env.core.delete_namespaced_persistent_volume_claim(claim_name, NS)

    pv_gone = gone(lambda: env.core.read_persistent_volume(pv_name))
    try:
        wait_for("the provisioner deletes the released PV", pv_gone, timeout=60)
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\n{_provisioner_diagnostics(env, pv_name, claim_name)}"
        ) from None
    assert not image.exists(), "the driver's volume is deleted with its PV"
    listed = env.controller.ListVolumes(csi_pb2.ListVolumesRequest(), timeout=30)
    assert volume_id not in {e.volume.volume_id for e in listed.entries}
    assert not _loops_of(image)


# --- helpers -----------------------------------------------------------------------------------


def _provisioner_diagnostics(env: Env, pv_name: str, claim_name: str) -> str:
    """For a failure message: the PV as the API server has it, the Events of the claim and the
    PV (a PV's go to any namespace), and the driver log's provisioner lines."""
    lines = []
    try:
        pv = env.core.read_persistent_volume(pv_name)
        lines.append(
            f"PV {pv_name}: phase={pv.status.phase} reason={pv.status.reason} "
            f"message={pv.status.message} deletionTimestamp={pv.metadata.deletion_timestamp} "
            f"finalizers={pv.metadata.finalizers} annotations={pv.metadata.annotations}"
        )
    except client.ApiException as exc:
        lines.append(f"PV {pv_name}: {exc.status} {exc.reason}")
    for name in (claim_name, pv_name):
        events = env.core.list_event_for_all_namespaces(
            field_selector=f"involvedObject.name={name}"
        ).items
        for e in events:
            lines.append(f"event {name} [{e.metadata.namespace}] {e.reason}: {e.message}")
    log_lines = env.driver.log_path.read_text().splitlines()
    wanted = ("provision", "deleted", "VolumeFailedDelete", "DeleteVolume", "Traceback", pv_name)
    lines.append("driver log (provisioner lines, last 30):")
    lines += [line for line in log_lines if any(w in line for w in wanted)][-30:]
    lines.append("driver log tail:")
    lines += log_lines[-15:]
    return "\n".join(lines)


def _volume(
    env: Env, suffix: str, *, block: bool = False, storage_class: str = ""
) -> csi_pb2.Volume:
    """CreateVolume, then a PV and a claim bound to it by name, as external-provisioner makes
    them; once Bound."""
    volume = real_node_csi.create_volume(env.controller, f"e2e-{suffix}", block=block)
    real_node_csi.pv_and_claim(
        env.core,
        volume,
        pv=f"pv-{suffix}",
        claim=f"claim-{suffix}",
        namespace=NS,
        block=block,
        storage_class=storage_class,
    )

    def bound() -> bool:
        claim = env.core.read_namespaced_persistent_volume_claim(f"claim-{suffix}", NS)
        return claim.status.phase == "Bound"

    wait_for(f"claim-{suffix} Bound", bound, timeout=60)
    return volume


def _delete_volume(env: Env, volume: csi_pb2.Volume, suffix: str) -> None:
    env.core.delete_namespaced_persistent_volume_claim(f"claim-{suffix}", NS)
    env.core.delete_persistent_volume(f"pv-{suffix}")
    env.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id), timeout=30)
    assert not env.driver.image(volume.volume_id).exists()


def _run_pod(
    env: Env,
    name: str,
    suffix: str,
    args: list[str],
    *,
    block: bool = False,
    inline: dict[str, str] | None = None,
) -> str:
    """A write-read pod on the real node with the claim at /data (or as BLOCK_DEVICE), or with
    ``inline`` an inline volume of our driver with those attributes at /data; its log once
    Running."""
    spec = real_node_testing.pod(
        name,
        "write-read",
        args,
        grace_seconds=2,
        restart_policy="Never",
        claim=None if block or inline is not None else f"claim-{suffix}",
    )
    if inline is not None:
        source = client.V1CSIVolumeSource(driver=DRIVER, fs_type="ext4", volume_attributes=inline)
        spec.spec.volumes = [client.V1Volume(name="data", csi=source)]
        spec.spec.containers[0].volume_mounts = [
            client.V1VolumeMount(name="data", mount_path="/data")
        ]
    if block:
        source = client.V1PersistentVolumeClaimVolumeSource(claim_name=f"claim-{suffix}")
        spec.spec.volumes = [client.V1Volume(name="data", persistent_volume_claim=source)]
        spec.spec.containers[0].volume_devices = [
            client.V1VolumeDevice(name="data", device_path=BLOCK_DEVICE)
        ]
    env.core.create_namespaced_pod(NS, spec)

    def logged() -> str | None:
        pod = env.core.read_namespaced_pod(name, NS)
        assert pod.status.phase not in ("Failed", "Succeeded"), pod.status
        if pod.status.phase != "Running":
            return None
        text = env.core.read_namespaced_pod_log(name, NS)
        return text or None

    return wait_for(f"pod {name} Running with a log line", logged, timeout=120)


def _delete_pod(env: Env, name: str) -> None:
    env.core.delete_namespaced_pod(name, NS)
    wait_for(f"pod {name} gone", gone(lambda: env.core.read_namespaced_pod(name, NS)), timeout=90)


def _in_pod(env: Env, name: str, path: str) -> str:
    """``path`` as the pod's container sees it: through its process's root (its mount
    namespace), so statvfs there is the container's `df`."""
    uid = env.core.read_namespaced_pod(name, NS).metadata.uid
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv0 = (proc / "cmdline").read_bytes().split(b"\0")[0]
            if argv0.endswith(b"write-read") and f"pod{uid}" in (proc / "cgroup").read_text():
                return f"{proc}/root{path}"
    raise AssertionError(f"no write-read process of pod {name} ({uid})")


def _driver_stats(env: Env, volume_id: str, path: str) -> dict[str, int]:
    """NodeGetVolumeStats, in /stats/summary's names."""
    response = env.node_service.NodeGetVolumeStats(
        csi_pb2.NodeGetVolumeStatsRequest(volume_id=volume_id, volume_path=path), timeout=30
    )
    usage = {u.unit: u for u in response.usage}
    by, inodes = usage[csi_pb2.VolumeUsage.BYTES], usage[csi_pb2.VolumeUsage.INODES]
    return {
        "capacityBytes": by.total,
        "usedBytes": by.used,
        "availableBytes": by.available,
        "inodes": inodes.total,
        "inodesUsed": inodes.used,
        "inodesFree": inodes.available,
    }


def _kubelet_stats(env: Env, pod_name: str) -> dict[str, int] | None:
    """The pod's "data" volume in the kubelet's /stats/summary (through the API server)."""
    raw = env.core.connect_get_node_proxy_with_path(
        node.NODE_NAME, "stats/summary", _preload_content=False
    )
    for pod in json.loads(raw.data)["pods"]:
        if pod["podRef"]["name"] == pod_name and pod["podRef"]["namespace"] == NS:
            for volume in pod.get("volume") or []:
                if volume["name"] == "data":
                    keys = ("capacityBytes", "usedBytes", "availableBytes")
                    keys += ("inodes", "inodesUsed", "inodesFree")
                    return {k: volume.get(k) for k in keys}
    return None


def _our_mounts(env: Env) -> list[str]:
    """CSI mount points under the kubelet's dir or the driver's (the loop devices' filesystems,
    block volumes' bind-mounted devices, inline volumes' filesystems)."""
    roots = (str(env.kubelet_dir), str(env.driver.csi_dir))
    inline = f"{env.driver.ephemeral_dir}/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        csi = "kubernetes.io~csi" in point or "kubernetes.io/csi" in point
        if (csi and point.startswith(roots)) or point.startswith(inline):
            points.append(point)
    return points


def _loops_of(image: Path) -> list[str]:
    out = subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True)
    return out.stdout.split()


def _our_loops(env: Env) -> list[str]:
    """`losetup -a` lines for a file under the driver's or the kubelet's dir: the driver's
    images, and any loop device the kubelet put over a published block device."""
    out = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=True)
    roots = (str(env.driver.csi_dir), str(env.kubelet_dir))
    return [line for line in out.stdout.splitlines() if any(r in line for r in roots)]


def _wait_cleaned(env: Env, image: Path) -> None:
    """Unpublished and unstaged: no mount of ours (/proc/self/mountinfo) and no loop device of
    ours (`losetup -a`) left."""
    left: list[str] = []

    def cleaned() -> bool:
        left[:] = _our_mounts(env) + _our_loops(env) + _loops_of(image)
        return not left

    with contextlib.suppress(AssertionError):
        wait_for("no mount or loop device of ours left", cleaned, timeout=60)
    assert not left, f"left after the pods are gone: {left}"
