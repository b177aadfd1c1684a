"""Benchmark: kubext-webhooks (one uvicorn worker) against a minimal Go net/http webhook.

    python services/webhooks/bench/webhooks_bench.py [--duration 10] [--rates 250,500,1000]

Both serve POST /validate/pods over TLS with the same rules (bench/go-peer/main.go mirrors the
default policy). A corpus of realistic pods (as the API server sends them after defaulting:
Deployment-owned, 1-3 containers, env, probes, projected token volumes; about one in five
breaks a rule) is first sent to both to check they decide identically; then the Go load
generator (bench/loadgen, open loop, latency from the scheduled start) drives each server at
fixed rates and then closed-loop for the most it sustains, ``--repeat`` times, alternating
python and go, so a busy neighbour weighs on both alike. Go peer at GOMAXPROCS=1, so both get
one core's worth of workers. Each server's CPU time (/proc) over its closed-loop runs, divided
by the reviews it answered, is its cost per review: on a shared machine the steadier figure.
Prints a table; the last line is the throughput ratio (medians), then the CPU-cost ratio.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import random
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from kubext_webhooks import certs

HERE = Path(__file__).resolve().parent
SERVICE_ROOT = HERE.parent

IMAGES_OK = [
    "nginx:1.25.3",
    "gcr.io/acme/checkout:2.14.1",
    "quay.io/prometheus/node-exporter:v1.7.0",
    "registry.k8s.io/pause:3.9",
    "docker.io/library/redis:7.2",
    "bitnami/postgresql:16.1.0",
    "quay.io/acme/payments-api:4.2.0",
    "gcr.io/acme/cart@sha256:" + "ab" * 32,
]
IMAGES_BAD = ["ghcr.io/acme/tool:1.0", "evil.example.com/miner:latest", "docker.io.evil.io/x:1"]
APPS = ["checkout", "cart", "payments", "search", "catalog", "auth", "gateway", "reports"]


def _container(rng: random.Random, name: str, broken: set[str]) -> dict[str, Any]:
    image = rng.choice(IMAGES_BAD) if "image" in broken else rng.choice(IMAGES_OK)
    resources: dict[str, Any] = {
        "requests": {
            "cpu": rng.choice(["50m", "100m", "250m", "1"]),
            "memory": rng.choice(["64Mi", "128Mi", "512Mi", "1Gi"]),
        },
        "limits": {
            "cpu": rng.choice(["500m", "1", "2"]),
            "memory": rng.choice(["256Mi", "1Gi", "2Gi"]),
        },
    }
    if "resources" in broken:
        del resources["limits"][rng.choice(["cpu", "memory"])]
    context: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": 1000 + rng.randrange(100),
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    if "privileged" in broken:
        context = {"privileged": True}
    port = rng.choice([8080, 8443, 9090, 3000])
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": [
            {"name": f"SETTING_{i}", "value": f"value-{rng.randrange(10**6)}"}
            for i in range(rng.randrange(4, 16))
        ]
        + [
            {
                "name": "POD_NAME",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
            }
        ],
        "resources": resources,
        "securityContext": context,
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": port, "scheme": "HTTP"},
            "initialDelaySeconds": 10,
            "timeoutSeconds": 1,
            "periodSeconds": 10,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": port, "scheme": "HTTP"},
            "timeoutSeconds": 1,
            "periodSeconds": 5,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/app", "readOnly": True},
            {
                "name": "kube-api-access-x7k2p",
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                "readOnly": True,
            },
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }


def realistic_review(rng: random.Random, index: int) -> dict[str, Any]:
    """An AdmissionReview for a Deployment-owned pod, as the API server sends it."""
    app = rng.choice(APPS)
    broken = (
        set(rng.sample(["image", "resources", "privileged", "labels", "hostNetwork"], k=1))
        if rng.random() < 0.2
        else set()
    )
    template_hash = f"{rng.randrange(16**10):010x}"[:10]
    containers = [_container(rng, app, broken)]
    if rng.random() < 0.4:
        containers.append(_container(rng, "metrics-exporter", set()))
    labels = {
        "app": app,
        "version": f"1.{rng.randrange(20)}.{rng.randrange(10)}",
        "environment": rng.choice(["prod", "staging"]),
        "pod-template-hash": template_hash,
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/part-of": "shop",
    }
    if "labels" in broken:
        del labels["environment"]
    spec: dict[str, Any] = {
        "volumes": [
            {"name": "config", "configMap": {"name": f"{app}-config", "defaultMode": 420}},
            {
                "name": "kube-api-access-x7k2p",
                "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {
                            "configMap": {
                                "name": "kube-root-ca.crt",
                                "items": [{"key": "ca.crt", "path": "ca.crt"}],
                            }
                        },
                        {
                            "downwardAPI": {
                                "items": [
                                    {
                                        "path": "namespace",
                                        "fieldRef": {
                                            "apiVersion": "v1",
                                            "fieldPath": "metadata.namespace",
                                        },
                                    }
                                ]
                            }
                        },
                    ],
                },
            },
        ],
        "containers": containers,
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": app,
        "serviceAccount": app,
        "securityContext": {
            "runAsNonRoot": True,
            "fsGroup": 2000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "schedulerName": "default-scheduler",
        "tolerations": [
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
        ],
        "priority": 0,
        "enableServiceLinks": True,
        "preemptionPolicy": "PreemptLowerPriority",
    }
    if rng.random() < 0.3:
        spec["initContainers"] = [_container(rng, "migrate", set())]
    if "hostNetwork" in broken:
        spec["hostNetwork"] = True
    pod = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "generateName": f"{app}-{template_hash}-",
            "namespace": "shop",
            "labels": labels,
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"{app}-{template_hash}",
                    "uid": f"6f1c{index:08d}-0000-4000-8000-000000000000",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
        "status": {},
    }
    return {
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": f"bench-{index:06d}",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "1b2c3d4e",
                "groups": [
                    "system:serviceaccounts",
                    "system:serviceaccounts:kube-system",
                    "system:authenticated",
                ],
            },
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(port: int, ctx: ssl.SSLContext, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _wait_healthy(port: int, ctx: ssl.SSLContext, proc: subprocess.Popen[bytes], what: str) -> None:
    for _ in range(150):
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{what} did not become healthy")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _go_build(name: str, out: Path) -> Path:
    binary = out / name
    subprocess.run(
        ["go", "build", "-trimpath", "-o", str(binary), "."],
        cwd=HERE / name,
        check=True,
        env={**os.environ, "CGO_ENABLED": "0"},
    )
    return binary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--rates", default="250,500,1000", help="fixed rates, reviews/s")
    parser.add_argument("--corpus", type=int, default=400, help="distinct reviews")
    parser.add_argument("--conns", type=int, default=16, help="client connections")
    parser.add_argument("--go-procs", type=int, default=1, help="GOMAXPROCS of the Go peer")
    parser.add_argument(
        "--repeat", type=int, default=3, help="closed-loop runs per server, alternating"
    )
    args = parser.parse_args(argv)
    if shutil.which("go") is None:
        raise SystemExit("go is not on PATH (needed to build bench/go-peer and bench/loadgen)")
    rates = [float(r) for r in args.rates.split(",") if r]

    with tempfile.TemporaryDirectory(prefix="webhooks-bench-") as tmp_name:
        tmp = Path(tmp_name)
        bundle = certs.plan(
            None,
            certs.Settings(dns_names=("localhost",), ip_addresses=("127.0.0.1",)),
            dt.datetime.now(dt.UTC),
        )
        (tmp / "ca.crt").write_bytes(bundle.ca_bundle)
        (tmp / "tls.crt").write_bytes(bundle.serving.cert_pem)
        (tmp / "tls.key").write_bytes(bundle.serving.key_pem)
        rng = random.Random(20240607)
        reviews = [
            json.dumps(realistic_review(rng, i), separators=(",", ":")).encode()
            for i in range(args.corpus)
        ]
        (tmp / "reviews.jsonl").write_bytes(b"\n".join(reviews) + b"\n")
        sizes = sorted(len(r) for r in reviews)
        print(f"corpus: {len(reviews)} pod reviews, median {sizes[len(sizes) // 2]} bytes")
        print(f"load average at start: {_load()}")

        peer, loadgen = _go_build("go-peer", tmp), _go_build("loadgen", tmp)
        py_port, go_port = _free_port(), _free_port()
        config = {
            "log_level": "warning",
            "host": "127.0.0.1",
            "port": py_port,
            "health": {"host": "127.0.0.1", "port": 0},
            "tls": {"mode": "cert-manager", "cert_dir": str(tmp), "check_interval_seconds": 60},
        }
        (tmp / "config.yaml").write_text(yaml.safe_dump(config))
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            "KUBECONFIG": str(tmp / "none"),
        }
        servers = {
            "python": subprocess.Popen(
                [sys.executable, "-m", "kubext_webhooks", "--config", str(tmp / "config.yaml")],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(tmp / "python.log").open("wb"),
            ),
            "go": subprocess.Popen(
                [
                    str(peer),
                    "-addr",
                    f"127.0.0.1:{go_port}",
                    "-cert",
                    str(tmp / "tls.crt"),
                    "-key",
                    str(tmp / "tls.key"),
                ],
                env={**os.environ, "GOMAXPROCS": str(args.go_procs)},
                stdout=subprocess.DEVNULL,
                stderr=(tmp / "go.log").open("wb"),
            ),
        }
        ports = {"python": py_port, "go": go_port}
        ctx = ssl.create_default_context(cadata=bundle.ca_bundle.decode())
        try:
            for name, proc in servers.items():
                _wait_healthy(ports[name], ctx, proc, name)
            same = denied = 0
            for body in reviews:
                answers = [
                    _post(ports[name], ctx, "/validate/pods", body)[1]["response"]
                    for name in ("python", "go")
                ]
                same += answers[0] == answers[1]
                denied += not answers[0]["allowed"]
            print(
                f"parity: {same}/{len(reviews)} identical AdmissionReview responses ({denied} denials)"
            )
            if same != len(reviews):
                print(
                    "parity check FAILED: the peers do not implement the same rules",
                    file=sys.stderr,
                )
                return 1

            results: dict[str, list[dict[str, Any]]] = {"python": [], "go": []}
            cpu = {"python": 0.0, "go": 0.0}

            def drive(name: str, rate: float, warmup: str = "2s") -> dict[str, Any]:
                argv_ = [
                    str(loadgen),
                    "-url",
                    f"https://127.0.0.1:{ports[name]}/validate/pods",
                    "-ca",
                    str(tmp / "ca.crt"),
                    "-corpus",
                    str(tmp / "reviews.jsonl"),
                    "-rate",
                    str(rate),
                    "-duration",
                    f"{args.duration}s",
                    "-conns",
                    str(args.conns),
                    "-warmup",
                    warmup,
                ]
                done = subprocess.run(argv_, capture_output=True, text=True, check=True)
                row: dict[str, Any] = json.loads(done.stdout)
                return row

            for name in ("python", "go"):
                for rate in rates:
                    results[name].append(drive(name, rate))
            closed: dict[str, list[dict[str, Any]]] = {"python": [], "go": []}
            for _ in range(args.repeat):
                for name in ("python", "go"):
                    # No warm-up (the rate runs warmed the server): all the CPU is for row["ok"].
                    before = _cpu_seconds(servers[name].pid)
                    row = drive(name, 0.0, warmup="0s")
                    row["cpu_s"] = _cpu_seconds(servers[name].pid) - before
                    cpu[name] += row["cpu_s"]
                    closed[name].append(row)
                    results[name].append(row)
            print(
                f"{'server':8} {'rate/s':>8} {'done/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7}"
            )
            for name, rows in results.items():
                for row in rows:
                    rate = f"{row['rate']:.0f}" if row["rate"] else "max"
                    print(
                        f"{name:8} {rate:>8} {row['throughput']:8.0f} {row['p50_ms']:8.2f} {row['p90_ms']:8.2f} "
                        f"{row['p99_ms']:8.2f} {row['max_ms']:8.1f} {row['errors']:7d}"
                    )
            cpus = os.cpu_count()

            def median(values: list[float]) -> float:
                ordered = sorted(values)
                return ordered[len(ordered) // 2]

            py_max = median([r["throughput"] for r in closed["python"]])
            go_max = median([r["throughput"] for r in closed["go"]])
            cost = {
                name: cpu[name] / max(1, sum(r["ok"] for r in closed[name])) * 1e6
                for name in ("python", "go")
            }
            print(
                f"setup: python = 1 uvicorn worker (uvloop, httptools); go = net/http, GOMAXPROCS={args.go_procs}; "
                f"loadgen and both servers on one host with {cpus} CPUs; HTTP/1.1 keep-alive, {args.conns} connections"
            )
            print(
                f"CPU per review: python {cost['python']:.0f} us, go {cost['go']:.0f} us "
                f"(over {args.repeat} closed-loop runs each; load average {_load()})"
            )
            print(
                f"throughput ratio python/go: {py_max / go_max:.2f} (medians of {args.repeat}: "
                f"python {py_max:.0f}/s, go {go_max:.0f}/s); "
                f"CPU-cost ratio go/python: {cost['go'] / cost['python']:.2f}"
            )
        finally:
            for proc in servers.values():
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
