"""Concurrent ADDs on a bridge that does not exist yet: one bridge, unique addresses, no error."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from kubext_cni.tests.e2e.harness import (
    Netns,
    Network,
    Plugin,
    container_ip,
    global_addresses,
    masqueraded,
    ports,
)


def _storm(plugin: Plugin, network: Network, pods: Callable[[], Netns], count: int) -> None:
    conf = network.conf(plugin, isGateway=True, isDefaultGateway=True, ipMasq=True)
    conf["ipam"]["ranges"] = [[{"subnet": network.subnet4}]]
    namespaces = [pods() for _ in range(count)]
    assert plugin.node.ip_json("link", "show", "dev", network.bridge) == []

    def add(i: int) -> dict:
        call = plugin("ADD", conf, container_id=f"storm-{i}", netns=namespaces[i].path)
        assert call.rc == 0, call.stdout
        return call.json

    with ThreadPoolExecutor(max_workers=count) as pool:
        results = list(pool.map(add, range(count)))
    addresses = [container_ip(r) for r in results]
    assert len(set(addresses)) == count
    assert sorted(network.reservations(plugin)) == sorted(addresses)
    # Every ADD raced to create and address the bridge: one bridge, the gateway on it once.
    bridges = [link["ifname"] for link in plugin.node.ip_json("link", "show", "type", "bridge")]
    assert bridges == [network.bridge]
    prefix = network.subnet4.split("/")[1]
    assert global_addresses(plugin.node, network.bridge) == [
        {"address": f"{network.gateway4()}/{prefix}", "tentative": False}
    ]
    assert len([p for p in ports(plugin.node, network.bridge) if p["up"]]) == count
    # Concurrent nft transactions each refill the shared chain: none may drop another's element.
    assert set(addresses) <= masqueraded(plugin.node)

    def delete(i: int) -> int:
        call = plugin("DEL", conf, container_id=f"storm-{i}", netns=namespaces[i].path)
        return call.rc

    with ThreadPoolExecutor(max_workers=count) as pool:
        assert set(pool.map(delete, range(count))) == {0}
    assert ports(plugin.node, network.bridge) == []
    assert network.reservations(plugin) == []
    assert not set(addresses) & masqueraded(plugin.node)


def test_fifty_concurrent_adds_through_the_daemon(
    ours: Plugin, network: Network, pods: Callable[[], Netns]
) -> None:
    _storm(ours, network, pods, 50)


@pytest.mark.parametrize("count", [6])
def test_concurrent_standalone_processes_share_the_bridge_lock(
    standalone: Plugin, network: Network, pods: Callable[[], Netns], count: int
) -> None:
    _storm(standalone, network, pods, count)
