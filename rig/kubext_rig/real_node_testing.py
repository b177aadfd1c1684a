"""The harness the real-node tests and the real-node bench share: one kubelet per machine (a file
lock), the real node to run on, a client for it, the pods they run on it and the host state they
check for leftovers.

The real node is the shared cluster's when the cluster the environment points at
(``KUBEXT_RIG_DIR``, as ``./kubext test`` sets it) holds the machine's one: ``state_for`` then
names that cluster's state dir, and ``up`` neither starts nor stops it. Otherwise it is a
`--real-node` cluster of the caller's own (its state dir, port offset 3000), brought up and always
brought down, so a single test file still runs alone."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from kubernetes import client, config

from kubext_rig import cluster, node, tools
from kubext_rig.testing import wait_for

OFFSET = 3000  # beside `./kubext up` (0), the test cluster (1000) and the fresh clone (2000)
SHARED_NODE_TIMEOUT = 60.0  # for the shared cluster's real node to be healthy again
LOCK = "real-node-test.lock"  # under the cache dir; the bench takes the same one
TOLERATE = [client.V1Toleration(key=node.TAINT_KEY, operator="Exists", effect="NoSchedule")]
# On every namespace `namespace` makes: one found while holding `machine_lock` is a dead run's.
TEST_NAMESPACE_LABEL = "kubext.io/real-node-test"


def _quiet(_: str) -> None:
    pass


@contextlib.contextmanager
def machine_lock(*, say: Callable[[str], None] = _quiet) -> Iterator[None]:
    """Held for a whole real-node run: one kubelet per machine, so runs wait for each other."""
    tools.cache_dir().mkdir(parents=True, exist_ok=True)
    with open(tools.cache_dir() / LOCK, "w") as fh:
        say("waiting for the real-node lock")
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def shared_state() -> Path | None:
    """The state dir the environment names (``KUBEXT_RIG_DIR``) when that cluster holds the
    machine's real node; None otherwise."""
    named = os.environ.get("KUBEXT_RIG_DIR")
    if not named:
        return None
    owner = node.machine_owner()
    root = Path(named)
    return root if owner is not None and owner.resolve() == root.resolve() else None


def state_for(own: Path) -> Path:
    """Where a real-node test's cluster lives: the shared cluster's state dir when it holds the
    machine's real node, else ``own`` (a cluster the test brings up itself)."""
    return shared_state() or own


def is_shared(state: Path) -> bool:
    shared = shared_state()
    return shared is not None and shared.resolve() == state.resolve()


def offset_of(state: Path) -> int:
    """The port offset of the cluster in ``state``: the environment's for the shared cluster,
    ``OFFSET`` for one of the caller's own."""
    return cluster.PORT_OFFSET if is_shared(state) else OFFSET


def rig_env(state: Path) -> dict[str, str]:
    """The environment of a Python process of the rig that sees the cluster in ``state``."""
    return {
        **os.environ,
        "KUBEXT_RIG_DIR": str(state),
        "KUBEXT_RIG_PORT_OFFSET": str(offset_of(state)),
        "PYTHONPATH": os.pathsep.join(os.path.abspath(p) for p in sys.path if p),
    }


def rig(state: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python -m kubext_rig ARGS`` on the cluster in ``state``."""
    argv = [sys.executable, "-m", "kubext_rig", *args]
    return subprocess.run(argv, env=rig_env(state), capture_output=True, text=True, timeout=timeout)


@dataclasses.dataclass
class RealNode:
    """A real-node cluster brought up by `up`: how it started, and (once down) how it stopped."""

    info: cluster.ClusterInfo
    started: subprocess.CompletedProcess[str]  # `up`, or for the shared cluster `status`
    up_seconds: float
    stopped: subprocess.CompletedProcess[str] | None = None  # `down`; None for the shared one
    shared: bool = False  # the shared cluster's real node: not started nor stopped here

    @property
    def state(self) -> Path:
        return self.info.root

    @property
    def offset(self) -> int:
        return offset_of(self.state)

    @property
    def registry(self) -> str:
        """The node's registry (``host:port``): images pushed there are pulled by the node."""
        return f"127.0.0.1:{node.REGISTRY_PORT - cluster.PORT_OFFSET + self.offset}"

    def env(self) -> dict[str, str]:
        return rig_env(self.state)

    def rig(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return rig(self.state, *args, timeout=timeout)

    @contextlib.contextmanager
    def api_client(self) -> Iterator[client.ApiClient]:
        cfg = client.Configuration()
        config.load_kube_config(config_file=self.info.kubeconfig, client_configuration=cfg)
        with client.ApiClient(cfg) as api:
            yield api


@contextlib.contextmanager
def up(
    state: Path, *, check: bool = True, say: Callable[[str], None] = _quiet
) -> Iterator[RealNode]:
    """`up --fresh --real-node --nodes 1` in ``state``, and `down` on the way out whatever happened.

    Hold ``machine_lock`` around it. With ``check``, a failed `up` fails at once and a failed
    `down` fails on a clean exit (each naming its stderr); without, the caller reads
    ``started`` and ``stopped``. A failure inside the block wins over `down`'s.

    For the shared cluster (``state_for`` gave its state dir) nothing is started or stopped:
    ``started`` is its `status`, checked (with ``check``) to show the real node healthy; the
    caller cleans up what it made there."""
    if is_shared(state):
        t0 = time.monotonic()
        started = _shared_node_healthy(state)
        say(f"using the shared cluster's real node ({state})")
        real = RealNode(cluster.ClusterInfo(state), started, time.monotonic() - t0, shared=True)
        if check:
            assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        yield real
        return
    owner = node.machine_owner()
    if owner is not None and owner.resolve() != state.resolve() and check:
        # Neither free nor the shared cluster's (`./kubext up`'s, say): not this run's to take.
        import pytest

        pytest.skip(f"the machine's real node is {owner}'s (one per machine); stop that cluster")
    t0 = time.monotonic()
    started = rig(state, "up", "--fresh", "--real-node", "--nodes", "1")
    real = RealNode(cluster.ClusterInfo(state), started, time.monotonic() - t0)
    try:
        if check:
            assert started.returncode == 0, started.stderr[-3000:]
        yield real
    finally:
        real.stopped = rig(state, "down")
        say(f"down: exit {real.stopped.returncode}")
    if check:
        assert real.stopped.returncode == 0, real.stopped.stderr[-3000:]


def _shared_node_healthy(state: Path) -> subprocess.CompletedProcess[str]:
    """The shared cluster's `status`, once every real-node component in it is healthy (a test
    before may have restarted one); returncode 1 if not within ``SHARED_NODE_TIMEOUT``."""
    deadline = time.monotonic() + SHARED_NODE_TIMEOUT
    while True:
        st = rig(state, "status", timeout=120)
        try:
            states = json.loads(st.stdout)
        except json.JSONDecodeError:
            states = {}
        if all(states.get(name) == "healthy" for name in (*node.COMPONENTS, "kube-apiserver")):
            return subprocess.CompletedProcess(st.args, 0, st.stdout, st.stderr)
        if time.monotonic() > deadline:
            return subprocess.CompletedProcess(st.args, 1, st.stdout, st.stderr)
        time.sleep(1)


@contextlib.contextmanager
def namespace(core: client.CoreV1Api, stem: str) -> Iterator[str]:
    """A fresh namespace ``<stem>-<random>`` for a test on the real node (it may be shared),
    deleted and waited for on the way out: the next test finds none of its pods.

    Hold ``machine_lock``. A run killed outright (Pants cancels and retries a test whose inputs
    changed, with SIGKILL) never deleted its namespace, and its pods would keep the node's
    hostPorts, devices and veths: every namespace still labelled as a real-node test's is such a
    run's and is removed first."""
    _remove_namespaces(core, label_selector=TEST_NAMESPACE_LABEL)
    name = f"{stem}-{os.urandom(3).hex()}"
    meta = client.V1ObjectMeta(name=name, labels={TEST_NAMESPACE_LABEL: stem})
    core.create_namespace(client.V1Namespace(metadata=meta))
    try:
        yield name
    finally:
        _remove_namespaces(core, field_selector=f"metadata.name={name}")


def _remove_namespaces(core: client.CoreV1Api, **selector: str) -> None:
    names = {n.metadata.name for n in core.list_namespace(**selector).items}
    for name in names:
        with contextlib.suppress(client.ApiException):  # already going
            core.delete_namespace(name)
    if names:
        wait_for(
            f"namespaces {sorted(names)} gone",
            lambda: not names & {n.metadata.name for n in core.list_namespace(**selector).items},
            timeout=120,
        )


def pod(
    name: str,
    image: str,
    args: list[str] | None = None,
    *,
    grace_seconds: int = 5,
    restart_policy: str | None = None,
    limits: dict[str, str] | None = None,
    claim: str | None = None,
) -> client.V1Pod:
    """A pod on the real node (its taint tolerated): one container of the rig's static ``image``,
    with ``limits`` as its resource limits and ``claim`` mounted at /data when given."""
    container = client.V1Container(
        name=name,
        image=node.image_ref(image),
        image_pull_policy="Never",
        args=args,
        resources=client.V1ResourceRequirements(limits=limits) if limits else None,
        volume_mounts=[client.V1VolumeMount(name="data", mount_path="/data")] if claim else None,
    )
    volumes = None
    if claim:
        source = client.V1PersistentVolumeClaimVolumeSource(claim_name=claim)
        volumes = [client.V1Volume(name="data", persistent_volume_claim=source)]
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            node_selector={"kubernetes.io/hostname": node.NODE_NAME},
            tolerations=TOLERATE,
            termination_grace_period_seconds=grace_seconds,
            restart_policy=restart_policy,
            containers=[container],
            volumes=volumes,
        ),
    )


# --- host state, for leftovers ---------------------------------------------------------------


def nft_tables() -> set[str]:
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    return set(out.stdout.splitlines())


def mount_points() -> set[str]:
    return {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}


def die_with_parent() -> None:
    """``preexec_fn`` for a service a test starts beside the real node: it gets SIGKILL when
    the test process dies (a Pants timeout kills pytest, not its children), so no driver or
    plugin is left serving the kubelet's machine-wide sockets for the next run."""
    PR_SET_PDEATHSIG = 1  # (prctl(2))
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def processes_of(root: Path) -> dict[int, str]:
    """Processes whose command line names the state dir or a path in it (containerd, kubelet,
    shims, ...); a sibling path that merely starts with its name (``<root>-test.lock``) is not."""
    found = {}
    names = re.compile(re.escape(str(root)) + r"(?=[/\s\"'=:]|$)")
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if names.search(cmdline):
                    found[int(proc.name)] = cmdline[:200]
    return found


def masquerade_elements() -> set[str]:
    """Pod addresses in kubext-bridge's masquerade map (empty when the table is gone): only
    pods it networked are there."""
    res = subprocess.run(
        ["nft", "-j", "list", "map", "inet", "kubext-cni", "masq4"], capture_output=True, text=True
    )
    if res.returncode != 0:
        return set()
    found = set()
    for item in json.loads(res.stdout)["nftables"]:
        for elem in item.get("map", {}).get("elem", []):
            key = elem[0]
            found.add(key["elem"]["val"] if isinstance(key, dict) else key)
    return found
