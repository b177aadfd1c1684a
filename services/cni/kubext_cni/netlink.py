"""The netlink edge: bridge, veth, addresses and routes through ``rtnl`` (plain rtnetlink).

Every call maps a NetlinkError (the kernel's errno) to a CNIError naming the object, and every
"already exists"/"not found" that is part of an ensure/delete is treated as success.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import struct
import threading
import time
from typing import Any

from kubext_cni import netns, rtnl
from kubext_cni.core import errors
from kubext_cni.core.plan import Plan
from kubext_cni.core.result import IPInterface, Route
from kubext_cni.rtnl import NetlinkError

IFA_F_NODAD = 0x02  # the kernel skips duplicate address detection for this address
IFF_PROMISC = 0x100
RT_TABLE_MAIN = 254
RTPROT_KERNEL = 2
_FAMILY = {4: 2, 6: 10}  # AF_INET, AF_INET6
_CREATE = rtnl.NLM_F_ACK | rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL
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


# Host sockets kept for the next call: one per concurrent call, up to this many kept. Only
# the host's: a container's socket is bound to its namespace.
_HOST_POOL: list[rtnl.Socket] = []
_HOST_POOL_LOCK = threading.Lock()
HOST_POOL_MAX = 16


class Links:
    """Netlink on one namespace: the host's, or a container's when opened inside it."""

    def __init__(self, ipr: rtnl.Socket, where: str, *, pooled: bool = False) -> None:
        self.ipr = ipr
        self.where = where
        self._pooled = pooled

    @classmethod
    def host(cls) -> Links:
        """The host namespace's (call it on the host side, never inside ``netns.entered``)."""
        with _HOST_POOL_LOCK:
            ipr = _HOST_POOL.pop() if _HOST_POOL else None
        return cls(ipr or rtnl.Socket(), "host", pooled=True)

    @classmethod
    def inside(cls, ns: netns.NetNS) -> Links:
        """A socket created inside ``ns`` stays bound to it after the thread comes back."""
        with netns.entered(ns):
            ipr = rtnl.Socket()
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
        # unread on it: do not hand that one to the next call (rtnl skips stale replies
        # anyway; this keeps the pool clean of half-read sockets).
        clean = exc_type is None or issubclass(exc_type, errors.CNIError | NetlinkError)
        self.close(reusable=clean)

    # Links --------------------------------------------------------------------------------

    def _get_link(self, body: bytes) -> Any:
        skip_stats = rtnl.u32(rtnl.IFLA_EXT_MASK, rtnl.RTEXT_FILTER_SKIP_STATS)
        return self.ipr.get(rtnl.RTM_GETLINK, body + skip_stats)

    def get(self, name: str) -> Any | None:
        try:
            return self._get_link(rtnl.ifinfo() + rtnl.text(rtnl.IFLA_IFNAME, name))
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise _fail(f"look up {name!r} in {self.where}", exc) from None

    def get_index(self, index: int) -> Any | None:
        try:
            return self._get_link(rtnl.ifinfo(index))
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise _fail(f"look up link {index} in {self.where}", exc) from None

    def delete(self, name: str) -> bool:
        """Delete a link by name; False when it was already gone."""
        try:
            self.ipr.request(rtnl.RTM_DELLINK, rtnl.ifinfo() + rtnl.text(rtnl.IFLA_IFNAME, name))
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
            body = rtnl.ifinfo() + rtnl.text(rtnl.IFLA_IFNAME, name)
            if mtu:
                body += rtnl.u32(rtnl.IFLA_MTU, mtu)
            body += rtnl.attr(rtnl.IFLA_LINKINFO, rtnl.text(rtnl.IFLA_INFO_KIND, "bridge"))
            try:
                self.ipr.request(rtnl.RTM_NEWLINK, body, _CREATE)
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
                self._set_flags(
                    link["index"],
                    rtnl.IFF_UP,
                    rtnl.attr(rtnl.IFLA_ADDRESS, rtnl.mac_bytes(_attr(link, "IFLA_ADDRESS"))),
                )
                # We own the bridge's routes; router advertisements must not add any.
                netns.write_sysctl(f"net/ipv6/conf/{name}/accept_ra", "0")
            elif link["flags"] & 1 == 0:  # IFF_UP
                self._set_flags(link["index"], rtnl.IFF_UP)
            if promisc and not link["flags"] & IFF_PROMISC:
                self._set_flags(link["index"], IFF_PROMISC)
        except NetlinkError as exc:
            raise _fail(f"bring up bridge {name!r}", exc) from None
        return link, created

    def _set_flags(self, index: int, flags: int, attrs: bytes = b"") -> None:
        """Set ``flags`` (IFF_UP, IFF_PROMISC) on a link, others unchanged, with ``attrs``."""
        body = rtnl.ifinfo(index, flags=flags, change=flags) + attrs
        self.ipr.request(rtnl.RTM_SETLINK, body)

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
        mtu_attr = rtnl.u32(rtnl.IFLA_MTU, mtu) if mtu else b""
        peer = (
            rtnl.ifinfo()
            + rtnl.text(rtnl.IFLA_IFNAME, ifname)
            + rtnl.u32(rtnl.IFLA_NET_NS_FD, ns.fd)
            + mtu_attr
            + (rtnl.attr(rtnl.IFLA_ADDRESS, rtnl.mac_bytes(mac)) if mac else b"")
        )
        kind = rtnl.text(rtnl.IFLA_INFO_KIND, "veth") + rtnl.attr(
            rtnl.IFLA_INFO_DATA, rtnl.attr(rtnl.VETH_INFO_PEER, peer)
        )
        body = (
            rtnl.ifinfo(flags=rtnl.IFF_UP, change=rtnl.IFF_UP)  # up as it is created
            + rtnl.text(rtnl.IFLA_IFNAME, host_name)
            + rtnl.u32(rtnl.IFLA_MASTER, bridge_index)
            + mtu_attr
            + rtnl.attr(rtnl.IFLA_LINKINFO, kind)
        )
        try:
            self.ipr.request(rtnl.RTM_NEWLINK, body, _CREATE)
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
            mode = rtnl.attr(rtnl.IFLA_BRPORT_MODE, b"\x01")
            body = rtnl.ifinfo(index, family=rtnl.AF_BRIDGE) + rtnl.attr(
                rtnl.IFLA_PROTINFO | rtnl.NLA_F_NESTED, mode
            )
            self.ipr.request(rtnl.RTM_SETLINK, body)
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
            head = struct.pack("=BBBBi", _FAMILY.get(family or 0, 0), 0, 0, 0, 0)
            msgs = self.ipr.dump(rtnl.RTM_GETADDR, head)
        except NetlinkError as exc:
            raise _fail(f"list addresses of link {index} in {self.where}", exc) from None
        return [
            ipaddress.ip_interface(
                f"{_attr(m, 'IFA_ADDRESS') or _attr(m, 'IFA_LOCAL')}/{m['prefixlen']}"
            )
            for m in msgs
            if m["index"] == index
        ]

    def _address_request(self, kind: int, index: int, address: IPInterface, flags: int) -> None:
        ip = rtnl.attr(rtnl.IFA_LOCAL, address.ip.packed)
        ip += rtnl.attr(rtnl.IFA_ADDRESS, address.ip.packed)
        head = struct.pack(
            "=BBBBi", _FAMILY[address.version], address.network.prefixlen, flags, 0, index
        )
        self.ipr.request(kind, head + ip, _CREATE if kind == rtnl.RTM_NEWADDR else rtnl.NLM_F_ACK)

    def add_address(self, index: int, address: IPInterface, *, nodad: bool) -> None:
        flags = IFA_F_NODAD if nodad and address.version == 6 else 0
        try:
            self._address_request(rtnl.RTM_NEWADDR, index, address, flags)
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                return
            raise _fail(f"add address {address} in {self.where}", exc) from None

    def delete_address(self, index: int, address: IPInterface) -> None:
        try:
            self._address_request(rtnl.RTM_DELADDR, index, address, 0)
        except NetlinkError as exc:
            if exc.code in (errno.EADDRNOTAVAIL, errno.ENOENT):
                return
            raise _fail(f"remove address {address} in {self.where}", exc) from None

    # Routes -------------------------------------------------------------------------------

    def add_route(self, index: int, route: Route, gateway: Any) -> None:
        table = route.table if route.table is not None else RT_TABLE_MAIN
        head = struct.pack(
            "=BBBBBBBBI",
            _FAMILY[route.dst.version],
            route.dst.prefixlen,
            0,
            0,
            table if table < 256 else rtnl.RT_TABLE_COMPAT,
            rtnl.RTPROT_STATIC,
            route.scope or 0,
            rtnl.RTN_UNICAST,
            0,
        )
        attrs = (
            rtnl.attr(rtnl.RTA_DST, route.dst.network_address.packed)
            if route.dst.prefixlen
            else b""
        )
        attrs += rtnl.u32(rtnl.RTA_OIF, index)
        if gateway is not None:
            attrs += rtnl.attr(rtnl.RTA_GATEWAY, ipaddress.ip_address(gateway).packed)
        if route.priority:
            attrs += rtnl.u32(rtnl.RTA_PRIORITY, route.priority)
        attrs += rtnl.u32(rtnl.RTA_TABLE, table)
        metrics = b"".join(
            rtnl.u32(kind, value)
            for kind, value in ((rtnl.RTAX_MTU, route.mtu), (rtnl.RTAX_ADVMSS, route.advmss))
            if value
        )
        if metrics:
            attrs += rtnl.attr(rtnl.RTA_METRICS, metrics)
        try:
            self.ipr.request(rtnl.RTM_NEWROUTE, head + attrs, _CREATE)
        except NetlinkError as exc:
            via = f" via {gateway}" if gateway is not None else ""
            raise _fail(f"add route {route.dst}{via} in {self.where}", exc) from None

    def routes(self) -> list[tuple[Any, Any, int, int]]:
        """(dst network, gateway, table, oif) of every unicast route, both families."""
        out = []
        for family in (4, 6):
            try:
                head = struct.pack("=BBBBBBBBI", _FAMILY[family], 0, 0, 0, 0, 0, 0, 0, 0)
                msgs = self.ipr.dump(rtnl.RTM_GETROUTE, head)
            except NetlinkError as exc:
                raise _fail(f"list routes in {self.where}", exc) from None
            for m in msgs:
                if m["type"] != rtnl.RTN_UNICAST:
                    continue
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
            self._set_flags(index, rtnl.IFF_UP)
        except NetlinkError as exc:
            raise _fail(f"set {plan.ifname!r} up in {self.where}", exc) from None
        for ip in plan.ips:
            self.add_address(index, ip.address, nodad=True)
        for route in plan.routes:
            self.add_route(index, route, plan.route_gateway(route))
        return link


# Seconds between looks at a link being deleted (one GETLINK, ~10 us each).
_GONE_POLL = 0.0002
log = logging.getLogger("kubext_cni.netlink")


def delete_inside(ns: netns.NetNS, name: str) -> bool:
    """Delete link ``name`` in ``ns``; returns once it is gone there (False: it was not).

    RTM_DELLINK answers only at the end of the kernel's netdev_run_todo, an rcu_barrier()
    and the wait for the device's last references: ~15 ms here, most of a DEL, and the
    reference bridge waits for it. The kernel has unlisted both veth ends and removed
    their addresses and bridge port about 1 ms in (and released rtnl), so this call does
    not wait for the memory to be freed: the request runs in a thread that owns its
    socket, while this one looks the name up on a second socket until it is gone or the
    request has answered. An error of the request (the kernel refuses before it unlists
    anything) is raised here as ``delete`` raises it.
    """
    with netns.entered(ns):
        deleter = Links(rtnl.Socket(), ns.path)
        try:
            observer = Links(rtnl.Socket(), ns.path)
        except BaseException:
            deleter.close()
            raise
    answered = threading.Event()
    outcome: list[Any] = []
    gone_first = threading.Event()

    def run() -> None:
        try:
            outcome.append(deleter.delete(name))
        except Exception as exc:
            outcome.append(exc)
            if gone_first.is_set():  # not seen so far: the kernel errs before it unlists
                log.warning("deleting %r in %s failed after it was gone: %s", name, ns.path, exc)
        finally:
            deleter.close(reusable=False)
            answered.set()

    threading.Thread(target=run, name="cni-link-delete", daemon=True).start()
    with observer:
        while not answered.wait(_GONE_POLL):
            if observer.get(name) is None:
                gone_first.set()
                return True  # unlisted: the kernel finishes in the thread
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return bool(result)


def link_kind(link: Any) -> str | None:
    return _kind(link)


def link_attr(link: Any, name: str) -> Any:
    return _attr(link, name)
