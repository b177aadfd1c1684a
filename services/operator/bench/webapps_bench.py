"""Benchmark: kubext-operator against a controller-runtime peer, 1,000 WebApps on 100 kwok nodes.

Not part of the test suite. The peer (``bench/go-peer``, built and cached by
``bench/build-go-peer.sh``) is a minimal controller-runtime operator doing the same WebApp work as
ours: finalizer, Deployment and Service by server-side apply (field manager kubext-operator), one
status merge patch with the same fields and settle rule, one Event per change, the same client
QPS/burst and worker count. In one run, for each GOGC setting (Go's default, 100, and the rig's,
``KUBEXT_RIG_GOGC`` or 400), ours and then the peer each run on a fresh cluster of their own
(own state dir and ports, so the shared test cluster is not disturbed); the GOGC applies to the
rig's Go components and to the peer alike (ours is Python). Each run measures:

- time from the first create until every WebApp's Ready condition is True, and where it goes:
  from the bench's own watches, when each WebApp's Deployment appeared, when all its replicas
  were ready, and when the WebApp turned Ready (the last step is the operator's reaction);
- API writes the operator made per new WebApp (Events counted apart);
- writes when a restarted operator relists everything and a periodic resync (15 s) re-reconciles
  it all with nothing changed (0 expected);
- the operator's CPU seconds until all are Ready, and its peak RSS (VmHWM) over the burst;
- each control-plane process's CPU seconds (on 2 cores the API server uses most of the machine).

    python services/operator/bench/webapps_bench.py [--count 1000] [--gogc 100,400] [--only ours]

It prints a table of ours, the peer's and the ratio (ours/peer) with the targets of issue 18:
time to all Ready <= 1.1x, operator CPU seconds <= 2x, peak RSS <= 1.5x, writes per WebApp equal
(1.0), resync writes 0. The last line is the worst of those ratios divided by its target
(<= 1 meets every target), naming the figure and GOGC it comes from.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
os.environ.setdefault("KUBEXT_RIG_DIR", str(Path.home() / ".cache/kubext/bench-operator"))
os.environ.setdefault("KUBEXT_RIG_PORT_OFFSET", "300")
RIG_GOGC = os.environ.get("KUBEXT_RIG_GOGC", "400")  # what kubext_rig.cluster.component_env uses

from kubernetes import client, config, watch  # noqa: E402

from kubext_rig import cluster  # noqa: E402

sys.path.insert(0, str(REPO / "services/operator/kubext_operator/tests"))
from e2e.conftest import Operator, wait_for  # noqa: E402

GROUP, VERSION, PLURAL = "example.com", "v1", "webapps"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
TARGETS = {"ready_s": 1.1, "cpu_s": 2.0, "rss_mb": 1.5, "writes": 1.0}
"""Ratio ours/peer each figure may reach (issue 18); writes per WebApp must be equal."""


class GoPeer(Operator):
    """The controller-runtime peer as a subprocess: /metrics and /healthz on one port, the same
    metric names as ours (controller-runtime's, plus kubext_operator_api_writes_total)."""

    def __init__(
        self,
        binary: Path,
        *,
        kubeconfig: str,
        namespace: str,
        log_dir: Path,
        gogc: str,
        resync_s: float = 600,
    ) -> None:
        super().__init__(kubeconfig=kubeconfig, namespace=namespace, log_dir=log_dir, GOGC=gogc)
        self.log_path = log_dir / f"go-peer-{self.port}.log"
        self.argv = [
            str(binary),
            f"--kubeconfig={kubeconfig}",
            f"--namespaces={namespace}",
            f"--metrics-addr=127.0.0.1:{self.port}",
            f"--resync-period={resync_s}s",
        ]

    def start(self) -> GoPeer:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=log)
        wait_for("go peer /healthz", lambda: self.healthy(), timeout=30)
        return self


def build_peer() -> Path:
    """The peer's binary (built when its sources changed; progress on stderr)."""
    done = subprocess.run(
        ["bash", str(HERE / "build-go-peer.sh")], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(done.stdout.strip().splitlines()[-1])


def _body(n: int, replicas: int) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WebApp",
        "metadata": {"name": f"app-{n:05d}"},
        "spec": {"replicas": replicas, "image": "nginx:1.21", "port": 8080},
    }


def create(custom: client.CustomObjectsApi, namespace: str, numbers: range, replicas: int) -> None:
    def one(n: int) -> None:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, _body(n, replicas)
        )

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(one, numbers))


def is_ready(item: dict) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (item.get("status") or {}).get("conditions", [])
    )


def count_ready(custom: client.CustomObjectsApi, namespace: str) -> int:
    items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
    return sum(1 for i in items if is_ready(i))


def ready_latencies(custom: client.CustomObjectsApi, namespace: str) -> list[float]:
    """Seconds from each WebApp's creation to its Ready condition (1 s timestamp resolution)."""
    out = []
    for item in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]:
        born = _stamp(item["metadata"]["creationTimestamp"])
        for cond in (item.get("status") or {}).get("conditions", []):
            if cond["type"] == "Ready" and cond["status"] == "True":
                out.append(_stamp(cond["lastTransitionTime"]) - born)
    return sorted(out) or [float("nan")]


def _stamp(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Timeline:
    """When the bench's own watches first saw each WebApp's Deployment, that Deployment with all
    replicas ready, and the WebApp Ready (one clock, sub-second), so that the time an operator
    takes to react to a ready Deployment shows apart from the rollout's own."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.deployed: dict[str, float] = {}
        self.available: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self._stop = threading.Event()
        apps, custom = client.AppsV1Api(api), client.CustomObjectsApi(api)
        self._threads = [
            threading.Thread(
                target=self._follow,
                args=(apps.list_namespaced_deployment, (namespace,), self._deployment),
                daemon=True,
            ),
            threading.Thread(
                target=self._follow,
                args=(
                    custom.list_namespaced_custom_object,
                    (GROUP, VERSION, namespace, PLURAL),
                    self._webapp,
                ),
                daemon=True,
            ),
        ]
        for thread in self._threads:
            thread.start()

    def _follow(
        self, lister: Callable[..., Any], args: tuple, seen: Callable[[Any, float], None]
    ) -> None:
        version = ""
        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(
                    lister, *args, resource_version=version, timeout_seconds=5
                ):
                    obj = event["object"]
                    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
                    version = (
                        meta["resourceVersion"] if isinstance(meta, dict) else meta.resource_version
                    )
                    seen(obj, time.monotonic())
            except Exception:  # a 410 or a dropped stream: list again
                version = ""

    def _deployment(self, obj: client.V1Deployment, at: float) -> None:
        name = obj.metadata.name
        self.deployed.setdefault(name, at)
        ready = (obj.status.ready_replicas or 0) if obj.status else 0
        if ready >= (obj.spec.replicas or 0):
            self.available.setdefault(name, at)

    def _webapp(self, obj: dict, at: float) -> None:
        if is_ready(obj):
            self.ready.setdefault(obj["metadata"]["name"], at)

    def stop(self) -> None:
        self._stop.set()

    def summary(self, started: float) -> str:
        """Percentiles of each step: create -> Deployment seen, -> all its replicas ready, ->
        the WebApp Ready; and the five slowest WebApps' timelines (seconds from the first create)."""

        def pct(values: list[float]) -> str:
            v = sorted(values) or [float("nan")]
            return f"p50 {v[len(v) // 2]:.2f}, p90 {v[len(v) * 9 // 10]:.2f}, max {v[-1]:.2f}"

        names = [n for n in self.ready if n in self.available and n in self.deployed]
        lag = {n: self.ready[n] - self.available[n] for n in names}
        lines = [
            "timeline (s, the bench's watches): first create -> Deployment seen "
            + pct([self.deployed[n] - started for n in names]),
            "  Deployment seen -> its replicas ready "
            + pct([self.available[n] - self.deployed[n] for n in names]),
            "  replicas ready -> WebApp Ready " + pct(list(lag.values())),
        ]
        for n in sorted(names, key=lag.__getitem__)[-5:]:
            lines.append(
                f"  slow: {n} Deployment {self.deployed[n] - started:.2f}, replicas ready "
                f"{self.available[n] - started:.2f}, Ready {self.ready[n] - started:.2f}"
            )
        return "\n".join(lines)


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


def apiserver_requests(api: client.ApiClient) -> dict[tuple[str, str], float]:
    """The API server's requests so far by (verb, resource), from its own
    apiserver_request_total, and the watch events it sent by ("WATCH-EVENTS", kind) with their
    bytes by ("WATCH-BYTES", kind): whatever the operator's own counters miss (a library's
    writes, lists, watches) shows here."""
    response = api.rest_client.pool_manager.request("GET", api.configuration.host + "/metrics")
    counts: dict[tuple[str, str], float] = {}
    for line in response.data.decode().splitlines():  # the admin's client certificate
        name, _, rest = line.partition("{")
        if name not in (
            "apiserver_request_total",
            "apiserver_watch_events_total",
            "apiserver_watch_events_sizes_sum",
        ):
            continue
        labels_text, _, value = rest.rpartition("} ")
        labels = dict(
            (k, v.strip('"')) for k, _, v in (p.partition("=") for p in labels_text.split('",'))
        )
        if name == "apiserver_request_total":
            sub = labels.get("subresource")
            key = (
                labels.get("verb", "?"),
                labels.get("resource", "?") + (f"/{sub}" if sub else ""),
            )
        else:
            kind = labels.get("kind") or labels.get("resource") or "?"
            key = ("WATCH-EVENTS" if name.endswith("total") else "WATCH-BYTES", kind)
        counts[key] = counts.get(key, 0.0) + float(value)
    return counts


def requests_during(
    before: dict[tuple[str, str], float], after: dict[tuple[str, str], float], count: int
) -> str:
    """The API server's requests per WebApp between two apiserver_requests(), largest first."""
    moved = {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) > 0}
    parts = []
    for (verb, resource), n in sorted(moved.items(), key=lambda i: -i[1])[:14]:
        shown = f"{n / count / 1e3:.1f} kB" if verb == "WATCH-BYTES" else f"{n / count:.2f}"
        parts.append(f"{verb} {resource} {shown}")
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


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reconciles(op: Operator) -> float:
    return sum(
        v for k, v in op.metrics().items() if k.startswith("controller_runtime_reconcile_total{")
    )


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


@dataclasses.dataclass
class Run:
    side: str
    gogc: str
    ready_s: float = 0.0
    writes: float = 0.0
    events: float = 0.0
    resync_writes: float = 0.0
    cpu_s: float = 0.0
    rss_mb: float = 0.0
    load_start: str = ""
    load_end: str = ""


def run_one(side: str, gogc: str, args: argparse.Namespace, peer_binary: Path | None) -> Run:
    """One operator on a fresh cluster: the burst, then a restart with a resync."""
    result = Run(side, gogc, load_start=load())
    print(f"\n== {side}, GOGC={gogc}: fresh cluster (load {result.load_start}) ==", flush=True)
    os.environ["KUBEXT_RIG_GOGC"] = gogc  # read by the rig when it starts its components
    # The rig's default Service range (a /24) holds ~250 ClusterIPs; one WebApp needs one. This
    # bench's own cluster gets a /16 (the shared test cluster is not affected).
    cluster.SERVICE_CIDR = "10.96.0.0/16"
    cluster.down()
    info = cluster.up(nodes=args.nodes)
    namespace = f"bench-webapps-{int(time.time())}"
    kubectl = [info.bin("kubectl"), f"--kubeconfig={info.kubeconfig}"]
    crds = REPO / "services/operator/deploy/crds"
    subprocess.run([*kubectl, "apply", "-f", str(crds)], check=True, capture_output=True)
    subprocess.run(
        [*kubectl, "wait", "--for=condition=Established", "crd/webapps.example.com"],
        check=True,
        capture_output=True,
    )
    subprocess.run([*kubectl, "create", "ns", namespace], check=True, capture_output=True)
    cfg = client.Configuration()
    config.load_kube_config(config_file=info.kubeconfig, client_configuration=cfg)
    custom = client.CustomObjectsApi(client.ApiClient(cfg))
    logs = Path(tempfile.mkdtemp(prefix=f"operator-bench-{side}-"))
    env = {"KUBEXT_OPERATOR_LEADER_ELECTION__ENABLED": "false"}
    # Operator settings to try (e.g. KUBEXT_OPERATOR_WORKERS=48) pass through to ours.
    env.update({k: v for k, v in os.environ.items() if k.startswith("KUBEXT_OPERATOR_")})

    def operator(resync_s: float | None = None) -> Operator:
        if side == "peer":
            assert peer_binary is not None
            return GoPeer(
                peer_binary,
                kubeconfig=info.kubeconfig,
                namespace=namespace,
                log_dir=logs,
                gogc=gogc,
                resync_s=resync_s or 600,
            )
        extra = {"KUBEXT_OPERATOR_RESYNC_PERIOD_SECONDS": str(resync_s)} if resync_s else {}
        return Operator(
            kubeconfig=info.kubeconfig, namespace=namespace, log_dir=logs, **env, **extra
        )

    try:
        op = operator().start()
        try:
            assert op.proc is not None
            pids = {name: cluster.running_pid(info.root, name) for name in COMPONENTS}
            pids["operator"] = op.proc.pid
            timeline = Timeline(custom.api_client, namespace)
            requests_before = apiserver_requests(custom.api_client)
            cpu_before = cpu_seconds(pids)
            started = time.monotonic()
            create(custom, namespace, range(args.count), args.replicas)
            created_s = time.monotonic() - started
            wait_for(
                f"{args.count} WebApps Ready",
                lambda: count_ready(custom, namespace) == args.count,
                timeout=900,
                every=0.5,
            )
            result.ready_s = time.monotonic() - started
            cpu_used = {k: v - cpu_before[k] for k, v in cpu_seconds(pids).items()}
            result.cpu_s = cpu_used["operator"]
            requests_after = apiserver_requests(custom.api_client)
            time.sleep(2)
            objects, events = writes(op)
            result.writes, result.events = objects / args.count, events / args.count
            result.rss_mb = peak_rss_mb(op.proc.pid)
            print(
                f"created {args.count} WebApps in {created_s:.1f} s; all Ready after {result.ready_s:.1f} s"
            )
            timeline.stop()
            print(timeline.summary(started))
            each = ready_latencies(custom, namespace)
            print(
                f"each WebApp from creation to Ready: p50 {each[len(each) // 2]:.0f} s, "
                f"p90 {each[len(each) * 9 // 10]:.0f} s, max {each[-1]:.0f} s"
            )
            print(
                f"CPU seconds until all Ready ({os.cpu_count()} cores: "
                f"{result.ready_s * (os.cpu_count() or 1):.0f} available): "
                + ", ".join(
                    f"{k} {v:.1f}" for k, v in sorted(cpu_used.items(), key=lambda i: -i[1])
                )
                + f"; total {sum(cpu_used.values()):.1f}"
            )
            samples = op.metrics()
            host = info.server.removeprefix("https://")
            labels = f'{{host="{host}",verb="PATCH"}}'
            latency = samples.get(f"rest_client_request_duration_seconds_sum{labels}")
            patches = samples.get(f"rest_client_request_duration_seconds_count{labels}")
            if latency is not None and patches:
                print(f"the operator's mean PATCH latency: {latency / patches * 1000:.0f} ms")
            print(
                f"writes per new WebApp: {result.writes:.2f} to objects "
                f"(+{result.events:.2f} Events); by resource and verb: {writes_by_kind(op)}"
            )
            print(f"operator peak RSS: {result.rss_mb:.0f} MB")
            print(
                "the API server's requests per WebApp until all Ready (every client, the "
                "bench's own creates and watches too): "
                + requests_during(requests_before, requests_after, args.count)
            )
        finally:
            op.stop()

        # A restarted operator relists everything, then a periodic resync re-reconciles it all.
        op = operator(resync_s=15).start()
        try:
            wait_for(
                "two full reconcile passes",
                lambda: reconciles(op) >= 2 * args.count,
                timeout=300,
                every=1,
            )
            time.sleep(2)
            resync_objects, resync_events = writes(op)
            result.resync_writes = resync_objects
            print(
                f"writes during restart + resync with nothing changed: {resync_objects:.0f} "
                f"(+{resync_events:.0f} Events) over {reconciles(op):.0f} reconciles"
            )
        finally:
            op.stop()
    finally:
        if not args.keep:
            cluster.down()
    result.load_end = load()
    return result


def report(runs: list[Run], count: int) -> None:
    """The table (one block per GOGC), then the worst ratio to target as the last line."""
    worst: tuple[float, str] = (0.0, "no pair of runs")
    print(f"\n{count} WebApps; ratio = ours / peer; target = the most the ratio may be")
    print(f"{'GOGC':>5} {'figure':<26} {'ours':>9} {'peer':>9} {'ratio':>7} {'target':>7}")
    for gogc in dict.fromkeys(r.gogc for r in runs):
        ours = next((r for r in runs if r.gogc == gogc and r.side == "ours"), None)
        peer = next((r for r in runs if r.gogc == gogc and r.side == "peer"), None)
        rows = [
            ("time to all Ready (s)", "ready_s"),
            ("operator CPU (s)", "cpu_s"),
            ("operator peak RSS (MB)", "rss_mb"),
            ("writes per new WebApp", "writes"),
            ("Events per new WebApp", "events"),
            ("writes on restart+resync", "resync_writes"),
        ]
        for label, field in rows:
            a = getattr(ours, field) if ours else float("nan")
            b = getattr(peer, field) if peer else float("nan")
            ratio = a / b if ours and peer and b else float("nan")
            target = TARGETS.get(field)
            print(
                f"{gogc:>5} {label:<26} {a:>9.2f} {b:>9.2f} {ratio:>7.2f} "
                f"{'' if target is None else f'{target:.1f}':>7}"
            )
            if target is not None and ratio == ratio:  # not NaN
                # Writes must be equal: a ratio below 1 misses it as much as one above.
                score = (max(ratio, 1 / ratio) if field == "writes" else ratio) / target
                if score > worst[0]:
                    worst = (
                        score,
                        f"{label} at GOGC={gogc}: ours/peer {ratio:.2f}, target {target}",
                    )
            if field == "resync_writes" and ours and peer:
                score = 1.0 + a + b  # 0 writes on both sides meets it (1.0)
                if score > worst[0] and (a or b):
                    worst = (score, f"{label} at GOGC={gogc}: ours {a:.0f}, peer {b:.0f}, target 0")
        for r in (ours, peer):
            if r:
                print(f"{gogc:>5}   load average {r.side}: start {r.load_start}, end {r.load_end}")
    print(f"worst ratio to target (<= 1 meets all): {worst[0]:.2f} ({worst[1]})")


def main() -> int:
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the operator is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument(
        "--gogc",
        default=",".join(dict.fromkeys(["100", RIG_GOGC])),
        help="GOGC settings for the rig's components and the peer (default: Go's, the rig's)",
    )
    parser.add_argument("--only", choices=("ours", "peer"), help="run one side only")
    parser.add_argument("--keep", action="store_true", help="leave the last bench cluster running")
    args = parser.parse_args()

    sides = [args.only] if args.only else ["ours", "peer"]
    peer_binary = build_peer() if "peer" in sides else None
    print(f"machine load average (1, 5, 15 min) at start: {load()}")
    runs = [
        run_one(side, gogc, args, peer_binary)
        for gogc in args.gogc.split(",")
        if gogc
        for side in sides
    ]
    print(f"machine load average (1, 5, 15 min) at end: {load()}")
    report(runs, args.count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
