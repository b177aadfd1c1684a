"""Pod and volume latency on the rig's real node (not part of the test suite).

Measures, against issue 12's target, on the real node: the shared cluster's when the cluster the
environment names (``KUBEXT_RIG_DIR``) holds the machine's one (left running; the figures in a
namespace of their own, removed), else a real-node cluster of its own:
- pod create-to-Ready p50/p99 for ``--pods`` echo-loop pods networked by kubext-bridge, created
  in batches of ``--batch`` (each batch Ready and deleted before the next, as the real-node
  test does), then the same pods with the reference ``bridge`` plugin configured the same way
  (``node.cni_conflist(root, "bridge")`` written into containerd's CNI conf dir, which
  containerd 1.6 watches and reloads without a restart: checked with a probe pod whose address
  is absent from kubext-bridge's masquerade map);
- volume attach-to-pod-Ready p50/p99 for ``--volume-pods`` write-read pods, each with its own
  volume (CreateVolume on our CSI driver, as external-provisioner would), PV and bound PVC made
  beforehand, so the figure is the kubelet's stage + publish + container start.

Run as root, with the real-node tests' file lock held (one kubelet per machine):

    python bench/real_node_bench.py [--pods 50] [--batch 10] [--volume-pods 20]

Progress goes to stderr, figures to stdout; the machine's load average is printed with them.
Everything is removed at the end (``down``, the driver's volumes, the state dir).
The last line is the ratio kubext-bridge/reference of the pod Ready p50 (target <= 1.0).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

# The rig reads its port offset on import: the real-node tests' (real_node_testing.OFFSET).
os.environ.setdefault("KUBEXT_RIG_PORT_OFFSET", "3000")

import grpc  # noqa: E402
import yaml  # noqa: E402
from kubernetes import client, watch  # noqa: E402

from kubext_proto.csi.v1 import csi_pb2, csi_pb2_grpc  # noqa: E402
from kubext_rig import node, real_node_csi, real_node_testing, tools  # noqa: E402
from kubext_rig.testing import wait_for  # noqa: E402

# Short: containerd's socket path has a limit.
STATE = real_node_testing.state_for(tools.cache_dir() / "real-node-bench")
SHARED = real_node_testing.is_shared(STATE)
NS = f"real-node-bench-{os.urandom(3).hex()}"  # deleted at the end
CONFLIST = STATE / "node" / "cni" / "net.d" / "10-kubext-rig.conflist"
CSI_DIR = real_node_csi.csi_dir(STATE)
KUBELET_DIR = real_node_csi.kubelet_dir(STATE)
TARGET_RATIO = 1.0


def say(msg: str) -> None:
    print(f"[real-node-bench] {msg}", file=sys.stderr, flush=True)


# --- pure figures ---------------------------------------------------------------------------


def pct(values: list[float], q: int) -> float:
    """The q-th percentile (inclusive method: p99 of 50 lies between the two slowest)."""
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def line(label: str, seconds: list[float]) -> str:
    return (
        f"{label:<44} p50 {pct(seconds, 50):5.2f} s  p99 {pct(seconds, 99):5.2f} s  "
        f"max {max(seconds):5.2f} s  ({len(seconds)} pods)"
    )


def load() -> str:
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return f"load average {one} {five} {fifteen} on {os.cpu_count()} cores"


# --- the cluster ----------------------------------------------------------------------------


def is_ready(pod: client.V1Pod) -> bool:
    conditions = pod.status.conditions if pod.status else None
    return any(c.type == "Ready" and c.status == "True" for c in conditions or [])


class ReadyClock:
    """The first moment (monotonic) each pod is seen Ready, from a watch on the namespace."""

    def __init__(self, core: client.CoreV1Api):
        self.core = core
        self.ready: dict[str, float] = {}
        self.cond = threading.Condition()
        self.stopped = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stopped:
            with contextlib.suppress(Exception):  # a dropped watch: relist and go on
                for event in watch.Watch().stream(
                    self.core.list_namespaced_pod, NS, timeout_seconds=60
                ):
                    pod = event["object"]
                    if event["type"] != "DELETED" and is_ready(pod):
                        with self.cond:
                            self.ready.setdefault(pod.metadata.name, time.monotonic())
                            self.cond.notify_all()

    def wait(self, names: set[str], timeout: float) -> dict[str, float]:
        with self.cond:
            if not self.cond.wait_for(lambda: names <= set(self.ready), timeout=timeout):
                raise TimeoutError(f"not Ready after {timeout:.0f} s: {names - set(self.ready)}")
            return {n: self.ready[n] for n in names}


def echo_pod(name: str) -> client.V1Pod:
    return real_node_testing.pod(name, "echo-loop", ["x"])


def delete_and_wait(core: client.CoreV1Api, names: set[str]) -> None:
    for name in names:
        core.delete_namespaced_pod(name, NS)

    def gone() -> bool:
        return not {p.metadata.name for p in core.list_namespaced_pod(NS).items} & names

    wait_for(f"{len(names)} pods deleted", gone, timeout=120)


def timed_batches(
    core: client.CoreV1Api, clock: ReadyClock, pods: list[client.V1Pod], batch: int
) -> list[float]:
    """Create ``pods`` ``batch`` at a time; each batch Ready, then deleted before the next.
    Each pod's latency runs from just before its create call to its first Ready."""
    latencies = []
    for i in range(0, len(pods), batch):
        created = {}
        for pod in pods[i : i + batch]:
            created[pod.metadata.name] = time.monotonic()
            core.create_namespaced_pod(NS, pod)
        ready = clock.wait(set(created), timeout=180)
        latencies += [ready[n] - created[n] for n in created]
        delete_and_wait(core, set(created))
        say(f"  {i + len(created)}/{len(pods)} pods, batch p50 {pct(latencies[-batch:], 50):.2f} s")
    return latencies


def switch_plugin(core: client.CoreV1Api, clock: ReadyClock, plugin: str) -> float:
    """Write ``plugin``'s conflist as the chart does (write, rename) and wait until containerd
    uses it: a probe pod networked by kubext-bridge has its address in the masquerade map, one
    networked by the reference has not. The seconds until the first probe on the new plugin."""
    tmp = CONFLIST.with_name(f".{CONFLIST.name}.tmp")
    tmp.write_text(json.dumps(node.cni_conflist(STATE, plugin), indent=2))
    t0 = time.monotonic()
    tmp.replace(CONFLIST)
    for attempt in range(20):
        name = f"probe-{plugin}-{attempt}"
        core.create_namespaced_pod(NS, echo_pod(name))
        clock.wait({name}, timeout=120)
        ip = core.read_namespaced_pod(name, NS).status.pod_ip
        ours = ip in real_node_testing.masquerade_elements()
        delete_and_wait(core, {name})
        if ours == (plugin == "kubext-bridge"):
            return time.monotonic() - t0
        time.sleep(0.5)
    raise RuntimeError(f"containerd did not pick up the {plugin} conflist")


# --- CSI ------------------------------------------------------------------------------------


def start_driver() -> subprocess.Popen[bytes]:
    """Our driver as a root host process serving the kubelet's plugin registration (as the CSI
    real-node test runs it)."""
    CSI_DIR.mkdir(parents=True, exist_ok=True)
    cfg = real_node_csi.driver_config(STATE, pool_size="4Gi", log_level="warning")
    (CSI_DIR / "csi.yaml").write_text(yaml.safe_dump(cfg))
    log = open(STATE / "logs" / "kubext-csi.log", "w")  # noqa: SIM115 (the driver keeps it)
    return subprocess.Popen(
        [sys.executable, "-m", "kubext_csi", "--config", str(CSI_DIR / "csi.yaml")],
        env=real_node_testing.rig_env(STATE),
        stderr=log,
    )


def volume_pod(name: str) -> client.V1Pod:
    args = ["write", "/data/hello.txt", name]
    return real_node_testing.pod(
        name, "write-read", args, grace_seconds=2, restart_policy="Never", claim=name
    )


def csi_mounts() -> list[str]:
    points = []
    for entry in Path("/proc/self/mountinfo").read_text().splitlines():
        point = entry.split()[4]
        if point.startswith((str(KUBELET_DIR), str(CSI_DIR))) and "csi" in point:
            points.append(point)
    return points


def volume_bench(core: client.CoreV1Api, clock: ReadyClock, count: int, batch: int) -> list[float]:
    storage = client.StorageV1Api(core.api_client)
    real_node_csi.create_csi_driver(storage)
    wait_for("CSINode lists the driver", lambda: real_node_csi.registered(storage), timeout=60)
    names = [f"vol-{i:02d}" for i in range(count)]
    with grpc.insecure_channel(real_node_csi.endpoint(STATE)) as channel:
        controller = csi_pb2_grpc.ControllerStub(channel)
        volumes = {n: real_node_csi.create_volume(controller, n) for n in names}
        for n, volume in volumes.items():
            real_node_csi.pv_and_claim(core, volume, pv=n, claim=n, namespace=NS)

        def all_bound() -> bool:
            claims = core.list_namespaced_persistent_volume_claim(NS).items
            return sum(c.status.phase == "Bound" for c in claims) == count

        wait_for(f"{count} claims Bound", all_bound, timeout=120)
        say(f"{count} volumes, PVs and bound claims ready; pods in batches of {batch}")
        latencies = timed_batches(core, clock, [volume_pod(n) for n in names], batch)
        wait_for("no CSI mount left", lambda: not csi_mounts(), timeout=60)
        for n, volume in volumes.items():
            core.delete_namespaced_persistent_volume_claim(n, NS)
            core.delete_persistent_volume(n)
            controller.DeleteVolume(
                csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id), timeout=30
            )
    return latencies


# --- leftovers ------------------------------------------------------------------------------


def leftovers(nft_before: set[str]) -> list[str]:
    """What of this run is still on the machine after down (empty: nothing)."""
    found = [f"process {pid}" for pid in sorted(real_node_testing.processes_of(STATE))]
    found += [
        f"mount {point}"
        for point in sorted(real_node_testing.mount_points())
        if point.startswith(str(STATE)) or point.startswith("/run/netns/cni-")
    ]
    found += [
        f"link {n}" for n in (node.LINK, node.POD_BRIDGE) if Path(f"/sys/class/net/{n}").exists()
    ]
    found += [f"nft {t}" for t in sorted(real_node_testing.nft_tables() - nft_before)]
    nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    found += [f"iptables {r}" for r in nat.splitlines() if node.POD_CIDR.rsplit(".", 1)[0] in r]
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    found += [f"loop {entry}" for entry in loops.splitlines() if str(CSI_DIR) in entry]
    if node.MACHINE_CLAIM.exists():
        found.append(f"claim {node.MACHINE_CLAIM}")
    return found


# --- the run --------------------------------------------------------------------------------


def measure(real: real_node_testing.RealNode, args: argparse.Namespace) -> dict[str, object]:
    with real.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
        try:
            return _measure(core, args)
        finally:
            core.delete_namespace(NS)
            wait_for(
                f"namespace {NS} gone",
                lambda: NS not in {n.metadata.name for n in core.list_namespace().items},
                timeout=180,
            )


def _measure(core: client.CoreV1Api, args: argparse.Namespace) -> dict[str, object]:
    wait_for(
        "the real node without its not-ready taint",
        lambda: [t.key for t in core.read_node(node.NODE_NAME).spec.taints or []]
        == [node.TAINT_KEY],
        timeout=60,
    )
    clock = ReadyClock(core)
    try:
        figures: dict[str, object] = {"load_start": load()}
        # One warm-up pod per plugin (not counted): the first sandbox pays one-off costs.
        figures["switch_to_kubext_s"] = switch_plugin(core, clock, "kubext-bridge")
        say(f"kubext-bridge: {args.pods} pods")
        pods = [echo_pod(f"kx-{i:02d}") for i in range(args.pods)]
        figures["kubext"] = timed_batches(core, clock, pods, args.batch)
        figures["load_kubext"] = load()
        figures["switch_to_reference_s"] = switch_plugin(core, clock, "bridge")
        say(f"reference bridge: {args.pods} pods")
        pods = [echo_pod(f"ref-{i:02d}") for i in range(args.pods)]
        figures["reference"] = timed_batches(core, clock, pods, args.batch)
        figures["load_reference"] = load()
        figures["switch_back_s"] = switch_plugin(core, clock, "kubext-bridge")
        driver = start_driver()
        try:
            say(f"CSI: {args.volume_pods} pods, each with its own volume")
            figures["volumes"] = volume_bench(core, clock, args.volume_pods, args.batch)
        finally:
            driver.send_signal(signal.SIGTERM)
            driver.wait(timeout=30)
        figures["load_volumes"] = load()
        return figures
    finally:
        clock.stopped = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--volume-pods", type=int, default=20)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("real_node_bench: needs root (a real kubelet, loop devices)", file=sys.stderr)
        return 2
    with real_node_testing.machine_lock(say=say):
        nft_before = real_node_testing.nft_tables()
        say(f"{'shared real node' if SHARED else 'up --fresh --real-node'} ({STATE}); {load()}")
        with real_node_testing.up(STATE, check=False, say=say) as real:
            if real.started.returncode != 0:
                print(real.started.stderr[-3000:], file=sys.stderr)
                return 1
            say(f"up in {real.up_seconds:.1f} s")
            figures = measure(real, args)
        # The shared cluster stays up: its node's leftovers are not this run's to judge.
        left = [] if SHARED else leftovers(nft_before)
        if not SHARED and real.stopped is not None and real.stopped.returncode == 0 and not left:
            shutil.rmtree(STATE, ignore_errors=True)

    kubext, reference = figures["kubext"], figures["reference"]
    volumes = figures["volumes"]
    assert isinstance(kubext, list) and isinstance(reference, list) and isinstance(volumes, list)
    print(
        f"real node {node.NODE_NAME}: up --real-node {real.up_seconds:.1f} s; "
        f"pods in batches of {args.batch}"
    )
    print(
        "containerd reloaded the changed conflist without a restart: first probe pod on the new "
        f"plugin {figures['switch_to_reference_s']:.1f} s after the write (to bridge), "
        f"{figures['switch_back_s']:.1f} s (back to kubext-bridge)"
    )
    print(line("pod create-to-Ready, kubext-bridge", kubext))
    print(line("pod create-to-Ready, reference bridge v1.9.0", reference))
    print(line("volume pod create-to-Ready, kubext-csi", volumes))
    for key in ("load_start", "load_kubext", "load_reference", "load_volumes"):
        print(f"{key.removeprefix('load_')}: {figures[key]}")
    if SHARED:
        print(f"leftovers: not checked (the shared cluster's real node, {STATE}, stays up)")
    else:
        print(f"leftovers after down: {', '.join(left) if left else 'none'}")
    ratio = pct(kubext, 50) / pct(reference, 50)
    print(
        f"ratio kubext-bridge/reference pod Ready p50: {ratio:.2f} "
        f"(p99 {pct(kubext, 99) / pct(reference, 99):.2f}; target <= {TARGET_RATIO:.1f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
