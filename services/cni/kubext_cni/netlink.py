"""The netlink edge: bridge, veth, addresses and routes through pyroute2.

Every call maps a pyroute2 NetlinkError to a CNIError naming the object, and every
"already exists"/"not found" that is part of an ensure/delete is treated as success.
"""

from __future__ import annotations

import errno
import ipaddress
import threading
import time
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from kubext_cni import netns
from kubext_cni.core import errors
from kubext_cni.core.plan import Plan
from kubext_cni.core.result import IPInterface, Route

IFA_F_NODAD = 0x02  # the kernel skips duplicate address detection for this address
IFF_PROMISC = 0x100
RT_TABLE_MAIN = 254
RTPROT_KERNEL = 2
# Seconds between operstate checks, doubling from 1 ms: carrier usually comes within a few ms
# of the peer going up (the first 10 ms sleep was a quarter of an ADD). Bounded (~2 s) like
# the reference's 0, 50, 500, 1000, 1000 ms.
_OPER_UP_WAITS = (0.0, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.25, 0.5, 1.0)


def _fail(action: str, exc: NetlinkError) -> errors.CNIError:
    return errors.CNIError(
        errors.NETLINK_FAILURE, f"failed to {action}: {exc.args[-1] if exc.args else exc}"
    )


def _attr(msg: Any, name: str) -> Any:
    return msg.get_attr(name)


def _kind(link: Any) -> str | None:
    info = _attr(link, "IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info else None


# Host sockets kept for the next call (a new IPRoute costs ~2 ms, a request on a kept one
# 0.4): one per concurrent call, up to this many kept. Only the host's: a container's
# socket is bound to its namespace.
_HOST_POOL: list[IPRoute] = []
_HOST_POOL_LOCK = threading.Lock()
HOST_POOL_MAX = 16


class Links:
    """Netlink on one namespace: the host's, or a container's when opened inside it."""

    def __init__(self, ipr: IPRoute, where: str, *, pooled: bool = False) -> None:
        self.ipr = ipr
        self.where = where
        self._pooled = pooled

    @classmethod
    def host(cls) -> Links:
        """The host namespace's (call it on the host side, never inside ``netns.entered``)."""
        with _HOST_POOL_LOCK:
            ipr = _HOST_POOL.pop() if _HOST_POOL else None
        return cls(ipr or IPRoute(groups=0), "host", pooled=True)

    @classmethod
    def inside(cls, ns: netns.NetNS) -> Links:
        """A socket created inside ``ns`` stays bound to it after the thread comes back."""
        with netns.entered(ns):
            ipr = IPRoute(groups=0)
        return cls(ipr, ns.path)

    def close(self, *, reusable: bool = True) -> None:
        if self._pooled and reusable:
            with _HOST_POOL_LOCK:
                if len(_HOST_POOL) < HOST_POOL_MAX:
                    _HOST_POOL.append(self.ipr)
                    return
        self.ipr.close()

    def __enter__(self) -> Links:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        # A NetlinkError leaves the socket usable; anything else may have left a reply
        # unread on it: do not hand that one to the next call.
        clean = exc_type is None or issubclass(exc_type, errors.CNIError | NetlinkError)
        self.close(reusable=clean)

    # Links --------------------------------------------------------------------------------

    def get(self, name: str) -> Any | None:
        try:
            return self.ipr.link("get", ifname=name)[0]
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise _fail(f"look up {name!r} in {self.where}", exc) from None

    def get_index(self, index: int) -> Any | None:
        try:
            return self.ipr.link("get", index=index)[0]
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise _fail(f"look up link {index} in {self.where}", exc) from None

    def delete(self, name: str) -> bool:
        """Delete a link by name; False when it was already gone."""
        try:
            self.ipr.link("del", ifname=name)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return False
            raise _fail(f"delete {name!r} in {self.where}", exc) from None
        return True

    def ensure_bridge(self, name: str, *, mtu: int, promisc: bool) -> tuple[Any, bool]:
        """The bridge, created if missing; (link, created). The caller holds the bridge lock.

        An existing bridge that is up costs one lookup, the common case on a busy node.
        """
        link = self.get(name)
        created = link is None
        if created:
            spec: dict[str, Any] = {"ifname": name, "kind": "bridge"}
            if mtu:
                spec["mtu"] = mtu
            try:
                self.ipr.link("add", **spec)
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:  # created meanwhile outside our lock: fine
                    raise _fail(f"create bridge {name!r}", exc) from None
            link = self.get(name)
            if link is None:
                raise errors.CNIError(errors.NETLINK_FAILURE, f"bridge {name!r} vanished")
        if _kind(link) != "bridge":
            raise errors.CNIError(
                errors.NETLINK_FAILURE, f"{name!r} already exists but is not a bridge"
            )
        try:
            if created:
                # Pin the bridge MAC: otherwise it follows the lowest port MAC as pods churn.
                self.ipr.link(
                    "set", index=link["index"], address=_attr(link, "IFLA_ADDRESS"), state="up"
                )
                # We own the bridge's routes; router advertisements must not add any.
                netns.write_sysctl(f"net/ipv6/conf/{name}/accept_ra", "0")
            elif link["flags"] & 1 == 0:  # IFF_UP
                self.ipr.link("set", index=link["index"], state="up")
            if promisc and not link["flags"] & IFF_PROMISC:
                self.ipr.link("set", index=link["index"], flags=IFF_PROMISC, change=IFF_PROMISC)
        except NetlinkError as exc:
            raise _fail(f"bring up bridge {name!r}", exc) from None
        return link, created

    def create_veth(
        self,
        host_name: str,
        ifname: str,
        ns: netns.NetNS,
        *,
        bridge_index: int,
        mtu: int,
        mac: str | None,
    ) -> None:
        """One request: the host end enslaved and up, its peer created inside the container."""
        peer: dict[str, Any] = {"ifname": ifname, "net_ns_fd": ns.fd}
        spec: dict[str, Any] = {
            "ifname": host_name,
            "kind": "veth",
            "peer": peer,
            "master": bridge_index,
            "state": "up",
        }
        if mtu:
            spec["mtu"] = peer["mtu"] = mtu
        if mac:
            peer["address"] = mac
        try:
            self.ipr.link("add", **spec)
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                raise errors.CNIError(
                    errors.INTERFACE_EXISTS,
                    f"host interface {host_name!r} already exists",
                    "an earlier ADD of this container and interface was not deleted",
                ) from None
            raise _fail(f"create veth pair {host_name!r}/{ifname!r}", exc) from None

    def set_hairpin(self, index: int, name: str) -> None:
        try:
            self.ipr.brport("set", index=index, mode=1)
        except NetlinkError as exc:
            raise _fail(f"set hairpin mode on {name!r}", exc) from None

    def wait_oper_up(self, name: str) -> Any:
        """The bridge port must reach operstate UP (both veth ends up, carrier on)."""
        link = None
        for delay in _OPER_UP_WAITS:
            time.sleep(delay)
            link = self.get(name)
            if link is not None and _attr(link, "IFLA_OPERSTATE") == "UP":
                return link
        state = _attr(link, "IFLA_OPERSTATE") if link is not None else "missing"
        raise errors.CNIError(errors.NETLINK_FAILURE, f"bridge port {name!r} in state {state}")

    # Addresses ----------------------------------------------------------------------------

    def addresses(self, index: int, family: int | None = None) -> list[IPInterface]:
        try:
            msgs = self.ipr.get_addr(index=index, **({"family": family} if family else {}))
        except NetlinkError as exc:
            raise _fail(f"list addresses of link {index} in {self.where}", exc) from None
        return [ipaddress.ip_interface(f"{_attr(m, 'IFA_ADDRESS')}/{m['prefixlen']}") for m in msgs]

    def add_address(self, index: int, address: IPInterface, *, nodad: bool) -> None:
        flags = IFA_F_NODAD if nodad and address.version == 6 else 0
        try:
            self.ipr.addr(
                "add",
                index=index,
                address=str(address.ip),
                prefixlen=address.network.prefixlen,
                flags=flags,
            )
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                return
            raise _fail(f"add address {address} in {self.where}", exc) from None

    def delete_address(self, index: int, address: IPInterface) -> None:
        try:
            self.ipr.addr(
                "del", index=index, address=str(address.ip), prefixlen=address.network.prefixlen
            )
        except NetlinkError as exc:
            if exc.code in (errno.EADDRNOTAVAIL, errno.ENOENT):
                return
            raise _fail(f"remove address {address} in {self.where}", exc) from None

    # Routes -------------------------------------------------------------------------------

    def add_route(self, index: int, route: Route, gateway: Any) -> None:
        spec: dict[str, Any] = {"dst": str(route.dst), "oif": index}
        if gateway is not None:
            spec["gateway"] = str(gateway)
        if route.priority:
            spec["priority"] = route.priority
        if route.table is not None:
            spec["table"] = route.table
        if route.scope is not None:
            spec["scope"] = route.scope
        if route.mtu or route.advmss:
            spec["metrics"] = {
                k: v for k, v in (("RTAX_MTU", route.mtu), ("RTAX_ADVMSS", route.advmss)) if v
            }
        try:
            self.ipr.route("add", **spec)
        except NetlinkError as exc:
            via = f" via {gateway}" if gateway is not None else ""
            raise _fail(f"add route {route.dst}{via} in {self.where}", exc) from None

    def routes(self) -> list[tuple[Any, Any, int, int]]:
        """(dst network, gateway, table, oif) of every unicast route, both families."""
        out = []
        for family in (4, 6):
            try:
                msgs = self.ipr.get_routes(family=2 if family == 4 else 10)
            except NetlinkError as exc:
                raise _fail(f"list routes in {self.where}", exc) from None
            for m in msgs:
                dst = _attr(m, "RTA_DST") or ("0.0.0.0" if family == 4 else "::")
                gw = _attr(m, "RTA_GATEWAY")
                out.append(
                    (
                        ipaddress.ip_network(f"{dst}/{m['dst_len']}", strict=False),
                        ipaddress.ip_address(gw) if gw else None,
                        _attr(m, "RTA_TABLE") or m["table"],
                        _attr(m, "RTA_OIF"),
                    )
                )
        return out

    # The container side -------------------------------------------------------------------

    def configure_container(self, ns: netns.NetNS, plan: Plan) -> Any:
        """Sysctls, link up, addresses (IPv6 without DAD), then routes: ipam.ConfigureIface.

        Returns the container link as read before it went up (index, MAC and MTU are final).
        """
        link = self.get(plan.ifname)
        if link is None:
            raise errors.CNIError(
                errors.NETLINK_FAILURE, f"container interface {plan.ifname!r} vanished"
            )
        index = link["index"]
        if plan.ips:
            with netns.entered(ns):
                if plan.has_ipv6:
                    for dev in ("lo", plan.ifname):
                        netns.write_sysctl(f"net/ipv6/conf/{dev}/disable_ipv6", "0")
                    netns.write_sysctl(f"net/ipv6/conf/{plan.ifname}/keep_addr_on_down", "1")
                    # DAD would hold each address "tentative" for ~2 s after ADD returns.
                    netns.write_sysctl(f"net/ipv6/conf/{plan.ifname}/accept_dad", "0")
                netns.write_sysctl(f"net/ipv4/conf/{plan.ifname}/arp_notify", "1")
        # Up before the addresses, as the reference's ConfigureIface does: the host end's
        # carrier (operstate UP, awaited next) comes while the addresses are added. No
        # DAD either way: accept_dad is 0 by now and the addresses are NODAD.
        try:
            self.ipr.link("set", index=index, state="up")
        except NetlinkError as exc:
            raise _fail(f"set {plan.ifname!r} up in {self.where}", exc) from None
        for ip in plan.ips:
            self.add_address(index, ip.address, nodad=True)
        for route in plan.routes:
            self.add_route(index, route, plan.route_gateway(route))
        return link


def link_kind(link: Any) -> str | None:
    return _kind(link)


def link_attr(link: Any, name: str) -> Any:
    return _attr(link, name)
