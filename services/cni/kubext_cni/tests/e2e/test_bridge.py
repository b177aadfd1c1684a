"""The issue's scenarios in real namespaces, each run against ours and the reference bridge."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable

import pytest

from kubext_cni.tests.e2e.harness import (
    Netns,
    Network,
    Plugin,
    container_ip,
    global_addresses,
    masqueraded,
    ping,
    ports,
)

PodFactory = Callable[[], Netns]


def _add(plugin: Plugin, conf: dict, pod: Netns, cid: str, ifname: str = "eth0") -> dict:
    call = plugin("ADD", conf, container_id=cid, netns=pod.path, ifname=ifname)
    assert call.rc == 0, f"{plugin.kind} ADD failed: {call.stdout!r} {call.stderr}"
    return call.json


def _del(plugin: Plugin, conf: dict, pod: Netns | None, cid: str, ifname: str = "eth0") -> None:
    call = plugin("DEL", conf, container_id=cid, netns=pod.path if pod else "", ifname=ifname)
    assert call.rc == 0, f"{plugin.kind} DEL failed: {call.stdout!r} {call.stderr}"


def test_two_pods_reach_each_other_and_the_gateway(
    plugin: Plugin, network: Network, pods: PodFactory
) -> None:
    conf = network.conf(
        plugin, dual=True, isGateway=True, isDefaultGateway=True, hairpinMode=True, mtu=1400
    )
    a, b = pods(), pods()
    result_a = _add(plugin, conf, a, "pod-a")
    result_b = _add(plugin, conf, b, "pod-b")

    assert ping(a, container_ip(result_b, 4))
    assert ping(b, container_ip(result_a, 4))
    assert ping(a, network.gateway4())
    # The reference adds the bridge's IPv6 gateway with DAD, so it may need a moment.
    assert ping(a, container_ip(result_b, 6), attempts=4)
    assert ping(b, network.gateway6(), attempts=4)
    assert plugin.node.sysctl("net/ipv4/ip_forward") == "1"
    assert plugin.node.sysctl("net/ipv6/conf/all/forwarding") == "1"
    assert [(p["mtu"], p["up"], p["hairpin"]) for p in ports(plugin.node, network.bridge)] == [
        (1400, True, True)
    ] * 2

    _del(plugin, conf, a, "pod-a")
    _del(plugin, conf, b, "pod-b")
    assert ports(plugin.node, network.bridge) == []
    assert network.reservations(plugin) == []


def test_ipv6_is_usable_the_moment_add_returns(
    ours: Plugin, network: Network, pods: PodFactory
) -> None:
    """No address is left tentative (DAD off), so the first ping already works."""
    conf = network.conf(ours, dual=True, isGateway=True, isDefaultGateway=True)
    a, b = pods(), pods()
    _add(ours, conf, a, "pod-a")
    result_b = _add(ours, conf, b, "pod-b")
    for ns, dev in ((a, "eth0"), (b, "eth0"), (ours.node, network.bridge)):
        assert [x for x in global_addresses(ns, dev) if x["tentative"]] == []
    assert ping(a, container_ip(result_b, 6))
    assert ping(a, network.gateway6())


def _outside(node: Netns, pods: PodFactory, network: Network) -> tuple[Netns, str]:
    """A namespace beyond the node, with no route back to the pod subnet."""
    outside = pods()
    n = int(network.subnet4.split(".")[2])
    link = f"kxo{network.bridge[3:]}"
    node.ip("link", "add", link, "type", "veth", "peer", "name", "out0", "netns", outside.name)
    node.ip("addr", "add", f"172.31.{n}.1/30", "dev", link)
    node.ip("link", "set", link, "up")
    outside.ip("addr", "add", f"172.31.{n}.2/30", "dev", "out0")
    outside.ip("link", "set", "out0", "up")
    return outside, f"172.31.{n}.2"


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_masquerade_rule_exists_exactly_while_the_pod_does(
    plugin: Plugin, network: Network, pods: PodFactory, backend: str
) -> None:
    conf = network.conf(
        plugin, isGateway=True, isDefaultGateway=True, ipMasq=True, ipMasqBackend=backend
    )
    pod = pods()
    address = container_ip(_add(plugin, conf, pod, "pod-m"))
    assert address in masqueraded(plugin.node)

    # Observable effect: the outside host, which cannot route back, still answers.
    _, outside_ip = _outside(plugin.node, pods, network)
    assert ping(pod, outside_ip, attempts=2)

    _del(plugin, conf, pod, "pod-m")
    assert address not in masqueraded(plugin.node)


def test_without_ipmasq_the_outside_cannot_answer(
    plugin: Plugin, network: Network, pods: PodFactory
) -> None:
    conf = network.conf(plugin, isGateway=True, isDefaultGateway=True)
    pod = pods()
    address = container_ip(_add(plugin, conf, pod, "pod-n"))
    assert address not in masqueraded(plugin.node)
    _, outside_ip = _outside(plugin.node, pods, network)
    assert not ping(pod, outside_ip, timeout=0.5)
    _del(plugin, conf, pod, "pod-n")


@pytest.mark.parametrize("drift", ["address", "route"])
def test_check_detects_drift(
    plugin: Plugin, network: Network, pods: PodFactory, drift: str
) -> None:
    conf = network.conf(plugin, isGateway=True, isDefaultGateway=True)
    pod = pods()
    result = _add(plugin, conf, pod, "pod-c")
    check_conf = dict(conf, prevResult=result)
    ok = plugin("CHECK", check_conf, container_id="pod-c", netns=pod.path)
    assert ok.rc == 0, ok.stdout

    if drift == "address":
        pod.ip("addr", "del", result["ips"][0]["address"], "dev", "eth0")
    else:
        pod.ip("route", "del", "default")
    bad = plugin("CHECK", check_conf, container_id="pod-c", netns=pod.path)
    assert bad.rc != 0
    body = bad.json
    assert set(body) >= {"code", "msg"}
    if plugin.kind == "kubext":
        assert body["code"] == 103
        assert drift in body["msg"]
        assert body["cniVersion"] == "1.1.0"
    _del(plugin, conf, pod, "pod-c")


def test_check_detects_a_removed_masquerade_rule(
    ours: Plugin, network: Network, pods: PodFactory
) -> None:
    conf = network.conf(ours, isGateway=True, ipMasq=True)
    pod = pods()
    result = _add(ours, conf, pod, "pod-r")
    address = container_ip(result)
    ours.node.exec("nft", "delete", "element", "inet", "kubext-cni", "masq4", f"{{ {address} }}")
    bad = ours("CHECK", dict(conf, prevResult=result), container_id="pod-r", netns=pod.path)
    assert (bad.rc, bad.json["code"]) == (1, 103)
    assert address in bad.json["msg"]
    _del(ours, conf, pod, "pod-r")


def test_del_is_repeatable_and_needs_no_netns(
    plugin: Plugin, network: Network, pods: PodFactory
) -> None:
    conf = network.conf(plugin, isGateway=True, ipMasq=True, ipMasqBackend="nftables")
    a = pods()
    address_a = container_ip(_add(plugin, conf, a, "pod-a"))
    _del(plugin, conf, a, "pod-a")
    _del(plugin, conf, a, "pod-a")

    b = pods()
    address_b = container_ip(_add(plugin, conf, b, "pod-b"))
    b.delete()  # the runtime removed the namespace before calling DEL
    _del(plugin, conf, b, "pod-b")  # CNI_NETNS set but gone
    _del(plugin, conf, None, "pod-b")  # CNI_NETNS empty

    assert network.reservations(plugin) == []
    assert ports(plugin.node, network.bridge) == []
    assert address_a not in masqueraded(plugin.node)
    if plugin.kind == "kubext":
        assert address_b not in masqueraded(plugin.node)
    else:
        # Known reference leak: with the netns gone its DEL returns before ipMasq teardown.
        assert address_b in masqueraded(plugin.node)


def test_del_without_netns_removes_a_veth_whose_namespace_outlived_its_path(
    ours: Plugin, network: Network, pods: PodFactory
) -> None:
    """The host veth name derives from the attachment, so DEL finds it with no netns."""
    conf = network.conf(ours, isGateway=True)
    pod = pods()
    _add(ours, conf, pod, "pod-h")
    holder = os.open(pod.path, os.O_RDONLY)  # keeps the namespace (and its veth) alive
    try:
        pod.delete()
        assert len(ports(ours.node, network.bridge)) == 1
        _del(ours, conf, None, "pod-h")
        assert ports(ours.node, network.bridge) == []
    finally:
        os.close(holder)


def test_a_failed_add_rolls_back_everything(
    ours: Plugin, network: Network, pods: PodFactory
) -> None:
    """The container route cannot be added (gateway not on link): the last step fails."""
    conf = network.conf(ours, isGateway=True, ipMasq=True)
    conf["ipam"]["routes"] = [{"dst": "10.99.0.0/16", "gw": "172.30.9.1"}]
    pod = pods()
    before = masqueraded(ours.node)
    call = ours("ADD", conf, container_id="pod-f", netns=pod.path)
    assert call.rc == 1
    assert call.json["code"] == 100
    assert "10.99.0.0/16" in call.json["msg"]
    assert ports(ours.node, network.bridge) == []
    assert network.reservations(ours) == []
    assert masqueraded(ours.node) == before
    assert pod.ip_json("link", "show", "dev", "eth0") == []


def test_a_foreign_bridge_address_needs_force_address(
    ours: Plugin, network: Network, pods: PodFactory
) -> None:
    ours.node.ip("link", "add", network.bridge, "type", "bridge")
    ours.node.ip("addr", "add", "172.31.254.1/24", "dev", network.bridge)
    conf = network.conf(ours, isGateway=True)
    pod = pods()
    call = ours("ADD", conf, container_id="pod-x", netns=pod.path)
    assert (call.rc, call.json["code"]) == (1, 7)
    assert "forceAddress" in call.json["details"]
    assert ports(ours.node, network.bridge) == []
    assert network.reservations(ours) == []

    forced = dict(conf, forceAddress=True)
    _add(ours, forced, pod, "pod-x")
    bridge_v4 = [
        a["address"] for a in global_addresses(ours.node, network.bridge) if "." in a["address"]
    ]
    prefix = ipaddress.ip_network(network.subnet4).prefixlen
    assert bridge_v4 == [f"{network.gateway4()}/{prefix}"]
    _del(ours, forced, pod, "pod-x")


def test_add_twice_is_refused_and_keeps_the_first_attachment(
    ours: Plugin, network: Network, pods: PodFactory
) -> None:
    conf = network.conf(ours, isGateway=True)
    pod = pods()
    first = _add(ours, conf, pod, "pod-d")
    again = ours("ADD", conf, container_id="pod-d", netns=pod.path)
    assert (again.rc, again.json["code"]) == (1, 101)
    assert network.reservations(ours) == [container_ip(first)]
    assert ours("CHECK", dict(conf, prevResult=first), container_id="pod-d", netns=pod.path).rc == 0
    _del(ours, conf, pod, "pod-d")


def test_prev_result_is_kept_and_extended(ours: Plugin, network: Network, pods: PodFactory) -> None:
    """A plugin earlier in the chain reported an interface; ours appends after it."""
    prev = {
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "earlier0"}],
        "ips": [{"address": "192.168.77.5/24", "interface": 0}],
        "dns": {"nameservers": ["10.0.0.10"]},
    }
    conf = dict(network.conf(ours, isGateway=True), prevResult=prev)
    pod = pods()
    result = _add(ours, conf, pod, "pod-p")
    assert result["interfaces"][0]["name"] == "earlier0"
    assert [i.get("sandbox") for i in result["interfaces"]][1:] == [None, None, pod.path]
    assert result["ips"][0] == {"interface": 0, "address": "192.168.77.5/24"}
    assert result["ips"][1]["interface"] == 3
    assert result["dns"] == {"nameservers": ["10.0.0.10"]}
    _del(ours, conf, pod, "pod-p")


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_result_shape_matches_the_reference_for_every_version(
    ours: Plugin, reference: Plugin, network: Network, pods: PodFactory, version: str
) -> None:
    shapes = []
    for plugin in (ours, reference):
        conf = network.conf(plugin, version=version, isGateway=True, isDefaultGateway=True)
        pod = pods()
        result = _add(plugin, conf, pod, "pod-v")
        _del(plugin, conf, pod, "pod-v")
        shapes.append(_shape(result))
    assert shapes[0] == shapes[1]


def _shape(result: dict) -> dict:
    """Keys and values that must agree; names and MACs are random, mtu is ours alone."""
    return {
        "cniVersion": result["cniVersion"],
        "keys": sorted(result),
        "interfaces": [sorted(k for k in i if k != "mtu") for i in result["interfaces"]],
        "sandbox_index": [i for i, x in enumerate(result["interfaces"]) if "sandbox" in x],
        "ips": result["ips"],
        "routes": result["routes"],
    }
