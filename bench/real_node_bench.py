"""Pod and volume latency on the rig's real node (not part of the test suite).

Measures, against issue 12's target, on one real-node cluster of its own:
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
import fcntl
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

OFFSET = 3000  # the real-node tests' offset; their lock keeps us apart
os.environ.setdefault("KUBEXT_RIG_PORT_OFFSET", str(OFFSET))

import grpc  # noqa: E402
import yaml  # noqa: E402
from kubernetes import client, config, watch  # noqa: E402

from kubext_proto.csi.v1 import csi_pb2, csi_pb2_grpc  # noqa: E402
from kubext_rig import node, tools  # noqa: E402
from kubext_rig.testing import wait_for  # noqa: E402

STATE = tools.cache_dir() / "real-node-bench"  # short: containerd's socket path has a limit
NS = "default"
TOLERATE = [client.V1Toleration(key=node.TAINT_KEY, operator="Exists", effect="NoSchedule")]
CONFLIST = STATE / "node" / "cni" / "net.d" / "10-kubext-rig.conflist"
CSI_DIR = STATE / "node" / "csi"
KUBELET_DIR = STATE / "node" / "kubelet"
DRIVER = "csi.kubext.io"
TOPOLOGY_KEY = "topology.csi.kubext.io/node"
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


def rig_env() -> dict[str, str]:
    return {
        **os.environ,
        "KUBEXT_RIG_DIR": str(STATE),
        "KUBEXT_RIG_PORT_OFFSET": str(OFFSET),
        "PYTHONPATH": os.pathsep.join(os.path.abspath(p) for p in sys.path if p),
    }


def rig(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "kubext_rig", *args]
    return subprocess.run(argv, env=rig_env(), capture_output=True, text=True, timeout=600)


@contextlib.contextmanager
def real_node_lock() -> Iterator[None]:
    """The real-node tests' lock: one kubelet per machine."""
    tools.cache_dir().mkdir(parents=True, exist_ok=True)
    with open(tools.cache_dir() / "real-node-test.lock", "w") as fh:
        say("waiting for the real-node lock")
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


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
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            node_selector={"kubernetes.io/hostname": node.NODE_NAME},
            tolerations=TOLERATE,
            termination_grace_period_seconds=5,
            containers=[
                client.V1Container(
                    name=name,
                    image=node.image_ref("echo-loop"),
                    image_pull_policy="Never",
                    args=["x"],
                )
            ],
        ),
    )


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


def masquerade_elements() -> set[str]:
    """Pod addresses in kubext-bridge's masquerade map: only pods it networked are there."""
    res = subprocess.run(
        ["nft", "-j", "list", "map", "inet", "kubext-cni", "masq4"], capture_output=True, text=True
    )
    if res.returncode != 0:
        return set()
    found = set()
    for item in json.loads(res.stdout)["nftables"]:
        for elem in item.get("map", {}).get("elem", []):
            key = elem[0]
            found.add(key["elem"]["val"] if isinstance(key, dict) else key)
    return found


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
        ours = ip in masquerade_elements()
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
    cfg = {
        "driver_name": DRIVER,
        "endpoint": f"unix://{CSI_DIR / 'csi.sock'}",
        "node_id": node.NODE_NAME,
        "topology_key": TOPOLOGY_KEY,
        "state_dir": str(CSI_DIR / "state"),
        "pool_size": "4Gi",
        "path_roots": [str(KUBELET_DIR)],
        "health": {"host": "127.0.0.1", "port": 0},
        "registration": {"enabled": True, "kubelet_dir": str(KUBELET_DIR)},
        "log_level": "warning",
    }
    (CSI_DIR / "csi.yaml").write_text(yaml.safe_dump(cfg))
    log = open(STATE / "logs" / "kubext-csi.log", "w")  # noqa: SIM115 (the driver keeps it)
    return subprocess.Popen(
        [sys.executable, "-m", "kubext_csi", "--config", str(CSI_DIR / "csi.yaml")],
        env=rig_env(),
        stderr=log,
    )


def create_volume(controller: csi_pb2_grpc.ControllerStub, name: str) -> csi_pb2.Volume:
    """As external-provisioner calls it for a ReadWriteOnce ext4 claim of 64Mi."""
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


def pv_and_claim(core: client.CoreV1Api, volume: csi_pb2.Volume, name: str) -> None:
    """A PV as external-provisioner writes it (node affinity from the volume's topology) and a
    claim bound to it by name."""
    affinity = client.V1VolumeNodeAffinity(
        required=client.V1NodeSelector(
            node_selector_terms=[
                client.V1NodeSelectorTerm(
                    match_expressions=[
                        client.V1NodeSelectorRequirement(key=k, operator="In", values=[v])
                        for k, v in volume.accessible_topology[0].segments.items()
                    ]
                )
            ]
        )
    )
    size = f"{volume.capacity_bytes >> 20}Mi"
    core.create_persistent_volume(
        client.V1PersistentVolume(
            metadata=client.V1ObjectMeta(name=name),
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
        NS,
        client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                storage_class_name="",
                volume_name=name,
                resources=client.V1VolumeResourceRequirements(requests={"storage": size}),
            ),
        ),
    )


def volume_pod(name: str) -> client.V1Pod:
    return client.V1Pod(
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
                    args=["write", "/data/hello.txt", name],
                    volume_mounts=[client.V1VolumeMount(name="data", mount_path="/data")],
                )
            ],
            volumes=[
                client.V1Volume(
                    name="data",
                    persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
                        claim_name=name
                    ),
                )
            ],
        ),
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

    def registered() -> bool:
        raw = storage.read_csi_node(node.NODE_NAME, _preload_content=False)
        drivers = json.loads(raw.data)["spec"].get("drivers") or []
        return any(d["name"] == DRIVER for d in drivers)

    wait_for("CSINode lists the driver", registered, timeout=60)
    names = [f"vol-{i:02d}" for i in range(count)]
    with grpc.insecure_channel(f"unix://{CSI_DIR / 'csi.sock'}") as channel:
        controller = csi_pb2_grpc.ControllerStub(channel)
        volumes = {n: create_volume(controller, n) for n in names}
        for n, volume in volumes.items():
            pv_and_claim(core, volume, n)

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
    found = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and str(STATE).encode() in (proc / "cmdline").read_bytes():
                found.append(f"process {proc.name}")
    for entry in Path("/proc/self/mountinfo").read_text().splitlines():
        point = entry.split()[4]
        if point.startswith(str(STATE)) or point.startswith("/run/netns/cni-"):
            found.append(f"mount {point}")
    found += [
        f"link {n}" for n in (node.LINK, node.POD_BRIDGE) if Path(f"/sys/class/net/{n}").exists()
    ]
    nft_now = set(
        subprocess.run(
            ["nft", "list", "tables"], capture_output=True, text=True
        ).stdout.splitlines()
    )
    found += [f"nft {t}" for t in sorted(nft_now - nft_before)]
    nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    found += [f"iptables {r}" for r in nat.splitlines() if node.POD_CIDR.rsplit(".", 1)[0] in r]
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    found += [f"loop {entry}" for entry in loops.splitlines() if str(CSI_DIR) in entry]
    if node.MACHINE_CLAIM.exists():
        found.append(f"claim {node.MACHINE_CLAIM}")
    return found


# --- the run --------------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> dict[str, object]:
    kcfg = client.Configuration()
    config.load_kube_config(config_file=str(STATE / "admin.kubeconfig"), client_configuration=kcfg)
    with client.ApiClient(kcfg) as api:
        core = client.CoreV1Api(api)
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
    with real_node_lock():
        nft_before = set(
            subprocess.run(
                ["nft", "list", "tables"], capture_output=True, text=True
            ).stdout.splitlines()
        )
        say(f"up --fresh --real-node ({STATE}); {load()}")
        t0 = time.monotonic()
        started = rig("up", "--fresh", "--real-node", "--nodes", "1")
        up_s = time.monotonic() - t0
        try:
            if started.returncode != 0:
                print(started.stderr[-3000:], file=sys.stderr)
                return 1
            say(f"up in {up_s:.1f} s")
            figures = measure(args)
        finally:
            stopped = rig("down")
            say(f"down: exit {stopped.returncode}")
        left = leftovers(nft_before)
        if stopped.returncode == 0 and not left:
            shutil.rmtree(STATE, ignore_errors=True)

    kubext, reference = figures["kubext"], figures["reference"]
    volumes = figures["volumes"]
    assert isinstance(kubext, list) and isinstance(reference, list) and isinstance(volumes, list)
    print(
        f"real node {node.NODE_NAME}: up --real-node {up_s:.1f} s; pods in batches of {args.batch}"
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
    print(f"leftovers after down: {', '.join(left) if left else 'none'}")
    ratio = pct(kubext, 50) / pct(reference, 50)
    print(
        f"ratio kubext-bridge/reference pod Ready p50: {ratio:.2f} "
        f"(p99 {pct(kubext, 99) / pct(reference, 99):.2f}; target <= {TARGET_RATIO:.1f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
