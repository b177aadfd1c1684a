"""GC with a valid-attachments list reclaims host-local reservations and masquerade rules."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kubext_cni.tests.e2e.harness import Netns, Network, Plugin, container_ip, masqueraded


@pytest.mark.parametrize("key", ["cni.dev/valid-attachments", "cni.dev/attachments"])
def test_gc_keeps_valid_attachments_and_reclaims_the_rest(
    ours: Plugin, network: Network, pods: Callable[[], Netns], key: str
) -> None:
    conf = network.conf(ours, isGateway=True, ipMasq=True)
    results = {}
    for name in ("keep", "leak-1", "leak-2"):
        pod = pods()
        call = ours("ADD", conf, container_id=name, netns=pod.path)
        assert call.rc == 0, call.stdout
        results[name] = (pod, call.json)
    ips = {name: container_ip(result) for name, (_, result) in results.items()}

    gc_conf = {k: v for k, v in conf.items()}
    gc_conf[key] = [{"containerID": "keep", "ifname": "eth0"}]
    gc = ours("GC", gc_conf)
    assert (gc.rc, gc.stdout) == (0, b""), gc

    assert network.reservations(ours) == [ips["keep"]]
    assert masqueraded(ours.node) & set(ips.values()) == {ips["keep"]}
    pod, result = results["keep"]
    check = ours("CHECK", dict(conf, prevResult=result), container_id="keep", netns=pod.path)
    assert check.rc == 0, check.stdout
    assert ours("DEL", conf, container_id="keep", netns=pod.path).rc == 0


def test_gc_of_another_network_leaves_this_one_alone(
    ours: Plugin, network: Network, pods: Callable[[], Netns]
) -> None:
    conf = network.conf(ours, isGateway=True, ipMasq=True)
    pod = pods()
    address = container_ip(ours("ADD", conf, container_id="mine", netns=pod.path).json)
    other = dict(conf, name=network.name + "-other", **{"cni.dev/valid-attachments": []})
    assert ours("GC", other).rc == 0
    assert network.reservations(ours) == [address]
    assert address in masqueraded(ours.node)
    assert ours("DEL", conf, container_id="mine", netns=pod.path).rc == 0


def test_reference_gc_cannot_reclaim_host_local_leaks(
    reference: Plugin, network: Network, pods: Callable[[], Netns]
) -> None:
    """Why our GC matters: neither the reference bridge nor host-local implements it."""
    conf = network.conf(reference, isGateway=True)
    pod = pods()
    address = container_ip(reference("ADD", conf, container_id="leak", netns=pod.path).json)
    gc = reference("GC", dict(conf, **{"cni.dev/valid-attachments": []}))
    assert gc.rc == 0
    assert network.reservations(reference) == [address]
    assert reference("DEL", conf, container_id="leak", netns=pod.path).rc == 0
