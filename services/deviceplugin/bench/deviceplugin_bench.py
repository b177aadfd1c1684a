"""Our device plugin against the upstream sample device plugin, both driven by the Go stub
kubelet (on the upstream k8s.io/kubelet device-plugin package) in one run: Allocate latency as
the stub sees it (p50/p99), the time from a health change to the stub's ListAndWatch update,
and the time from a kubelet restart (every socket removed, kubelet.sock served again) to the
plugin's next registration. Figures, then ratios; the ratio last.

    python services/deviceplugin/bench/deviceplugin_bench.py [--allocates 2000] [--rounds 10]
    (dev venv, as root: the sample plugin runs in a mount namespace of its own; builds the stub
    and the sample plugin through rig/build.sh when missing)
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubext_deviceplugin.tests import stub_kubelet
from kubext_deviceplugin.tests.stub_kubelet import StubKubelet

OURS = "example.com/fake"


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def allocate_latencies_ms(stub: StubKubelet, resource: str, device: str, n: int) -> list[float]:
    stub.call("allocate_bench", resource=resource, ids=[device], n=100, timeout=60)  # warm up
    got = stub.call("allocate_bench", resource=resource, ids=[device], n=n, timeout=600)
    return [ns / 1e6 for ns in got["latencies_ns"]]


def start_ours(work: Path) -> subprocess.Popen[bytes]:
    """Our plugin as a process: a generic resource on a fake tree (its shared node toggles health)."""
    for name in ("fake0", "fake1", "fakectl"):
        (work / "dev" / name).touch()
    cfg = {
        "device_plugin_dir": str(work / "ours"),
        "health": {"host": "127.0.0.1", "port": 0},
        "resources": [
            {
                "name": OURS,
                "backend": "generic",
                "generic": {
                    "root": str(work),
                    "groups": [
                        {
                            "name": "fake",
                            "paths": [{"path": "/dev/fake[0-9]"}, {"path": "/dev/fakectl"}],
                        }
                    ],
                },
            }
        ],
    }
    (work / "ours.json").write_text(json.dumps(cfg))
    with (work / "ours.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "kubext_deviceplugin", "--config", str(work / "ours.json")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def health_change_s(stub: StubKubelet, ctl: Path, rounds: int) -> list[float]:
    """Remove and re-create the shared node: each flip of health, from the change to the update."""
    seen = stub.update(OURS)["seq"]
    out = []
    for i in range(rounds * 2):
        changed = time.monotonic_ns()
        if i % 2 == 0:
            ctl.unlink()
        else:
            ctl.touch()
        update = stub.update(OURS, after=seen, timeout=10)
        want = "Unhealthy" if i % 2 == 0 else "Healthy"
        assert {d["health"] for d in update["devices"]} == {want}, update
        seen = update["seq"]
        out.append((update["mono_ns"] - changed) / 1e9)
        time.sleep(0.05)
    return out


def restarts_s(stub: StubKubelet, resource: str, rounds: int, timeout: float) -> list[float]:
    out = []
    for _ in range(rounds):
        got = stub.call("restart", resources=[resource], timeout=timeout)
        out.append(got["reregistered_after_s"][resource])
        stub.update(resource, after=0)  # its list is watched again before the next round
    return out


def describe(name: str, values: list[float], unit: str) -> str:
    s = sorted(values)
    return (
        f"{name:<34} n={len(s):<5} p50 {percentile(s, 0.5):8.3f} {unit}  "
        f"p99 {percentile(s, 0.99):8.3f} {unit}  max {s[-1]:8.3f} {unit}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allocates", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10, help="health flips and our restarts")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dpb-", dir="/tmp"))
    for d in ("dev", "ours", "sample"):
        (work / d).mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    stubs: list[StubKubelet] = []
    try:
        ours_stub = StubKubelet(work / "ours", log=work / "stub-ours.log").start()
        stubs.append(ours_stub)
        procs.append(start_ours(work))
        ours_stub.registration(timeout=30)
        ours_alloc = allocate_latencies_ms(ours_stub, OURS, "fake0", args.allocates)
        ours_health = health_change_s(ours_stub, work / "dev" / "fakectl", args.rounds)
        ours_restart = restarts_s(ours_stub, OURS, args.rounds, timeout=10)

        why_not = stub_kubelet.sample_plugin_unavailable()
        sample_alloc: list[float] = []
        sample_restart: list[float] = []
        if why_not is None:
            sample_stub = StubKubelet(work / "sample", log=work / "stub-sample.log").start()
            stubs.append(sample_stub)
            procs.append(stub_kubelet.start_sample_plugin(work / "sample", work / "sample.log"))
            sample_stub.registration(timeout=30)
            sample_alloc = allocate_latencies_ms(
                sample_stub, stub_kubelet.SAMPLE_RESOURCE, "Dev-1", args.allocates
            )
            # It re-registers 10 s after seeing kubelet.sock created (its poll interval): one round.
            sample_restart = restarts_s(sample_stub, stub_kubelet.SAMPLE_RESOURCE, 1, timeout=60)

        print("device plugin vs the upstream sample plugin, driven by the Go stub kubelet")
        print(describe("ours: Allocate", ours_alloc, "ms"))
        print(describe("ours: health change -> update", ours_health, "s"))
        print(describe("ours: kubelet restart -> register", ours_restart, "s"))
        if why_not is not None:
            print(f"sample plugin not run: {why_not}")
            print(f"ratio: n/a (ours Allocate p99 {percentile(sorted(ours_alloc), 0.99):.3f} ms)")
            return
        print(describe("sample: Allocate", sample_alloc, "ms"))
        print(
            "sample: health change -> update    not measurable: it serves a fixed list "
            "(Dev-1, Dev-2) and its main never calls Stub.Update"
        )
        print(describe("sample: kubelet restart -> register", sample_restart, "s"))
        oa, sa = sorted(ours_alloc), sorted(sample_alloc)
        print(
            f"targets: ours Allocate p99 {percentile(oa, 0.99):.3f} ms (<= 2), "
            f"health max {max(ours_health):.3f} s (<= 1), re-register max {max(ours_restart):.3f} s (<= 1)"
        )
        print(f"ratio ours/sample Allocate p50: {percentile(oa, 0.5) / percentile(sa, 0.5):.2f}")
        print(
            f"ratio ours/sample re-register: "
            f"{statistics.median(ours_restart) / statistics.median(sample_restart):.3f}"
        )
        print(f"ratio ours/sample Allocate p99: {percentile(oa, 0.99) / percentile(sa, 0.99):.2f}")
    finally:
        for p in procs:
            stub_kubelet.stop(p)
        for s in stubs:
            s.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
