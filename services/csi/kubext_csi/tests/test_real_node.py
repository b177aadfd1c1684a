"""The driver with the real kubelet of the rig's real node (`up --real-node`).

What is real: the pinned kubelet's plugin watcher (our registration socket), its CSI volume
manager (NodeStage/NodePublish/NodeUnpublish/NodeUnstage over our socket), the PV controller
binding a PVC, containerd/runc mounting the published path into containers. The driver runs as a
root host process with registration on; the test calls CreateVolume as external-provisioner
would, and creates the CSIDriver (attachRequired: false: no external-attacher runs). One kubelet
per machine: the real-node file lock."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import yaml
from kubernetes import client, config

from kubext_proto.csi.v1 import csi_pb2, csi_pb2_grpc
from kubext_rig import node, tools
from kubext_rig.testing import wait_for

OFFSET = 3000  # the real-node tests' offset; the lock below keeps them apart
STATE = tools.cache_dir() / "real-node-csi"
CSI_DIR = STATE / "node" / "csi"
KUBELET_DIR = STATE / "node" / "kubelet"
DRIVER = "csi.kubext.io"
TOPOLOGY_KEY = "topology.csi.kubext.io/node"
TOLERATE = [client.V1Toleration(key=node.TAINT_KEY, operator="Exists", effect="NoSchedule")]
DRIVER_CONFIG = {
    "driver_name": DRIVER,
    "endpoint": f"unix://{CSI_DIR / 'csi.sock'}",
    "node_id": node.NODE_NAME,
    "topology_key": TOPOLOGY_KEY,
    "state_dir": str(CSI_DIR / "state"),
    "pool_size": "1Gi",
    "path_roots": [str(KUBELET_DIR)],  # the kubelet stages and publishes only under its root
    "health": {"host": "127.0.0.1", "port": 0},
    "registration": {"enabled": True, "kubelet_dir": str(KUBELET_DIR)},
}
WRITER_TEXT = "kubext-csi on a real kubelet"


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "KUBEXT_RIG_DIR": str(STATE),
        "KUBEXT_RIG_PORT_OFFSET": str(OFFSET),
        "PYTHONPATH": os.pathsep.join(os.path.abspath(p) for p in sys.path if p),
    }


def _rig(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "kubext_rig", *args]
    return subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=600)


def _our_mounts() -> list[str]:
    """Mount points under the kubelet's dir or the driver's (the loop devices' filesystems)."""
    roots = (str(KUBELET_DIR), str(CSI_DIR))
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        csi = "kubernetes.io~csi" in point or "kubernetes.io/csi" in point
        if csi and point.startswith(roots):
            points.append(point)
    return points


def _loops_of(image: Path) -> list[str]:
    out = subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True)
    return out.stdout.split()


@pytest.mark.skipif(os.geteuid() != 0, reason="a real kubelet and loop devices need root")
def test_real_kubelet_stages_publishes_and_cleans_up_our_volume(tmp_path: Path) -> None:
    tools.cache_dir().mkdir(parents=True, exist_ok=True)
    with open(tools.cache_dir() / "real-node-test.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        started = _rig("up", "--fresh", "--real-node", "--nodes", "1")
        driver = None
        log_path = tmp_path / "driver.log"
        try:
            assert started.returncode == 0, started.stderr[-3000:]
            CSI_DIR.mkdir(parents=True, exist_ok=True)
            cfg_path = CSI_DIR / "csi.yaml"
            cfg_path.write_text(yaml.safe_dump(DRIVER_CONFIG))
            t0 = time.monotonic()
            with open(log_path, "w") as log:
                driver = subprocess.Popen(
                    [sys.executable, "-m", "kubext_csi", "--config", str(cfg_path)],
                    env=_env(),
                    stderr=log,
                )
            _check_cluster(t0)
        finally:
            if driver is not None:
                driver.send_signal(signal.SIGTERM)
                rc = driver.wait(timeout=30)
                reg = KUBELET_DIR / "plugins_registry" / f"{DRIVER}-reg.sock"
                reg_left = reg.exists()
                stopped = _rig("down")
                assert rc == 0, log_path.read_text()[-3000:]
                assert not reg_left, "a clean shutdown removes the registration socket"
            else:
                stopped = _rig("down")
        assert stopped.returncode == 0, stopped.stderr[-3000:]


def _check_cluster(t0: float) -> None:
    kcfg = client.Configuration()
    config.load_kube_config(config_file=str(STATE / "admin.kubeconfig"), client_configuration=kcfg)
    with client.ApiClient(kcfg) as api:
        core = client.CoreV1Api(api)
        storage = client.StorageV1Api(api)
        storage.create_csi_driver(
            client.V1CSIDriver(
                metadata=client.V1ObjectMeta(name=DRIVER),
                spec=client.V1CSIDriverSpec(
                    attach_required=False,  # no external-attacher: the kubelet stages at once
                    pod_info_on_mount=False,
                    volume_lifecycle_modes=["Persistent"],
                ),
            )
        )

        def registered() -> dict | None:
            # Raw JSON: the client's model refuses a CSINode whose drivers list is still null.
            raw = storage.read_csi_node(node.NODE_NAME, _preload_content=False)
            drivers = json.loads(raw.data)["spec"].get("drivers") or []
            return next((d for d in drivers if d["name"] == DRIVER), None)

        entry = wait_for("CSINode lists the driver", registered, timeout=60)
        print(f"csi: registered in CSINode after {time.monotonic() - t0:.1f} s")
        assert entry["nodeID"] == node.NODE_NAME
        assert entry["topologyKeys"] == [TOPOLOGY_KEY]
        labels = core.read_node(node.NODE_NAME).metadata.labels
        assert labels.get(TOPOLOGY_KEY) == node.NODE_NAME, "the kubelet labels the node"

        with grpc.insecure_channel(DRIVER_CONFIG["endpoint"]) as channel:
            controller = csi_pb2_grpc.ControllerStub(channel)
            volume = _create_volume(controller, "e2e-fs")
            image = CSI_DIR / "state" / "volumes" / f"{volume.volume_id}.img"
            _pv_and_pvc(core, volume, "fs")
            t1 = time.monotonic()
            _run_pod(core, "writer", "fs", ["write", "/data/hello.txt", WRITER_TEXT])
            print(f"csi: writer Running {time.monotonic() - t1:.1f} s after create")
            assert _our_mounts(), "the kubelet staged and published the volume"
            assert _loops_of(image), "staging attached the image to a loop device"
            _delete_pod(core, "writer")
            log = _run_pod(core, "reader", "fs", ["read", "/data/hello.txt"])
            assert log.strip() == f"read /data/hello.txt: {WRITER_TEXT}"
            _delete_pod(core, "reader")

            def cleaned() -> bool:
                return not _our_mounts() and not _loops_of(image)

            wait_for("no mount or loop device of ours left", cleaned, timeout=60)
            core.delete_namespaced_persistent_volume_claim("claim-fs", "default")
            core.delete_persistent_volume("pv-fs")
            controller.DeleteVolume(
                csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id), timeout=30
            )
            assert not image.exists()


def _create_volume(controller: csi_pb2_grpc.ControllerStub, name: str) -> csi_pb2.Volume:
    """As external-provisioner calls it for a PVC of ReadWriteOnce, ext4, 64Mi."""
    capability = csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(fs_type="ext4"),
        access_mode=csi_pb2.VolumeCapability.AccessMode(
            mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
        ),
    )
    request = csi_pb2.CreateVolumeRequest(
        name=name,
        capacity_range=csi_pb2.CapacityRange(required_bytes=64 << 20),
        volume_capabilities=[capability],
        accessibility_requirements=csi_pb2.TopologyRequirement(
            requisite=[csi_pb2.Topology(segments={TOPOLOGY_KEY: node.NODE_NAME})]
        ),
    )
    return controller.CreateVolume(request, timeout=60, wait_for_ready=True).volume


def _pv_and_pvc(core: client.CoreV1Api, volume: csi_pb2.Volume, suffix: str) -> None:
    """A PV as external-provisioner writes it (node affinity from the volume's topology), and a
    claim bound to it by name."""
    segments = volume.accessible_topology[0].segments
    affinity = client.V1VolumeNodeAffinity(
        required=client.V1NodeSelector(
            node_selector_terms=[
                client.V1NodeSelectorTerm(
                    match_expressions=[
                        client.V1NodeSelectorRequirement(key=k, operator="In", values=[v])
                        for k, v in segments.items()
                    ]
                )
            ]
        )
    )
    size = f"{volume.capacity_bytes >> 20}Mi"
    core.create_persistent_volume(
        client.V1PersistentVolume(
            metadata=client.V1ObjectMeta(name=f"pv-{suffix}"),
            spec=client.V1PersistentVolumeSpec(
                capacity={"storage": size},
                access_modes=["ReadWriteOnce"],
                persistent_volume_reclaim_policy="Retain",
                storage_class_name="",
                volume_mode="Filesystem",
                node_affinity=affinity,
                csi=client.V1CSIPersistentVolumeSource(
                    driver=DRIVER,
                    volume_handle=volume.volume_id,
                    fs_type="ext4",
                    volume_attributes=dict(volume.volume_context),
                ),
            ),
        )
    )
    core.create_namespaced_persistent_volume_claim(
        "default",
        client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name=f"claim-{suffix}"),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                storage_class_name="",
                volume_name=f"pv-{suffix}",
                resources=client.V1VolumeResourceRequirements(requests={"storage": size}),
            ),
        ),
    )

    def bound() -> bool:
        return (
            core.read_namespaced_persistent_volume_claim(f"claim-{suffix}", "default").status.phase
            == "Bound"
        )

    wait_for(f"claim-{suffix} Bound", bound, timeout=60)


def _run_pod(core: client.CoreV1Api, name: str, suffix: str, args: list[str]) -> str:
    """A write-read pod on the real node with the claim at /data; its log once Running."""
    core.create_namespaced_pod(
        "default",
        client.V1Pod(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1PodSpec(
                node_selector={"kubernetes.io/hostname": node.NODE_NAME},
                tolerations=TOLERATE,
                termination_grace_period_seconds=2,
                restart_policy="Never",
                containers=[
                    client.V1Container(
                        name=name,
                        image=node.image_ref("write-read"),
                        image_pull_policy="Never",
                        args=args,
                        volume_mounts=[client.V1VolumeMount(name="data", mount_path="/data")],
                    )
                ],
                volumes=[
                    client.V1Volume(
                        name="data",
                        persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
                            claim_name=f"claim-{suffix}"
                        ),
                    )
                ],
            ),
        ),
    )

    def logged() -> str | None:
        pod = core.read_namespaced_pod(name, "default")
        assert pod.status.phase not in ("Failed", "Succeeded"), pod.status
        if pod.status.phase != "Running":
            return None
        text = core.read_namespaced_pod_log(name, "default")
        return text or None

    return wait_for(f"pod {name} Running with a log line", logged, timeout=120)


def _delete_pod(core: client.CoreV1Api, name: str) -> None:
    core.delete_namespaced_pod(name, "default")

    def gone() -> bool:
        try:
            core.read_namespaced_pod(name, "default")
        except client.ApiException as exc:
            return exc.status == 404
        return False

    wait_for(f"pod {name} gone", gone, timeout=90)
