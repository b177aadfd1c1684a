"""The service process path: config validation, and cert-manager mode serving and reloading
the mounted certificate files through the real uvicorn server."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import socket
import ssl
import threading
import time

import prometheus_client as prom
import pydantic
import pytest
from cryptography.hazmat.primitives import serialization

from kubext_webhooks import certs, config, server


def test_renewal_must_come_before_expiry() -> None:
    with pytest.raises(
        pydantic.ValidationError, match="serving_renew_before_seconds must be below"
    ):
        config.Config.model_validate(
            {"tls": {"serving_validity_seconds": 10, "serving_renew_before_seconds": 10}}
        )


def test_cert_settings_default_to_the_service_dns_names() -> None:
    cfg = config.Config.model_validate({"namespace": "hooks", "service_name": "wh"})
    settings = cfg.cert_settings()
    assert settings.dns_names == ("wh.hooks.svc", "wh.hooks.svc.cluster.local")
    assert settings.serving_renew_before == dt.timedelta(days=15)


def _fingerprint(port: int) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def test_cert_manager_mode_serves_and_reloads_the_mounted_files(tmp_path, monkeypatch) -> None:
    settings = certs.Settings(dns_names=("localhost",), ip_addresses=("127.0.0.1",))
    first = certs.plan(None, settings, dt.datetime.now(dt.UTC))
    (tmp_path / "tls.crt").write_bytes(first.serving.cert_pem)
    (tmp_path / "tls.key").write_bytes(first.serving.key_pem)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    cfg = config.Config.model_validate(
        {
            "host": "127.0.0.1",
            "port": port,
            "health": {"host": "127.0.0.1", "port": 0},
            "tls": {
                "mode": "cert-manager",
                "cert_dir": str(tmp_path),
                "check_interval_seconds": 0.2,
            },
        }
    )
    servers: list = []
    done: list[int] = []
    thread = threading.Thread(
        target=lambda: done.append(
            asyncio.run(
                server.run(cfg, registry=prom.CollectorRegistry(), on_server=servers.append)
            )
        ),
        daemon=True,
    )
    thread.start()
    try:
        deadline = time.monotonic() + 20
        seen = None
        while time.monotonic() < deadline and seen is None:
            try:
                seen = _fingerprint(port)
            except OSError:
                time.sleep(0.1)
        assert seen == _sha256(first)
        second = certs.plan(None, settings, dt.datetime.now(dt.UTC))
        # Written as kubelet updates a Secret volume: new files, then swapped in.
        for name, data in (
            ("tls.key", second.serving.key_pem),
            ("tls.crt", second.serving.cert_pem),
        ):
            (tmp_path / f"{name}.new").write_bytes(data)
            (tmp_path / f"{name}.new").replace(tmp_path / name)
        while time.monotonic() < deadline and _fingerprint(port) != _sha256(second):
            time.sleep(0.1)
        assert _fingerprint(port) == _sha256(second)
    finally:
        for uvicorn_server in servers:
            uvicorn_server.should_exit = True
        thread.join(10)
    assert done == [0]


def _sha256(bundle: certs.Bundle) -> str:
    return hashlib.sha256(bundle.serving.cert.public_bytes(serialization.Encoding.DER)).hexdigest()
