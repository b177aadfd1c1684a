"""The main command's gpu sample on the real node: the stack's own device-plugin component
(``stack.deviceplugin_component``: simulated example.com/gpu, the kubelet's device-plugin dir) and
``stack.run_gpu_sample``, as `./kubext up` runs them when its cluster has the real node.

What is real: the pinned kubelet's device manager (registration, Allocate), containerd and runc
running the rig's static echo-loop image with the allocated device's env in its OCI spec. No
kwok fake is involved. The device plugin runs from source as a host process (as `up
--services-from-source` runs it). The real node is the shared test cluster's when it holds the
machine's one (the pod then in a namespace of its own, removed), else a cluster of this test's
own (offset 3000); one kubelet per machine: the real-node lock."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest
from kubernetes import client

from kubext_rig import cluster, node, real_node_testing, stack, tools
from kubext_rig.testing import wait_for

STATE = real_node_testing.state_for(tools.cache_dir() / "real-node-gpu-sample")

# Run in the cluster's environment (its state dir and port offset), as the stack does it.
START_AND_RUN = """
import sys
from kubext_rig import cluster, stack
info = cluster.ClusterInfo(cluster.state_dir())
stack.start(info, stack.deviceplugin_component(info, None))
print(stack.run_gpu_sample(info, namespace=sys.argv[1]))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="a real kubelet needs root")
def test_the_gpu_sample_runs_on_the_real_node_with_one_simulated_gpu() -> None:
    with real_node_testing.machine_lock(), real_node_testing.up(STATE) as real:
        ns = f"gpu-sample-{os.urandom(3).hex()}"
        with real.api_client() as api:
            core = client.CoreV1Api(api)
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
            try:
                done = subprocess.run(
                    [sys.executable, "-c", START_AND_RUN, ns],
                    env=real.env(),
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                assert done.returncode == 0, done.stderr[-3000:]
                ids = ast.literal_eval(done.stdout.strip().splitlines()[-1])
                print(done.stderr)
                # One of the plugin's four simulated devices, seen in the container's env.
                assert len(ids) == 1 and ids[0] in {f"gpu-{i}" for i in range(stack.GPU_DEVICES)}
                said = [line for line in done.stderr.splitlines() if "gpu sample Running" in line]
                assert len(said) == 1 and f"KUBEXT_DEVICES={ids[0]}" in said[0], done.stderr
                pod = core.read_namespaced_pod(stack.GPU_SAMPLE, ns)
                assert pod.spec.node_name == node.NODE_NAME and pod.status.phase == "Running"
                alloc = core.read_node(node.NODE_NAME).status.allocatable or {}
                assert alloc.get(stack.GPU_RESOURCE) == str(stack.GPU_DEVICES), alloc
            finally:
                core.delete_namespace(ns)
                wait_for(
                    f"namespace {ns} gone (its pod's device free again)",
                    lambda: ns not in {n.metadata.name for n in core.list_namespace().items},
                    timeout=120,
                )
                _stop_device_plugin(real)


def _stop_device_plugin(real: real_node_testing.RealNode) -> None:
    """Stopped here (the shared cluster keeps running): its PID file and config go too, so the
    shared cluster's `status` does not list it afterwards."""
    pid = cluster.running_pid(real.state, "kubext-deviceplugin")
    if pid is not None:
        cluster._stop_pid(pid, "kubext-deviceplugin")
    (real.state / "pids" / "kubext-deviceplugin.pid").unlink(missing_ok=True)
    (real.state / "services" / "deviceplugin.yaml").unlink(missing_ok=True)
    left = [p.name for p in node.DEVICE_PLUGINS_DIR.glob("kubext-*.sock")]
    assert left == [], "a clean shutdown leaves none of our sockets"
