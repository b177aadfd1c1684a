"""Benchmark: 1,000 WebApps on a rig with 100 kwok nodes (not part of the test suite).

Measures, against the targets of issue 4:
- time from the first create until every WebApp's Ready condition is True (<= 60 s);
- API writes the operator made per new WebApp (<= 4; Events counted apart);
- writes during a resync with nothing changed: a restarted operator relists everything and a
  periodic resync re-reconciles it all (0);
- operator RSS with 1,000 and with 5,000 WebApps (<= 150 MB at 5,000).

Runs a separate cluster (own state dir and ports) so the shared test cluster is not disturbed:

    python services/operator/bench/webapps_bench.py [--count 1000] [--scale-to 5000]

It also prints each control-plane process's CPU time until all are Ready: on 2 cores the machine
is saturated, and the API server, not the operator, uses most of it. The rig runs its components
at GOGC=400; `KUBEXT_RIG_GOGC=100` runs them at Go's default for comparison.

The last line printed is the ratio of each figure to its target (<= 1 meets it).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
os.environ.setdefault("KUBEXT_RIG_DIR", str(Path.home() / ".cache/kubext/bench-operator"))
os.environ.setdefault("KUBEXT_RIG_PORT_OFFSET", "300")

from kubernetes import client, config  # noqa: E402

from kubext_rig import cluster  # noqa: E402

sys.path.insert(0, str(REPO / "services/operator/kubext_operator/tests"))
from e2e.conftest import Operator, wait_for  # noqa: E402

GROUP, VERSION, PLURAL = "example.com", "v1", "webapps"
NAMESPACE = f"bench-webapps-{int(time.time())}"  # fresh each run; `down` wipes the cluster
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
TARGETS = {"ready_s": 60.0, "writes": 4.0, "resync": 0.0, "rss_mb": 150.0}


def _body(n: int, replicas: int) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WebApp",
        "metadata": {"name": f"app-{n:05d}"},
        "spec": {"replicas": replicas, "image": "nginx:1.21", "port": 8080},
    }


def create(custom: client.CustomObjectsApi, numbers: range, replicas: int) -> None:
    def one(n: int) -> None:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, _body(n, replicas)
        )

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(one, numbers))


def count_ready(custom: client.CustomObjectsApi) -> tuple[int, int]:
    items = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]
    ready = sum(
        1
        for i in items
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (i.get("status") or {}).get("conditions", [])
        )
    )
    return ready, len(items)


def ready_latencies(custom: client.CustomObjectsApi) -> list[float]:
    """Seconds from each WebApp's creation to its Ready condition (1 s timestamp resolution)."""
    out = []
    for item in custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]:
        born = _stamp(item["metadata"]["creationTimestamp"])
        for cond in (item.get("status") or {}).get("conditions", []):
            if cond["type"] == "Ready" and cond["status"] == "True":
                out.append(_stamp(cond["lastTransitionTime"]) - born)
    return sorted(out)


def _stamp(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def writes(op: Operator) -> tuple[float, float]:
    """(writes to objects, Events posted), Lease renewals excluded."""
    objects = events = 0.0
    for key, value in op.metrics().items():
        if not key.startswith("kubext_operator_api_writes_total{") or 'resource="leases"' in key:
            continue
        if 'resource="events"' in key:
            events += value
        else:
            objects += value
    return objects, events


def writes_by_kind(op: Operator) -> str:
    """Writes by resource and verb, for seeing where the per-WebApp count goes."""
    parts = []
    for key, value in sorted(op.metrics().items()):
        if key.startswith("kubext_operator_api_writes_total{") and value:
            labels = dict(p.split("=", 1) for p in key[key.index("{") + 1 : -1].split(","))
            resource, verb = labels["resource"].strip('"'), labels["verb"].strip('"')
            parts.append(f"{resource} {verb} {value:.0f}")
    return ", ".join(parts)


def cpu_seconds(pids: dict[str, int | None]) -> dict[str, float]:
    """User + system CPU seconds each process has used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {}
    for name, pid in pids.items():
        if pid is None:
            continue
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        used[name] = (int(fields[11]) + int(fields[12])) / tick
    return used


def host(info: cluster.ClusterInfo) -> str:
    return info.server.removeprefix("https://")


def reconciles(op: Operator) -> float:
    return sum(
        v for k, v in op.metrics().items() if k.startswith("controller_runtime_reconcile_total{")
    )


def rss_mb(op: Operator) -> float:
    return op.metrics()["process_resident_memory_bytes"] / 2**20


def main() -> int:
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the operator is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--scale-to", type=int, default=5000)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="leave the bench cluster running")
    parser.add_argument("--reuse", action="store_true", help="reuse a running bench cluster")
    args = parser.parse_args()

    # The rig's default Service range (a /24) holds ~250 ClusterIPs; one WebApp needs one. This
    # bench's own cluster gets a /16 (the shared test cluster is not affected).
    cluster.SERVICE_CIDR = "10.96.0.0/16"
    if not args.reuse:
        cluster.down()
    info = cluster.up(nodes=args.nodes)
    kubectl = [info.bin("kubectl"), f"--kubeconfig={info.kubeconfig}"]
    crds = REPO / "services/operator/deploy/crds"
    subprocess.run([*kubectl, "apply", "-f", str(crds)], check=True, capture_output=True)
    subprocess.run(
        [*kubectl, "wait", "--for=condition=Established", "crd/webapps.example.com"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *kubectl,
            "delete",
            "ns",
            NAMESPACE,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=300s",
        ],
        capture_output=True,
    )
    subprocess.run([*kubectl, "create", "ns", NAMESPACE], check=True, capture_output=True)
    cfg = client.Configuration()
    config.load_kube_config(config_file=info.kubeconfig, client_configuration=cfg)
    custom = client.CustomObjectsApi(client.ApiClient(cfg))
    logs = Path(tempfile.mkdtemp(prefix="operator-bench-"))
    env = {"KUBEXT_OPERATOR_LEADER_ELECTION__ENABLED": "false"}
    # Operator settings to try (e.g. KUBEXT_OPERATOR_WORKERS=48) pass through to it.
    env.update({k: v for k, v in os.environ.items() if k.startswith("KUBEXT_OPERATOR_")})

    op = Operator(kubeconfig=info.kubeconfig, namespace=NAMESPACE, log_dir=logs, **env).start()
    try:
        pids = {name: cluster.running_pid(info.root, name) for name in COMPONENTS}
        pids["operator"] = op.proc.pid
        cpu_before = cpu_seconds(pids)
        started = time.monotonic()
        create(custom, range(args.count), args.replicas)
        created_s = time.monotonic() - started
        wait_for(
            f"{args.count} WebApps Ready",
            lambda: count_ready(custom)[0] == args.count,
            timeout=900,
            every=0.5,
        )
        ready_s = time.monotonic() - started
        cpu_used = {k: v - cpu_before[k] for k, v in cpu_seconds(pids).items()}
        time.sleep(2)
        objects, events = writes(op)
        rss_1000 = rss_mb(op)
        print(f"created {args.count} WebApps in {created_s:.1f} s; all Ready after {ready_s:.1f} s")
        each = ready_latencies(custom)
        print(
            f"each WebApp from creation to Ready: p50 {each[len(each) // 2]:.0f} s, "
            f"p90 {each[len(each) * 9 // 10]:.0f} s, max {each[-1]:.0f} s"
        )
        print(
            f"CPU seconds until all Ready ({os.cpu_count()} cores: "
            f"{ready_s * (os.cpu_count() or 1):.0f} available): "
            + ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu_used.items(), key=lambda i: -i[1]))
            + f"; total {sum(cpu_used.values()):.1f}"
        )
        samples = op.metrics()
        labels = f'{{host="{host(info)}",verb="PATCH"}}'
        latency = samples[f"rest_client_request_duration_seconds_sum{labels}"]
        patches = samples[f"rest_client_request_duration_seconds_count{labels}"]
        print(f"the operator's mean PATCH latency: {latency / patches * 1000:.0f} ms")
        print(
            f"writes per new WebApp: {objects / args.count:.2f} to objects "
            f"(+{events / args.count:.2f} Events)"
        )
        print(f"  by resource and verb: {writes_by_kind(op)}")
        print(f"operator RSS with {args.count} WebApps: {rss_1000:.0f} MB")
    finally:
        op.stop()

    # A restarted operator relists everything, then a periodic resync re-reconciles it all.
    env["KUBEXT_OPERATOR_RESYNC_PERIOD_SECONDS"] = "15"
    op = Operator(kubeconfig=info.kubeconfig, namespace=NAMESPACE, log_dir=logs, **env).start()
    try:
        wait_for(
            "two full reconcile passes",
            lambda: reconciles(op) >= 2 * args.count,
            timeout=300,
            every=1,
        )
        time.sleep(2)
        resync_objects, resync_events = writes(op)
        print(
            f"writes during restart + resync with nothing changed: {resync_objects:.0f} "
            f"(+{resync_events:.0f} Events) over {reconciles(op):.0f} reconciles"
        )
    finally:
        op.stop()

    env.pop("KUBEXT_OPERATOR_RESYNC_PERIOD_SECONDS")
    total = len(custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"])
    rss_grown = 0.0
    if total < args.scale_to:
        op = Operator(kubeconfig=info.kubeconfig, namespace=NAMESPACE, log_dir=logs, **env).start()
        try:
            more = args.scale_to - total
            create(custom, range(args.count, args.count + more), args.replicas)

            def settled() -> bool:
                samples = op.metrics()
                made = sum(
                    v
                    for k, v in samples.items()
                    if k.startswith('kubext_operator_api_writes_total{resource="services"')
                )
                return made >= more and samples.get('workqueue_depth{name="kubext-operator"}') == 0

            wait_for(f"{args.scale_to} WebApps reconciled", settled, timeout=3600, every=2)
            time.sleep(10)
            rss_grown = rss_mb(op)
            print(f"operator RSS after growing to {args.scale_to} WebApps: {rss_grown:.0f} MB")
        finally:
            op.stop()
    # An operator (re)started with all of them there (cluster-wide): list, sync, reconcile all.
    total = len(custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"])
    env["KUBEXT_OPERATOR_NAMESPACES"] = "[]"
    op = Operator(kubeconfig=info.kubeconfig, namespace=NAMESPACE, log_dir=logs, **env).start()
    try:
        wait_for("a full reconcile pass", lambda: reconciles(op) >= total, timeout=900, every=2)
        time.sleep(35)  # past the idle trim
        rss_started = rss_mb(op)
        print(
            f"operator RSS started with {total} WebApps (and their children): {rss_started:.0f} MB"
        )
        rss_big = max(rss_grown, rss_started)
    finally:
        op.stop()
        if not args.keep:
            cluster.down()
    print(f"machine load average (1, 5, 15 min): {os.getloadavg()}")

    ratios = {
        "ready": ready_s / TARGETS["ready_s"],
        "writes": objects / args.count / TARGETS["writes"],
        "rss": rss_big / TARGETS["rss_mb"],
    }
    print(
        f"ratio to target (<=1 meets): all-Ready {ratios['ready']:.2f} "
        f"({ready_s:.1f}/60 s), writes/WebApp {ratios['writes']:.2f} "
        f"({objects / args.count:.2f}/4), resync writes {resync_objects:.0f}/0, "
        f"RSS@{total} {ratios['rss']:.2f} ({rss_big:.0f}/150 MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
