"""Fixtures for the csi tests: a driver on a unix socket in a private directory, cleaned up after.

Tests that need loop devices and mounts are marked ``needs_root`` and skip where the process
cannot create them (not root, or no /dev/loop-control).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from kubext_proto.csi.v1 import csi_pb2_grpc

from .. import driver, server, system

SERVICE_DIR = Path(__file__).resolve().parents[2]
GiB = 1 << 30


def can_mount() -> bool:
    return os.geteuid() == 0 and os.path.exists("/dev/loop-control")


needs_root = pytest.mark.skipif(not can_mount(), reason="needs root and loop devices")


@pytest.fixture(scope="session")
def tools() -> None:
    script = SERVICE_DIR / "scripts" / "ensure-tools.sh"
    if script.exists():  # inside a Pants sandbox the script may not be present; tools are
        subprocess.run(["bash", str(script)], check=True, timeout=600)
    missing = system.missing_tools()
    assert not missing, f"missing tools: {missing}"


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short private directory (unix socket paths are limited to 107 bytes)."""
    root = Path(tempfile.mkdtemp(prefix="kx-csi-"))
    try:
        yield root
    finally:
        system.release_under(root)
        shutil.rmtree(root, ignore_errors=True)


@dataclasses.dataclass
class Running:
    driver: driver.Driver
    server: grpc.Server
    channel: grpc.Channel
    root: Path

    @property
    def identity(self) -> csi_pb2_grpc.IdentityStub:
        return csi_pb2_grpc.IdentityStub(self.channel)

    @property
    def controller(self) -> csi_pb2_grpc.ControllerStub:
        return csi_pb2_grpc.ControllerStub(self.channel)

    @property
    def node(self) -> csi_pb2_grpc.NodeStub:
        return csi_pb2_grpc.NodeStub(self.channel)

    def stop(self) -> None:
        self.channel.close()
        self.server.stop(grace=None).wait(5)
        self.driver.close()


def settings(root: Path, **overrides: object) -> driver.Settings:
    values: dict = {
        "name": "csi.kubext.io",
        "version": "0.1.0",
        "node_id": "node-a",
        "topology_key": "topology.csi.kubext.io/node",
        "state_dir": root / "state",
        "pool_bytes": 64 * GiB,
        "max_volume_bytes": 32 * GiB,
        "default_volume_bytes": GiB,
        "path_roots": (str(root),),
    }
    values.update(overrides)
    return driver.Settings(**values)


def start(root: Path, **overrides: object) -> Running:
    """A driver (after restart recovery) serving on root/csi.sock, and a channel to it."""
    the_driver = driver.Driver(settings(root, **overrides))
    the_driver.recover()
    endpoint = f"unix://{root}/csi.sock"
    grpc_server = server.build(the_driver, endpoint, workers=8)
    channel = grpc.insecure_channel(endpoint, options=[("grpc.default_authority", "localhost")])
    return Running(the_driver, grpc_server, channel, root)


@pytest.fixture
def running(tools: None, workdir: Path) -> Iterator[Running]:
    run = start(workdir)
    try:
        yield run
    finally:
        run.stop()


@dataclasses.dataclass
class Process:
    """The real entry point (python -m kubext_csi) serving on root/csi.sock."""

    proc: subprocess.Popen
    endpoint: str
    log: Path

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode


def start_process(
    root: Path, *, pool: str = "200Gi", extra_config: str = "", timeout_s: float = 20
) -> Process:
    config = root / "csi.yaml"
    config.write_text(
        f"endpoint: unix://{root}/csi.sock\n"
        f"state_dir: {root}/state\n"
        f"pool_size: {pool}\n"
        f"path_roots: [{root}]\n"
        "node_id: node-a\n"
        "health: {host: 127.0.0.1, port: 0}\n" + extra_config
    )
    log = root / "driver.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubext_csi", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    socket_file = root / "csi.sock"
    deadline = time.monotonic() + timeout_s
    while not socket_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"driver did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    return Process(proc, f"unix://{socket_file}", log)
