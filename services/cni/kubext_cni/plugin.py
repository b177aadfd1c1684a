"""kubext-bridge: the CNI verbs over the pure core and the netlink/IPAM/nft edges.

``run(env, stdin)`` is the whole plugin as a function; the daemon calls it per request and
the standalone entry point (``main``) calls it once. Order follows the reference bridge:
config -> ADD -> DEL -> CHECK -> STATUS -> GC -> VERSION -> dispatch.
The edges (netlink, netns, masquerade) are imported inside the verbs, so bad input is answered fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubext_cni.core import errors, netconf, plan, result, versions
from kubext_cni.core.netconf import NetConf, Request

PLUGIN_TYPE = "kubext-bridge"
INTERNAL_ERROR = 999  # libcni's ErrInternal: an unexpected exception, still as error JSON
# Set (to anything) in a call's environment: stderr gets one line "kubext-bridge timings:
# {phase: ms}" (where the call's time went; the benchmark reads it).
TIMINGS_ENV = "KUBEXT_CNI_TIMINGS"
TIMINGS_PREFIX = f"{PLUGIN_TYPE} timings: "


def _version() -> str:
    try:
        with open(os.path.join(os.path.dirname(__file__), "VERSION")) as f:
            return f.read().strip()
    except OSError:
        return "unknown"


ABOUT = f"CNI plugin {PLUGIN_TYPE} v{_version()}"


@dataclass
class Outcome:
    """What a plugin process prints and returns."""

    exit_code: int
    stdout: bytes = b""
    stderr: bytes = b""


@dataclass
class Context:
    request: Request
    conf: NetConf
    env: Mapping[str, str]
    stdin: bytes
    log: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def warn(self, text: str) -> None:
        self.log.append(f"{PLUGIN_TYPE}: {text}")

    @contextlib.contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Adds the block's wall time (ms) to ``phase``: monotonic reads, ~0.1 us each."""
        started = time.monotonic()
        try:
            yield
        finally:
            elapsed = (time.monotonic() - started) * 1000
            self.timings[phase] = self.timings.get(phase, 0.0) + elapsed


def _ipam(ctx: Context, command: str) -> dict[str, Any] | None:
    """IPAM by exec (SPEC section 4), except host-local ADD/DEL: served in-process on
    host-local's own store where it can be done exactly as the binary does it."""
    assert ctx.conf.ipam_type
    with ctx.timed(f"ipam {command}"):
        if ctx.conf.ipam_type == "host-local" and command in ("ADD", "DEL"):
            from kubext_cni import delegate, hostlocal

            # As with exec: a runtime whose CNI_PATH has no host-local gets error 104.
            delegate.find("host-local", ctx.request.path)

            req, args = ctx.request, ctx.env.get("CNI_ARGS", "")
            if command == "ADD":
                allocated = hostlocal.allocate(ctx.conf.raw, req.container_id, req.ifname, args)
                if allocated is not None:
                    return allocated
            elif hostlocal.release(ctx.conf.raw, req.container_id, req.ifname, args) is not None:
                return None
        return _exec_ipam(ctx, command)


def _exec_ipam(ctx: Context, command: str) -> dict[str, Any] | None:
    from kubext_cni import delegate

    assert ctx.conf.ipam_type
    return delegate.run(
        ctx.conf.ipam_type,
        command,
        path=ctx.request.path,
        env=ctx.env,
        stdin=ctx.stdin,
        stderr=ctx.log,
    )


def _quietly(ctx: Context, what: str, fn: Callable[[], object]) -> None:
    """Rollback/cleanup step: a failure is logged, never allowed to mask the real error."""
    try:
        fn()
    except Exception as exc:
        ctx.warn(f"{what} failed: {exc}")


class _Background:
    """A step run in a thread alongside netlink work (nft, IPAM: mostly waiting on a child).

    A thread starts in its creator's netns: create these only on the host side, never
    inside ``netns.entered``.
    """

    def __init__(self, fn: Callable[[], object]) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], object]) -> None:
        try:
            fn()
        except BaseException as exc:  # handed to whoever waits
            self._error = exc

    def wait(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def _undo_masquerade(ctx: Context, job: _Background) -> None:
    from kubext_cni import masq

    try:
        job.wait()
    except Exception:
        return  # the nft transaction failed as a whole: nothing was added
    _quietly(
        ctx,
        "rollback: remove masquerade rules",
        lambda: masq.teardown(ctx.conf, ctx.request.container_id, ctx.request.ifname),
    )


def _interface(link: Any, *, sandbox: str = "") -> result.Interface:
    from kubext_cni import netlink

    return result.Interface(
        name=netlink.link_attr(link, "IFLA_IFNAME"),
        mac=netlink.link_attr(link, "IFLA_ADDRESS") or "",
        mtu=netlink.link_attr(link, "IFLA_MTU") or 0,
        sandbox=sandbox,
    )


# ADD ------------------------------------------------------------------------------------


def cmd_add(ctx: Context) -> bytes:
    """Create everything or nothing: each resource registers its undo on an ExitStack."""
    from kubext_cni import locks, masq, netlink, netns

    conf, req = ctx.conf, ctx.request
    prev = result.parse(conf.prev_result, what="prevResult") if conf.prev_result else None
    with contextlib.ExitStack() as resources:
        with ctx.timed("netns open + netlink sockets"):
            ns = resources.enter_context(netns.open_netns(req.netns))
            container = resources.enter_context(netlink.Links.inside(ns))
            host = resources.enter_context(netlink.Links.host())
            exists = container.get(req.ifname) is not None
        if exists:
            raise errors.CNIError(
                errors.INTERFACE_EXISTS,
                f"container interface {req.ifname!r} already exists in {req.netns}",
            )
        with contextlib.ExitStack() as undo:
            ipam = None
            if conf.ipam_type:
                raw_ipam = _ipam(ctx, "ADD")
                undo.callback(_quietly, ctx, "rollback: IPAM DEL", lambda: _ipam(ctx, "DEL"))
                ipam = result.parse(raw_ipam or {}, what=f"{conf.ipam_type} result")
            attachment = plan.plan_attachment(conf, req, ipam)
            masquerade = None
            if conf.ip_masq and attachment.ips:
                addresses = [ip.address for ip in attachment.ips]
                masquerade = _Background(
                    lambda: masq.setup(conf, req.container_id, req.ifname, addresses)
                )
                undo.callback(_undo_masquerade, ctx, masquerade)

            with (
                ctx.timed("bridge (lock, ensure, gateway addresses)"),
                locks.held(locks.bridge_lock(conf.bridge)),
            ):
                bridge, _ = host.ensure_bridge(conf.bridge, mtu=conf.mtu, promisc=conf.promisc_mode)
                if attachment.bridge_addresses:
                    current = host.addresses(bridge["index"])
                for address in attachment.bridge_addresses:
                    remove, add = plan.bridge_address_changes(
                        current, address, bridge=conf.bridge, force=conf.force_address
                    )
                    for old in remove:
                        host.delete_address(bridge["index"], old)
                    if add:
                        host.add_address(bridge["index"], address, nodad=True)
                        current.append(address)

            with ctx.timed("veth"):
                host.create_veth(
                    attachment.host_veth,
                    req.ifname,
                    ns,
                    bridge_index=bridge["index"],
                    mtu=conf.mtu,
                    mac=conf.mac,
                )
            undo.callback(
                _quietly, ctx, "rollback: delete veth", lambda: host.delete(attachment.host_veth)
            )
            with ctx.timed("sysctls (forwarding)"):
                for family in attachment.forward_families:
                    netns.write_sysctl(
                        "net/ipv4/ip_forward" if family == 4 else "net/ipv6/conf/all/forwarding",
                        "1",
                    )
            with ctx.timed("container (sysctls, addresses, up, routes)"):
                container_link = container.configure_container(ns, attachment)
            with ctx.timed("host veth oper up, hairpin"):
                host_link = host.wait_oper_up(attachment.host_veth)
                if conf.hairpin_mode:
                    host.set_hairpin(host_link["index"], attachment.host_veth)
            if masquerade is not None:
                with ctx.timed("masquerade (wait for nft)"):
                    masquerade.wait()
            with ctx.timed("result"):
                bridge_link = host.get(conf.bridge)  # its MAC may change when the first port joins
                out = plan.build_result(
                    attachment,
                    prev=prev,
                    bridge=_interface(bridge_link or bridge),
                    host=_interface(host_link),
                    container=_interface(container_link, sandbox=req.netns),
                )
                body = json.dumps(result.encode(out, conf.cni_version), indent=4).encode() + b"\n"
            undo.pop_all()  # success: keep everything
            return body


# DEL ------------------------------------------------------------------------------------


def cmd_del(ctx: Context) -> bytes:
    """Best effort and repeatable: every step runs whatever failed before it; IPAM is always
    released. A missing netns is not an error (DEL may come again); any other failure is
    reported, but only after every step was attempted."""
    from kubext_cni import masq, netlink, netns

    conf, req = ctx.conf, ctx.request
    problems: list[errors.CNIError] = []

    def attempt(what: str, fn: Callable[[], object]) -> None:
        try:
            with ctx.timed(what):
                fn()
        except errors.CNIError as exc:
            ctx.warn(f"DEL: {what}: {exc}")
            problems.append(exc)
        except Exception as exc:  # e.g. OSError from setns: must not skip the release below
            ctx.warn(f"DEL: {what}: {traceback.format_exc()}")
            problems.append(errors.CNIError(INTERNAL_ERROR, f"{what}: {type(exc).__name__}: {exc}"))

    def delete_container_interface() -> None:
        try:
            ns = netns.open_netns(req.netns)
        except errors.CNIError as exc:
            ctx.warn(f"DEL: {exc}; cleaning up the host side only")
            return
        with ns:
            netlink.delete_inside(ns, req.ifname)

    def delete_host_veth() -> None:
        # Normally gone with its peer; still here when the netns path vanished first.
        with netlink.Links.host() as host:
            host.delete(plan.host_veth_name(conf.name, req.container_id, req.ifname))

    # nft mostly waits on child processes: run it beside the netlink work.
    teardown = None
    if conf.ipam_type and conf.ip_masq:
        teardown = _Background(lambda: masq.teardown(conf, req.container_id, req.ifname))
    if req.netns:
        attempt("delete container interface", delete_container_interface)
    attempt("delete host veth", delete_host_veth)
    if conf.ipam_type:
        # Only now: the address must not be handed out while the old interface still has it.
        attempt("IPAM DEL (total)", lambda: _ipam(ctx, "DEL"))
    if teardown is not None:
        attempt("remove masquerade rules", teardown.wait)
    if problems:
        first = problems[0]
        details = "; ".join(str(p) for p in problems)
        raise errors.CNIError(first.code, first.msg, details)
    return b""


# CHECK ----------------------------------------------------------------------------------


def _drift(what: str, details: str = "") -> errors.CNIError:
    return errors.CNIError(errors.CHECK_FAILED, what, details)


def cmd_check(ctx: Context) -> bytes:
    """Compare prevResult with the live bridge, veth pair, addresses, routes and rules."""
    from kubext_cni import masq, netlink, netns

    conf, req = ctx.conf, ctx.request
    if conf.prev_result is None:
        raise errors.CNIError(errors.INVALID_CONFIG, "required prevResult missing")
    if conf.ipam_type:
        _ipam(ctx, "CHECK")
    prev = result.parse(conf.prev_result, what="prevResult")
    bridge_entry = next(
        (i for i in prev.interfaces if i.name == conf.bridge and not i.sandbox), None
    )
    cont_index = next(
        (
            n
            for n, i in enumerate(prev.interfaces)
            if i.name == req.ifname and i.sandbox == req.netns
        ),
        None,
    )
    if bridge_entry is None:
        raise _drift(f"prevResult lists no bridge {conf.bridge!r}")
    if cont_index is None:
        raise _drift(f"prevResult lists no interface {req.ifname!r} in sandbox {req.netns}")
    cont_entry = prev.interfaces[cont_index]
    with (
        netns.open_netns(req.netns) as ns,
        netlink.Links.inside(ns) as container,
        netlink.Links.host() as host,
    ):
        bridge = host.get(conf.bridge)
        if bridge is None or netlink.link_kind(bridge) != "bridge":
            raise _drift(f"bridge {conf.bridge!r} not found in the host namespace")
        if bridge_entry.mac and bridge_entry.mac != netlink.link_attr(bridge, "IFLA_ADDRESS"):
            raise _drift(f"bridge {conf.bridge!r} MAC changed", f"expected {bridge_entry.mac}")
        promisc = bool(bridge["flags"] & netlink.IFF_PROMISC)
        if promisc != conf.promisc_mode:
            raise _drift(f"bridge {conf.bridge!r} promiscuous mode is {promisc}")
        link = container.get(req.ifname)
        if link is None:
            raise _drift(f"container interface {req.ifname!r} not found in {req.netns}")
        if netlink.link_kind(link) != "veth":
            raise _drift(f"container interface {req.ifname!r} is not a veth")
        if cont_entry.mac and cont_entry.mac != netlink.link_attr(link, "IFLA_ADDRESS"):
            raise _drift(f"container interface {req.ifname!r} MAC changed")
        peer = host.get_index(netlink.link_attr(link, "IFLA_LINK"))
        if peer is None or netlink.link_attr(peer, "IFLA_MASTER") != bridge["index"]:
            raise _drift(f"the veth peer of {req.ifname!r} is not a port of {conf.bridge!r}")
        if netlink.link_attr(peer, "IFLA_LINK") != link["index"]:
            raise _drift(f"host veth {netlink.link_attr(peer, 'IFLA_IFNAME')!r} is not paired")
        have = set(container.addresses(link["index"]))
        expected_ips = [ip for ip in prev.ips if ip.interface in (None, cont_index)]
        for ip in expected_ips:
            if ip.address not in have:
                raise _drift(
                    f"address {ip.address} missing from {req.ifname!r}",
                    f"live addresses: {sorted(map(str, have))}",
                )
        gateways = {ip.family: ip.gateway for ip in reversed(expected_ips) if ip.gateway}
        live = container.routes()
        for route in prev.routes:
            gw = route.gw or gateways.get(route.dst.version)
            table = route.table if route.table is not None else netlink.RT_TABLE_MAIN
            if not any(
                dst == route.dst and (gw is None or via == gw) and tbl == table
                for dst, via, tbl, _ in live
            ):
                via_text = f" via {gw}" if gw else ""
                raise _drift(f"route {route.dst}{via_text} missing in {req.netns}")
    if conf.ip_masq and expected_ips:
        absent = masq.missing(
            conf, req.container_id, req.ifname, [ip.address for ip in expected_ips]
        )
        if absent:
            raise _drift(f"masquerade rule missing for {', '.join(absent)}")
    return b""


# STATUS ---------------------------------------------------------------------------------


def cmd_status(ctx: Context) -> bytes:
    """Ready when the IPAM plugin is, and the masquerade backend exists if ipMasq is set."""
    from kubext_cni import masq

    if ctx.conf.ipam_type:
        _ipam(ctx, "STATUS")
    if ctx.conf.ip_masq:
        reason = masq.available(ctx.conf)
        if reason:
            raise errors.CNIError(errors.NOT_AVAILABLE, "plugin not available", reason)
    return b""


# GC -------------------------------------------------------------------------------------


def cmd_gc(ctx: Context) -> bytes:
    """Reclaim what invalid attachments left: host-local reservations and masquerade rules.

    No valid-attachments key means none is valid (libcni sends none when a runtime asks
    for a full GC, as cnitool does).
    """
    from kubext_cni import hostlocal, masq

    conf = ctx.conf
    valid = conf.valid_attachments or frozenset()
    problems: list[str] = []
    if conf.ipam_type:
        try:
            _ipam(ctx, "GC")
        except errors.CNIError as exc:
            problems.append(f"IPAM GC: {exc}")
        if conf.ipam_type == "host-local":
            try:
                released = hostlocal.reclaim(conf, valid)
                if released:
                    ctx.warn(f"GC released leaked host-local IPs: {', '.join(released)}")
            except errors.CNIError as exc:
                problems.append(str(exc))
    if conf.ip_masq:
        try:
            masq.gc(conf, valid)
        except errors.CNIError as exc:
            problems.append(str(exc))
    if problems:
        raise errors.CNIError(
            errors.GC_FAILURE, "GC could not remove everything", "; ".join(problems)
        )
    return b""


# VERSION --------------------------------------------------------------------------------


def cmd_version(stdin: bytes) -> bytes:
    """The requested cniVersion echoed (spec), with the versions we support."""
    requested = versions.LATEST
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        body = json.loads(stdin or b"{}")
        candidate = body.get("cniVersion") if isinstance(body, dict) else None
        if isinstance(candidate, str) and candidate:
            requested = candidate
    info = {"cniVersion": requested, "supportedVersions": list(versions.SUPPORTED)}
    return json.dumps(info).encode() + b"\n"


# Dispatch -------------------------------------------------------------------------------

COMMANDS: dict[str, Callable[[Context], bytes]] = {
    "ADD": cmd_add,
    "DEL": cmd_del,
    "CHECK": cmd_check,
    "STATUS": cmd_status,
    "GC": cmd_gc,
}


def run(env: Mapping[str, str], stdin: bytes) -> Outcome:
    """The plugin as a pure-looking function: environment and stdin in, what to print out."""
    started = time.monotonic()
    log: list[str] = []
    timings: dict[str, float] = {}
    error_version = versions.LATEST
    try:
        request = netconf.parse_request(env)
        if request.command == "VERSION":
            return Outcome(0, cmd_version(stdin))
        raw = netconf.decode(stdin)
        if raw.get("cniVersion") in versions.SUPPORTED:
            error_version = raw["cniVersion"]
        conf = netconf.parse_netconf(raw, request)
        ctx = Context(request, conf, env, stdin, log, timings)
        timings["config parse"] = (time.monotonic() - started) * 1000
        stdout = COMMANDS[request.command](ctx)
        return Outcome(0, stdout, _join(_with_timings(log, env, timings, started)))
    except errors.CNIError as exc:
        if not env.get("CNI_COMMAND"):
            log.append(f"{ABOUT}\nCNI protocol versions supported: {', '.join(versions.SUPPORTED)}")
        return Outcome(
            1, exc.to_json(error_version), _join(_with_timings(log, env, timings, started))
        )
    except Exception as exc:  # a bug must still answer in the protocol's format
        log.append(traceback.format_exc())
        error = errors.CNIError(INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}")
        return Outcome(1, error.to_json(error_version), _join(log))


def _with_timings(
    log: list[str], env: Mapping[str, str], timings: dict[str, float], started: float
) -> list[str]:
    if env.get(TIMINGS_ENV):
        timings["total"] = (time.monotonic() - started) * 1000
        log.append(TIMINGS_PREFIX + json.dumps({k: round(v, 3) for k, v in timings.items()}))
    return log


def _join(lines: list[str]) -> bytes:
    return "".join(line.rstrip("\n") + "\n" for line in lines).encode()


def main() -> int:
    """Standalone entry point: one process per CNI call."""
    outcome = run(os.environ, sys.stdin.buffer.read())
    sys.stdout.buffer.write(outcome.stdout)
    sys.stderr.buffer.write(outcome.stderr)
    return outcome.exit_code
