"""Benchmark: our scheduler against the real kube-scheduler on 1,000 kwok nodes, 5,000 pods each.

Three runs, each on a fresh cluster of its own (not the shared test cluster; ``--same-cluster``
for one cluster, which makes each run slower than the one before it):

1. ``standalone``: our scheduler binds the pods itself (default plugin set);
2. ``kube-scheduler``: a second real kube-scheduler (the rig's pinned binary) with the default
   profile;
3. ``extender``: that kube-scheduler with a profile calling our extender (filter, prioritize,
   bind, preempt; ``nodeCacheCapable: true``: the chart's extender mode).

For each, the run's pods are created first (pending: their ``schedulerName`` is that run's
scheduler, which is not running yet), then the scheduler starts; a watch records when each pod
gets its node. Figures: pods/s from the first binding to the last (the steady rate, without
start-up and list), the wall time from the scheduler's start to the last binding, the
scheduler's CPU seconds and peak RSS (kube-scheduler and our extender apart in run 3), and the
placement: every constraint held (node capacity, nodeSelector, NoSchedule taints) and the
spread (pods per schedulable node: max - min, and the standard deviation). Each run starts
from empty nodes (with ``--same-cluster`` the pods are deleted after each run).

    python services/scheduler/bench/scheduler_bench.py [--nodes 1000] [--pods 5000]

A scheduler that has not bound every pod within ``--run-timeout`` seconds (300) is stopped and
measured on the pods it did bind (the line says how many). Targets (issue 13): standalone >= 0.5x kube-scheduler's pods/s; extender >= 100 pods/s. The
last line printed is the ratio standalone / kube-scheduler pods/s. Everything shares the
machine's cores with the API server, etcd and kwok, which use most of them.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
os.environ.setdefault("KUBEXT_RIG_DIR", str(Path.home() / ".cache/kubext/bench-scheduler"))
os.environ.setdefault("KUBEXT_RIG_PORT_OFFSET", "4300")

import urllib3  # noqa: E402
import yaml  # noqa: E402
from kubernetes import client, config  # noqa: E402
from kubernetes.watch.watch import iter_resp_lines  # noqa: E402

from kubext import quantity  # noqa: E402
from kubext_rig import cluster, testing  # noqa: E402

POOL = "bench.kubext.io/pool"
RUN_LABEL = "bench.kubext.io/run"  # on every bench pod: its run's schedulerName
TAINT = {"key": "bench.kubext.io/dedicated", "value": "other", "effect": "NoSchedule"}
TARGETS = {"standalone_ratio": 0.5, "extender_pods_per_s": 100.0}


# --- the cluster ----------------------------------------------------------------------------


def bench_node(i: int) -> dict[str, Any]:
    """A kwok node: every 5th in pool a (the nodeSelector pods' only choice), every 10th
    tainted (no bench pod tolerates it)."""
    manifest = cluster.node_manifest(f"bench-node-{i:04d}")
    labels = manifest["metadata"]["labels"]  # type: ignore[index]
    labels[POOL] = "a" if i % 5 == 0 else "b"
    labels["topology.kubernetes.io/zone"] = f"zone-{i % 10}"
    if i % 10 == 3:
        manifest["spec"] = {"taints": [TAINT]}
    allocatable = {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "1Ti"}
    manifest["status"] = {"capacity": allocatable, "allocatable": allocatable}
    return manifest


def create_nodes(info: cluster.ClusterInfo, count: int) -> None:
    existing = set(cluster.kubectl(info, "get", "nodes", "-o", "name").split())
    missing = [i for i in range(count) if f"node/bench-node-{i:04d}" not in existing]
    for start in range(0, len(missing), 200):
        docs = {"apiVersion": "v1", "kind": "List", "items": []}
        docs["items"] = [bench_node(i) for i in missing[start : start + 200]]
        cluster.kubectl(info, "create", "-f", "-", stdin=json.dumps(docs))
    # kwok renews 1,000 node leases on the same cores as everything else: under load a few
    # flap to NotReady (tainted, so every scheduler skips them alike); 95% is enough to start.
    testing.wait_for(
        f"95% of {count} bench nodes Ready",
        lambda: ready_bench_nodes(info) >= 0.95 * count,
        timeout=900,
        every=5,
    )


def ready_bench_nodes(info: cluster.ClusterInfo) -> int:
    nodes = json.loads(cluster.kubectl(info, "get", "nodes", "-o", "json"))["items"]
    return sum(
        1
        for n in nodes
        if n["metadata"]["name"].startswith("bench-node-")
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (n.get("status") or {}).get("conditions", [])
        )
    )


def bench_pod(i: int, scheduler_name: str) -> dict[str, Any]:
    cpu = ("100m", "250m", "500m")[i % 3]
    memory = ("128Mi", "256Mi", "512Mi")[(i // 3) % 3]
    spec: dict[str, Any] = {
        "schedulerName": scheduler_name,
        "containers": [
            {
                "name": "app",
                "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": cpu, "memory": memory}},
            }
        ],
    }
    if i % 10 == 0:
        spec["nodeSelector"] = {POOL: "a"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"pod-{i:05d}", "labels": {RUN_LABEL: scheduler_name}},
        "spec": spec,
    }


def create_pods(core: client.CoreV1Api, namespace: str, count: int, scheduler_name: str) -> None:
    def one(i: int) -> None:
        core.create_namespaced_pod(namespace, bench_pod(i, scheduler_name), _preload_content=False)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(count)))


def delete_each(names: list[str], delete: Any) -> None:
    """``delete(name)`` for every name, 16 calls at a time; one already gone is fine."""

    def one(name: str) -> None:
        try:
            delete(name)
        except client.ApiException as exc:
            if exc.status != 404:
                raise

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(one, names))


def delete_pods(core: client.CoreV1Api, namespace: str) -> float:
    """Delete the namespace's bench pods and wait until none is left; returns the seconds.

    Grace 0 removes a pod from the API at once (no kubelet, no kwok stage in between). One
    delete_collection is served by the API server's single delete-collection worker (about
    3 pods/s under the rig's load, past its 60 s request timeout), so the pods go one call each,
    16 at a time; a delete_collection by label sweeps up any the list missed."""
    t = time.monotonic()
    selector = RUN_LABEL
    listed = core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
    names = [p["metadata"]["name"] for p in json.loads(listed.data)["items"]]
    delete_each(
        names,
        lambda name: core.delete_namespaced_pod(
            name, namespace, grace_period_seconds=0, _preload_content=False
        ),
    )
    with contextlib.suppress(client.ApiException):
        core.delete_collection_namespaced_pod(
            namespace, label_selector=selector, grace_period_seconds=0, _request_timeout=120
        )
    testing.wait_for(
        f"the {len(names)} pods of {namespace} deleted",
        lambda: not core.list_namespaced_pod(namespace, label_selector=selector, limit=1).items,
        timeout=1200,  # 5,000 took about 420 s at load average 15-18
        every=1,
    )
    return time.monotonic() - t


def delete_namespace(core: client.CoreV1Api, namespace: str) -> None:
    """Delete the run's pods (waited for: a terminating namespace's pods would still be in
    every scheduler's queue, each binding refused, in the next run), then its Events one call
    each as well (a Scheduled Event per pod: the namespace controller's delete-collection took
    minutes for 5,000), then the namespace, waited until gone."""
    with concurrent.futures.ThreadPoolExecutor(2) as both:
        events = both.submit(
            lambda: delete_each(
                [
                    e["metadata"]["name"]
                    for e in json.loads(
                        core.list_namespaced_event(namespace, _preload_content=False).data
                    )["items"]
                ],
                lambda name: core.delete_namespaced_event(name, namespace, _preload_content=False),
            )
        )
        delete_pods(core, namespace)
        events.result()
    with contextlib.suppress(client.ApiException):
        core.delete_namespace(namespace, grace_period_seconds=0)

    def gone() -> bool:
        try:
            core.read_namespace(namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    try:
        testing.wait_for(f"namespace {namespace} gone", gone, timeout=600, every=1)
    except AssertionError as exc:  # its pods are gone, which is what the next run needs
        print(f"  {exc}; going on (no bench pod is left)", flush=True)


def no_bench_pods(core: client.CoreV1Api) -> None:
    """Before a run: no bench pod of an earlier run anywhere (they would fill its nodes and
    its scheduler's queue); any found are deleted and waited for."""
    left = core.list_pod_for_all_namespaces(label_selector=RUN_LABEL, limit=1).items
    if left:
        namespaces = {
            p.metadata.namespace
            for p in core.list_pod_for_all_namespaces(label_selector=RUN_LABEL).items
        }
        print(f"  bench pods of an earlier run in {sorted(namespaces)}: deleting", flush=True)
        for namespace in namespaces:
            delete_namespace(core, namespace)


class BindWatch:
    """When each pod of the namespace got its node (watch events, time.monotonic)."""

    def __init__(self, core: client.CoreV1Api, namespace: str) -> None:
        self.core, self.namespace = core, namespace
        self.bound: dict[str, float] = {}
        self.stop = threading.Event()
        listed = core.list_namespaced_pod(namespace, _preload_content=False)
        data = json.loads(listed.data)
        for pod in data["items"]:
            if pod["spec"].get("nodeName"):
                self.bound[pod["metadata"]["name"]] = time.monotonic()
        self.version = data["metadata"]["resourceVersion"]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._follow()
        except (urllib3.exceptions.HTTPError, client.ApiException, OSError):
            if not self.stop.is_set():  # once stopped, its cluster may go down under it
                raise

    def _follow(self) -> None:
        while not self.stop.is_set():
            resp = self.core.list_namespaced_pod(
                self.namespace,
                watch=True,
                resource_version=self.version,
                allow_watch_bookmarks=True,
                timeout_seconds=60,
                _preload_content=False,
            )
            for line in iter_resp_lines(resp):
                event = json.loads(line)
                obj = event["object"]
                self.version = obj["metadata"].get("resourceVersion") or self.version
                if event["type"] in ("ADDED", "MODIFIED") and obj["spec"].get("nodeName"):
                    self.bound.setdefault(obj["metadata"]["name"], time.monotonic())
                if self.stop.is_set():
                    break


# --- processes ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the bench dies, even by SIGKILL (Linux
    PR_SET_PDEATHSIG), so no scheduler of a killed bench outlives it."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


class Process:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.log = name, logs / f"{name}.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, env=env, stdout=out, stderr=out, preexec_fn=_die_with_parent
            )

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise SystemExit(f"{self.name} exited: {self.log.read_text()[-2000:]}")

    def usage(self) -> tuple[float, float]:
        return cpu_seconds(self.proc.pid), peak_rss_mb(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def ours(info: cluster.ClusterInfo, logs: Path, *, standalone: bool, profile: str) -> Process:
    """Our service: the standalone scheduler (profile ``profile``, default plugins), or only
    the extender with its informer cache; returns once it is ready."""
    config_file = logs / f"{profile}.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kubescheduler.config.k8s.io/v1",
                "kind": "KubeSchedulerConfiguration",
                "profiles": [{"schedulerName": profile}],
            }
        )
    )
    health = testing.free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "KUBEXT_SCHEDULER_KUBECONFIG": info.kubeconfig,
        "KUBEXT_SCHEDULER_SCHEDULER_CONFIG": str(config_file),
        "KUBEXT_SCHEDULER_LOG_LEVEL": "warning",  # one line per pod would be the bench's cost
        "KUBEXT_SCHEDULER_HEALTH__HOST": "127.0.0.1",
        "KUBEXT_SCHEDULER_HEALTH__PORT": str(health),
        "KUBEXT_SCHEDULER_LEADER_ELECTION__ENABLED": "false",
        "KUBEXT_SCHEDULER_STANDALONE__ENABLED": str(standalone).lower(),
        "KUBEXT_SCHEDULER_EXTENDER__ENABLED": str(not standalone).lower(),
        "KUBEXT_SCHEDULER_EXTENDER__HOST": "127.0.0.1",
        "KUBEXT_SCHEDULER_EXTENDER__PORT": str(EXTENDER_PORT),
    }
    code = "import sys; from kubext_scheduler.__main__ import main; sys.exit(main())"
    proc = Process(
        "standalone" if standalone else "extender", [sys.executable, "-c", code], env, logs
    )
    import urllib.request

    def ready() -> bool:
        proc.check()
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=2) as r,
        ):
            return r.status == 200
        return False

    testing.wait_for(f"{proc.name} ready", ready, timeout=120)
    return proc


EXTENDER_PORT = testing.free_port()


def kube_scheduler(
    info: cluster.ClusterInfo, logs: Path, profile: str, *, extender: bool
) -> Process:
    kubeconfig = str(info.root / "scheduler.kubeconfig")
    cfg: dict[str, Any] = {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        # The rig's own kube-scheduler runs with these (the default 50 QPS caps binding).
        "clientConnection": {"kubeconfig": kubeconfig, "qps": 200, "burst": 400},
        "leaderElection": {"leaderElect": False},
        "profiles": [{"schedulerName": profile}],
    }
    if extender:
        cfg["extenders"] = [
            {
                "urlPrefix": f"http://127.0.0.1:{EXTENDER_PORT}",
                "filterVerb": "filter",
                "prioritizeVerb": "prioritize",
                "bindVerb": "bind",
                "preemptVerb": "preempt",
                "weight": 1,
                "nodeCacheCapable": True,
                "enableHTTPS": False,
            }
        ]
    config_file = logs / f"{profile}.yaml"
    config_file.write_text(yaml.safe_dump(cfg))
    argv = [
        info.bin("kube-scheduler"),
        f"--config={config_file}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={testing.free_port()}",
    ]
    return Process(f"kube-scheduler-{profile}", argv, cluster.component_env(), logs)


# --- one run --------------------------------------------------------------------------------


def placement(core: client.CoreV1Api, namespace: str) -> dict[str, Any]:
    """Every constraint checked against the nodes as they are, and the spread."""
    nodes = {
        n["metadata"]["name"]: n
        for n in json.loads(core.list_node(_preload_content=False).data)["items"]
    }
    pods = json.loads(core.list_namespaced_pod(namespace, _preload_content=False).data)["items"]
    used: dict[str, list[float]] = {}
    violations: list[str] = []
    for pod in pods:
        name, node_name = pod["metadata"]["name"], pod["spec"].get("nodeName")
        if not node_name:
            continue
        node = nodes[node_name]
        labels = node["metadata"].get("labels") or {}
        for key, value in (pod["spec"].get("nodeSelector") or {}).items():
            if labels.get(key) != value:
                violations.append(f"{name} on {node_name}: nodeSelector {key}={value}")
        # Only the bench's own taint: the node controller taints a kwok node whose lease
        # lapsed under load (node.kubernetes.io/unreachable) after pods were bound to it.
        for taint in (node.get("spec") or {}).get("taints") or []:
            if taint.get("key") == TAINT["key"]:
                violations.append(f"{name} on {node_name}: untolerated taint {taint['key']}")
        req = pod["spec"]["containers"][0]["resources"]["requests"]
        sums = used.setdefault(node_name, [0.0, 0.0, 0.0])
        sums[0] += quantity.to_millicores(req["cpu"])
        sums[1] += quantity.to_bytes(req["memory"])
        sums[2] += 1
    for node_name, (cpu, memory, count) in used.items():
        allocatable = nodes[node_name]["status"]["allocatable"]
        limits = (
            ("cpu", cpu, quantity.to_millicores(allocatable["cpu"])),
            ("memory", memory, quantity.to_bytes(allocatable["memory"])),
            ("pods", count, int(allocatable["pods"])),
        )
        for what, value, limit in limits:
            if value > limit:
                violations.append(f"{node_name}: {what} overcommitted")
    schedulable = [
        name
        for name, n in nodes.items()
        if name.startswith("bench-node-")
        and not any(t.get("key") == TAINT["key"] for t in (n.get("spec") or {}).get("taints") or [])
    ]
    per_node = [int(used.get(name, [0, 0, 0])[2]) for name in schedulable]
    return {
        "bound": sum(1 for p in pods if p["spec"].get("nodeName")),
        "violations": violations,
        "skew": max(per_node) - min(per_node) if per_node else 0,
        "stdev": statistics.pstdev(per_node) if per_node else 0.0,
    }


def report(r: dict[str, Any], count: int) -> None:
    usage = ", ".join(
        f"{proc}: {cpu:.1f} CPU s, {rss:.0f} MB peak RSS" for proc, (cpu, rss) in r["usage"].items()
    )
    print(
        f"{r['name']:>15}: {r['bound']}/{count} bound, {r['pods_per_s']:.1f} pods/s "
        f"(first to last binding), {r['wall_s']:.1f} s from start to the last; {usage}; "
        f"{len(r['violations'])} constraint violations, pods per schedulable node "
        f"max-min {r['skew']}, stdev {r['stdev']:.2f} (load average {os.getloadavg()[0]:.1f})",
        flush=True,
    )
    for v in r["violations"][:5]:
        print(f"    violation: {v}")


def run(
    name: str,
    info: cluster.ClusterInfo,
    core: client.CoreV1Api,
    logs: Path,
    count: int,
    profile: str,
    timeout: float,
    *,
    clean: bool = True,
) -> dict[str, Any]:
    no_bench_pods(core)
    namespace = f"bench-{name}-{int(time.time())}"
    core.create_namespace({"metadata": {"name": namespace}})
    testing.wait_for(
        "the namespace's default ServiceAccount",
        lambda: core.list_namespaced_service_account(namespace).items,
        timeout=60,
    )
    t = time.monotonic()
    create_pods(core, namespace, count, profile)
    print(f"  {name}: {count} pods created in {time.monotonic() - t:.1f} s", flush=True)
    watch = BindWatch(core, namespace)
    started = time.monotonic()
    procs: list[Process] = []
    if name == "standalone":
        procs.append(ours(info, logs, standalone=True, profile=profile))
    elif name == "extender":
        procs.append(ours(info, logs, standalone=False, profile="kubext-extender"))
        procs.append(kube_scheduler(info, logs, profile, extender=True))
    else:
        procs.append(kube_scheduler(info, logs, profile, extender=False))
    deadline = started + timeout
    try:
        while len(watch.bound) < count and time.monotonic() < deadline:
            for proc in procs:
                proc.check()
            time.sleep(0.5)
        usage = {proc.name: proc.usage() for proc in procs}
    finally:
        for proc in procs:
            proc.stop()
        watch.stop.set()
    times = sorted(watch.bound.values())
    result: dict[str, Any] = {
        "name": name,
        "bound_seen": len(times),
        "pods_per_s": (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0,
        "wall_s": (times[-1] - started) if times else float("inf"),
        "usage": usage,
        **placement(core, namespace),
    }
    report(result, count)
    if not clean:  # the last run on a cluster about to go down: 5,000 deletions for nothing
        return result
    t = time.monotonic()
    delete_namespace(core, namespace)
    print(
        f"  {name}: its pods and namespace deleted in {time.monotonic() - t:.1f} s "
        f"(load average {os.getloadavg()[0]:.1f})",
        flush=True,
    )
    return result


def fresh_cluster(nodes: int) -> tuple[cluster.ClusterInfo, client.CoreV1Api]:
    """A new cluster with ``nodes`` kwok nodes Ready, and a client of it. A killed bench leaves
    its cluster (and maybe a terminating namespace of 5,000 pods): always from a new one, as
    `up --fresh`."""
    info = cluster.up(nodes=1, fresh=True)
    t = time.monotonic()
    create_nodes(info, nodes)
    print(
        f"{ready_bench_nodes(info)}/{nodes} kwok nodes Ready after {time.monotonic() - t:.1f} s",
        flush=True,
    )
    cfg = client.Configuration()
    config.load_kube_config(config_file=info.kubeconfig, client_configuration=cfg)
    cfg.connection_pool_maxsize = 32
    return info, client.CoreV1Api(client.ApiClient(cfg))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    parser.add_argument(
        "--same-cluster",
        action="store_true",
        help="run every scheduler on one cluster, the pods deleted between runs (by default each "
        "gets a fresh one: on one cluster each run is slower than the one before, the extender "
        "run three times in a row 101, 91, 88 pods/s)",
    )
    parser.add_argument(
        "--run-timeout",
        type=float,
        default=300.0,
        help="seconds a scheduler gets to bind the pods; a slower one is measured on those "
        "it bound by then",
    )
    parser.add_argument("--only", nargs="*", default=["standalone", "kube-scheduler", "extender"])
    opts = parser.parse_args()
    # SIGTERM (a timeout, a kill) runs the finally blocks: schedulers stopped, cluster down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logs = Path(tempfile.mkdtemp(prefix="scheduler-bench-"))
    print(f"cluster {os.environ['KUBEXT_RIG_DIR']}, logs {logs}", flush=True)
    print(f"load average at start {os.getloadavg()[0]:.1f}", flush=True)
    profiles = {
        "standalone": "kubext-bench",
        "kube-scheduler": "bench-kube",
        "extender": "bench-extender",
    }
    results = {}
    info: cluster.ClusterInfo | None = None
    try:
        for i, name in enumerate(opts.only):
            if info is None or not opts.same_cluster:
                if info is not None:
                    cluster.down(root=info.root)
                info, core = fresh_cluster(opts.nodes)
            last = i == len(opts.only) - 1
            results[name] = run(
                name,
                info,
                core,
                logs,
                opts.pods,
                profiles[name],
                opts.run_timeout,
                clean=opts.keep or (opts.same_cluster and not last),
            )
    finally:
        if info is not None and not opts.keep:
            cluster.down(root=info.root)
    print(f"load average at the end {os.getloadavg()[0]:.1f}", flush=True)
    rate = {name: r["pods_per_s"] for name, r in results.items()}
    if "extender" in rate:
        print(
            f"extender: {rate['extender']:.1f} pods/s, "
            f"target >= {TARGETS['extender_pods_per_s']:.0f}: "
            f"ratio {rate['extender'] / TARGETS['extender_pods_per_s']:.2f}"
        )
    if "standalone" in rate and rate.get("kube-scheduler"):
        if "extender" in rate:
            print(
                f"extender / kube-scheduler pods/s: {rate['extender'] / rate['kube-scheduler']:.2f}"
            )
        print(
            f"standalone / kube-scheduler pods/s (target >= {TARGETS['standalone_ratio']}): "
            f"{rate['standalone'] / rate['kube-scheduler']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
