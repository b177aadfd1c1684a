"""A secure local control plane on 127.0.0.1: etcd, kube-apiserver, controller-manager, scheduler, kwok.

With ``real_node`` (kubext_rig.node) a real kubelet joins, and the API server serves on the node's
address (10.255.255.1, on a link of the rig's own) instead, where the node's pods reach it too.

Every process is started by us, logs to ``<state>/logs/<name>.log``, and is stopped by the PID we
recorded. ``up`` is idempotent: a healthy cluster is reused as it is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from kubext_rig import pki, tools

# Every port moves by KUBEXT_RIG_PORT_OFFSET, so a second cluster (a benchmark's) can run beside
# the shared test cluster with its own KUBEXT_RIG_DIR.
PORT_OFFSET = int(os.environ.get("KUBEXT_RIG_PORT_OFFSET", "0"))
ETCD_PORT = 12379 + PORT_OFFSET
ETCD_PEER_PORT = 12380 + PORT_OFFSET
APISERVER_PORT = 16443 + PORT_OFFSET
CONTROLLER_MANAGER_PORT = 17257 + PORT_OFFSET
SCHEDULER_PORT = 17259 + PORT_OFFSET
KWOK_PORT = 17247 + PORT_OFFSET
# A /16: the operator benchmark alone creates a thousand Services.
SERVICE_CIDR = "10.0.0.0/16"
NODE_ANNOTATION = "kwok.x-k8s.io/node"


class RigError(Exception):
    """The cluster cannot be brought up or reached; the message says why."""


def say(msg: str) -> None:
    print(f"[rig {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def state_dir() -> Path:
    return Path(os.environ.get("KUBEXT_RIG_DIR") or tools.cache_dir() / "cluster")


def api_host(root: Path) -> str:
    """Where the API server serves: 127.0.0.1, or with a real node the node's address (a local
    /32 on the rig's dummy link, reachable from this machine and from the node's pods alike)."""
    from kubext_rig import node  # node builds on this module

    return node.NODE_IP if node.enabled(root) else "127.0.0.1"


@dataclasses.dataclass(frozen=True)
class ClusterInfo:
    """What a client needs: the kubeconfig, the server URL, and the pinned binaries."""

    root: Path

    @property
    def kubeconfig(self) -> str:
        return str(self.root / "admin.kubeconfig")

    @property
    def server(self) -> str:
        return f"https://{api_host(self.root)}:{APISERVER_PORT}"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    def bin(self, name: str) -> str:
        return str(tools.binary(name))


@dataclasses.dataclass(frozen=True)
class Component:
    name: str
    argv: list[str]
    health: str  # URL checked for 200 (https ones with the admin client cert)
    env: dict[str, str] | None = None  # added to component_env() (a Python service's path)


def _components(root: Path, nodes_cidr: str) -> list[Component]:
    p = root / "pki"
    kc = root / "{}.kubeconfig"
    etcd_url = f"http://127.0.0.1:{ETCD_PORT}"
    stages = tools.kwok_stages_dir()
    host = api_host(root)
    # With a real node: logs/exec dial the kubelet at its InternalIP, as a system:masters client.
    to_kubelet = (
        [
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
        ]
        if host != "127.0.0.1"
        else []
    )
    return [
        Component(
            "etcd",
            [
                str(tools.binary("etcd")),
                "--name=kubext",
                f"--data-dir={root / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
                f"--initial-cluster=kubext=http://127.0.0.1:{ETCD_PEER_PORT}",
                "--unsafe-no-fsync",  # a throwaway test cluster: speed over durability
                "--quota-backend-bytes=4294967296",
                "--log-level=warn",
            ],
            f"{etcd_url}/health",
        ),
        Component(
            "kube-apiserver",
            [
                str(tools.binary("kube-apiserver")),
                f"--etcd-servers={etcd_url}",
                f"--secure-port={APISERVER_PORT}",
                f"--bind-address={host}",
                f"--advertise-address={host}",
                f"--tls-cert-file={p / 'apiserver.crt'}",
                f"--tls-private-key-file={p / 'apiserver.key'}",
                f"--client-ca-file={p / 'ca.crt'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={p / 'sa.pub'}",
                f"--service-account-signing-key-file={p / 'sa.key'}",
                "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,DefaultStorageClass,"
                "ResourceQuota,LimitRanger,MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
                "--disable-admission-plugins=StorageObjectInUseProtection",
                "--profiling=false",
                "--max-requests-inflight=800",
                "--max-mutating-requests-inflight=400",
                *to_kubelet,
            ],
            f"https://{host}:{APISERVER_PORT}/readyz",
        ),
        Component(
            "kube-controller-manager",
            [
                str(tools.binary("kube-controller-manager")),
                f"--kubeconfig={str(kc).format('controller-manager')}",
                f"--authentication-kubeconfig={str(kc).format('controller-manager')}",
                f"--authorization-kubeconfig={str(kc).format('controller-manager')}",
                f"--service-account-private-key-file={p / 'sa.key'}",
                f"--root-ca-file={p / 'ca.crt'}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={CONTROLLER_MANAGER_PORT}",
                f"--cluster-cidr={nodes_cidr}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--concurrent-deployment-syncs=20",
                "--concurrent-replicaset-syncs=20",
                "--concurrent-gc-syncs=40",
            ],
            f"https://127.0.0.1:{CONTROLLER_MANAGER_PORT}/healthz",
        ),
        Component(
            "kube-scheduler",
            [
                str(tools.binary("kube-scheduler")),
                f"--kubeconfig={str(kc).format('scheduler')}",
                f"--authentication-kubeconfig={str(kc).format('scheduler')}",
                f"--authorization-kubeconfig={str(kc).format('scheduler')}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={SCHEDULER_PORT}",
                # The default 50 QPS caps binding (plus its Scheduled event) at ~25 pods/s.
                "--kube-api-qps=200",
                "--kube-api-burst=400",
            ],
            f"https://127.0.0.1:{SCHEDULER_PORT}/healthz",
        ),
        Component(
            "kwok",
            [
                str(tools.binary("kwok")),
                f"--kubeconfig={str(kc).format('kwok')}",
                f"--config={stages / 'stages.yaml'}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
                f"--cidr={nodes_cidr}",
                "--node-ip=127.0.0.1",
                "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{KWOK_PORT}",
            ],
            f"http://127.0.0.1:{KWOK_PORT}/healthz",
        ),
    ]


# --- process management -------------------------------------------------------------------


def _pid_file(root: Path, name: str) -> Path:
    return root / "pids" / f"{name}.pid"


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks: with the PID, it names one process for good."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


def running_pid(root: Path, name: str) -> int | None:
    """The PID we recorded for ``name`` if that very process (not a reused PID) still runs."""
    try:
        pid_text, *started = _pid_file(root, name).read_text().split()
        pid = int(pid_text)
        if started:
            alive = _start_time(pid) == started[0]
        else:  # a pid file from before start times were recorded: match the binary's name
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            alive = Path(argv0).name == name
        if not alive or _is_zombie(pid):
            return None
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _ssl_context(root: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(root / "pki" / "ca.crt"))
    ctx.load_cert_chain(str(root / "pki" / "admin.crt"), str(root / "pki" / "admin.key"))
    return ctx


def healthy(root: Path, url: str) -> bool:
    try:
        ctx = _ssl_context(root) if url.startswith("https") else None
        if ctx is not None and (
            f":{CONTROLLER_MANAGER_PORT}/" in url or f":{SCHEDULER_PORT}/" in url
        ):
            # controller-manager and scheduler serve self-signed certs of their own.
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        with urllib.request.urlopen(url, timeout=2, context=ctx) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def component_env() -> dict[str, str]:
    """The components' environment. A test cluster trades memory for CPU: Go's collector at
    GOGC=100 costs the API server and etcd a large share of their CPU under write bursts, and
    the 2 cores are what bounds them (KUBEXT_RIG_GOGC overrides; "100" is Go's default)."""
    return {**os.environ, "GOGC": os.environ.get("KUBEXT_RIG_GOGC", "400")}


def start_process(root: Path, comp: Component) -> int:
    log_path = root / "logs" / f"{comp.name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            comp.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives the test process that started it; stopped by PID
            cwd=root,
            env={**component_env(), **(comp.env or {})},
        )
    _pid_file(root, comp.name).write_text(f"{proc.pid} {_start_time(proc.pid)}")
    return proc.pid


def wait_healthy(root: Path, comp: Component, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(root, comp.health):
            return
        if running_pid(root, comp.name) is None:
            tail = (root / "logs" / f"{comp.name}.log").read_text(errors="replace")[-2000:]
            raise RigError(f"{comp.name} exited during start; last log lines:\n{tail}")
        time.sleep(0.3)
    raise RigError(
        f"{comp.name} not healthy after {timeout:.0f} s ({comp.health}); see {root}/logs"
    )


@contextlib.contextmanager
def _lock(root: Path) -> Iterator[None]:
    """Serialises up/down across processes (parallel test files share one cluster)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --- public API ---------------------------------------------------------------------------


def status(root: Path | None = None) -> dict[str, str]:
    """Each component's state: healthy, unhealthy (running but failing checks) or stopped."""
    root = root or state_dir()
    out = status_of_control_plane(root)
    from kubext_rig import node

    elsewhere = _without_real_node_note(root)
    note = {NO_REAL_NODE_KEY: elsewhere} if elsewhere else {}
    return {**out, **node.status(root), **note}


# In `status`, for a cluster that came up without a real node because another cluster holds the
# machine's one: says so, and is no component (it does not make `status` unhealthy).
NO_REAL_NODE_KEY = "real-node"


def _note_path(root: Path) -> Path:
    return root / "without-real-node"


def _without_real_node_note(root: Path) -> str | None:
    path = _note_path(root)
    return path.read_text().strip() if path.exists() else None


def _go_without_real_node(root: Path, owner: Path) -> None:
    """The one line, said now and kept for `status` until `down`."""
    from kubext_rig import node

    line = node.without_real_node(owner)
    _note_path(root).parent.mkdir(parents=True, exist_ok=True)
    _note_path(root).write_text(line + "\n")
    say(f"real node: this cluster comes up {line}")


def _write_stages() -> None:
    stages = tools.kwok_stages_dir()
    files = [
        "node-initialize.yaml",
        "node-heartbeat-with-lease.yaml",
        "pod-ready.yaml",
        "pod-complete.yaml",
        "pod-delete.yaml",
    ]
    text = "\n---\n".join(
        (stages / f).read_text().strip().removeprefix("---").strip() for f in files
    )
    (stages / "stages.yaml").write_text(text + "\n")


def up(
    *,
    nodes: int = 3,
    root: Path | None = None,
    fresh: bool = False,
    real_node: bool = False,
    require_real_node: bool = True,
) -> ClusterInfo:
    """Bring the cluster up (or reuse a healthy one) with ``nodes`` kwok nodes; wait until ready.

    ``real_node`` adds the real node (kubext_rig.node); without it, a running one is kept (and
    a healthy control plane reused whatever its node's state). One real node per machine: when
    another cluster holds it, ``require_real_node`` refuses, else this one comes up without and
    says so in one line (``status`` too)."""
    from kubext_rig import node

    root = root or state_dir()
    with _lock(root):
        t0 = time.monotonic()
        if fresh:
            _down_locked(root, wipe=True)
        plan = plan_up(
            control=settled(lambda: status_of_control_plane(root)),
            node_enabled=node.enabled(root),
            node_status=settled(lambda: node.status(root)),
            real_node=real_node,
            elsewhere=node.taken_elsewhere(root) if real_node else None,
            require_real_node=require_real_node,
        )
        if plan.refuse:
            node.prepare_host(root)  # raises the refusal, naming the other cluster
        if plan.reuse:
            info = ClusterInfo(root)
            ensure_nodes(info, nodes)
            if plan.elsewhere is not None:
                _go_without_real_node(root, plan.elsewhere)
            say(f"cluster already up ({root}); {nodes} kwok nodes ensured")
            return info
        if plan.restart:
            say(f"cluster partly up or without its real node ({status(root)}); restarting it")
            _down_locked(root, wipe=False)
        _note_path(root).unlink(missing_ok=True)
        tools.ensure_built(["etcd", "kubernetes", "kwok"])
        # Before the real node's claim: a cluster that cannot start does not take the machine's.
        busy = [
            port
            for port in (
                ETCD_PORT,
                ETCD_PEER_PORT,
                APISERVER_PORT,
                CONTROLLER_MANAGER_PORT,
                SCHEDULER_PORT,
                KWOK_PORT,
            )
            if not _port_free(port)
        ]
        if busy:
            raise RigError(
                f"port(s) {', '.join(map(str, busy))} on 127.0.0.1 already in use by another "
                "process; stop it (ss -ltnp) and retry"
            )
        real_node = plan.with_real_node
        if real_node:
            tools.ensure_built(["kubernetes-node", "node-images", "cni-plugins", "registry"])
            # Before the API server: it binds the node's address.
            if not node.prepare_host(root, required=require_real_node):
                owner = node.taken_elsewhere(root)  # claimed since the plan (a race)
                real_node = False
                _go_without_real_node(root, owner or Path("another cluster"))
        elif plan.elsewhere is not None:
            _go_without_real_node(root, plan.elsewhere)
        _write_stages()
        comps = _components(root, "10.244.0.0/16")
        for sub in ("logs", "pids"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        if not (root / "pki" / "ca.crt").exists():
            say("creating certificates")
            pki.create(root / "pki")
        if real_node:
            if not pki.serves_ip(root / "pki", "apiserver", node.NODE_IP):
                pki.issue(root / "pki", "apiserver", "kube-apiserver", None, server=True)
            if not (root / "pki" / "apiserver-kubelet-client.crt").exists():
                pki.issue(
                    root / "pki", "apiserver-kubelet-client", "kube-apiserver", "system:masters"
                )
        server = f"https://{api_host(root)}:{APISERVER_PORT}"
        for user in ("admin", "controller-manager", "scheduler", "kwok"):
            (root / f"{user}.kubeconfig").write_text(
                pki.kubeconfig(server=server, pki=root / "pki", user=user)
            )
        for comp in comps:
            t = time.monotonic()
            pid = start_process(root, comp)
            wait_healthy(root, comp, timeout=90)
            say(f"{comp.name} healthy (pid {pid}, {time.monotonic() - t:.1f} s)")
        info = ClusterInfo(root)
        ensure_nodes(info, nodes)
        _wait_default_service_account(info)
        if real_node:
            node.start(info)
        say(f"cluster up in {time.monotonic() - t0:.1f} s; export KUBECONFIG={info.kubeconfig}")
        return info


# A running component that fails its probe gets this long to pass again before `up` restarts
# the cluster: on 2 busy cores one probe can time out while the component is fine, and the
# restart takes down what every other test process is using (the real node too).
PROBE_PATIENCE = 30.0


def settled(
    probe: Callable[[], dict[str, str]],
    *,
    patience: float = PROBE_PATIENCE,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """``probe()`` again until no running component is "unhealthy" or ``patience`` runs out; a
    "stopped" one is final at once (nothing to wait for)."""
    deadline = clock() + patience
    while True:
        states = probe()
        if "unhealthy" not in states.values() or "stopped" in states.values():
            return states
        if clock() >= deadline:
            return states
        sleep(1.0)


def status_of_control_plane(root: Path) -> dict[str, str]:
    """``status`` of the control plane's components alone."""
    out = {}
    for comp in _components(root, "10.244.0.0/16"):
        if running_pid(root, comp.name) is None:
            out[comp.name] = "stopped"
        else:
            out[comp.name] = "healthy" if healthy(root, comp.health) else "unhealthy"
    return out


@dataclasses.dataclass(frozen=True)
class UpPlan:
    """What ``up`` does with the cluster it finds (``plan_up``)."""

    reuse: bool  # as it is
    restart: bool  # stop what runs first (partly up, or a real node to add or mend)
    with_real_node: bool  # start it with the real node
    elsewhere: Path | None  # another cluster holds the machine's real node: go without
    refuse: bool = False  # ... and it was required


def plan_up(
    *,
    control: dict[str, str],
    node_enabled: bool,
    node_status: dict[str, str],
    real_node: bool,
    elsewhere: Path | None,
    require_real_node: bool,
) -> UpPlan:
    """Decide ``up`` from what runs. A healthy control plane is reused unless a real node is
    asked for and could be had (free, or ours but unhealthy); a real node another cluster holds
    is refused when required, else gone without."""
    control_ok = all(s == "healthy" for s in control.values())
    node_ok = node_enabled and all(s == "healthy" for s in node_status.values())
    if real_node and elsewhere is not None and require_real_node:
        return UpPlan(False, False, False, elsewhere, refuse=True)
    want_node = real_node and elsewhere is None
    if control_ok and (node_ok or not want_node):
        return UpPlan(True, False, False, elsewhere)
    running = any(s != "stopped" for s in (*control.values(), *node_status.values()))
    return UpPlan(False, running, want_node, elsewhere)


def kubectl(info: ClusterInfo, *args: str, stdin: str | None = None) -> str:
    res = subprocess.run(
        [info.bin("kubectl"), f"--kubeconfig={info.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if res.returncode != 0:
        raise RigError(f"kubectl {' '.join(args)} failed: {res.stderr.strip()}")
    return res.stdout


def node_manifest(name: str) -> dict[str, object]:
    """A fake Node that kwok manages: generous capacity, no taints."""
    capacity = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def ensure_nodes(info: ClusterInfo, count: int, *, timeout: float = 120) -> None:
    """At least ``count`` kwok nodes named kwok-node-<i>, all Ready."""
    existing = set(kubectl(info, "get", "nodes", "-o", "name").split())
    missing = [f"kwok-node-{i}" for i in range(count) if f"node/kwok-node-{i}" not in existing]
    for start in range(0, len(missing), 200):
        docs = {
            "apiVersion": "v1",
            "kind": "List",
            "items": [node_manifest(n) for n in missing[start : start + 200]],
        }
        kubectl(info, "create", "-f", "-", stdin=json.dumps(docs))
    deadline = time.monotonic() + timeout
    while True:
        nodes = json.loads(kubectl(info, "get", "nodes", "-l", "type=kwok", "-o", "json"))["items"]
        ready = sum(
            1
            for n in nodes
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        )
        if ready >= count:
            return
        if time.monotonic() > deadline:
            raise RigError(f"only {ready}/{count} kwok nodes Ready after {timeout:.0f} s")
        time.sleep(0.5)


def _wait_default_service_account(info: ClusterInfo, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(RigError):
            kubectl(info, "get", "serviceaccount", "default", "-n", "default")
            return
        time.sleep(0.5)
    raise RigError("the default ServiceAccount never appeared (controller-manager not working?)")


def _stop_pid(pid: int, name: str, timeout: float = 15) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            return
        time.sleep(0.1)
    say(f"{name} (pid {pid}) ignored SIGTERM; killing it")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _down_locked(root: Path, *, wipe: bool) -> None:
    # The real node's processes first (its own order), then the services started on the
    # cluster (stack.py), then the control plane in reverse, then the real node's host state.
    from kubext_rig import node

    if node.enabled(root):
        node.stop(root)
    names = {c.name for c in _components(root, "10.244.0.0/16")}
    for pid_path in sorted((root / "pids").glob("*.pid")):
        name = pid_path.stem
        if name in names:
            continue
        pid = running_pid(root, name)
        if pid is not None:
            _stop_pid(pid, name)
            say(f"stopped {name} (pid {pid})")
        pid_path.unlink(missing_ok=True)
    for comp in reversed(_components(root, "10.244.0.0/16")):
        pid = running_pid(root, comp.name)
        if pid is not None:
            _stop_pid(pid, comp.name)
            say(f"stopped {comp.name} (pid {pid})")
        _pid_file(root, comp.name).unlink(missing_ok=True)
    node.release_host(root)
    _note_path(root).unlink(missing_ok=True)
    if wipe:
        # The CSI driver's volumes and state go with the objects in etcd that name them, and
        # so does the cni release's hold on the pod network (node.release_network).
        for sub in ("etcd", "pids", "node/csi"):
            shutil.rmtree(root / sub, ignore_errors=True)
        (root / "services" / "releases.json").unlink(missing_ok=True)
        node.forget_release(root)


def down(*, root: Path | None = None, wipe: bool = True) -> None:
    """Stop every process we started (by PID); ``wipe`` also deletes the etcd data."""
    root = root or state_dir()
    with _lock(root):
        _down_locked(root, wipe=wipe)
