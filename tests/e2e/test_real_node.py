"""The rig's real node (`up --real-node`): containerd, the kubelet and kube-proxy run real pods.
That its `down` leaves nothing behind is `test_real_node_down.py`'s (a node of its own).

What is real: Debian's containerd and runc, the pinned kubelet and kube-proxy, containers of the
rig's own static images (pause, echo-loop, tcp-echo), networked by our kubext-bridge (the kubext-cni
daemon and its launcher, as the cni chart installs them) with portmap chained, the rig's local
registry (distribution) that containerd pulls from. The real node is the shared test cluster's
when it holds the machine's one (`./kubext test`: its state dir and offset from the environment;
each test in a namespace of its own, cleaned up), else this file's own cluster (its state dir,
port offset 3000, a fresh etcd). One kubelet per machine, so runs are serialised by a file lock
under the cache dir."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from kubext_rig import node, real_node_testing, tools
from kubext_rig.testing import wait_for

# Short: containerd's socket path has a limit.
STATE = real_node_testing.state_for(tools.cache_dir() / "real-node-test")
SHARED = real_node_testing.is_shared(STATE)
API_PORT = 16443  # at port offset 0


def _sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def _links() -> set[str]:
    return {link["ifname"] for link in json.loads(_sh("ip", "-j", "link", "show"))}


_HTTPS_GET = """
import socket, ssl, sys
host, port, path, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
with socket.create_connection((host, port), timeout=5) as raw:
    with ssl.create_default_context(cafile=ca).wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(f"GET {path} HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n".encode())
        print(tls.recv(64).split()[1].decode())
"""


def _https_status_in_netns(state: Path, netns: str, host: str, port: int, path: str) -> int:
    """The HTTP status of an anonymous GET from inside ``netns`` (the server cert verified by the
    CA of the cluster in ``state``)."""
    ca = str(state / "pki" / "ca.crt")
    argv = ["ip", "netns", "exec", netns, sys.executable, "-c", _HTTPS_GET, host, str(port)]
    return int(_sh(*argv, path, ca).strip())


def _ctr_tasks(state: Path) -> dict[str, str]:
    sock = state / "node" / "containerd" / "containerd.sock"
    out = _sh("ctr", f"--address={sock}", "-n", "k8s.io", "tasks", "ls")
    return {f[0]: f[2] for f in (line.split() for line in out.splitlines()[1:]) if len(f) >= 3}


@contextlib.contextmanager
def _own_namespace(core: client.CoreV1Api, stem: str) -> Iterator[str]:
    """A fresh namespace (the real node may be shared), deleted and waited for on the way out:
    the next test on the node finds none of these pods."""
    name = f"{stem}-{os.urandom(3).hex()}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)
        wait_for(
            f"namespace {name} gone",
            lambda: name not in {n.metadata.name for n in core.list_namespace().items},
            timeout=120,
        )


@pytest.mark.skipif(os.geteuid() != 0, reason="a real kubelet needs root")
def test_real_node_runs_pods() -> None:
    """Every real-node component healthy; two pods of the rig's images run in containerd, get
    kubext-bridge addresses, log, reach the API server through kube-proxy's ClusterIP and at the
    node address, and are gone from containerd once deleted. On the shared cluster's node when it
    holds the machine's one, else on this file's own (brought down; what `down` leaves is
    `test_real_node_down.py`'s check)."""
    with real_node_testing.machine_lock(), real_node_testing.up(STATE) as real_node:
        check_healthy(real_node)
        _check_kubelet_keeps_images_and_disk(real_node)
        run_pods(real_node, set(), set())


def _check_kubelet_keeps_images_and_disk(real_node: real_node_testing.RealNode) -> None:
    """The running kubelet's own configuration (/configz through the API server): no image GC
    (it removed the imported pause image on a nearly full disk) and eviction only below 2%."""
    with real_node.api_client() as api:
        # Raw: the client would turn the JSON into a dict and then into its str().
        raw = client.CoreV1Api(api).connect_get_node_proxy_with_path(
            node.NODE_NAME, "configz", _preload_content=False
        )
    config = json.loads(raw.data)["kubeletconfig"]
    assert (config["imageGCHighThresholdPercent"], config["imageGCLowThresholdPercent"]) == (
        100,
        99,
    ), config
    assert config["evictionHard"]["imagefs.available"] == "2%", config["evictionHard"]
    # /run/netns is one shared mount however often `up` prepares the host (a bind of a shared
    # mount onto itself doubles it: 8,192 of them once, and then ENOSPC for every netns).
    node._share_netns_dir(node._Host(real_node.state))
    assert node.mount_points().count(str(node.NETNS_DIR)) == 1


def check_healthy(real_node: real_node_testing.RealNode) -> None:
    status = json.loads(real_node.rig("status").stdout)
    for name in ("containerd", "kubelet", "kube-proxy", "kube-apiserver", "kwok"):
        assert status[name] == "healthy", status


def run_pods(
    real_node: real_node_testing.RealNode, seen_veths: set[str], seen_netns: set[str]
) -> None:
    """The pods part (``seen_*`` gather their veths and network namespaces, for leftovers)."""
    with real_node.api_client() as api:
        core = client.CoreV1Api(api)
        with _own_namespace(core, "real-node-pods") as ns:
            _pods_in(core, ns, real_node, seen_veths, seen_netns)


def _pods_in(
    core: client.CoreV1Api,
    ns: str,
    real_node: real_node_testing.RealNode,
    seen_veths: set[str],
    seen_netns: set[str],
) -> None:
    real = core.read_node(node.NODE_NAME)
    assert any(c.type == "Ready" and c.status == "True" for c in real.status.conditions)
    assert [a.address for a in real.status.addresses if a.type == "InternalIP"] == [node.NODE_IP]
    # The node lifecycle controller lifts node.kubernetes.io/not-ready a moment after Ready.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        taints = [t.key for t in core.read_node(node.NODE_NAME).spec.taints or []]
        if "node.kubernetes.io/not-ready" not in taints:
            break
        time.sleep(0.5)
    assert taints == [node.TAINT_KEY]

    t = time.monotonic()
    core.create_namespaced_pod(ns, real_node_testing.pod("pause", "pause"))
    core.create_namespaced_pod(
        ns,
        real_node_testing.pod("echo", "echo-loop", ["hello from a real container", "bye"]),
    )

    def ready(name: str) -> client.V1Pod | None:
        pod = core.read_namespaced_pod(name, ns)
        conditions = pod.status.conditions or []
        return pod if any(c.type == "Ready" and c.status == "True" for c in conditions) else None

    pods = {
        n: wait_for(f"pod {n} Ready", lambda n=n: ready(n), timeout=90) for n in ("pause", "echo")
    }
    pod_ready = time.monotonic() - t
    print(f"real node: bring-up {real_node.up_seconds:.1f} s, two pods Ready {pod_ready:.1f} s")
    tasks = _ctr_tasks(real_node.state)
    for name, pod in pods.items():
        assert pod.spec.node_name == node.NODE_NAME
        assert pod.status.pod_ip.startswith(node.POD_CIDR.rsplit(".", 1)[0] + ".")
        container_id = pod.status.container_statuses[0].container_id.removeprefix("containerd://")
        assert tasks.get(container_id) == "RUNNING", (name, tasks)
    logs = wait_for(
        "echo's log",
        lambda: core.read_namespaced_pod_log("echo", ns) or None,
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
    for host, port in (("10.0.0.1", 443), (node.NODE_IP, API_PORT + real_node.offset)):
        status = _https_status_in_netns(real_node.state, echo_ns, host, port, "/version")
        assert status == 200, (host, port)

    for name in pods:
        core.delete_namespaced_pod(name, ns)
    ids = {
        p.status.container_statuses[0].container_id.removeprefix("containerd://")
        for p in pods.values()
    }

    def gone() -> bool:
        names = {p.metadata.name for p in core.list_namespaced_pod(ns).items}
        return not names & set(pods)

    wait_for("both pods deleted", gone, timeout=60)
    assert ids & set(_ctr_tasks(real_node.state)) == set()


# --- kubext-bridge on the real node ---------------------------------------------------------

ECHO_PORT = 7777  # tcp-echo's port in every server pod
HOST_PORT = 23777  # srv-a's hostPort (portmap), on every address of the machine while it runs
CYCLE_PODS, CYCLE_BATCH, CYCLE_BUDGET_S = 50, 10, 60

# Run inside a pod's network namespace with `ip netns exec`: "ping HOST" (one ICMP echo over a
# raw socket) or "tcp HOST PORT" (a token sent to an echo server comes back); prints "ok".
_PROBE = """
import os, socket, struct, sys
mode, host = sys.argv[1], sys.argv[2]
if mode == "tcp":
    token = os.urandom(8).hex().encode()
    with socket.create_connection((host, int(sys.argv[3])), timeout=5) as s:
        s.sendall(token)
        got = b""
        while len(got) < len(token):
            chunk = s.recv(64)
            if not chunk:
                break
            got += chunk
    assert got == token, got
else:
    ident = os.getpid() & 0xFFFF
    def checksum(b):
        s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
        s = (s >> 16) + (s & 0xFFFF)
        return ~(s + (s >> 16)) & 0xFFFF
    body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"kubext"
    packet = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.settimeout(5)
        s.sendto(packet, (host, 0))
        while True:
            data, (src, _) = s.recvfrom(1024)
            icmp = data[(data[0] & 0x0F) * 4 :]
            if src == host and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
                break
print("ok")
"""


def _probe(netns: str, *args: object) -> None:
    """``_PROBE`` from inside ``netns``; fails naming what did not answer."""
    argv = ["ip", "netns", "exec", netns, sys.executable, "-c", _PROBE, *map(str, args)]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and res.stdout.strip() == "ok", (args, res.stderr[-500:])


def _net_pod(
    name: str,
    image: str,
    args: list[str],
    labels: dict[str, str] | None = None,
    host_port: int | None = None,
) -> client.V1Pod:
    pod = real_node_testing.pod(name, image, args)
    pod.metadata.labels = labels
    if host_port is not None:
        pod.spec.containers[0].ports = [
            client.V1ContainerPort(container_port=ECHO_PORT, host_port=host_port)
        ]
    return pod


def _veths() -> set[str]:
    if node.POD_BRIDGE not in _links():
        return set()
    out = _sh("ip", "-j", "link", "show", "master", node.POD_BRIDGE)
    return {link["ifname"] for link in json.loads(out)}


def _reservations() -> set[str]:
    """host-local's reservation files: one per pod address it handed out."""
    found = set()
    for path in node.ipam_dir(STATE).iterdir():
        with contextlib.suppress(ValueError):  # its lock and last_reserved_ip.<range>
            found.add(str(ipaddress.ip_address(path.name)))
    return found


def _netns_of(ip: str) -> str:
    for ns in Path("/run/netns").glob("cni-*"):
        if f" {ip}/" in _sh("ip", "-n", ns.name, "-o", "addr", "show"):
            return ns.name
    raise AssertionError(f"no network namespace holds {ip}")


class _HostEcho:
    """A TCP echo server on the node's address, in this process: pod-to-host TCP lands here."""

    def __init__(self) -> None:
        self.sock = socket.create_server((node.NODE_IP, 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(64):
                    conn.sendall(data)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="a real kubelet needs root")
def test_kubext_bridge_networks_real_pods() -> None:
    """Pods on the real node get their network from kubext-bridge: pod to pod and pod to host
    (ICMP and TCP), a ClusterIP Service through kube-proxy, a hostPort through portmap; create
    and delete cycles leave no reservation, veth or masquerade element; pods created while the
    daemon is dead come up once it is back; DEL for a pod whose netns is gone succeeds."""
    with real_node_testing.machine_lock():
        if SHARED and node.network_released(STATE):
            pytest.skip(
                f"the pod network of the cluster in {STATE} is its cni release's (./kubext up): "
                "this test drives the rig's own CNI daemon"
            )
        assert SHARED or node.LINK not in _links(), "another real node runs on this machine"
        before_nft = real_node_testing.nft_tables()
        seen_veths: set[str] = set()
        with real_node_testing.up(STATE) as real_node:
            assert json.loads(real_node.rig("status").stdout)["kubext-cni"] == "healthy"
            conflist = json.loads(
                (STATE / "node" / "cni" / "net.d" / "10-kubext-rig.conflist").read_text()
            )
            assert [p["type"] for p in conflist["plugins"]] == ["kubext-bridge", "portmap"]
            _kubext_bridge_scenarios(real_node, seen_veths)
            if SHARED:  # the node stays up; what this test's pods had is gone
                wait_for(
                    "no veth, reservation or masquerade element of this test's pods",
                    lambda: not seen_veths & _links()
                    and not _reservations()
                    and not real_node_testing.masquerade_elements(),
                    timeout=30,
                )
                assert json.loads(real_node.rig("status").stdout)["kubext-cni"] == "healthy"
                return
        assert real_node_testing.processes_of(STATE) == {}
        assert {node.LINK, node.POD_BRIDGE} & _links() == set()
        assert seen_veths & _links() == set()
        assert "table inet kubext-cni" not in real_node_testing.nft_tables() - before_nft
        assert not node.ipam_dir(STATE).exists()


def _kubext_bridge_scenarios(real_node: real_node_testing.RealNode, seen_veths: set[str]) -> None:
    with real_node.api_client() as api:
        core = client.CoreV1Api(api)
        with _own_namespace(core, "kubext-bridge") as ns:
            _bridge_in(core, ns, seen_veths)


def _bridge_in(core: client.CoreV1Api, ns: str, seen_veths: set[str]) -> None:
    tcp_echo = "tcp-echo"

    def ready_pods(names: set[str]) -> dict[str, client.V1Pod] | None:
        pods = {p.metadata.name: p for p in core.list_namespaced_pod(ns).items}
        found = {
            n: p
            for n, p in pods.items()
            if n in names
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        }
        return found if set(found) == names else None

    def gone(names: set[str]) -> bool:
        return not {p.metadata.name for p in core.list_namespaced_pod(ns).items} & names

    def no_leftovers_beyond(live: dict[str, client.V1Pod]) -> bool:
        ips = {p.status.pod_ip for p in live.values()}
        return (
            _reservations() == ips
            and real_node_testing.masquerade_elements() == ips
            and len(_veths()) == len(live)
        )

    # Two servers: Ready latency with kubext-bridge, addresses from its IPAM.
    t = time.monotonic()
    core.create_namespaced_pod(
        ns, _net_pod("srv-a", tcp_echo, [str(ECHO_PORT)], {"app": "srv-a"}, HOST_PORT)
    )
    core.create_namespaced_pod(ns, _net_pod("srv-b", tcp_echo, [str(ECHO_PORT)], {"app": "srv-b"}))
    servers = wait_for("srv-a and srv-b Ready", lambda: ready_pods({"srv-a", "srv-b"}), timeout=90)
    print(f"kubext-bridge: two pods Ready {time.monotonic() - t:.2f} s after creation")
    a_ip, b_ip = servers["srv-a"].status.pod_ip, servers["srv-b"].status.pod_ip
    for ip in (a_ip, b_ip):
        assert ip.startswith(node.POD_CIDR.rsplit(".", 1)[0] + "."), ip
    assert _reservations() == {a_ip, b_ip}
    assert real_node_testing.masquerade_elements() == {a_ip, b_ip}
    seen_veths.update(_veths())
    assert len(seen_veths) == 2
    a_ns, b_ns = _netns_of(a_ip), _netns_of(b_ip)
    gateway = node.POD_CIDR.rsplit(".", 1)[0] + ".1"

    # Pod to pod and pod to host: ICMP and TCP.
    host_echo = _HostEcho()
    try:
        for target in (b_ip, gateway, node.NODE_IP):
            _probe(a_ns, "ping", target)
        _probe(b_ns, "ping", a_ip)
        _probe(a_ns, "tcp", b_ip, ECHO_PORT)
        _probe(b_ns, "tcp", a_ip, ECHO_PORT)
        _probe(a_ns, "tcp", node.NODE_IP, host_echo.port)
    finally:
        host_echo.close()

    # A ClusterIP Service through kube-proxy to srv-b, from srv-a.
    svc = core.create_namespaced_service(
        ns,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="srv-b"),
            spec=client.V1ServiceSpec(
                selector={"app": "srv-b"},
                ports=[client.V1ServicePort(port=80, target_port=ECHO_PORT)],
            ),
        ),
    )
    cluster_ip = svc.spec.cluster_ip

    def through_service() -> bool:
        try:
            _probe(a_ns, "tcp", cluster_ip, 80)
        except AssertionError:
            return False  # kube-proxy has not programmed the endpoint yet
        return True

    wait_for(f"srv-b through its ClusterIP {cluster_ip}", through_service, timeout=30)

    # A hostPort through portmap: srv-a at the node's address, from the host and from srv-b.
    with socket.create_connection((node.NODE_IP, HOST_PORT), timeout=5) as s:
        s.sendall(b"hostport")
        assert s.recv(64) == b"hostport"
    _probe(b_ns, "tcp", node.NODE_IP, HOST_PORT)

    # DEL for a pod whose network namespace is already gone succeeds and releases all.
    core.create_namespaced_pod(ns, _net_pod("netns-gone", tcp_echo, [str(ECHO_PORT)]))
    doomed = wait_for("netns-gone Ready", lambda: ready_pods({"netns-gone"}), timeout=60)
    doomed_ip = doomed["netns-gone"].status.pod_ip
    doomed_ns = _netns_of(doomed_ip)
    seen_veths.update(_veths())
    subprocess.run(["umount", f"/run/netns/{doomed_ns}"], check=True)
    Path("/run/netns", doomed_ns).unlink()
    core.delete_namespaced_pod("netns-gone", ns)
    wait_for("netns-gone deleted", lambda: gone({"netns-gone"}), timeout=60)
    wait_for(
        "netns-gone's address, veth and masquerade element released",
        lambda: no_leftovers_beyond(servers),
        timeout=30,
    )

    # Create/delete cycles (batches, within a time budget): nothing left behind.
    t_cycles, cycles, ready_s = time.monotonic(), 0, []
    while cycles < CYCLE_PODS and time.monotonic() - t_cycles < CYCLE_BUDGET_S:
        names = {f"cycle-{cycles + i}" for i in range(CYCLE_BATCH)}
        t = time.monotonic()
        for name in sorted(names):
            core.create_namespaced_pod(ns, _net_pod(name, "echo-loop", ["x"]))
        wait_for(f"{len(names)} cycle pods Ready", lambda n=names: ready_pods(n), timeout=90)
        ready_s.append(time.monotonic() - t)
        seen_veths.update(_veths())
        for name in names:
            core.delete_namespaced_pod(name, ns)
        wait_for("cycle pods deleted", lambda n=names: gone(n), timeout=90)
        cycles += len(names)
    wait_for(
        f"no reservation, veth or masquerade element left after {cycles} pods",
        lambda: no_leftovers_beyond(servers),
        timeout=30,
    )
    print(
        f"kubext-bridge: {cycles} pods created and deleted in "
        f"{time.monotonic() - t_cycles:.1f} s; batch of {CYCLE_BATCH} Ready in "
        f"p50 {statistics.median(ready_s):.2f} s, max {max(ready_s):.2f} s"
    )
    assert cycles >= 2 * CYCLE_BATCH

    # The CNI daemon killed while pods are being created: the launcher answers "try again
    # later" (11), the kubelet retries, and every pod comes up once the daemon is back.
    daemon_pid = int((STATE / "pids" / "kubext-cni.pid").read_text().split()[0])
    os.kill(daemon_pid, signal.SIGKILL)
    late = {f"late-{i}" for i in range(5)}
    for name in sorted(late):
        core.create_namespaced_pod(ns, _net_pod(name, "echo-loop", ["x"]))

    def refused_by_the_launcher() -> list[str]:
        events = core.list_namespaced_event(ns, field_selector="reason=FailedCreatePodSandBox")
        return [e.message for e in events.items if "daemon not reachable" in (e.message or "")]

    wait_for("the launcher's try-again-later in the pods' events", refused_by_the_launcher)
    assert ready_pods(late) is None, "pods came up without the CNI daemon"
    restarted = _rig_python(
        "from kubext_rig import cluster, node; print(node.start_cni_daemon(cluster.state_dir()))"
    )
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    t = time.monotonic()
    wait_for("pods created without the daemon Ready", lambda: ready_pods(late), timeout=120)
    back = time.monotonic() - t
    print(f"kubext-bridge: daemon back, {len(late)} waiting pods Ready {back:.1f} s later")
    seen_veths.update(_veths())
    for name in late:
        core.delete_namespaced_pod(name, ns)
    wait_for("late pods deleted", lambda: gone(late), timeout=90)
    wait_for(
        "no reservation, veth or masquerade element left after the daemon's restart",
        lambda: no_leftovers_beyond(servers),
        timeout=30,
    )


def _rig_python(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a Python process that sees this test's cluster (state dir, port offset)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env=real_node_testing.rig_env(STATE),
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- the rig's local registry ----------------------------------------------------------------


def _ctr(state: Path, *args: str, check: bool = True) -> str:
    sock = state / "node" / "containerd" / "containerd.sock"
    argv = ["ctr", f"--address={sock}", "-n", "k8s.io", *args]
    return subprocess.run(argv, capture_output=True, text=True, check=check).stdout


def _registry(
    registry: str, method: str, path: str, accept: str | None = None
) -> tuple[int, dict, bytes]:
    """One request to the rig's registry (its HTTP API v2): status, headers, body."""
    req = urllib.request.Request(f"http://{registry}{path}", method=method)
    if accept:
        req.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, dict(res.headers), res.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.mark.skipif(os.geteuid() != 0, reason="a real kubelet needs root")
def test_the_node_pulls_an_image_pushed_to_the_rigs_registry() -> None:
    """An image of the rig's echo-loop program pushed to its registry (127.0.0.1, plain HTTP) with
    ctr, removed from containerd, then run by a pod with imagePullPolicy Always: containerd pulls
    it back through its hosts.toml. All real: distribution's registry, containerd's CRI pull, the
    kubelet. The image is one of its own (its entrypoint path differs), not a second name of the
    node's echo-loop: containerd 1.6's CRI forgets every name of an image when one is removed."""
    with real_node_testing.machine_lock(), real_node_testing.up(STATE) as real_node:
        assert json.loads(real_node.rig("status").stdout)["registry"] == "healthy"
        tag = f"e2e-{os.urandom(4).hex()}"
        registry = real_node.registry
        ref = f"{registry}/kubext/registry-probe:{tag}"
        images_before = set(_ctr(real_node.state, "images", "ls", "-q").split())
        archive = Path(real_node.state / "node" / "images" / f"registry-probe-{tag}.tar")
        binary = tools.binary("echo-loop").read_bytes()
        archive.write_bytes(node.docker_archive(binary, path="/registry-probe", ref=ref))
        _ctr(real_node.state, "images", "import", "--all-platforms", str(archive))
        archive.unlink()
        _ctr(real_node.state, "images", "push", "--plain-http", ref)
        status, _, body = _registry(registry, "GET", "/v2/kubext/registry-probe/tags/list")
        assert status == 200 and tag in json.loads(body)["tags"], body
        _ctr(real_node.state, "images", "rm", ref)
        assert ref not in _ctr(real_node.state, "images", "ls", "-q").split()

        try:
            with real_node.api_client() as api:
                core = client.CoreV1Api(api)
                with _own_namespace(core, "registry") as ns:
                    _pull_and_run(core, ns, real_node.state, ref)
        finally:
            # Out of containerd (every name the pull gave it) and the registry: a shared node
            # keeps no test leftovers, and the rig's own images keep theirs.
            images = set(_ctr(real_node.state, "images", "ls", "-q").split())
            for name in sorted(images - images_before):
                _ctr(real_node.state, "images", "rm", name, check=False)
            assert node.image_ref("echo-loop") in images
            manifests = f"/v2/kubext/registry-probe/manifests/{tag}"
            accept = (
                "application/vnd.docker.distribution.manifest.v2+json,"
                "application/vnd.oci.image.manifest.v1+json"
            )
            _, headers, _ = _registry(registry, "HEAD", manifests, accept)
            digest = headers.get("Docker-Content-Digest")
            if digest:
                _registry(registry, "DELETE", f"/v2/kubext/registry-probe/manifests/{digest}")


def _pull_and_run(core: client.CoreV1Api, ns: str, state: Path, ref: str) -> None:
    pod = real_node_testing.pod("pulled", "echo-loop", ["pulled from the registry"])
    pod.spec.containers[0].image = ref
    pod.spec.containers[0].image_pull_policy = "Always"
    t = time.monotonic()
    core.create_namespaced_pod(ns, pod)

    def ready() -> client.V1Pod | None:
        got = core.read_namespaced_pod("pulled", ns)
        conditions = got.status.conditions or []
        ok = any(c.type == "Ready" and c.status == "True" for c in conditions)
        return got if ok else None

    running = wait_for("the pod of the pushed image Ready", ready, timeout=90)
    print(f"registry: pod pulled and Ready {time.monotonic() - t:.1f} s")
    assert running.status.container_statuses[0].image == ref
    assert ref in _ctr(state, "images", "ls", "-q").split()
    events = core.list_namespaced_event(ns, field_selector="reason=Pulled")
    assert any(ref in (e.message or "") for e in events.items), events.items
    logs = wait_for(
        "the pulled container's log",
        lambda: core.read_namespaced_pod_log("pulled", ns) or None,
        timeout=30,
    )
    assert logs.splitlines() == ["pulled from the registry"]
