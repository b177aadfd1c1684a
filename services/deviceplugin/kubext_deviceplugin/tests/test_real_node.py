"""The device plugin with the real kubelet of the rig's real node (`up --real-node`).

What is real: the pinned kubelet's device manager (registration, ListAndWatch, Allocate) and
containerd/runc, which put the allocated env and device node into the container's OCI spec. The
plugin runs as a host process with the simulated backend (example.com/gpu: 2) and a generic
resource on /dev/zero (a real device node). One kubelet per machine: the real-node file lock."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from kubext_rig import node, tools
from kubext_rig.testing import wait_for

OFFSET = 3000  # the real-node test's offset; the lock below keeps the two apart
STATE = tools.cache_dir() / "real-node-dp"
TOLERATE = [client.V1Toleration(key=node.TAINT_KEY, operator="Exists", effect="NoSchedule")]
PLUGIN_CONFIG = {
    "device_plugin_dir": str(node.DEVICE_PLUGINS_DIR),
    "health": {"host": "127.0.0.1", "port": 0},
    "resources": [
        {"name": "example.com/gpu", "simulated": {"count": 2}, "envs": {"KUBEXT_DEMO": "yes"}},
        {
            "name": "kubext.io/zero",
            "backend": "generic",
            "generic": {
                "groups": [{"name": "zero", "paths": [{"path": "/dev/zero", "mount_path": "/dev/kubext-zero"}]}]
            },
        },
    ],
}  # fmt: skip


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


def _pod(name: str, limits: dict[str, str]) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            node_selector={"kubernetes.io/hostname": node.NODE_NAME},
            tolerations=TOLERATE,
            termination_grace_period_seconds=2,
            containers=[
                client.V1Container(
                    name=name,
                    image=node.image_ref("echo-loop"),
                    image_pull_policy="Never",
                    args=["with devices"],
                    resources=client.V1ResourceRequirements(limits=limits),
                )
            ],
        ),
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
    tools.cache_dir().mkdir(parents=True, exist_ok=True)
    with open(tools.cache_dir() / "real-node-test.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        started = _rig("up", "--fresh", "--real-node", "--nodes", "1")
        plugin = None
        try:
            assert started.returncode == 0, started.stderr[-3000:]
            cfg_path = tmp_path / "deviceplugin.yaml"
            cfg_path.write_text(yaml.safe_dump(PLUGIN_CONFIG))
            t0 = time.monotonic()
            with open(tmp_path / "plugin.log", "w") as log:
                plugin = subprocess.Popen(
                    [sys.executable, "-m", "kubext_deviceplugin", "--config", str(cfg_path)],
                    env=_env(),
                    stderr=log,
                )
            _check_cluster(t0, tmp_path)
        finally:
            if plugin is not None:
                plugin.send_signal(signal.SIGTERM)
                assert plugin.wait(timeout=30) == 0, (tmp_path / "plugin.log").read_text()[-3000:]
                left = [p.name for p in node.DEVICE_PLUGINS_DIR.glob("kubext-*.sock")]
                stopped = _rig("down")
                assert left == [], "clean shutdown leaves our sockets"
            else:
                stopped = _rig("down")
        assert stopped.returncode == 0, stopped.stderr[-3000:]


def _check_cluster(t0: float, tmp_path: Path) -> None:
    kcfg = client.Configuration()
    config.load_kube_config(config_file=str(STATE / "admin.kubeconfig"), client_configuration=kcfg)
    with client.ApiClient(kcfg) as api:
        core = client.CoreV1Api(api)

        def allocatable() -> dict[str, str] | None:
            alloc = core.read_node(node.NODE_NAME).status.allocatable or {}
            want = {"example.com/gpu": "2", "kubext.io/zero": "1"}
            return alloc if all(alloc.get(k) == v for k, v in want.items()) else None

        wait_for("the node's allocatable shows the devices", allocatable, timeout=60)
        print(f"device plugin: allocatable after {time.monotonic() - t0:.1f} s")

        core.create_namespaced_pod(
            "default", _pod("two", {"example.com/gpu": "2", "kubext.io/zero": "1"})
        )

        def running() -> client.V1Pod | None:
            pod = core.read_namespaced_pod("two", "default")
            return pod if pod.status.phase == "Running" else None

        pod = wait_for("pod two Running", running, timeout=90)
        container_id = pod.status.container_statuses[0].container_id.removeprefix("containerd://")
        spec = _oci_spec(container_id)
        env = dict(e.split("=", 1) for e in spec["process"]["env"])
        assert sorted(env["KUBEXT_DEVICES"].split(",")) == ["gpu-0", "gpu-1"]
        assert env["KUBEXT_DEMO"] == "yes"
        assert "/dev/kubext-zero" in [d["path"] for d in spec["linux"].get("devices", [])]

        core.create_namespaced_pod("default", _pod("three", {"example.com/gpu": "1"}))

        def unschedulable() -> bool:
            conditions = core.read_namespaced_pod("three", "default").status.conditions or []
            return any(
                c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
                for c in conditions
            )

        wait_for("pod three Pending as unschedulable", unschedulable, timeout=60)
        assert core.read_namespaced_pod("three", "default").status.phase == "Pending"
        for name in ("two", "three"):
            core.delete_namespaced_pod(name, "default", grace_period_seconds=0)
