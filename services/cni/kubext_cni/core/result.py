"""The CNI result type: parsed from any supported version, written in the requested one.

0.3.x/0.4.0 results carry ``"version"`` in each ``ips`` entry; 1.0.0 dropped it; 1.1.0 added
``mtu``/``socketPath``/``pciID`` to interfaces and ``mtu``/``advmss``/``priority``/``table``/
``scope`` to routes. Keys are written in the order libcni writes them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubext_cni.core import errors, versions

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class Interface:
    name: str
    mac: str = ""
    mtu: int = 0
    sandbox: str = ""
    socket_path: str = ""
    pci_id: str = ""


@dataclass
class IPConfig:
    address: IPInterface
    gateway: IPAddress | None = None
    interface: int | None = None

    @property
    def family(self) -> int:
        return self.address.version


@dataclass
class Route:
    dst: IPNetwork
    gw: IPAddress | None = None
    mtu: int = 0
    advmss: int = 0
    priority: int = 0
    table: int | None = None
    scope: int | None = None


@dataclass
class DNS:
    nameservers: list[str] = field(default_factory=list)
    domain: str = ""
    search: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.nameservers or self.domain or self.search or self.options)


@dataclass
class Result:
    interfaces: list[Interface] = field(default_factory=list)
    ips: list[IPConfig] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    dns: DNS = field(default_factory=DNS)


def parse(obj: Mapping[str, Any], *, what: str) -> Result:
    """Any supported version's result JSON -> Result; malformed input is code 6 naming ``what``."""
    try:
        return _parse(obj)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise errors.CNIError(
            errors.DECODE_FAILURE, f"failed to decode {what}", f"{type(exc).__name__}: {exc}"
        ) from None


def _parse(obj: Mapping[str, Any]) -> Result:
    if not isinstance(obj, Mapping):
        raise TypeError("result must be an object")
    out = Result()
    for item in obj.get("interfaces") or []:
        out.interfaces.append(
            Interface(
                name=_str(item["name"]),
                mac=_str(item.get("mac", "")),
                mtu=_uint(item.get("mtu", 0)),
                sandbox=_str(item.get("sandbox", "")),
                socket_path=_str(item.get("socketPath", "")),
                pci_id=_str(item.get("pciID", "")),
            )
        )
    for item in obj.get("ips") or []:
        address = ipaddress.ip_interface(_str(item["address"]))
        if "/" not in item["address"]:
            raise ValueError(f"address {item['address']!r} is not in CIDR notation")
        gateway = ipaddress.ip_address(_str(item["gateway"])) if item.get("gateway") else None
        index = item.get("interface")
        out.ips.append(IPConfig(address, gateway, None if index is None else _uint(index)))
    for item in obj.get("routes") or []:
        out.routes.append(
            Route(
                dst=ipaddress.ip_network(_str(item["dst"]), strict=False),
                gw=ipaddress.ip_address(_str(item["gw"])) if item.get("gw") else None,
                mtu=_uint(item.get("mtu", 0)),
                advmss=_uint(item.get("advmss", 0)),
                priority=_uint(item.get("priority", 0)),
                table=None if item.get("table") is None else _uint(item["table"]),
                scope=None if item.get("scope") is None else _uint(item["scope"]),
            )
        )
    dns = obj.get("dns") or {}
    out.dns = DNS(
        nameservers=[_str(s) for s in dns.get("nameservers") or []],
        domain=_str(dns.get("domain", "")),
        search=[_str(s) for s in dns.get("search") or []],
        options=[_str(s) for s in dns.get("options") or []],
    )
    return out


def dns_from_conf(dns: Mapping[str, Any]) -> DNS:
    return _parse({"dns": dns}).dns


def encode(result: Result, version: str) -> dict[str, Any]:
    """Result -> the JSON object of ``version`` (omitting empty optional fields, like libcni)."""
    legacy = versions.has_ip_version_field(version)
    v110 = versions.at_least(version, "1.1.0")
    out: dict[str, Any] = {"cniVersion": version}
    if result.interfaces:
        out["interfaces"] = [_interface(i, v110) for i in result.interfaces]
    if result.ips:
        out["ips"] = [_ip(ip, legacy) for ip in result.ips]
    if result.routes:
        out["routes"] = [_route(r, v110) for r in result.routes]
    if legacy or not result.dns.is_empty():
        # libcni's 0.x types always write "dns" (a Go struct field), even when it is {}.
        dns: dict[str, Any] = {}
        if result.dns.nameservers:
            dns["nameservers"] = result.dns.nameservers
        if result.dns.domain:
            dns["domain"] = result.dns.domain
        if result.dns.search:
            dns["search"] = result.dns.search
        if result.dns.options:
            dns["options"] = result.dns.options
        out["dns"] = dns
    return out


def _interface(iface: Interface, v110: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": iface.name}
    if iface.mac:
        out["mac"] = iface.mac
    if v110 and iface.mtu:
        out["mtu"] = iface.mtu
    if iface.sandbox:
        out["sandbox"] = iface.sandbox
    if v110 and iface.socket_path:
        out["socketPath"] = iface.socket_path
    if v110 and iface.pci_id:
        out["pciID"] = iface.pci_id
    return out


def _ip(ip: IPConfig, legacy: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if legacy:
        out["version"] = str(ip.family)
    if ip.interface is not None:
        out["interface"] = ip.interface
    out["address"] = str(ip.address)
    if ip.gateway is not None:
        out["gateway"] = str(ip.gateway)
    return out


def _route(route: Route, v110: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"dst": str(route.dst)}
    if route.gw is not None:
        out["gw"] = str(route.gw)
    if v110:
        for key in ("mtu", "advmss", "priority"):
            if getattr(route, key):
                out[key] = getattr(route, key)
        if route.table is not None:
            out["table"] = route.table
        if route.scope is not None:
            out["scope"] = route.scope
    return out


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _uint(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"expected a non-negative integer, got {value!r}")
    return value
