"""Fixtures: one webhook server per module, and test namespaces enrolled with it.

Each server has its own namespace (its TLS Secret lives there) and its own opt-in webhook
configurations: only namespaces labelled ``webhooks.kubext.io/e2e=<run>`` are sent to it, so the
shared cluster's other tests never meet this policy. The Database CRD's conversion webhook is
pointed at the server for the run and restored afterwards.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from kubext_webhooks import manifests
from kubext_webhooks.tests.e2e.harness import (
    CRD_FILE,
    CRD_NAME,
    E2E_LABEL,
    WebhookServer,
    denial_message,
    wait_for,
)

pytest_plugins = ["kubext_rig.pytest_plugin"]


def _point_crd_conversion(api: client.ApiClient, url: str) -> dict[str, Any] | None:
    """Send the Database CRD's conversions to ``url``; returns the clientConfig it had."""
    ext = client.ApiextensionsV1Api(api)
    try:
        crd = ext.read_custom_resource_definition(CRD_NAME)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        ext.create_custom_resource_definition(yaml.safe_load(CRD_FILE.read_text()))
        wait_for("the Database CRD", lambda: _established(ext), timeout=60)
        crd = ext.read_custom_resource_definition(CRD_NAME)
    original = client.ApiClient().sanitize_for_serialization(
        crd.spec.conversion.webhook.client_config
    )
    ext.patch_custom_resource_definition(
        CRD_NAME,
        [
            {
                "op": "replace",
                "path": "/spec/conversion/webhook/clientConfig",
                "value": {"url": url + "/convert"},
            }
        ],
    )
    return original


def _established(ext: client.ApiextensionsV1Api) -> bool:
    crd = ext.read_custom_resource_definition(CRD_NAME)
    return any(
        c.type == "Established" and c.status == "True" for c in (crd.status.conditions or [])
    )


@pytest.fixture(scope="module")
def webhook(
    kube_cluster: Any, kube_api: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebhookServer]:
    run = uuid.uuid4().hex[:6]
    core = client.CoreV1Api(kube_api)
    reg = client.AdmissionregistrationV1Api(kube_api)
    home = f"kubext-webhooks-e2e-{run}"
    core.create_namespace({"metadata": {"name": home}})
    server = WebhookServer(
        api=kube_api,
        kubeconfig=kube_cluster.kubeconfig,
        home=home,
        run=run,
        workdir=tmp_path_factory.mktemp("webhooks"),
    )
    selector = {E2E_LABEL: run}
    reg.create_validating_webhook_configuration(
        manifests.validating(
            namespace=home, url=server.url, name=server.config_name, match_labels=selector
        )
    )
    reg.create_mutating_webhook_configuration(
        manifests.mutating(
            namespace=home, url=server.url, name=server.config_name, match_labels=selector
        )
    )
    original_conversion = _point_crd_conversion(kube_api, server.url)
    try:
        server.start()
        yield server
    finally:
        with contextlib.suppress(client.ApiException):
            reg.delete_validating_webhook_configuration(server.config_name)
        with contextlib.suppress(client.ApiException):
            reg.delete_mutating_webhook_configuration(server.config_name)
        if original_conversion is not None:
            with contextlib.suppress(client.ApiException):
                client.ApiextensionsV1Api(kube_api).patch_custom_resource_definition(
                    CRD_NAME,
                    [
                        {
                            "op": "replace",
                            "path": "/spec/conversion/webhook/clientConfig",
                            "value": original_conversion,
                        }
                    ],
                )
        server.stop()
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(home)


@pytest.fixture
def enrolled(namespace: str, kube_api: client.ApiClient, webhook: WebhookServer) -> str:
    """The test's namespace, labelled so the API server sends its objects to our webhooks,
    once the API server demonstrably does (its webhook informer may lag a moment)."""
    core = client.CoreV1Api(kube_api)
    core.patch_namespace(namespace, {"metadata": {"labels": {E2E_LABEL: webhook.run}}})
    wait_for(
        "the default ServiceAccount",
        lambda: core.read_namespaced_service_account("default", namespace),
        timeout=30,
    )

    def ours() -> str | None:
        probe = {
            "metadata": {"generateName": "probe-"},
            "spec": {"containers": [{"name": "c", "image": "evil.example/x"}]},
        }
        try:
            core.create_namespaced_pod(namespace, probe, dry_run="All")
        except client.ApiException as exc:
            message = denial_message(exc)
            return message if "pods.validate.webhooks.kubext.io" in message else None
        return None

    wait_for("the API server to call the webhooks", ours, timeout=30)
    return namespace
