"""The device plugin with the real kubelet of the rig's real node (`up --real-node`).

What is real: the pinned kubelet's device manager (registration, ListAndWatch, Allocate) and
containerd/runc, which put the allocated env and device node into the container's OCI spec. The
plugin runs as a host process with the simulated backend (example.com/gpu: 2) and a generic
resource on /dev/zero (a real device node). One kubelet per machine: the real-node file lock. The
real node is the shared test cluster's when it holds the machine's one (the pods then in a
namespace of their own, waited out), else this file's own cluster's."""

from __future__ import annotations

import contextlib
import datetime
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
                    preexec_fn=real_node_testing.die_with_parent,
                )
            _check_cluster(real, t0, tmp_path / "plugin.log")
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


def _check_cluster(real: real_node_testing.RealNode, t0: float, plugin_log: Path) -> None:
    with real.api_client() as api:
        core = client.CoreV1Api(api)
        # Deleted and waited for on the way out: its pods' devices free again.
        with real_node_testing.namespace(core, "deviceplugin") as ns:
            _check_devices(core, ns, t0)
            _check_kubelet_restart(real, core, ns, plugin_log)


def _allocatable(core: client.CoreV1Api) -> dict[str, str] | None:
    """The node's allocatable once it shows every device (None before)."""
    alloc = core.read_node(node.NODE_NAME).status.allocatable or {}
    want = {"example.com/gpu": "2", "kubext.io/zero": "1"}
    return alloc if all(alloc.get(k) == v for k, v in want.items()) else None


def _running(core: client.CoreV1Api, ns: str, name: str) -> client.V1Pod | None:
    pod = core.read_namespaced_pod(name, ns)
    return pod if pod.status.phase == "Running" else None


def _check_devices(core: client.CoreV1Api, ns: str, t0: float) -> None:
    wait_for("the node's allocatable shows the devices", lambda: _allocatable(core), timeout=60)
    print(f"device plugin: allocatable after {time.monotonic() - t0:.1f} s")

    core.create_namespaced_pod(ns, _pod("two", {"example.com/gpu": "2", "kubext.io/zero": "1"}))
    pod = wait_for("pod two Running", lambda: _running(core, ns, "two"), timeout=90)
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


def _registered_at(plugin_log: Path) -> dict[str, list[float]]:
    """When each resource registered with the kubelet (epoch seconds), from the plugin's log."""
    times: dict[str, list[float]] = {}
    for line in plugin_log.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            record = json.loads(line)
            if record.get("msg") == "registered":
                at = datetime.datetime.fromisoformat(record["ts"].replace("Z", "+00:00"))
                times.setdefault(record["resource"], []).append(at.timestamp())
    return times


def _registrations(plugin_log: Path) -> dict[str, int]:
    return {resource: len(at) for resource, at in _registered_at(plugin_log).items()}


def _container_pid(container_id: str) -> int:
    sock = STATE / "node" / "containerd" / "containerd.sock"
    out = subprocess.run(
        ["ctr", f"--address={sock}", "-n", "k8s.io", "tasks", "ls"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    (pid,) = (int(f[1]) for f in map(str.split, out.splitlines()[1:]) if f[0] == container_id)
    return pid


def _environ(pid: int) -> dict[str, str]:
    """The environment the container's process runs with."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(e.decode().split("=", 1) for e in environ if b"=" in e)


def _seen_by(pid: int) -> tuple[dict[str, str], os.stat_result]:
    """What the container's process has: its environment and its /dev/kubext-zero."""
    return _environ(pid), os.stat(f"/proc/{pid}/root/dev/kubext-zero")


def _check_kubelet_restart(
    real: real_node_testing.RealNode, core: client.CoreV1Api, ns: str, plugin_log: Path
) -> None:
    """The kubelet restarted under a running pod that holds devices: it removes every socket in
    device-plugins/ as it starts, so only the plugin's re-registration brings the devices back."""
    wait_for("pods two and three gone", lambda: not core.list_namespaced_pod(ns).items, timeout=60)
    core.create_namespaced_pod(ns, _pod("held", {"example.com/gpu": "1", "kubext.io/zero": "1"}))
    held = wait_for("pod held Running", lambda: _running(core, ns, "held"), timeout=90)
    (status,) = held.status.container_statuses
    container_id = status.container_id.removeprefix("containerd://")
    pid = _container_pid(container_id)
    env, zero = _seen_by(pid)
    held_gpu = env["KUBEXT_DEVICES"]
    assert env["KUBEXT_ZERO_DEVICES"] == "zero0" and os.major(zero.st_rdev) == 1
    before = _registrations(plugin_log)
    assert before == {"example.com/gpu": 1, "kubext.io/zero": 1}, before

    t = time.monotonic()
    # In a process of the rig's environment: the node's ports follow the cluster's offset.
    restart = subprocess.run(
        [sys.executable, "-c", "from kubext_rig import cluster, node; "
         "print(node.restart_kubelet(cluster.ClusterInfo(cluster.state_dir()), timeout=120))"],
        env=real.env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert restart.returncode == 0, restart.stderr[-3000:]
    kubelet_pid = int(restart.stdout.split()[-1])
    restarted = time.monotonic() - t
    t = time.monotonic()
    # Both registered once more (a kubelet that never came back would leave this at 1).
    wait_for(
        "the plugin registered again with the restarted kubelet",
        lambda: all(n == 2 for n in _registrations(plugin_log).values()),
        timeout=10,
    )
    registered = time.monotonic() - t
    # From the new kubelet.sock (the kubelet serves Registration) to the plugin's new record.
    served = (node.DEVICE_PLUGINS_DIR / "kubelet.sock").stat().st_mtime
    lag = max(at[-1] for at in _registered_at(plugin_log).values()) - served
    wait_for(
        "the node's allocatable shows the devices again", lambda: _allocatable(core), timeout=60
    )
    print(
        f"device plugin: kubelet restarted (pid {kubelet_pid}, Ready in {restarted:.1f} s); "
        f"both resources registered {lag:.2f} s after its kubelet.sock appeared "
        f"({registered:.1f} s after Ready)"
    )
    assert lag < 5, f"re-registered {lag:.2f} s after kubelet.sock appeared"

    # The running pod was not restarted and still has its devices.
    held = core.read_namespaced_pod("held", ns)
    (after,) = held.status.container_statuses
    assert held.status.phase == "Running" and after.state.running is not None
    assert after.container_id == status.container_id and after.restart_count == 0
    assert _container_pid(container_id) == pid
    assert _seen_by(pid) == (env, zero)

    # The kubelet kept the held device's allocation (its checkpoint): a new pod gets the other
    # one, allocated by the plugin's new endpoint.
    core.create_namespaced_pod(ns, _pod("fresh", {"example.com/gpu": "1"}))
    fresh = wait_for("pod fresh Running", lambda: _running(core, ns, "fresh"), timeout=90)
    (fresh_status,) = fresh.status.container_statuses
    fresh_env = _environ(_container_pid(fresh_status.container_id.split("://")[1]))
    assert {fresh_env["KUBEXT_DEVICES"], held_gpu} == {"gpu-0", "gpu-1"}
    for name in ("held", "fresh"):
        core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
