"""ADD/DEL latency of kubext-bridge vs the reference bridge plugin, then a leak count.

Run as root:  python services/cni/bench/cni_bench.py [--cycles 200] [--leak-cycles 1000]

Both plugins get the same config (gateway, default route, hairpin, ipMasq via nftables,
host-local) on their own throwaway "node" namespace, one pod namespace each, and are
called the way a runtime calls them (exec, env, stdin) in alternating order, so load
affects both alike. Ours goes through its installed launcher and the node daemon; a few
standalone (no daemon) cycles are shown for reference. Then ours runs ``--leak-cycles``
more ADD/DEL cycles and the node is compared with its state after the first cycle:
links, addresses, host-local reservation files and nft rules/elements must not grow.
The last line is the ratio ours/reference of the ADD p50.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from kubext_cni import install, netns

CONFIG = {
    "cniVersion": "1.1.0",
    "name": "kxbench",
    "bridge": "kxbench0",
    "isGateway": True,
    "isDefaultGateway": True,
    "hairpinMode": True,
    "ipMasq": True,
    "ipMasqBackend": "nftables",
}
SUBNET = "10.213.0.0/16"


def reference_dir() -> str:
    from kubext_rig import tools

    return str(tools.binary_dir("bridge"))


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


@dataclass
class Side:
    """One plugin on its own node namespace, with one pod namespace it attaches repeatedly."""

    label: str
    binary: str
    cni_path: str
    node: str
    pod: str
    data_dir: str
    plugin_type: str
    env: dict[str, str] = field(default_factory=dict)
    add_ms: list[float] = field(default_factory=list)
    del_ms: list[float] = field(default_factory=list)

    @property
    def conf(self) -> bytes:
        ipam = {"type": "host-local", "ranges": [[{"subnet": SUBNET}]], "dataDir": self.data_dir}
        return json.dumps(dict(CONFIG, type=self.plugin_type, ipam=ipam)).encode()

    def call(self, command: str, container_id: str) -> float:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": f"/var/run/netns/{self.pod}",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": self.cni_path,
            **self.env,
        }
        with in_node(self.node):  # children inherit this thread's netns: the node's
            started = time.perf_counter()
            proc = subprocess.run(
                [self.binary], input=self.conf, env=env, capture_output=True, timeout=60
            )
            elapsed = (time.perf_counter() - started) * 1000
        if proc.returncode != 0:
            raise RuntimeError(f"{self.label} {command} failed: {proc.stdout!r} {proc.stderr!r}")
        return elapsed

    def cycle(self, n: int, record: bool = True) -> None:
        cid = f"bench-{n}"
        add = self.call("ADD", cid)
        delete = self.call("DEL", cid)
        if record:
            self.add_ms.append(add)
            self.del_ms.append(delete)


@contextmanager
def in_node(name: str) -> Iterator[None]:
    ns = netns.NetNS(f"/var/run/netns/{name}", os.open(f"/var/run/netns/{name}", os.O_RDONLY))
    try:
        with netns.entered(ns):
            yield
    finally:
        ns.close()


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if values else 0.0


def summary(side: Side) -> str:
    return (
        f"{side.label:<34} ADD p50 {pct(side.add_ms, 50):6.1f} ms  p99 {pct(side.add_ms, 99):6.1f}"
        f" ms | DEL p50 {pct(side.del_ms, 50):6.1f} ms  p99 {pct(side.del_ms, 99):6.1f} ms"
        f"  ({len(side.add_ms)} cycles)"
    )


def node_state(side: Side) -> dict[str, int]:
    """Counts that must not grow: links, addresses, reservations, nft rules and elements."""
    node = side.node
    links = json.loads(sh("ip", "-n", node, "-j", "link", "show"))
    addrs = json.loads(sh("ip", "-n", node, "-j", "addr", "show"))
    pod_links = json.loads(sh("ip", "-n", side.pod, "-j", "link", "show"))
    ruleset = json.loads(sh("ip", "netns", "exec", node, "nft", "-j", "list", "ruleset"))
    rules = sum(1 for o in ruleset["nftables"] if "rule" in o)
    elements = sum(len(o["map"].get("elem", [])) for o in ruleset["nftables"] if "map" in o)
    ipam = os.path.join(side.data_dir, CONFIG["name"])
    reserved = [f for f in os.listdir(ipam) if f[0].isdigit()] if os.path.isdir(ipam) else []
    return {
        "links": len(links) + len(pod_links),
        "addresses": sum(len(a.get("addr_info", [])) for a in addrs),
        "ipam_files": len(reserved),
        "nft_rules": rules + elements,
    }


def leaks(before: dict[str, int], after: dict[str, int]) -> str:
    return " ".join(f"{k}={after[k] - before[k]}" for k in before)


def start_daemon(node: str, work: str) -> tuple[subprocess.Popen[bytes], str]:
    socket_path = os.path.join(work, "plugin.sock")
    cfg = os.path.join(work, "daemon.yaml")
    with open(cfg, "w") as f:
        f.write(
            f"socket_path: {socket_path}\nlog_level: warning\n"
            "health: {host: 127.0.0.1, port: 0}\n"
        )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.Popen(
        [
            "nsenter",
            f"--net=/var/run/netns/{node}",
            sys.executable,
            "-m",
            "kubext_cni",
            "--config",
            cfg,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not os.path.exists(socket_path):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("kubext-cni daemon did not start")
        time.sleep(0.05)
    return proc, socket_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--standalone-cycles", type=int, default=20)
    parser.add_argument("--leak-cycles", type=int, default=1000)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("cni_bench: needs root (network namespaces)", file=sys.stderr)
        return 2

    tag = uuid.uuid4().hex[:6]
    work = tempfile.mkdtemp(prefix="kxbench-")
    names = {k: f"kxbench-{k}-{tag}" for k in ("node", "pod", "refnode", "refpod")}
    daemon = None
    try:
        for name in names.values():
            sh("ip", "netns", "add", name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        ref = reference_dir()
        daemon, socket_path = start_daemon(names["node"], work)
        bin_dir = os.path.join(work, "bin")
        ours_bin = install.install(bin_dir, socket_path=socket_path)
        solo_bin = install.install(
            os.path.join(work, "bin-solo"),
            socket_path=os.path.join(work, "none.sock"),
            standalone=True,
        )
        ours = Side(
            "kubext-bridge (launcher + daemon)",
            ours_bin,
            f"{bin_dir}:{ref}",
            names["node"],
            names["pod"],
            os.path.join(work, "ipam"),
            "kubext-bridge",
        )
        solo = Side(
            "kubext-bridge (standalone, no daemon)",
            solo_bin,
            f"{bin_dir}:{ref}",
            names["node"],
            names["pod"],
            os.path.join(work, "ipam"),
            "kubext-bridge",
        )
        reference = Side(
            "reference bridge v1.9.0",
            os.path.join(ref, "bridge"),
            ref,
            names["refnode"],
            names["refpod"],
            os.path.join(work, "ipam-ref"),
            "bridge",
        )

        # Warm-up: creates each bridge and nft skeleton; the baseline for the leak count.
        for side in (ours, reference):
            side.cycle(0, record=False)
        baseline = {"ours": node_state(ours), "reference": node_state(reference)}

        for n in range(1, args.cycles + 1):
            first, second = (ours, reference) if n % 2 else (reference, ours)
            first.cycle(n)
            second.cycle(n)
        for n in range(args.standalone_cycles):
            solo.cycle(10_000 + n)

        for n in range(args.leak_cycles):
            ours.cycle(20_000 + n, record=False)
        total = 1 + args.cycles + args.standalone_cycles + args.leak_cycles

        print(summary(ours))
        print(summary(reference))
        print(summary(solo))
        print(
            f"leaks after {total} ADD/DEL cycles, ours:      "
            f"{leaks(baseline['ours'], node_state(ours))}"
        )
        print(
            f"leaks after {1 + args.cycles} ADD/DEL cycles, reference: "
            f"{leaks(baseline['reference'], node_state(reference))}"
        )
        ratio = pct(ours.add_ms, 50) / pct(reference.add_ms, 50)
        print(f"ratio ours/reference ADD p50: {ratio:.2f}")
        return 0
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(10)
        for name in names.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        lock = f"/run/kubext-cni/bridge-{CONFIG['bridge']}.lock"
        if os.path.exists(lock):
            os.unlink(lock)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
