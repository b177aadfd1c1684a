"""Micro-benchmark of the extender over HTTP: what kube-scheduler's calls cost our process.

No cluster. A child process serves the extender as ``kubext-scheduler`` does (uvicorn, the
ASGI app of ``extender.app``) over a ClusterCache of ``--nodes`` nodes shaped as
scheduler_bench.py's (cycle_bench.build_cache, ``--bound`` pods per node) and a binder that
binds nothing (the API call is not measured; the cache work around it is). The parent plays
kube-scheduler with one keep-alive connection, one pod after the other as its scheduling
cycle does: ``/filter`` with the names its own filters would send (``--send`` node names,
by default numFeasibleNodesToFind of ``--nodes``: 420 of 1,000, taken round the nodes as
its nextStartNodeIndex does), ``/prioritize`` with the feasible ones, then ``/bind`` to the
best. The pods are JSON as kube-scheduler's Go encoder sends them (the admission defaults,
the projected service-account volume, managedFields). ``/empty`` (a verb answering ``{}``,
added in the child) gives the HTTP edge's own cost per request.

    python services/scheduler/bench/extender_bench.py [--nodes 1000] [--pods 200]

Prints, per verb, the mean round trip (ms) and the server's CPU ms per pod (its
/proc/<pid>/stat before and after, so other load on the machine counts less), the pods/s the
three round trips allow one after the other, and the load average.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cycle_bench

from kubext_scheduler.framework.runtime import num_feasible_nodes_to_find


def go_pod(i: int) -> dict[str, Any]:
    """A bench pod as kube-scheduler's informer holds it and its encoder writes it."""
    pod = cycle_bench.bench_pod(i)
    pod["metadata"].update(
        {
            "resourceVersion": str(100000 + i),
            "creationTimestamp": "2026-12-01T00:00:00Z",
            "managedFields": [
                {
                    "manager": "scheduler_bench.py",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "2026-12-01T00:00:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:containers": {'k:{"name":"app"}': {".": {}}}}},
                }
            ],
        }
    )
    volume = f"kube-api-access-{i:05x}"
    spec = pod["spec"]
    for container in spec["containers"]:
        container.update(
            {
                "image": "registry.k8s.io/pause:3.10",
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
                "volumeMounts": [
                    {
                        "name": volume,
                        "readOnly": True,
                        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                    }
                ],
            }
        )
    spec.update(
        {
            "volumes": [
                {
                    "name": volume,
                    "projected": {
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {"configMap": {"name": "kube-root-ca.crt"}},
                        ],
                        "defaultMode": 420,
                    },
                }
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "securityContext": {},
            "tolerations": [
                {
                    "key": f"node.kubernetes.io/{taint}",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                }
                for taint in ("not-ready", "unreachable")
            ],
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        }
    )
    pod["status"] = {"phase": "Pending", "qosClass": "Burstable"}
    return pod


# --- the server (child) ---------------------------------------------------------------------


def serve(port: int, nodes: int, bound: int) -> None:
    import uvicorn

    from kubext_scheduler import extender, profiles_file

    class NoBinder:
        def bind(self, pod: Any, node_name: str) -> None:
            return None

    cache = cycle_bench.build_cache(nodes, bound)
    [framework] = profiles_file.load(None).frameworks.values()
    app = extender.app(extender.Extender(framework, cache=cache, binder=NoBinder()))  # type: ignore[arg-type]

    async def empty(body: bytes) -> extender.Answer:
        return 200, b"{}", None

    app.verbs["/empty"] = empty  # the verbs' own edge, answering {}
    # As __main__ serves it.
    uvicorn.Server(extender.server_config(app, host="127.0.0.1", port=port)).run()


# --- the client (parent: kube-scheduler's part) ---------------------------------------------


def cpu_ms(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


class Client:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port)

    def post(self, verb: str, body: bytes) -> Any:
        self.conn.request("POST", f"/{verb}", body, {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise SystemExit(f"/{verb}: HTTP {response.status}: {data[:300]!r}")
        return json.loads(data)


def wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the extender process exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the extender did not listen within 120 s")


def measure(
    port: int, pid: int, nodes: int, pods: int, send: int
) -> dict[str, tuple[float, float]]:
    client = Client(port)
    names = [f"bench-node-{i:04d}" for i in range(nodes)]
    wall = dict.fromkeys(("empty", "filter", "prioritize", "bind"), 0.0)
    cpu = dict.fromkeys(wall, 0.0)

    def timed(verb: str, body: bytes, counted: bool) -> Any:
        c0, t0 = cpu_ms(pid), time.perf_counter()
        reply = client.post(verb, body)
        t1, c1 = time.perf_counter(), cpu_ms(pid)
        if counted:
            wall[verb] += t1 - t0
            cpu[verb] += c1 - c0
        return reply

    start_index = 0
    for i in range(-5, pods):  # 5 warm-up pods, not counted
        pod, counted = go_pod(i % 100000), i >= 0
        sent = [names[(start_index + k) % nodes] for k in range(send)]
        start_index = (start_index + send) % nodes
        timed("empty", b'{"Pod": {}}', counted)
        body = {"Pod": pod, "Nodes": None, "NodeNames": sent}
        reply = timed("filter", json.dumps(body).encode(), counted)
        if reply.get("Error"):
            raise SystemExit(f"/filter: {reply['Error']}")
        body = {"Pod": pod, "Nodes": None, "NodeNames": reply["NodeNames"]}
        scores = timed("prioritize", json.dumps(body).encode(), counted)
        meta = pod["metadata"]
        binding = {
            "PodName": meta["name"],
            "PodNamespace": meta["namespace"],
            "PodUID": meta["uid"],
            "Node": max(scores, key=lambda s: s["Score"])["Host"],
        }
        reply = timed("bind", json.dumps(binding).encode(), counted)
        if reply.get("Error"):
            raise SystemExit(f"/bind: {reply['Error']}")
    return {verb: (wall[verb] * 1000 / pods, cpu[verb] / pods) for verb in wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--bound", type=int, default=2, help="pods already bound per node")
    parser.add_argument(
        "--send",
        type=int,
        default=0,
        help="node names per /filter (default: numFeasibleNodesToFind of --nodes, as "
        "kube-scheduler sends after its own filters)",
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.serve:
        serve(opts.serve, opts.nodes, opts.bound)
        return
    send = opts.send or num_feasible_nodes_to_find(None, opts.nodes)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [sys.executable, __file__, "--serve", str(port), "--nodes", str(opts.nodes)]
    proc = subprocess.Popen([*argv, "--bound", str(opts.bound)])
    try:
        wait_for_port(port, proc)
        figures = measure(port, proc.pid, opts.nodes, opts.pods, send)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    print(f"nodes {opts.nodes}, {send} names per /filter, {opts.pods} pods, {opts.bound} bound")
    for verb, (wall_ms, cpu) in figures.items():
        print(f"  /{verb:<10} {wall_ms:6.2f} ms round trip, {cpu:6.2f} ms server CPU")
    per_pod = sum(figures[v][0] for v in ("filter", "prioritize", "bind"))
    cpu_pod = sum(figures[v][1] for v in ("filter", "prioritize", "bind"))
    print(
        f"filter + prioritize + bind: {per_pod:.2f} ms round trip ({1000 / per_pod:.1f} pods/s), "
        f"{cpu_pod:.2f} ms server CPU ({1000 / cpu_pod:.1f} pods/s of one core) "
        f"(load average {os.getloadavg()[0]:.1f})"
    )


if __name__ == "__main__":
    main()
