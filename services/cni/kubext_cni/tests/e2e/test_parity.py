"""Same config, same calls, two nodes: ours and the reference leave the same topology."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kubext_cni.tests.e2e.harness import Netns, Network, Plugin, topology

OPTIONS = [
    pytest.param(
        {
            "isGateway": True,
            "isDefaultGateway": True,
            "hairpinMode": True,
            "mtu": 1400,
            "ipMasq": True,
            "ipMasqBackend": "nftables",
        },
        True,
        id="dual-stack-gateway",
    ),
    pytest.param({"isGateway": True}, False, id="gateway-no-default-route"),
    pytest.param({}, False, id="plain-l2-bridge-with-ipam"),
]


@pytest.mark.parametrize(("options", "dual"), OPTIONS)
def test_same_observable_topology(
    ours: Plugin,
    reference: Plugin,
    network: Network,
    pods: Callable[[], Netns],
    options: dict,
    dual: bool,
) -> None:
    views = []
    for plugin in (ours, reference):
        plugin.node.set_sysctl("net/ipv4/ip_forward", "0")  # earlier tests may have set it
        conf = network.conf(plugin, dual=dual, **options)
        attached = []
        for n in range(2):
            pod = pods()
            call = plugin("ADD", conf, container_id=f"pod-{n}", netns=pod.path)
            assert call.rc == 0, call.stdout
            attached.append((pod, "eth0"))
        views.append(topology(plugin.node, network.bridge, attached))
        for n, (pod, _) in enumerate(attached):
            assert plugin("DEL", conf, container_id=f"pod-{n}", netns=pod.path).rc == 0
        views.append(topology(plugin.node, network.bridge, []))
    ours_up, ours_down, ref_up, ref_down = views
    assert ours_up == ref_up
    assert ours_down == ref_down
    assert len(ours_up["ports"]) == 2 and ours_down["ports"] == []
