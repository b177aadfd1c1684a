"""ADD/DEL latency of kubext-bridge vs the reference bridge plugin, per configuration.

Run as root:  python services/cni/bench/cni_bench.py [--cycles 200] [--leak-cycles 200]
[--burn N] [--configs no-masq,masq-nft,dual-stack,portmap] [--launcher compiled|python]

Configurations (gateway, default route and hairpin in all; host-local IPAM):
  no-masq     IPv4, no masquerade
  masq-nft    IPv4, ipMasq through nftables
  dual-stack  host-local with two range sets, IPv4 + IPv6, no masquerade
  portmap     a conflist: the bridge, then the reference ``portmap`` (nftables), run the way
              libcni runs a chain: each plugin exec'd, the next one given the previous
              result as ``prevResult``; DEL in reverse order. Timed: the whole chain.
Each configuration gets fresh throwaway "node" namespaces (ours and the reference's) and
one pod namespace each, attached repeatedly; the plugins are called the way a runtime
calls them (exec, env, stdin), alternating which goes first, so load affects both alike.
Ours goes through its installed launcher (the compiled one by default) and the node
daemon. ``--burn N`` runs N CPU-burning neighbour processes for the whole run.

Where our time goes: the launcher's start (its VERSION, answered without the daemon), the
socket round trip (the call minus the launcher start minus the daemon's own time) and
the daemon's phases, as it reports them (``KUBEXT_CNI_TIMINGS``): medians per phase.
Then ours runs ``--leak-cycles`` more ADD/DEL cycles per configuration and its node is
compared with its state after the first cycle: links, addresses, host-local reservation
files and nft rules/elements must not grow.
The last line is the worst ratio ours/reference over every configuration, verb and
percentile (p50 and p99 of ADD and DEL), naming which one it is.
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
from typing import Any

from kubext_cni import golauncher, install, netns, plugin

BASE = {
    "cniVersion": "1.1.0",
    "isGateway": True,
    "isDefaultGateway": True,
    "hairpinMode": True,
}
V4 = [{"subnet": "10.213.0.0/16"}]
V6 = [{"subnet": "fd00:213::/64"}]
PORT_MAPPINGS = [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]


@dataclass(frozen=True)
class Scenario:
    name: str
    extra: dict[str, Any]
    ranges: tuple[list[dict[str, str]], ...]
    portmap: bool = False


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("no-masq", {}, (V4,)),
        Scenario("masq-nft", {"ipMasq": True, "ipMasqBackend": "nftables"}, (V4,)),
        Scenario("dual-stack", {}, (V4, V6)),
        Scenario("portmap", {}, (V4,), portmap=True),
    )
}


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
    scenario: Scenario
    network: str
    portmap: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    add_ms: list[float] = field(default_factory=list)
    del_ms: list[float] = field(default_factory=list)
    phases: dict[str, dict[str, list[float]]] = field(
        default_factory=lambda: {"ADD": {}, "DEL": {}}
    )
    results: dict[str, bytes] = field(default_factory=dict)

    def conf(self) -> dict[str, Any]:
        ipam = {
            "type": "host-local",
            "ranges": [list(r) for r in self.scenario.ranges],
            "dataDir": self.data_dir,
        }
        return dict(
            BASE,
            **self.scenario.extra,
            name=self.network,
            bridge=f"{self.network}0",
            type=self.plugin_type,
            ipam=ipam,
        )

    def _exec(self, binary: str, command: str, cid: str, conf: dict[str, Any]) -> bytes:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": f"/var/run/netns/{self.pod}",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": self.cni_path,
            **self.env,
        }
        proc = subprocess.run(
            [binary], input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=60
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{self.label} {command} failed: {proc.stdout!r} {proc.stderr!r}")
        if binary == self.binary:
            self._record_phases(command, proc.stderr)
        return proc.stdout

    def _record_phases(self, command: str, stderr: bytes) -> None:
        for line in stderr.decode(errors="replace").splitlines():
            if line.startswith(plugin.TIMINGS_PREFIX):
                for phase, ms in json.loads(line[len(plugin.TIMINGS_PREFIX) :]).items():
                    self.phases[command].setdefault(phase, []).append(ms)

    def _portmap_conf(self, prev: bytes | None) -> dict[str, Any]:
        # libcni: name and cniVersion of the list, runtimeConfig from the capability args.
        conf: dict[str, Any] = {
            "cniVersion": BASE["cniVersion"],
            "name": self.network,
            "type": "portmap",
            "backend": "nftables",
            "capabilities": {"portMappings": True},
            "runtimeConfig": {"portMappings": PORT_MAPPINGS},
        }
        if prev:
            conf["prevResult"] = json.loads(prev)
        return conf

    def call(self, command: str, cid: str) -> float:
        """One runtime call (the whole chain for portmap), in ms, from the node namespace."""
        with in_node(self.node):  # children inherit this thread's netns: the node's
            started = time.perf_counter()
            if command == "ADD":
                out = self._exec(self.binary, "ADD", cid, self.conf())
                if self.portmap:
                    out = self._exec(self.portmap, "ADD", cid, self._portmap_conf(out))
                self.results[cid] = out
            else:
                prev = self.results.pop(cid, None)
                if self.portmap:
                    self._exec(self.portmap, "DEL", cid, self._portmap_conf(prev))
                conf = self.conf()
                if prev and self.portmap:
                    conf["prevResult"] = json.loads(prev)
                self._exec(self.binary, "DEL", cid, conf)
            return (time.perf_counter() - started) * 1000

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
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def summary(side: Side) -> str:
    return (
        f"  {side.label:<26} ADD p50 {pct(side.add_ms, 50):7.1f} ms  p99 {pct(side.add_ms, 99):7.1f}"
        f" ms | DEL p50 {pct(side.del_ms, 50):7.1f} ms  p99 {pct(side.del_ms, 99):7.1f} ms"
        f"  ({len(side.add_ms)} cycles)"
    )


def ratios(ours: Side, ref: Side) -> dict[str, float]:
    out = {}
    for verb, a, b in (("ADD", ours.add_ms, ref.add_ms), ("DEL", ours.del_ms, ref.del_ms)):
        for q in (50, 99):
            out[f"{verb} p{q}"] = pct(a, q) / pct(b, q) if pct(b, q) else float("inf")
    return out


def breakdown(side: Side, launcher_ms: float) -> list[str]:
    """Median per phase of ours: launcher start, socket round trip, daemon phases."""
    lines = []
    for verb, walls in (("ADD", side.add_ms), ("DEL", side.del_ms)):
        phases = side.phases[verb]
        if not phases:
            continue
        total = statistics.median(phases.get("total", [0.0]))
        wall = statistics.median(walls)
        chain = " (bridge call only; portmap is the rest)" if side.portmap else ""
        parts = [f"launcher start {launcher_ms:.1f}"]
        if not side.portmap:
            parts.append(f"socket round trip {max(wall - launcher_ms - total, 0.0):.1f}")
        parts.append(f"daemon {total:.1f}{chain}:")
        parts += [
            f"{name} {statistics.median(values):.2f}"
            for name, values in phases.items()
            if name != "total"
        ]
        lines.append(f"  ours {verb} p50 {wall:.1f} ms = " + ", ".join(parts))
    return lines


def node_state(side: Side) -> dict[str, int]:
    """Counts that must not grow: links, addresses, reservations, nft rules and elements."""
    node = side.node
    links = json.loads(sh("ip", "-n", node, "-j", "link", "show"))
    addrs = json.loads(sh("ip", "-n", node, "-j", "addr", "show"))
    pod_links = json.loads(sh("ip", "-n", side.pod, "-j", "link", "show"))
    ruleset = json.loads(sh("ip", "netns", "exec", node, "nft", "-j", "list", "ruleset"))
    rules = sum(1 for o in ruleset["nftables"] if "rule" in o)
    elements = sum(len(o["map"].get("elem", [])) for o in ruleset["nftables"] if "map" in o)
    ipam = os.path.join(side.data_dir, side.network)
    reserved = (
        [f for f in os.listdir(ipam) if f[0].isdigit() or ":" in f] if os.path.isdir(ipam) else []
    )
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
    deadline = time.monotonic() + 60
    while not os.path.exists(socket_path):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("kubext-cni daemon did not start")
        time.sleep(0.05)
    return proc, socket_path


def launcher_start_ms(binary: str, runs: int = 20) -> float:
    """The launcher's own start: VERSION is answered without the daemon."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            [binary], input=b"{}", env={"CNI_COMMAND": "VERSION"}, capture_output=True, check=True
        )
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


@contextmanager
def burners(count: int) -> Iterator[None]:
    """``count`` CPU-burning neighbours for the block's duration."""
    procs = [
        subprocess.Popen([sys.executable, "-S", "-c", "while True: pass"]) for _ in range(count)
    ]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def run_scenario(
    scenario: Scenario, args: argparse.Namespace, ref: str, launcher: str | None, work: str
) -> dict[str, float]:
    tag = uuid.uuid4().hex[:6]
    names = {k: f"kxb-{k}-{tag}" for k in ("node", "pod", "refnode", "refpod")}
    network = f"kxb{scenario.name.replace('-', '')[:6]}"
    daemon = None
    try:
        for name in names.values():
            sh("ip", "netns", "add", name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        daemon, socket_path = start_daemon(names["node"], work)
        bin_dir = os.path.join(work, "bin")
        ours_bin = install.install(bin_dir, socket_path=socket_path, compiled=launcher)
        portmap = os.path.join(ref, "portmap") if scenario.portmap else None
        common = {"scenario": scenario, "network": network, "portmap": portmap}
        ours = Side(
            "kubext-bridge",
            ours_bin,
            f"{bin_dir}:{ref}",
            names["node"],
            names["pod"],
            os.path.join(work, "ipam"),
            "kubext-bridge",
            env={plugin.TIMINGS_ENV: "1"},
            **common,  # type: ignore[arg-type]
        )
        reference = Side(
            "reference bridge v1.9.0",
            os.path.join(ref, "bridge"),
            ref,
            names["refnode"],
            names["refpod"],
            os.path.join(work, "ipam-ref"),
            "bridge",
            **common,  # type: ignore[arg-type]
        )
        # Warm-up: creates each bridge and nft skeleton; the baseline for the leak count.
        for side in (ours, reference):
            side.cycle(0, record=False)
        baseline = node_state(ours)
        launcher_ms = launcher_start_ms(ours_bin)
        for n in range(1, args.cycles + 1):
            first, second = (ours, reference) if n % 2 else (reference, ours)
            first.cycle(n)
            second.cycle(n)
        for n in range(args.leak_cycles):
            ours.cycle(20_000 + n, record=False)
        print(f"{scenario.name}: (load {load()})")
        print(summary(ours))
        print(summary(reference))
        found = ratios(ours, reference)
        print("  ratio ours/reference: " + ", ".join(f"{k} {v:.2f}" for k, v in found.items()))
        for line in breakdown(ours, launcher_ms):
            print(line)
        print(
            f"  leaks after {1 + args.cycles + args.leak_cycles} cycles, ours: "
            f"{leaks(baseline, node_state(ours))}"
        )
        sys.stdout.flush()
        return found
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(10)
        for name in names.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        for path in (
            os.path.join(work, "ipam"),
            os.path.join(work, "ipam-ref"),
            os.path.join(work, "bin"),
        ):
            shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--leak-cycles", type=int, default=200)
    parser.add_argument("--burn", type=int, default=0, help="CPU-burning neighbour processes")
    parser.add_argument("--configs", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--launcher", choices=("compiled", "python"), default="compiled")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("cni_bench: needs root (network namespaces)", file=sys.stderr)
        return 2
    scenarios = [SCENARIOS[name] for name in args.configs.split(",")]
    launcher = golauncher.build() if args.launcher == "compiled" else None
    if args.launcher == "compiled" and launcher is None:
        print("cni_bench: no Go toolchain for the compiled launcher", file=sys.stderr)
        return 2
    ref = reference_dir()
    work = tempfile.mkdtemp(prefix="kxbench-")
    print(
        f"cni_bench: {args.cycles} cycles per config, launcher {args.launcher}, "
        f"burn {args.burn}, load at start {load()}"
    )
    worst: tuple[float, str] = (0.0, "")
    try:
        with burners(args.burn):
            for scenario in scenarios:
                for key, value in run_scenario(scenario, args, ref, launcher, work).items():
                    worst = max(worst, (value, f"{scenario.name} {key}"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for name in os.listdir("/run/kubext-cni") if os.path.isdir("/run/kubext-cni") else []:
            if name.startswith("bridge-kxb"):
                os.unlink(os.path.join("/run/kubext-cni", name))
    print(f"load at end {load()}")
    print(
        f"worst ratio ours/reference (p50/p99 of ADD and DEL, every config): {worst[0]:.2f} ({worst[1]})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
