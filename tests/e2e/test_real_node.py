"""The rig's real node (`up --real-node`): containerd, the kubelet and kube-proxy run real pods,
and `down` leaves nothing of theirs behind.

What is real: Debian's containerd and runc, the pinned kubelet and kube-proxy, containers of the
rig's own static images (pause, echo-loop) with the reference bridge CNI plugin. The cluster is
this test's own (its state dir, port offset 3000, a fresh etcd) beside the shared test cluster;
one kubelet per machine, so runs are serialised by a file lock under the cache dir."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from kubext_rig import node, tools
from kubext_rig.testing import wait_for

OFFSET = 3000  # beside `./kubext up` (0), the test cluster (1000) and the fresh clone (2000)
KUBELET_PORT = 10250 + OFFSET
API_PORT = 16443 + OFFSET
STATE = tools.cache_dir() / "real-node-test"  # short: containerd's socket path has a limit
TOLERATE = [client.V1Toleration(key=node.TAINT_KEY, operator="Exists", effect="NoSchedule")]


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    tools.cache_dir().mkdir(parents=True, exist_ok=True)
    with open(tools.cache_dir() / "real-node-test.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _rig(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KUBEXT_RIG_DIR": str(STATE),
        "KUBEXT_RIG_PORT_OFFSET": str(OFFSET),
        "PYTHONPATH": os.pathsep.join(os.path.abspath(p) for p in sys.path if p),
    }
    return subprocess.run(
        [sys.executable, "-m", "kubext_rig", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def _links() -> set[str]:
    return {link["ifname"] for link in json.loads(_sh("ip", "-j", "link", "show"))}


def _nft_tables() -> set[str]:
    return set(_sh("nft", "list", "tables").splitlines())


def _mount_points() -> set[str]:
    return {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}


def _kubepods_cgroups() -> set[Path]:
    return {p for p in Path("/sys/fs/cgroup").glob("*/kubepods") if p.is_dir()}


def _sysctls() -> dict[str, str]:
    return {k: Path("/proc/sys", *k.split(".")).read_text().strip() for k in node.SYSCTLS}


def _processes_of(root: Path) -> dict[int, str]:
    """Processes whose command line names the state dir (containerd, kubelet, shims, ...)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if str(root) in cmdline:
                    found[int(proc.name)] = cmdline[:200]
    return found


def _port_listening(port: int) -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def _pod(name: str, image: str, args: list[str] | None = None) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            node_selector={"kubernetes.io/hostname": node.NODE_NAME},
            tolerations=TOLERATE,
            termination_grace_period_seconds=5,
            containers=[
                client.V1Container(name=name, image=image, image_pull_policy="Never", args=args)
            ],
        ),
    )


_HTTPS_GET = """
import socket, ssl, sys
host, port, path, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
with socket.create_connection((host, port), timeout=5) as raw:
    with ssl.create_default_context(cafile=ca).wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(f"GET {path} HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n".encode())
        print(tls.recv(64).split()[1].decode())
"""


def _https_status_in_netns(netns: str, host: str, port: int, path: str) -> int:
    """The HTTP status of an anonymous GET from inside ``netns`` (the server cert verified)."""
    ca = str(STATE / "pki" / "ca.crt")
    argv = ["ip", "netns", "exec", netns, sys.executable, "-c", _HTTPS_GET, host, str(port)]
    return int(_sh(*argv, path, ca).strip())


def _ctr_tasks() -> dict[str, str]:
    sock = STATE / "node" / "containerd" / "containerd.sock"
    out = _sh("ctr", f"--address={sock}", "-n", "k8s.io", "tasks", "ls")
    return {f[0]: f[2] for f in (line.split() for line in out.splitlines()[1:]) if len(f) >= 3}


@pytest.mark.skipif(os.geteuid() != 0, reason="a real kubelet needs root")
def test_real_node_runs_pods_and_down_leaves_nothing() -> None:
    with _machine_lock():
        before = {
            "links": _links(),
            "nft": _nft_tables(),
            "cgroups": _kubepods_cgroups(),
            "sysctls": _sysctls(),
            "run_containerd": Path("/run/containerd").exists(),
            "var_lib_kubelet": Path("/var/lib/kubelet").exists(),
        }
        assert node.LINK not in before["links"], "another real node runs on this machine"
        t0 = time.monotonic()
        started = _rig("up", "--fresh", "--real-node", "--nodes", "1")
        bring_up = time.monotonic() - t0
        seen_veths: set[str] = set()
        seen_netns: set[str] = set()
        try:
            assert started.returncode == 0, started.stderr[-3000:]
            status = json.loads(_rig("status").stdout)
            for name in ("containerd", "kubelet", "kube-proxy", "kube-apiserver", "kwok"):
                assert status[name] == "healthy", status
            _run_pods(seen_veths, seen_netns, bring_up)
        finally:
            stopped = _rig("down")
        assert stopped.returncode == 0, stopped.stderr[-3000:]

        # Nothing of ours is left.
        assert _processes_of(STATE) == {}
        assert not _port_listening(KUBELET_PORT)
        assert not (STATE / "node" / "containerd" / "containerd.sock").exists()
        leftover_mounts = {
            m
            for m in _mount_points()
            if m.startswith(str(STATE)) or m.startswith("/run/netns/cni-")
        }
        assert leftover_mounts == set()
        assert not any(Path("/run/netns", ns).exists() for ns in seen_netns)
        links = _links()
        assert {node.LINK, node.POD_BRIDGE} & links == set()
        assert seen_veths & links == set()
        ours = {"table ip kube-proxy", "table ip6 kube-proxy", "table ip cni_hostport"}
        assert ours & _nft_tables() == ours & before["nft"] == set()
        assert _kubepods_cgroups() == before["cgroups"]
        assert _sysctls() == before["sysctls"]
        assert Path("/run/containerd").exists() == before["run_containerd"]
        assert Path("/var/lib/kubelet").exists() == before["var_lib_kubelet"]
        assert not node.MACHINE_CLAIM.exists()


def _run_pods(seen_veths: set[str], seen_netns: set[str], bring_up: float) -> None:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(STATE / "admin.kubeconfig"), client_configuration=cfg)
    with client.ApiClient(cfg) as api:
        core = client.CoreV1Api(api)
        real = core.read_node(node.NODE_NAME)
        assert any(c.type == "Ready" and c.status == "True" for c in real.status.conditions)
        assert [a.address for a in real.status.addresses if a.type == "InternalIP"] == [
            node.NODE_IP
        ]
        assert [t.key for t in real.spec.taints] == [node.TAINT_KEY]

        t = time.monotonic()
        core.create_namespaced_pod("default", _pod("pause", node.image_ref("pause")))
        core.create_namespaced_pod(
            "default",
            _pod("echo", node.image_ref("echo-loop"), ["hello from a real container", "bye"]),
        )

        def ready(name: str) -> client.V1Pod | None:
            pod = core.read_namespaced_pod(name, "default")
            conditions = pod.status.conditions or []
            return (
                pod if any(c.type == "Ready" and c.status == "True" for c in conditions) else None
            )

        pods = {
            n: wait_for(f"pod {n} Ready", lambda n=n: ready(n), timeout=90)
            for n in ("pause", "echo")
        }
        pod_ready = time.monotonic() - t
        print(f"real node: bring-up {bring_up:.1f} s, two pods Ready {pod_ready:.1f} s")
        tasks = _ctr_tasks()
        for name, pod in pods.items():
            assert pod.spec.node_name == node.NODE_NAME
            assert pod.status.pod_ip.startswith(node.POD_CIDR.rsplit(".", 1)[0] + ".")
            container_id = pod.status.container_statuses[0].container_id.removeprefix(
                "containerd://"
            )
            assert tasks.get(container_id) == "RUNNING", (name, tasks)
        logs = wait_for(
            "echo's log",
            lambda: core.read_namespaced_pod_log("echo", "default") or None,
            timeout=30,
        )
        assert logs.splitlines() == ["hello from a real container", "bye"]
        seen_veths.update(
            link["ifname"]
            for link in json.loads(_sh("ip", "-j", "link", "show", "master", node.POD_BRIDGE))
        )
        seen_netns.update(p.name for p in Path("/run/netns").glob("cni-*"))
        assert len(seen_veths) == 2 and len(seen_netns) == 2
        # From inside a pod's network namespace, the API server through kube-proxy's ClusterIP
        # (10.0.0.1 -> the node address) and at the node address itself, TLS-verified.
        echo_ns = next(
            ns
            for ns in seen_netns
            if pods["echo"].status.pod_ip in _sh("ip", "-n", ns, "-o", "addr", "show")
        )
        for host, port in (("10.0.0.1", 443), (node.NODE_IP, API_PORT)):
            assert _https_status_in_netns(echo_ns, host, port, "/version") == 200, (host, port)

        for name in pods:
            core.delete_namespaced_pod(name, "default")
        ids = {
            p.status.container_statuses[0].container_id.removeprefix("containerd://")
            for p in pods.values()
        }

        def gone() -> bool:
            names = {p.metadata.name for p in core.list_namespaced_pod("default").items}
            return not names & set(pods)

        wait_for("both pods deleted", gone, timeout=60)
        assert ids & set(_ctr_tasks()) == set()
