"""The kubelet's plugin registration (pluginregistration.v1), served by the driver itself: a real
gRPC client over the registration socket calls what the kubelet's plugin watcher calls."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import grpc
import pytest

from kubext import config as kconfig
from kubext_proto.pluginregistration.v1 import api_pb2, api_pb2_grpc

from .. import config, registration
from .conftest import start_process


def _stub(sock: Path) -> tuple[grpc.Channel, api_pb2_grpc.RegistrationStub]:
    channel = grpc.insecure_channel(f"unix://{sock}", options=[("grpc.default_authority", "x")])
    return channel, api_pb2_grpc.RegistrationStub(channel)


def test_registration_socket_is_named_after_the_driver() -> None:
    sock = registration.socket_path(Path("/var/lib/kubelet"), "csi.kubext.io")
    assert sock == Path("/var/lib/kubelet/plugins_registry/csi.kubext.io-reg.sock")


def test_kubelet_gets_the_plugin_info_and_its_verdict_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sock = tmp_path / "plugins_registry" / "csi.kubext.io-reg.sock"
    served = registration.serve(
        driver_name="csi.kubext.io", csi_socket=Path("/run/csi/csi.sock"), socket=sock
    )
    channel, stub = _stub(sock)
    try:
        info = stub.GetInfo(api_pb2.InfoRequest(), timeout=5)
        assert info == api_pb2.PluginInfo(
            type="CSIPlugin",
            name="csi.kubext.io",
            endpoint="/run/csi/csi.sock",
            supported_versions=["1.0.0"],
        )
        with caplog.at_level(logging.INFO, logger="kubext_csi.registration"):
            stub.NotifyRegistrationStatus(
                api_pb2.RegistrationStatus(plugin_registered=True), timeout=5
            )
            stub.NotifyRegistrationStatus(
                api_pb2.RegistrationStatus(plugin_registered=False, error="version refused"),
                timeout=5,
            )
        records = [r for r in caplog.records if r.name == "kubext_csi.registration"]
        assert [r.levelno for r in records] == [logging.INFO, logging.ERROR]
        assert "version refused" in records[1].getMessage()
    finally:
        channel.close()
        served.stop()
    assert not sock.exists(), "stopping removes the registration socket"


def test_a_stale_registration_socket_is_replaced(tmp_path: Path) -> None:
    sock = tmp_path / "plugins_registry" / "csi.kubext.io-reg.sock"
    sock.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as crashed:
        crashed.bind(str(sock))  # a predecessor that died: the file stays, nobody listens
    assert sock.exists()
    second = registration.serve(driver_name="csi.kubext.io", csi_socket=Path("/b"), socket=sock)
    channel, stub = _stub(sock)
    try:
        assert stub.GetInfo(api_pb2.InfoRequest(), timeout=5).endpoint == "/b"
    finally:
        channel.close()
        second.stop()


def test_registration_is_off_by_default_and_paths_must_be_absolute(tmp_path: Path) -> None:
    cfg = config.Config()
    assert cfg.registration.enabled is False
    assert cfg.registration.kubelet_dir == "/var/lib/kubelet"
    path = tmp_path / "c.yaml"
    path.write_text("registration: {enabled: true, kubelet_dir: relative}\n")
    with pytest.raises(kconfig.ConfigError) as err:
        kconfig.load(config.Config, path=path)
    assert ": registration.kubelet_dir" in str(err.value)


def test_the_entry_point_serves_registration_and_removes_its_socket(
    tools: None, workdir: Path
) -> None:
    root = workdir  # short: unix socket paths are limited to 107 bytes
    kubelet = root / "kubelet"
    proc = start_process(
        root, extra_config=f"registration: {{enabled: true, kubelet_dir: {kubelet}}}\n"
    )
    sock = kubelet / "plugins_registry" / "csi.kubext.io-reg.sock"
    try:
        channel, stub = _stub(sock)
        with channel:
            info = stub.GetInfo(api_pb2.InfoRequest(), timeout=10, wait_for_ready=True)
        assert (info.name, info.endpoint) == ("csi.kubext.io", str(root / "csi.sock"))
    finally:
        assert proc.stop() == 0, proc.log.read_text()[-2000:]
    assert not sock.exists() and not (root / "csi.sock").exists()
