"""The device plugin with the real kubelet of the rig's real node (`up --real-node`).

What is real: the pinned kubelet's device manager (registration, ListAndWatch, Allocate) and
containerd/runc, which put the allocated env and device node into the container's OCI spec. The
plugin runs as a host process with the simulated backend (example.com/gpu: 2) and a generic
resource on /dev/zero (a real device node). One kubelet per machine: the real-node file lock. The
real node is the shared test cluster's when it holds the machine's one (the pods then in a
namespace of their own, waited out), else this file's own cluster's."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from kubext_deviceplugin.plugin import socket_name
from kubext_rig import node, real_node_testing, tools
from kubext_rig.testing import wait_for

STATE = real_node_testing.state_for(tools.cache_dir() / "real-node-dp")
PLUGIN_CONFIG = {
    "device_plugin_dir": str(node.DEVICE_PLUGINS_DIR),
    "health": {"host": "127.0.0.1", "port": 0},
    "resources": [
        {"name": "example.com/gpu", "simulated": {"count": 2}, "envs": {"KUBEXT_DEMO": "yes"}},
        {
            "name": "kubext.io/zero",
            "backend": "generic",
            # Its own variable: two resources writing KUBEXT_DEVICES into one container would
            # leave whichever allocation the kubelet merged last.
            "ids_env": "KUBEXT_ZERO_DEVICES",
            "generic": {
                "groups": [{"name": "zero", "paths": [{"path": "/dev/zero", "mount_path": "/dev/kubext-zero"}]}]
            },
        },
    ],
}  # fmt: skip


def _pod(name: str, limits: dict[str, str]) -> client.V1Pod:
    return real_node_testing.pod(
        name, "echo-loop", ["with devices"], grace_seconds=2, limits=limits
    )


def _oci_spec(container_id: str) -> dict:
    sock = STATE / "node" / "containerd" / "containerd.sock"
    out = subprocess.run(
        ["ctr", f"--address={sock}", "-n", "k8s.io", "containers", "info", container_id],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(out)["Spec"]


@pytest.mark.skipif(os.geteuid() != 0, reason="a real kubelet needs root")
def test_real_kubelet_registers_allocates_and_refuses_what_does_not_fit(tmp_path: Path) -> None:
    with real_node_testing.machine_lock(), real_node_testing.up(STATE) as real:
        plugin = None
        try:
            cfg_path = tmp_path / "deviceplugin.yaml"
            cfg_path.write_text(yaml.safe_dump(PLUGIN_CONFIG))
            # What a plugin killed outright leaves (a run Pants cancelled and retried): one
            # socket per resource, no listener. The plugin's start removes them.
            stale = [_abandoned_socket(r["name"]) for r in PLUGIN_CONFIG["resources"]]
            t0 = time.monotonic()
            with open(tmp_path / "plugin.log", "w") as log:
                plugin = subprocess.Popen(
                    [sys.executable, "-m", "kubext_deviceplugin", "--config", str(cfg_path)],
                    env=real.env(),
                    stderr=log,
                )
            _check_cluster(real, t0, tmp_path)
            assert [p.name for p in stale if p.exists()] == [], "a killed run's sockets are left"
        finally:
            if plugin is not None:
                plugin.send_signal(signal.SIGTERM)
                assert plugin.wait(timeout=30) == 0, (tmp_path / "plugin.log").read_text()[-3000:]
                # Checked before `down`, which runs on the way out of `up`.
                left = [p.name for p in node.DEVICE_PLUGINS_DIR.glob("kubext-*.sock")]
                assert left == [], f"sockets left after a clean shutdown: {left}"


def _abandoned_socket(resource: str) -> Path:
    """A socket of ``resource`` in the kubelet's device-plugin dir, bound and its listener gone."""
    path = node.DEVICE_PLUGINS_DIR / socket_name(resource)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))
    return path


def _check_cluster(real: real_node_testing.RealNode, t0: float, tmp_path: Path) -> None:
    with real.api_client() as api:
        core = client.CoreV1Api(api)
        # Deleted and waited for on the way out: its pods' devices free again.
        with real_node_testing.namespace(core, "deviceplugin") as ns:
            _check_devices(core, ns, t0)


def _check_devices(core: client.CoreV1Api, ns: str, t0: float) -> None:
    def allocatable() -> dict[str, str] | None:
        alloc = core.read_node(node.NODE_NAME).status.allocatable or {}
        want = {"example.com/gpu": "2", "kubext.io/zero": "1"}
        return alloc if all(alloc.get(k) == v for k, v in want.items()) else None

    wait_for("the node's allocatable shows the devices", allocatable, timeout=60)
    print(f"device plugin: allocatable after {time.monotonic() - t0:.1f} s")

    core.create_namespaced_pod(ns, _pod("two", {"example.com/gpu": "2", "kubext.io/zero": "1"}))

    def running() -> client.V1Pod | None:
        pod = core.read_namespaced_pod("two", ns)
        return pod if pod.status.phase == "Running" else None

    pod = wait_for("pod two Running", running, timeout=90)
    container_id = pod.status.container_statuses[0].container_id.removeprefix("containerd://")
    spec = _oci_spec(container_id)
    env = dict(e.split("=", 1) for e in spec["process"]["env"])
    assert sorted(env["KUBEXT_DEVICES"].split(",")) == ["gpu-0", "gpu-1"]
    assert env["KUBEXT_ZERO_DEVICES"] == "zero0"
    assert env["KUBEXT_DEMO"] == "yes"
    assert "/dev/kubext-zero" in [d["path"] for d in spec["linux"].get("devices", [])]

    core.create_namespaced_pod(ns, _pod("three", {"example.com/gpu": "1"}))

    def unschedulable() -> bool:
        conditions = core.read_namespaced_pod("three", ns).status.conditions or []
        return any(
            c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
            for c in conditions
        )

    wait_for("pod three Pending as unschedulable", unschedulable, timeout=60)
    assert core.read_namespaced_pod("three", ns).status.phase == "Pending"
    for name in ("two", "three"):
        core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
