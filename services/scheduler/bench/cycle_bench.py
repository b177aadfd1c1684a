"""Micro-benchmark, in process: one scheduling cycle and one extender filter+prioritize per pod.

No cluster: a ClusterCache holds ``--nodes`` nodes shaped as scheduler_bench.py's (16 cpu /
64Gi / 110 pods; every 5th in pool a, every 10th tainted NoSchedule, 10 zones) with
``--bound`` pods already bound per node; then ``--pods`` pods (the bench's request mix, every
10th selecting pool a) are scheduled one by one as the standalone scheduler does (snapshot,
Framework.schedule, assume), and the same pods go through the extender's filter and
prioritize with all node names (nodeCacheCapable), as kube-scheduler sends them.

    python services/scheduler/bench/cycle_bench.py [--nodes 1000] [--pods 50] [--profile]

Prints ms per cycle and per extender verb, and pods/s these bound (one core, no API server).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import time
from typing import Any

from kubext_scheduler import extender, profiles_file
from kubext_scheduler.cache import ClusterCache
from kubext_scheduler.framework.cycle_state import CycleState

POOL = "bench.kubext.io/pool"
TAINT = {"key": "bench.kubext.io/dedicated", "value": "other", "effect": "NoSchedule"}
CPU = ("100m", "250m", "500m")
MEMORY = ("128Mi", "256Mi", "512Mi")


def bench_node(i: int) -> dict[str, Any]:
    name = f"bench-node-{i:04d}"
    allocatable = {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "1Ti"}
    return {
        "metadata": {
            "name": name,
            "resourceVersion": "1",
            "labels": {
                "kubernetes.io/hostname": name,
                POOL: "a" if i % 5 == 0 else "b",
                "topology.kubernetes.io/zone": f"zone-{i % 10}",
            },
        },
        "spec": {"taints": [TAINT]} if i % 10 == 3 else {},
        "status": {"capacity": allocatable, "allocatable": allocatable},
    }


def bench_pod(i: int, prefix: str = "p", node_name: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "schedulerName": "default-scheduler",
        "containers": [
            {
                "name": "app",
                "resources": {"requests": {"cpu": CPU[i % 3], "memory": MEMORY[i % 3]}},
            }
        ],
    }
    if i % 10 == 0:
        spec["nodeSelector"] = {POOL: "a"}
    if node_name:
        spec["nodeName"] = node_name
    name = f"{prefix}-{i:05d}"
    return {
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
        "spec": spec,
    }


def build_cache(nodes: int, bound: int) -> ClusterCache:
    cache = ClusterCache()
    node_objs = [bench_node(i) for i in range(nodes)]
    cache.replace_nodes(node_objs)
    pods = []
    for i, node in enumerate(node_objs):
        if i % 10 == 3:
            continue
        for j in range(bound):
            pods.append(bench_pod(i * bound + j, "bound", node["metadata"]["name"]))
    cache.replace_pods(pods)
    cache.all_node_infos()  # build the NodeInfos up front, as a running scheduler has
    return cache


def run_cycles(nodes: int, pods: int, bound: int) -> tuple[float, int]:
    cache = build_cache(nodes, bound)
    [framework] = profiles_file.load(None).frameworks.values()
    rng = random.Random(1)
    start = time.perf_counter()
    placed = 0
    for i in range(pods):
        pod = bench_pod(i)
        snapshot, _ = cache.snapshot()
        result = framework.schedule(pod, snapshot, state=CycleState(), rng=rng)
        if result.node_name:
            cache.assume(pod, result.node_name)
            placed += 1
    return (time.perf_counter() - start) / pods, placed


def run_extender(nodes: int, pods: int, bound: int) -> tuple[float, float]:
    cache = build_cache(nodes, bound)
    [framework] = profiles_file.load(None).frameworks.values()
    ext = extender.Extender(framework, cache=cache)
    names = [f"bench-node-{i:04d}" for i in range(nodes)]
    filter_s = prioritize_s = 0.0
    for i in range(pods):
        body = json.dumps({"Pod": bench_pod(i), "Nodes": None, "NodeNames": names}).encode()
        t0 = time.perf_counter()
        reply = ext.filter(body)
        t1 = time.perf_counter()
        feasible = reply["NodeNames"]
        body = json.dumps({"Pod": bench_pod(i), "Nodes": None, "NodeNames": feasible}).encode()
        scores = ext.prioritize(body)
        t2 = time.perf_counter()
        filter_s += t1 - t0
        prioritize_s += t2 - t1
        best = max(scores, key=lambda s: s["Score"])["Host"]
        cache.assume(bench_pod(i), best)
    return filter_s / pods, prioritize_s / pods


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--bound", type=int, default=2, help="pods already bound per node")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top 25")
    opts = parser.parse_args()
    profiler = cProfile.Profile() if opts.profile else None
    if profiler:
        profiler.enable()
    cycle, placed = run_cycles(opts.nodes, opts.pods, opts.bound)
    filter_s, prioritize_s = run_extender(opts.nodes, opts.pods, opts.bound)
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    print(f"nodes {opts.nodes}, pods {opts.pods} ({placed} placed), {opts.bound} bound per node")
    print(f"standalone cycle: {cycle * 1000:.1f} ms per pod ({1 / cycle:.1f} pods/s)")
    per_pod = filter_s + prioritize_s
    print(
        f"extender: filter {filter_s * 1000:.1f} ms + prioritize {prioritize_s * 1000:.1f} ms "
        f"per pod ({1 / per_pod:.1f} pods/s)"
    )


if __name__ == "__main__":
    main()
