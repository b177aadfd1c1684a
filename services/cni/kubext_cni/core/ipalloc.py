"""host-local's allocator, pure: its range sets and the order it tries addresses in.

The daemon allocates in-process (``kubext_cni.hostlocal``) on host-local's own on-disk
store, so the reference binary reads, allocates beside and releases what we reserve. This
module copies the reference v1.9.0 (``plugins/ipam/host-local/backend/allocator``):
``Range.Canonicalize`` (gateway defaults to .1, rangeStart to .1, rangeEnd to the last
address, minus the IPv4 broadcast) and ``RangeIter`` (round-robin from the range set's
``last_reserved_ip.<index>`` + 1, skipping the gateway, wrapping over the set's ranges).

``parse`` accepts only what it can do exactly as host-local does and answers None for
anything else (a requested IP, ``resolvConf``, any config host-local would reject): the
caller then execs the binary, which gives host-local's own result or error.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LINE_BREAK = "\r\n"
LAST_RESERVED_PREFIX = "last_reserved_ip."
_TRUE, _FALSE = ("1", "true", "True"), ("0", "false", "False")


@dataclass(frozen=True)
class Range:
    subnet: IPNetwork
    start: IPAddress
    end: IPAddress
    gateway: IPAddress

    def contains(self, ip: IPAddress) -> bool:
        return ip.version == self.start.version and int(self.start) <= int(ip) <= int(self.end)


@dataclass(frozen=True)
class Config:
    """A host-local IPAM config we can serve in-process."""

    ranges: tuple[tuple[Range, ...], ...]  # range sets; set i is rangeID "i"
    routes: tuple[Mapping[str, Any], ...]
    data_dir: str | None


def _range(raw: Any) -> Range | None:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("subnet"), str):
        return None
    try:
        subnet = ipaddress.ip_network(raw["subnet"], strict=True)  # host bits set: rejected
        fields = {}
        for key in ("rangeStart", "rangeEnd", "gateway"):
            value = raw.get(key)
            if value is not None and not isinstance(value, str):
                return None
            fields[key] = ipaddress.ip_address(value) if value else None
    except ValueError:
        return None
    if subnet.prefixlen > subnet.max_prefixlen - 2:
        return None  # "too small to allocate from"
    first = subnet.network_address + 1
    last = subnet.broadcast_address - (1 if subnet.version == 4 else 0)
    start = fields["rangeStart"] or first
    end = fields["rangeEnd"] or last
    gateway = fields["gateway"] or first
    for ip in (start, end, gateway):
        if ip.version != subnet.version or ip not in subnet:
            return None
    if int(start) > int(end):
        return None
    return Range(subnet, start, end, gateway)


def _overlaps(a: Range, b: Range) -> bool:
    return (
        a.start.version == b.start.version
        and int(a.start) <= int(b.end)
        and int(b.start) <= int(a.end)
    )


def _args_allow(cni_args: str) -> bool:
    """host-local's CNI_ARGS parse would succeed and requests no IP (IPAMArgs: IP only)."""
    if not cni_args:
        return True
    pairs = [pair.split("=") for pair in cni_args.split(";")]
    if any(len(kv) != 2 for kv in pairs):
        return False
    keys = {k: v for k, v in pairs}
    if "IP" in keys:
        return False
    ignore = keys.get("IgnoreUnknown")
    if ignore is not None and ignore not in _TRUE + _FALSE:
        return False
    unknown = set(keys) - {"IgnoreUnknown", "IP"}
    return not unknown or ignore in _TRUE


def parse(netconf: Mapping[str, Any], cni_args: str) -> Config | None:
    """The whole network config -> Config, or None where host-local itself must run."""
    ipam = netconf.get("ipam")
    if not isinstance(ipam, Mapping) or ipam.get("type") != "host-local":
        return None
    if ipam.get("resolvConf") or ipam.get("ips") or not _args_allow(cni_args):
        return None
    for holder, key in ((netconf.get("args"), "cni"), (netconf.get("runtimeConfig"), None)):
        scope = holder.get(key) if isinstance(holder, Mapping) and key else holder
        if isinstance(scope, Mapping) and scope.get("ips"):
            return None
    raw_sets = list(ipam.get("ranges") or [])
    if ipam.get("subnet"):
        raw_sets.insert(0, [ipam])  # the legacy single range comes first
    if not raw_sets:
        return None
    sets: list[tuple[Range, ...]] = []
    for raw_set in raw_sets:
        if not isinstance(raw_set, list) or not raw_set:
            return None
        ranges = tuple(_range(r) for r in raw_set)
        if any(r is None for r in ranges):
            return None
        checked = tuple(r for r in ranges if r is not None)
        if len({r.start.version for r in checked}) != 1:
            return None  # mixed families in one set
        sets.append(checked)
    flat = [r for s in sets for r in s]
    if any(_overlaps(a, b) for i, a in enumerate(flat) for b in flat[i + 1 :]):
        return None
    routes = ipam.get("routes") or []
    data_dir = ipam.get("dataDir")
    if not isinstance(routes, list) or not all(isinstance(r, Mapping) for r in routes):
        return None
    if data_dir is not None and not isinstance(data_dir, str):
        return None
    return Config(tuple(sets), tuple(routes), data_dir or None)


def candidates(
    ranges: tuple[Range, ...], last: IPAddress | None
) -> Iterator[tuple[Range, IPAddress]]:
    """host-local's RangeIter: every address of the set once, in its order."""
    index, current, start = 0, None, None
    at = next((i for i, r in enumerate(ranges) if last is not None and r.contains(last)), None)
    if at is not None:
        index, current = at, last
    else:
        start = ranges[0].start
    while True:
        r = ranges[index]
        if current is None:
            current = start = r.start
            if current != r.gateway:
                yield r, current
            continue
        if current == r.end:
            index = (index + 1) % len(ranges)
            r = ranges[index]
            current = r.start
        else:
            current = current + 1
        if start is None:
            start = current
        elif current == start:
            return
        if current != r.gateway:
            yield r, current


def owner_content(container_id: str, ifname: str) -> str:
    """What host-local writes in a reservation file."""
    return container_id.strip() + LINE_BREAK + ifname


def parse_last_reserved(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)  # host-local does not trim it either
    except ValueError:
        return None


def ip_config(r: Range, ip: IPAddress) -> dict[str, str]:
    return {"address": f"{ip}/{r.subnet.prefixlen}", "gateway": str(r.gateway)}
