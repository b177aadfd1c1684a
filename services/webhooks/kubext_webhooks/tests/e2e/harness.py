"""Helpers for the e2e tests: the webhook server as a subprocess on 127.0.0.1, and its TLS."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from kubext_rig import testing
from kubext_rig.testing import wait_for

CRD_FILE = (
    Path(__file__).resolve().parents[4]
    / "operator"
    / "deploy"
    / "crds"
    / "databases.db.example.com.yaml"
)
CRD_NAME = "databases.db.example.com"
E2E_LABEL = "webhooks.kubext.io/e2e"


class WebhookServer:
    """One ``python -m kubext_webhooks`` process and what the tests need to reach it."""

    def __init__(
        self, *, api: client.ApiClient, kubeconfig: str, home: str, run: str, workdir: Path
    ) -> None:
        self.api = api
        self.home = home
        self.run = run
        self.port = testing.free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.config_name = f"kubext-webhooks-e2e-{run}"
        self.workdir = workdir
        self.policy_path = workdir / "policy.yaml"
        self.log_path = workdir / "webhooks.log"
        self.config = {
            "log_level": "info",
            "host": "127.0.0.1",
            "port": self.port,
            "namespace": home,
            "kubeconfig": kubeconfig,
            "max_body_bytes": 1048576,
            "namespace_cache_ttl_seconds": 2,
            "health": {"host": "127.0.0.1", "port": 0},
            "policy": {"path": str(self.policy_path), "reload_interval_seconds": 0.5},
            "tls": {
                "mode": "self-managed",
                "secret_name": "webhooks-tls",
                "dns_names": ["localhost"],
                "ip_addresses": ["127.0.0.1"],
                # Lifetimes of seconds so that rotations happen during the tests: a new
                # serving certificate every ~8 s and a new CA every ~16 s.
                "ca_validity_seconds": 50,
                "ca_renew_before_seconds": 34,
                "serving_validity_seconds": 24,
                "serving_renew_before_seconds": 16,
                "ca_propagation_seconds": 3,
                "check_interval_seconds": 1,
                "inject": {
                    "validating_webhook_configurations": [self.config_name],
                    "mutating_webhook_configurations": [self.config_name],
                    "custom_resource_definitions": [CRD_NAME],
                },
            },
        }
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def write_policy(self, spec: dict[str, Any]) -> None:
        doc = {
            "apiVersion": "webhooks.kubext.io/v1alpha1",
            "kind": "PodPolicy",
            "metadata": {"name": "e2e"},
            "spec": spec,
        }
        tmp = self.policy_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(doc))
        tmp.replace(self.policy_path)  # atomic, as a ConfigMap update is

    def start(self) -> WebhookServer:
        self.write_policy({})
        config_path = self.workdir / "config.yaml"
        config_path.write_text(yaml.safe_dump(self.config))
        log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kubext_webhooks", "--config", str(config_path)],
            env=env,
            stdout=log,
            stderr=log,
        )
        wait_for("the serving certificate", self._serving, timeout=60)
        return self

    def _serving(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"webhooks exited {self.proc.returncode}: {self.logs()[-3000:]}")
        with contextlib.suppress(OSError, client.ApiException):
            return self.get("/readyz")[0] == 200
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    # -- TLS as the API server sees it --------------------------------------------------------

    def secret(self) -> dict[str, bytes]:
        body = client.CoreV1Api(self.api).read_namespaced_secret("webhooks-tls", self.home)
        return {k: base64.b64decode(v) for k, v in (body.data or {}).items()}

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.secret()["ca.crt"].decode())

    def peer_fingerprint(self) -> str:
        """sha256 of the certificate a new handshake gets now."""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw,
            ctx.wrap_socket(raw) as tls,
        ):
            return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        import http.client

        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.client_context(), timeout=10
        )
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, bytes]:
        return self.request("GET", path)


def denial_message(exc: client.ApiException) -> str:
    try:
        return json.loads(exc.body)["message"]
    except (TypeError, ValueError, KeyError):
        return str(exc.body)
