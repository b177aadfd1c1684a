"""Test harness for real network namespaces: nodes, pods, plugin calls, observers.

Everything happens inside namespaces the tests create (a "node" namespace plays the host),
so no test touches the machine's own links, routes, sysctls or nftables. Observers use
``ip -j`` and ``nft``, never the plugin's own code.
"""

from __future__ import annotations

import ctypes
import ipaddress
import itertools
import json
import os
import random
import re
import socket
import struct
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

CALL_TIMEOUT_S = 60
_libc = ctypes.CDLL(None, use_errno=True)


def reference_binary(name: str) -> str:
    """A pinned upstream binary (cnitool, bridge, host-local, portmap) from the rig cache."""
    from kubext_rig import tools

    return str(tools.binary(name, build=False))


def run(*argv: str, check: bool = True, input: bytes | None = None) -> str:
    proc = subprocess.run(
        argv, capture_output=True, input=input, timeout=CALL_TIMEOUT_S, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed: {proc.stderr.decode().strip()}")
    return proc.stdout.decode()


@dataclass
class Netns:
    name: str

    @property
    def path(self) -> str:
        return f"/var/run/netns/{self.name}"

    @classmethod
    def create(cls, prefix: str) -> Netns:
        ns = cls(f"{prefix}-{uuid.uuid4().hex[:8]}")
        run("ip", "netns", "add", ns.name)
        run("ip", "-n", ns.name, "link", "set", "lo", "up")
        return ns

    def delete(self) -> None:
        if os.path.exists(self.path):
            run("ip", "netns", "del", self.name, check=False)

    def ip(self, *args: str, check: bool = True) -> str:
        return run("ip", "-n", self.name, *args, check=check)

    def ip_json(self, *args: str) -> list[dict[str, Any]]:
        out = self.ip("-j", *args, check=False).strip()
        return json.loads(out) if out else []

    def exec(self, *argv: str, check: bool = True) -> str:
        return run("ip", "netns", "exec", self.name, *argv, check=check)

    def sysctl(self, name: str) -> str:
        return self.exec("cat", f"/proc/sys/{name}").strip()

    def set_sysctl(self, name: str, value: str) -> None:
        self.exec("sh", "-c", f"echo {value} > /proc/sys/{name}")


@dataclass
class Call:
    rc: int
    stdout: bytes
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout) if self.stdout.strip() else None


@dataclass
class Plugin:
    """One CNI plugin executable, run the way a runtime runs it from the node namespace."""

    kind: str  # "kubext" or "reference"
    binary: str
    cni_path: str
    node: Netns
    env: dict[str, str] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return os.path.basename(self.binary)

    def __call__(
        self,
        command: str,
        conf: dict[str, Any] | bytes,
        *,
        container_id: str = "",
        netns: str = "",
        ifname: str = "eth0",
        env: dict[str, str] | None = None,
    ) -> Call:
        full_env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        full_env.update(self.env)
        full_env.update(
            {
                "CNI_COMMAND": command,
                "CNI_CONTAINERID": container_id,
                "CNI_NETNS": netns,
                "CNI_IFNAME": ifname,
                "CNI_PATH": self.cni_path,
            }
        )
        full_env.update(env or {})
        full_env = {k: v for k, v in full_env.items() if v is not None}
        stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
        proc = subprocess.run(
            ["nsenter", f"--net={self.node.path}", self.binary],
            input=stdin,
            env=full_env,
            capture_output=True,
            timeout=CALL_TIMEOUT_S,
            check=False,
        )
        return Call(proc.returncode, proc.stdout, proc.stderr.decode(errors="replace"))


_serial = itertools.count(random.randrange(0, 200))


@dataclass
class Network:
    """One test's network: unique name, bridge, subnets and host-local data dir."""

    name: str
    bridge: str
    subnet4: str
    subnet6: str
    data_dir: str

    @classmethod
    def new(cls, tmp_dir: str) -> Network:
        n = next(_serial)
        tag = uuid.uuid4().hex[:6]
        return cls(
            name=f"kxnet-{tag}",
            bridge=f"kxb{tag}",
            subnet4=f"10.{200 + n // 256 % 50}.{n % 256}.0/24",
            subnet6=f"fd{n % 256:02x}:{n // 256 % 256:02x}::/64",
            data_dir=os.path.join(tmp_dir, f"ipam-{tag}"),
        )

    def conf(
        self, plugin: Plugin, *, version: str = "1.1.0", dual: bool = False, **options: Any
    ) -> dict[str, Any]:
        """The config for ``plugin``; each plugin kind keeps its own host-local data dir."""
        ranges = [[{"subnet": self.subnet4}]]
        if dual:
            ranges.append([{"subnet": self.subnet6}])
        conf: dict[str, Any] = {
            "cniVersion": version,
            "name": self.name,
            "type": plugin.type,
            "bridge": self.bridge,
            "ipam": {"type": "host-local", "ranges": ranges, "dataDir": self.ipam_dir(plugin)},
        }
        conf.update(options)
        return conf

    def ipam_dir(self, plugin: Plugin) -> str:
        return f"{self.data_dir}-{plugin.kind}"

    def reservations(self, plugin: Plugin) -> list[str]:
        """The IPs host-local holds for this network (its reservation files)."""
        directory = os.path.join(self.ipam_dir(plugin), self.name)
        if not os.path.isdir(directory):
            return []
        return sorted(n for n in os.listdir(directory) if _is_ip(n))

    def gateway4(self) -> str:
        return str(ipaddress.ip_network(self.subnet4).network_address + 1)

    def gateway6(self) -> str:
        return str(ipaddress.ip_network(self.subnet6).network_address + 1)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# Observers -------------------------------------------------------------------------------


def global_addresses(ns: Netns, dev: str) -> list[dict[str, Any]]:
    out = []
    for link in ns.ip_json("addr", "show", "dev", dev):
        for a in link.get("addr_info", []):
            if a.get("scope") == "global":
                out.append(
                    {
                        "address": f"{a['local']}/{a['prefixlen']}",
                        "tentative": bool(a.get("tentative")),
                    }
                )
    return sorted(out, key=lambda a: a["address"])


def routes(ns: Netns) -> list[tuple[str, str | None, str | None]]:
    out = []
    for family in ("-4", "-6"):
        for r in ns.ip_json(family, "route", "show"):
            if r.get("dst", "").startswith("fe80:"):
                continue
            out.append((r.get("dst"), r.get("gateway"), r.get("dev")))
    return sorted(out, key=lambda r: (r[0] or "", r[1] or ""))


def ports(node: Netns, bridge: str) -> list[dict[str, Any]]:
    out = []
    for link in node.ip_json("-d", "link", "show", "master", bridge):
        info = link.get("linkinfo", {})
        out.append(
            {
                "name": link["ifname"],
                "kind": info.get("info_kind"),
                "mtu": link["mtu"],
                "up": link.get("operstate") == "UP",
                "hairpin": bool(info.get("info_slave_data", {}).get("hairpin")),
            }
        )
    return out


def topology(node: Netns, bridge: str, pods: list[tuple[Netns, str]]) -> dict[str, Any]:
    """What anyone can observe of one bridge network, without names or MACs."""
    links = node.ip_json("-d", "link", "show", "dev", bridge)
    br = links[0] if links else None
    pod_views = []
    for pod, ifname in pods:
        pod_links = pod.ip_json("-d", "link", "show", "dev", ifname)
        link = pod_links[0] if pod_links else None
        pod_views.append(
            {
                "kind": link.get("linkinfo", {}).get("info_kind") if link else None,
                "mtu": link["mtu"] if link else None,
                "up": bool(link) and "UP" in link.get("flags", []),
                "addresses": [a["address"] for a in global_addresses(pod, ifname)],
                "routes": routes(pod),
            }
        )
    return {
        "bridge": None
        if br is None
        else {
            "kind": br.get("linkinfo", {}).get("info_kind"),
            "mtu": br["mtu"],
            "up": "UP" in br.get("flags", []),
            "addresses": [a["address"] for a in global_addresses(node, bridge)],
        },
        "ports": sorted((p["kind"], p["mtu"], p["up"], p["hairpin"]) for p in ports(node, bridge)),
        "ip_forward": node.sysctl("net/ipv4/ip_forward"),
        "pods": pod_views,
    }


_NFT_ELEMENT = re.compile(r"([0-9a-f.:]+) comment \"[^\"]*\" : jump")
_NFT_REF_RULE = re.compile(r"ip6? saddr ([0-9a-f.:]+) ip6? daddr != \S+ .*masquerade")
_IPT_RULE = re.compile(r"-A POSTROUTING -s ([0-9a-f.:]+)/\d+ .*-j (CNI-|KUBEXT-)")


def masqueraded(node: Netns) -> set[str]:
    """Pod addresses that have a masquerade rule (ours or the reference's, nft or iptables)."""
    text = node.exec("nft", "list", "ruleset")
    found = set(_NFT_ELEMENT.findall(text)) | set(_NFT_REF_RULE.findall(text))
    for tool in ("iptables", "ip6tables"):
        listing = node.exec(tool, "-w", "-t", "nat", "-S", "POSTROUTING", check=False)
        found |= {m.group(1) for m in _IPT_RULE.finditer(listing)}
    return found


def container_ip(result: dict[str, Any], family: int = 4) -> str:
    for ip in result["ips"]:
        address = ipaddress.ip_interface(ip["address"])
        if address.version == family:
            return str(address.ip)
    raise AssertionError(f"no IPv{family} address in {result}")


# ICMP ------------------------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _ping_once(ns_path: str, dst: str, timeout: float) -> bool:
    v6 = ":" in dst
    fd = os.open(ns_path, os.O_RDONLY)
    try:
        if _libc.setns(fd, 0x40000000) != 0:  # this thread only; it ends right after
            raise OSError(ctypes.get_errno(), "setns failed")
    finally:
        os.close(fd)
    family, proto = (
        (socket.AF_INET6, socket.IPPROTO_ICMPV6) if v6 else (socket.AF_INET, socket.IPPROTO_ICMP)
    )
    ident = random.randrange(1, 0xFFFF)
    echo_request, echo_reply = (128, 129) if v6 else (8, 0)
    payload = b"kubext-cni-test"
    header = struct.pack("!BBHHH", echo_request, 0, 0, ident, 1)
    checksum = 0 if v6 else _checksum(header + payload)  # the kernel fills ICMPv6's
    packet = struct.pack("!BBHHH", echo_request, 0, checksum, ident, 1) + payload
    with socket.socket(family, socket.SOCK_RAW, proto) as sock:
        sock.sendto(packet, (dst, 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(2048)
            except TimeoutError:
                return False
            icmp = data if v6 else data[(data[0] & 0x0F) * 4 :]
            kind, _, _, reply_id, _ = struct.unpack("!BBHHH", icmp[:8])
            if kind == echo_reply and reply_id == ident:
                return True
    return False


def _ping_in_thread(ns: Netns, dst: str, timeout: float) -> bool:
    outcome: list[bool] = []
    failures: list[BaseException] = []

    def work() -> None:
        try:
            outcome.append(_ping_once(ns.path, dst, timeout))
        except BaseException as exc:  # reported to the caller below
            failures.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout + 5)
    if failures:
        raise failures[0]
    return bool(outcome and outcome[0])


def ping(ns: Netns, dst: str, *, timeout: float = 1.0, attempts: int = 1) -> bool:
    """ICMP echo from inside ``ns`` (a raw socket in a thread that entered it)."""
    return any(_ping_in_thread(ns, dst, timeout) for _ in range(attempts))
