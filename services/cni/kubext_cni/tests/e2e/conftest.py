"""Fixtures: node namespaces, our daemon + launcher, the reference bridge, pods, networks.

Root is required (namespaces, raw sockets). Every namespace has a random suffix and is
deleted at teardown; deleting a namespace removes every link and nft rule inside it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from kubext_cni import golauncher, install, locks
from kubext_cni.tests.e2e import harness
from kubext_cni.tests.e2e.harness import Netns, Network, Plugin

DAEMON_START_S = 30


def _requirements() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "nsenter", "nft"):
        if shutil.which(tool) is None:
            return f"needs {tool} (./kubext installs nftables, iproute2, util-linux)"
    try:
        harness.reference_binary("bridge")
        harness.reference_binary("cnitool")
    except (FileNotFoundError, ImportError) as exc:
        return f"reference CNI binaries missing: {exc}"
    return None


_missing = _requirements()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if _missing:
        for item in items:
            if "/e2e/" in str(item.fspath):
                item.add_marker(pytest.mark.skip(reason=_missing))


@pytest.fixture(scope="session")
def reference_dir() -> str:
    return os.path.dirname(harness.reference_binary("bridge"))


def _node(prefix: str) -> Iterator[Netns]:
    node = Netns.create(prefix)
    try:
        yield node
    finally:
        node.delete()


@pytest.fixture(scope="session")
def node() -> Iterator[Netns]:
    """The node our plugin runs on."""
    yield from _node("kxn")


@pytest.fixture(scope="session")
def ref_node() -> Iterator[Netns]:
    """A second node for the reference bridge, so identical configs cannot collide."""
    yield from _node("kxr")


@pytest.fixture(scope="session")
def daemon_socket(node: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The kubext-cni daemon, started in the node namespace like a hostNetwork DaemonSet."""
    work = tmp_path_factory.mktemp("daemon")
    socket_path = str(work / "plugin.sock")
    cfg = work / "daemon.yaml"
    cfg.write_text(f"socket_path: {socket_path}\nhealth: {{host: 127.0.0.1, port: 0}}\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    log = open(work / "daemon.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        ["nsenter", f"--net={node.path}", sys.executable, "-m", "kubext_cni", "--config", str(cfg)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + DAEMON_START_S
    while not os.path.exists(socket_path):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"daemon did not start: {(work / 'daemon.log').read_text()}")
        time.sleep(0.05)
    try:
        yield socket_path
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def ours(
    node: Netns, daemon_socket: str, reference_dir: str, tmp_path_factory: pytest.TempPathFactory
) -> Plugin:
    """kubext-bridge through its launcher and the daemon (the fast, deployed path): the
    compiled launcher where Go can build it, as deployed; else the Python one."""
    bin_dir = str(tmp_path_factory.mktemp("bin"))
    binary = install.install(bin_dir, socket_path=daemon_socket, compiled=golauncher.build())
    return Plugin("kubext", binary, f"{bin_dir}:{reference_dir}", node)


@pytest.fixture(scope="session")
def standalone(node: Netns, reference_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Plugin:
    """kubext-bridge in-process, no daemon: the launcher's fallback path."""
    bin_dir = tmp_path_factory.mktemp("bin-standalone")
    binary = install.install(
        str(bin_dir), socket_path=str(bin_dir / "no-daemon.sock"), standalone=True
    )
    return Plugin("kubext", binary, f"{bin_dir}:{reference_dir}", node)


@pytest.fixture(scope="session")
def reference(ref_node: Netns, reference_dir: str) -> Plugin:
    return Plugin("reference", os.path.join(reference_dir, "bridge"), reference_dir, ref_node)


@pytest.fixture(params=["kubext", "reference"])
def plugin(request: pytest.FixtureRequest) -> Plugin:
    """Run the scenario against ours and against the reference bridge."""
    return request.getfixturevalue("ours" if request.param == "kubext" else "reference")


@pytest.fixture
def pods() -> Iterator[Callable[[], Netns]]:
    """A factory of pod namespaces, all deleted at teardown."""
    made: list[Netns] = []

    def make() -> Netns:
        made.append(Netns.create("kxp"))
        return made[-1]

    yield make
    for ns in made:
        ns.delete()


@pytest.fixture
def network(tmp_path: object, node: Netns, ref_node: Netns) -> Iterator[Network]:
    """A fresh network; its bridge is removed from both nodes at teardown."""
    net = Network.new(str(tmp_path))
    yield net
    for ns in (node, ref_node):
        ns.ip("link", "del", net.bridge, check=False)
    lock = locks.bridge_lock(net.bridge)
    if os.path.exists(lock):
        os.unlink(lock)
