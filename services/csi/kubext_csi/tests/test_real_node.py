"""The driver with the real kubelet of the rig's real node (`up --real-node`).

What is real: the pinned kubelet's plugin watcher (our registration socket), its CSI volume
manager (NodeStage/NodePublish/NodeUnpublish/NodeUnstage over our socket), the PV controller
binding a PVC, containerd/runc mounting the published path into containers. The driver runs as a
root host process with registration on; the test calls CreateVolume as external-provisioner
would, and creates the CSIDriver (attachRequired: false: no external-attacher runs). One kubelet
per machine: the real-node file lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import yaml
from kubernetes import client

from kubext_proto.csi.v1 import csi_pb2, csi_pb2_grpc
from kubext_rig import node, real_node_csi, real_node_testing, tools
from kubext_rig.testing import wait_for

STATE = real_node_testing.state_for(tools.cache_dir() / "real-node-csi")
CSI_DIR = real_node_csi.csi_dir(STATE)
KUBELET_DIR = real_node_csi.kubelet_dir(STATE)
DRIVER = real_node_csi.DRIVER
TOPOLOGY_KEY = real_node_csi.TOPOLOGY_KEY
DRIVER_CONFIG = real_node_csi.driver_config(STATE, pool_size="1Gi")
WRITER_TEXT = "kubext-csi on a real kubelet"


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
    with real_node_testing.machine_lock(), real_node_testing.up(STATE) as real:
        driver = None
        log_path = tmp_path / "driver.log"
        try:
            CSI_DIR.mkdir(parents=True, exist_ok=True)
            cfg_path = CSI_DIR / "csi.yaml"
            cfg_path.write_text(yaml.safe_dump(DRIVER_CONFIG))
            t0 = time.monotonic()
            with open(log_path, "w") as log:
                driver = subprocess.Popen(
                    [sys.executable, "-m", "kubext_csi", "--config", str(cfg_path)],
                    env=real.env(),
                    stderr=log,
                )
            _check_cluster(real, t0)
        finally:
            if driver is not None:
                driver.send_signal(signal.SIGTERM)
                rc = driver.wait(timeout=30)
                reg = KUBELET_DIR / "plugins_registry" / f"{DRIVER}-reg.sock"
                # Checked before `down`, which runs on the way out of `up`.
                assert rc == 0, log_path.read_text()[-3000:]
                assert not reg.exists(), "a clean shutdown removes the registration socket"


def _check_cluster(real: real_node_testing.RealNode, t0: float) -> None:
    with real.api_client() as api:
        core = client.CoreV1Api(api)
        storage = client.StorageV1Api(api)
        real_node_csi.create_csi_driver(storage)
        entry = wait_for(
            "CSINode lists the driver", lambda: real_node_csi.registered(storage), timeout=60
        )
        print(f"csi: registered in CSINode after {time.monotonic() - t0:.1f} s")
        assert entry["nodeID"] == node.NODE_NAME
        assert entry["topologyKeys"] == [TOPOLOGY_KEY]
        labels = core.read_node(node.NODE_NAME).metadata.labels
        assert labels.get(TOPOLOGY_KEY) == node.NODE_NAME, "the kubelet labels the node"

        with grpc.insecure_channel(DRIVER_CONFIG["endpoint"]) as channel:
            controller = csi_pb2_grpc.ControllerStub(channel)
            volume = real_node_csi.create_volume(controller, "e2e-fs")
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


def _pv_and_pvc(core: client.CoreV1Api, volume: csi_pb2.Volume, suffix: str) -> None:
    """A PV and a claim bound to it by name, as external-provisioner makes them; once Bound."""
    real_node_csi.pv_and_claim(
        core, volume, pv=f"pv-{suffix}", claim=f"claim-{suffix}", namespace="default"
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
        real_node_testing.pod(
            name,
            "write-read",
            args,
            grace_seconds=2,
            restart_policy="Never",
            claim=f"claim-{suffix}",
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
