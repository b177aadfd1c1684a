"""Client configuration from a kubeconfig, and a clear error without one."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubext import kubeclient

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: abc}
contexts:
- name: ctx
  context: {cluster: c, user: u}
current-context: ctx
"""


def test_kubeconfig_is_loaded(tmp_path: Path) -> None:
    f = tmp_path / "kubeconfig"
    f.write_text(KUBECONFIG)
    api = kubeclient.api_client(kubeconfig=str(f))
    assert api.configuration.host == "https://127.0.0.1:6443"
    assert api.configuration.auth_settings()["BearerToken"]["value"] == "Bearer abc"


def test_missing_kubeconfig_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(kubeclient.KubeConfigError, match="no Kubernetes credentials"):
        kubeclient.api_client(kubeconfig=str(tmp_path / "missing"))
