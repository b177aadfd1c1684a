"""The network plan: what ADD must create, computed from the config and the IPAM result.

Pure. The reference bridge computes the same things inline in cmdAdd (calcGateways,
ensureAddr); here they are functions the netlink edge only executes.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field

from kubext_cni.core import errors
from kubext_cni.core.netconf import NetConf, Request
from kubext_cni.core.result import (
    DNS,
    Interface,
    IPAddress,
    IPConfig,
    IPInterface,
    IPNetwork,
    Result,
    Route,
    dns_from_conf,
)

HOST_VETH_PREFIX = "veth"
_DEFAULT_NET = {4: ipaddress.ip_network("0.0.0.0/0"), 6: ipaddress.ip_network("::/0")}


@dataclass
class Plan:
    """Everything ADD configures for one attachment."""

    host_veth: str
    ifname: str
    mtu: int
    ips: list[IPConfig] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    bridge_addresses: list[IPInterface] = field(default_factory=list)
    forward_families: list[int] = field(default_factory=list)
    dns: DNS = field(default_factory=DNS)

    @property
    def has_ipv6(self) -> bool:
        return any(ip.family == 6 for ip in self.ips)

    def family_gateway(self, family: int) -> IPAddress | None:
        """The first gateway of a family: routes without ``gw`` go through it (ConfigureIface)."""
        for ip in self.ips:
            if ip.family == family and ip.gateway is not None:
                return ip.gateway
        return None

    def route_gateway(self, route: Route) -> IPAddress | None:
        return route.gw if route.gw is not None else self.family_gateway(route.dst.version)


def host_veth_name(network: str, container_id: str, ifname: str) -> str:
    """A stable host-side name, so DEL finds the veth even when the netns is gone.

    44 bits of a hash: collisions stay below one in a million up to ~4,000 pods per node.
    """
    digest = hashlib.sha256(f"{network}\0{container_id}\0{ifname}".encode()).hexdigest()
    return HOST_VETH_PREFIX + digest[:11]


def gateway_ip(address: IPInterface) -> IPAddress:
    """The reference's calcGatewayIP: the first address of the subnet."""
    return address.network.network_address + 1


def plan_attachment(conf: NetConf, request: Request, ipam: Result | None) -> Plan:
    """Gateways, default routes, bridge addresses and forwarding for one ADD."""
    plan = Plan(
        host_veth=host_veth_name(conf.name, request.container_id, request.ifname),
        ifname=request.ifname,
        mtu=conf.mtu,
    )
    if ipam is None:
        return plan
    if not ipam.ips:
        raise errors.CNIError(errors.IPAM_FAILURE, "IPAM plugin returned missing IP config")
    plan.routes = list(ipam.routes)
    plan.dns = ipam.dns
    default_found: set[int] = set()
    for source in ipam.ips:
        ip = IPConfig(source.address, source.gateway)
        if ip.gateway is None and conf.is_gateway:
            ip.gateway = gateway_ip(ip.address)
        plan.ips.append(ip)
        if conf.is_default_gateway and ip.family not in default_found:
            # A default route from IPAM (with or without gw) already covers this family.
            if not any(r.dst == _DEFAULT_NET[ip.family] for r in plan.routes):
                plan.routes.append(Route(dst=_DEFAULT_NET[ip.family], gw=ip.gateway))
            default_found.add(ip.family)
        if conf.is_gateway and ip.gateway is not None:
            gw = ipaddress.ip_interface(f"{ip.gateway}/{ip.address.network.prefixlen}")
            if gw not in plan.bridge_addresses:
                plan.bridge_addresses.append(gw)
            if ip.family not in plan.forward_families:
                plan.forward_families.append(ip.family)
    if conf.dns is not None:
        plan.dns = dns_from_conf(conf.dns)
    return plan


def bridge_address_changes(
    current: list[IPInterface], wanted: IPInterface, *, bridge: str, force: bool
) -> tuple[list[IPInterface], bool]:
    """(addresses to remove, whether to add ``wanted``) for the gateway address on the bridge.

    One IPv4 address per bridge; IPv6 addresses may coexist unless their subnets overlap.
    A conflicting address is replaced only with forceAddress (the reference's ensureAddr).
    """
    if wanted in current:
        return [], False
    remove: list[IPInterface] = []
    for have in current:
        if have.version != wanted.version:
            continue
        if have.version == 6 and have.ip.is_link_local:
            continue
        if wanted.version == 4 or have.network.overlaps(wanted.network):
            if not force:
                raise errors.CNIError(
                    errors.INVALID_CONFIG,
                    f"{bridge!r} already has an IP address different from {wanted}",
                    f"it has {have}; set forceAddress to replace it",
                )
            remove.append(have)
    return remove, True


def build_result(
    plan: Plan,
    *,
    prev: Result | None,
    bridge: Interface,
    host: Interface,
    container: Interface,
) -> Result:
    """Our interfaces and IPs appended to ``prevResult`` (chaining), indices shifted to match."""
    out = Result()
    if prev is not None:
        out.interfaces = list(prev.interfaces)
        out.ips = list(prev.ips)
        out.routes = list(prev.routes)
        out.dns = prev.dns
    base = len(out.interfaces)
    out.interfaces += [bridge, host, container]
    container_index = base + 2
    out.ips += [IPConfig(ip.address, ip.gateway, container_index) for ip in plan.ips]
    out.routes += [r for r in plan.routes if r not in out.routes]
    if not plan.dns.is_empty():
        out.dns = plan.dns
    return out


def masquerade_subnets(ips: list[IPConfig] | list[IPInterface]) -> list[IPNetwork]:
    """The subnets a pod reaches without masquerade (its own), in first-seen order."""
    subnets: list[IPNetwork] = []
    for ip in ips:
        address = ip.address if isinstance(ip, IPConfig) else ip
        if address.network not in subnets:
            subnets.append(address.network)
    return subnets
