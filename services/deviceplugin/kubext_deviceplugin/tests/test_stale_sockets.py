"""A plugin killed outright (SIGKILL: an OOM kill, a test runner cancelling its run) leaves its
sockets in the device-plugin dir, and the kubelet does not remove them: the next start removes
those of its resource that nothing listens on, and nothing else."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .. import __main__ as entry
from .. import config, plugin
from .fake_kubelet import FakeKubelet


@pytest.fixture
def plugin_dir() -> Iterator[Path]:
    # Short, so the socket paths stay under the 107-byte unix socket limit.
    root = Path(tempfile.mkdtemp(prefix="dps-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _abandoned(path: Path) -> Path:
    """A socket file as a killed process leaves it: bound, then its listener gone."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))
    return path


def test_only_our_resources_sockets_without_a_listener_are_removed(plugin_dir: Path) -> None:
    stale = _abandoned(plugin_dir / "kubext-example.com_gpu-1.sock")
    live_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live_sock.bind(str(plugin_dir / "kubext-example.com_gpu-2.sock"))
    live_sock.listen()
    other_resource = _abandoned(plugin_dir / "kubext-example.com_gpu-big-3.sock")
    not_a_socket = plugin_dir / "kubext-example.com_gpu-4.sock"
    not_a_socket.write_text("")
    try:
        removed = plugin.remove_stale_sockets(plugin_dir, "example.com/gpu")
    finally:
        live_sock.close()
    assert removed == [stale.name]
    kept = {"kubext-example.com_gpu-2.sock", other_resource.name, not_a_socket.name}
    assert {p.name for p in plugin_dir.iterdir()} == kept


def test_a_start_removes_a_killed_runs_sockets_and_a_clean_shutdown_leaves_none(
    plugin_dir: Path,
) -> None:
    kubelet = FakeKubelet(plugin_dir).start()
    stale = [
        _abandoned(plugin_dir / plugin.socket_name(name))
        for name in ("example.com/gpu", "example.com/other")
    ]
    cfg = config.Config.model_validate(
        {
            "device_plugin_dir": str(plugin_dir),
            "resources": [
                {"name": "example.com/gpu", "backend": "simulated", "simulated": {"count": 1}},
                {"name": "example.com/other", "backend": "simulated", "simulated": {"count": 1}},
            ],
        }
    )
    stop = threading.Event()
    plugins = entry.build_plugins(cfg)
    threads = entry.start(plugins, stop)
    try:
        endpoints = {kubelet.next_registration()[1].endpoint for _ in plugins}
        assert len(endpoints) == 2 and {s.name for s in stale} & endpoints == set()
        assert [p for p in stale if p.exists()] == []
        served = {p.name for p in plugin_dir.glob("kubext-*.sock")}
        assert served == endpoints
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
        kubelet.stop()
    assert list(plugin_dir.glob("kubext-*.sock")) == []
