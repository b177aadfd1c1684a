"""The rig's real node of this test's own: `up --fresh --real-node`, pods run, then `down` leaves
nothing of it behind: processes, the kubelet's port, containerd's socket, mounts, network
namespaces, the node's links and veths, nft tables, kubepods cgroups, the sysctls the kubelet
changes, /run/containerd and /var/lib/kubelet as they were, the machine's real-node claim.

What is real: everything `test_real_node.py::test_real_node_runs_pods` runs (containerd, runc,
the kubelet, kube-proxy, kubext-bridge), here in a cluster this test brings up itself (state dir
under the cache dir, port offset 3000) and brings down. It needs the machine's real node free,
so its target is tagged `real-node-own`, which `./kubext test` (its test cluster holds the node)
is to leave out with `--tag=-real-node-own`; there the fresh-clone test's `./kubext up`/`down`
checks the node. Run alone: `./pants test --tag=real-node-own ::` (a node another cluster holds
is not taken: skipped, naming it). Nothing is a kwok fake here."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from e2e.test_real_node import check_healthy, run_pods

from kubext_rig import node, real_node_testing, tools

# Its own, never the shared cluster's: `down` is what it checks. Short: containerd's socket path.
STATE = tools.cache_dir() / "real-node-down"
KUBELET_PORT = 10250 + real_node_testing.OFFSET


def _links() -> set[str]:
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True)
    return {link["ifname"] for link in json.loads(out.stdout)}


def _kubepods_cgroups() -> set[Path]:
    return {p for p in Path("/sys/fs/cgroup").glob("*/kubepods") if p.is_dir()}


def _sysctls() -> dict[str, str]:
    return {k: Path("/proc/sys", *k.split(".")).read_text().strip() for k in node.SYSCTLS}


def _port_listening(port: int) -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


@pytest.mark.skipif(os.geteuid() != 0, reason="a real kubelet needs root")
def test_real_node_up_then_down_leaves_nothing() -> None:
    with real_node_testing.machine_lock():
        before = {
            "links": _links(),
            "nft": real_node_testing.nft_tables(),
            "cgroups": _kubepods_cgroups(),
            "sysctls": _sysctls(),
            "run_containerd": Path("/run/containerd").exists(),
            "var_lib_kubelet": Path("/var/lib/kubelet").exists(),
        }
        seen_veths: set[str] = set()
        seen_netns: set[str] = set()
        # Skipped (naming it) when another cluster holds the machine's real node.
        with real_node_testing.up(STATE) as real_node:
            assert not real_node.shared
            assert node.LINK not in before["links"], "another real node runs on this machine"
            check_healthy(real_node)
            run_pods(real_node, seen_veths, seen_netns)

        # Nothing of ours is left.
        assert real_node_testing.processes_of(STATE) == {}
        assert not _port_listening(KUBELET_PORT)
        assert not (STATE / "node" / "containerd" / "containerd.sock").exists()
        leftover_mounts = {
            m
            for m in real_node_testing.mount_points()
            if m.startswith(str(STATE)) or m.startswith("/run/netns/cni-")
        }
        assert leftover_mounts == set()
        assert not any(Path("/run/netns", ns).exists() for ns in seen_netns)
        links = _links()
        assert {node.LINK, node.POD_BRIDGE} & links == set()
        assert seen_veths & links == set()
        ours = {
            "table ip kube-proxy",
            "table ip6 kube-proxy",
            "table ip cni_hostport",
            "table inet kubext-cni",
        }
        assert ours & real_node_testing.nft_tables() == ours & before["nft"] == set()
        assert _kubepods_cgroups() == before["cgroups"]
        assert _sysctls() == before["sysctls"]
        assert Path("/run/containerd").exists() == before["run_containerd"]
        assert Path("/var/lib/kubelet").exists() == before["var_lib_kubelet"]
        assert not node.MACHINE_CLAIM.exists()
