"""libcni (through cnitool) drives a conflist: kubext-bridge, then the reference portmap."""

from __future__ import annotations

import glob
import json
import os
import subprocess
from collections.abc import Callable, Iterator

import pytest

from kubext_cni.tests.e2e import harness
from kubext_cni.tests.e2e.harness import Netns, Network, Plugin, container_ip, masqueraded

CAP_ARGS = {"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]}


@pytest.fixture
def cnitool(ours: Plugin, network: Network, tmp_path: object) -> Iterator[Callable[..., str]]:
    conf_dir = os.path.join(str(tmp_path), "net.d")
    os.makedirs(conf_dir)
    bridge = network.conf(ours, isGateway=True, isDefaultGateway=True, ipMasq=True)
    conflist = {
        "cniVersion": "1.1.0",
        "name": network.name,
        "plugins": [
            {k: v for k, v in bridge.items() if k not in ("cniVersion", "name")},
            {"type": "portmap", "capabilities": {"portMappings": True}, "backend": "nftables"},
        ],
    }
    with open(os.path.join(conf_dir, "10-kubext.conflist"), "w") as f:
        json.dump(conflist, f)
    binary = harness.reference_binary("cnitool")

    def run(command: str, netns: str, *, cap_args: dict | None = None) -> str:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin"),
            "NETCONFPATH": conf_dir,
            "CNI_PATH": ours.cni_path,
        }
        if cap_args:
            env["CAP_ARGS"] = json.dumps(cap_args)
        proc = subprocess.run(
            ["nsenter", f"--net={ours.node.path}", binary, command, network.name, netns],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, f"cnitool {command}: {proc.stdout!r} {proc.stderr!r}"
        return proc.stdout.decode()

    yield run
    # libcni caches results under /var/lib/cni; drop this network's entries.
    for path in glob.glob(f"/var/lib/cni/results/{network.name}-*"):
        os.unlink(path)


def test_portmap_chains_after_kubext_bridge(
    cnitool: Callable[..., str], ours: Plugin, network: Network, pods: Callable[[], Netns]
) -> None:
    pod = pods()
    result = json.loads(cnitool("add", pod.path, cap_args=CAP_ARGS))
    address = container_ip(result)
    assert [i.get("sandbox") for i in result["interfaces"]] == [None, None, pod.path]
    ruleset = ours.node.exec("nft", "list", "ruleset")
    assert f"tcp dport 18080 dnat to {address}:80" in ruleset  # portmap read our result
    assert address in masqueraded(ours.node)

    # portmap needs the same capability args on CHECK and DEL to find its rules.
    cnitool("check", pod.path, cap_args=CAP_ARGS)
    cnitool("del", pod.path, cap_args=CAP_ARGS)
    ruleset = ours.node.exec("nft", "list", "ruleset")
    assert address not in ruleset
    assert network.reservations(ours) == []


def test_cnitool_gc_reclaims_an_allocation_libcni_never_knew(
    cnitool: Callable[..., str], ours: Plugin, network: Network, pods: Callable[[], Netns]
) -> None:
    """An ADD whose result the runtime lost: only our GC can release its host-local IP."""
    known, leaked = pods(), pods()
    cnitool("add", known.path)
    conf = network.conf(ours, isGateway=True, isDefaultGateway=True, ipMasq=True)
    lost = ours("ADD", conf, container_id="lost-pod", netns=leaked.path)
    assert lost.rc == 0
    lost_ip = container_ip(lost.json)
    assert lost_ip in network.reservations(ours)

    cnitool("gc", known.path)
    assert network.reservations(ours) == []
    assert lost_ip not in masqueraded(ours.node)
