"""The real kube-apiserver calling the webhooks over TLS: admission, mutation, conversion, rotation."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from kubernetes import client

from kubext_webhooks.tests.e2e.harness import WebhookServer, denial_message, wait_for

GROUP = "db.example.com"


def pod(name: str, **spec: Any) -> dict[str, Any]:
    container = {
        "name": "app",
        "image": "gcr.io/team/app:1.0",
        "resources": {
            "requests": {"cpu": "100m", "memory": "64Mi"},
            "limits": {"cpu": "200m", "memory": "128Mi"},
        },
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "web", "version": "1.0", "environment": "e2e"},
        },
        "spec": {"containers": [container], **spec},
    }


def test_compliant_pod_is_admitted_and_mutated(enrolled: str, kube_api: client.ApiClient) -> None:
    core = client.CoreV1Api(kube_api)
    body = pod("web")
    body["metadata"]["labels"]["example.com/team"] = "payments"  # a '/' in a label key
    body["metadata"]["annotations"] = {"sidecar.example.com/inject": "true"}
    core.create_namespaced_pod(enrolled, body)
    created = core.read_namespaced_pod("web", enrolled)
    assert created.metadata.labels["managed-by"] == "admission-webhook"
    assert created.metadata.labels["example.com/team"] == "payments"
    assert created.metadata.annotations["mutated-by"] == "admission-webhook"
    assert "mutation-timestamp" in created.metadata.annotations
    names = [c.name for c in created.spec.containers]
    assert names == ["app", "logging-sidecar"]  # injected once despite reinvocation
    app, sidecar = created.spec.containers
    assert app.security_context.run_as_non_root is True
    assert app.security_context.capabilities.drop == ["ALL"]
    assert sidecar.volume_mounts[0].name == "varlog"
    assert [v.name for v in created.spec.volumes if v.empty_dir is not None] == ["varlog"]
    wait_for(
        "the pod to run on a kwok node",
        lambda: core.read_namespaced_pod("web", enrolled).status.phase == "Running",
    )


def test_non_compliant_pod_is_denied_with_every_violation(
    enrolled: str, kube_api: client.ApiClient
) -> None:
    core = client.CoreV1Api(kube_api)
    body = pod("bad", hostNetwork=True)
    body["metadata"]["labels"].pop("environment")
    body["spec"]["containers"][0]["image"] = "evil.example/miner:latest"
    body["spec"]["containers"][0]["securityContext"] = {"privileged": True, "runAsUser": 0}
    body["spec"]["initContainers"] = [{"name": "init", "image": "ghcr.io/x/init"}]
    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_pod(enrolled, body)
    assert caught.value.status == 403
    message = denial_message(caught.value)
    assert message.startswith(
        'admission webhook "pods.validate.webhooks.kubext.io" denied the request: '
    )
    assert f"pod {enrolled}/bad violates policy e2e (" in message
    for path in (
        "metadata.labels.environment",
        "spec.hostNetwork",
        "spec.containers[0].image",
        "spec.containers[0].securityContext.privileged",
        "spec.containers[0].securityContext.runAsUser",
        "spec.initContainers[0].image",
    ):
        assert f"{path}: " in message, path
    # The mutating webhook filled the init container's resources, so they are not reported.
    assert "initContainers[0].resources" not in message


def test_namespace_label_injects_the_sidecar(enrolled: str, kube_api: client.ApiClient) -> None:
    core = client.CoreV1Api(kube_api)
    core.patch_namespace(enrolled, {"metadata": {"labels": {"sidecar.example.com/inject": "true"}}})
    # The webhook caches namespace labels for 2 s; the label may not be seen at once.
    names = wait_for(
        "sidecar injection by namespace label",
        lambda: _created_containers(core, enrolled),
        timeout=20,
    )
    assert names == ["app", "logging-sidecar"]


def _created_containers(core: client.CoreV1Api, namespace: str) -> list[str] | None:
    body = pod("")
    body["metadata"] = {**body["metadata"], "generateName": "ns-label-"}
    del body["metadata"]["name"]
    created = core.create_namespaced_pod(namespace, body, dry_run="All")
    names = [c.name for c in created.spec.containers]
    return names if len(names) == 2 else None


def test_policy_file_hot_reload_and_audit_mode(
    enrolled: str, kube_api: client.ApiClient, webhook: WebhookServer
) -> None:
    core = client.CoreV1Api(kube_api)
    body = pod("host", hostPID=True)
    with pytest.raises(client.ApiException):
        core.create_namespaced_pod(enrolled, body, dry_run="All")
    try:
        webhook.write_policy({"namespaces": [{"names": [enrolled], "mode": "Audit"}]})

        def admitted() -> bool:
            try:
                core.create_namespaced_pod(enrolled, body, dry_run="All")
            except client.ApiException:
                return False
            return True

        wait_for("the audit-mode policy to take effect", admitted, timeout=15)
        # Audit mode answers with warnings: the API server passes them on as Warning headers.
        response = core.create_namespaced_pod(enrolled, body, dry_run="All", _preload_content=False)
        warnings = response.headers.get("Warning", "")
        assert "policy e2e (audit): spec.hostPID: hostPID is not allowed" in warnings
        failures = webhook.logs().count("policy reload failed")
        webhook.write_policy({"mode": "Sometimes"})  # invalid: ignored, audit stays
        wait_for(
            "the invalid policy to be read and refused",
            lambda: webhook.logs().count("policy reload failed") > failures,
            timeout=15,
        )
        assert admitted()  # the webhook has seen the invalid file and still uses audit mode
    finally:
        webhook.write_policy({})
    wait_for("enforce mode again", lambda: not admitted(), timeout=15)


def _db(name: str, spec: dict[str, Any], version: str = "v1") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{version}",
        "kind": "Database",
        "metadata": {"name": name},
        "spec": spec,
    }


def test_database_admission_and_defaults(enrolled: str, kube_api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(kube_api)
    good = {
        "type": "postgresql",
        "version": "16.2.0",
        "storage": {"size": "10Gi"},
        "backup": {"enabled": True, "schedule": "0 2 * * *"},
    }
    created = custom.create_namespaced_custom_object(
        GROUP, "v1", enrolled, "databases", _db("pg", good)
    )
    assert created["spec"]["replicas"] == 1 and created["spec"]["deletionPolicy"] == "Retain"
    assert created["spec"]["backup"]["retention"] == 7

    with pytest.raises(client.ApiException) as caught:
        custom.create_namespaced_custom_object(
            GROUP,
            "v1",
            enrolled,
            "databases",
            _db(
                "old",
                {
                    **good,
                    "version": "9.6.0",
                    "backup": {"enabled": True, "schedule": "*/5 * * * *", "retention": 3},
                },
            ),
        )
    message = denial_message(caught.value)
    assert 'admission webhook "databases.validate.webhooks.kubext.io" denied the request' in message
    assert "spec.version: postgresql 9.6.0 is not supported" in message
    assert "spec.backup.schedule: schedule '*/5 * * * *' runs a dump every 5m" in message

    def update(**spec: Any) -> None:
        current = custom.get_namespaced_custom_object(GROUP, "v1", enrolled, "databases", "pg")
        current["spec"].update(spec)
        custom.replace_namespaced_custom_object(GROUP, "v1", enrolled, "databases", "pg", current)

    update(storage={"size": "20Gi"})
    with pytest.raises(client.ApiException) as caught:
        update(storage={"size": "5Gi"})
    assert "spec.storage.size: storage cannot shrink (from 20Gi to 5Gi)" in denial_message(
        caught.value
    )
    with pytest.raises(client.ApiException) as caught:
        update(type="mysql", version="8.0.36")
    assert "spec.type: the database type is immutable" in denial_message(caught.value)


def test_conversion_round_trip_through_the_api_server(
    enrolled: str, kube_api: client.ApiClient
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    beta_spec = {
        "engine": "mysql",
        "version": "8.0.36",
        "storageSize": "50Gi",
        "storageClassName": "fast",
        "backupEnabled": True,
        "backupSchedule": "30 3 * * *",
        "backupRetention": 14,
        "monitoringEnabled": True,
        "metrics": ["cpu", "queries"],
        "replicas": 2,
        "deletionPolicy": "Delete",
    }
    custom.create_namespaced_custom_object(
        GROUP, "v1beta1", enrolled, "databases", _db("legacy", beta_spec, "v1beta1")
    )
    as_v1 = custom.get_namespaced_custom_object(GROUP, "v1", enrolled, "databases", "legacy")
    assert as_v1["apiVersion"] == f"{GROUP}/v1"
    assert as_v1["spec"] == {
        "type": "mysql",
        "version": "8.0.36",
        "storage": {"size": "50Gi", "storageClass": "fast"},
        "backup": {"enabled": True, "schedule": "30 3 * * *", "retention": 14},
        "monitoring": {"enabled": True, "metrics": ["cpu", "queries"]},
        "replicas": 2,
        "deletionPolicy": "Delete",
    }
    back = custom.get_namespaced_custom_object(GROUP, "v1beta1", enrolled, "databases", "legacy")
    assert back["apiVersion"] == f"{GROUP}/v1beta1" and back["spec"] == beta_spec

    # A v1 object read as v1beta1 and written back unchanged stays the same v1 object.
    custom.replace_namespaced_custom_object(GROUP, "v1beta1", enrolled, "databases", "legacy", back)
    assert (
        custom.get_namespaced_custom_object(GROUP, "v1", enrolled, "databases", "legacy")["spec"]
        == as_v1["spec"]
    )

    # v1beta1 requests are judged by the v1 rules (matchPolicy Equivalent through /convert).
    with pytest.raises(client.ApiException) as caught:
        custom.create_namespaced_custom_object(
            GROUP,
            "v1beta1",
            enrolled,
            "databases",
            _db("bad", {**beta_spec, "version": "5.6.0"}, "v1beta1"),
        )
    assert "spec.version: mysql 5.6.0 is not supported" in denial_message(caught.value)


def test_bad_input_over_tls(webhook: WebhookServer) -> None:
    cases = [
        (b"", {"Content-Type": "application/json"}, 400, "empty request body"),
        (b"{}", {"Content-Type": "text/plain"}, 415, "unsupported Content-Type"),
        (b"{nope", {"Content-Type": "application/json"}, 400, "not valid JSON"),
        (
            b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}',
            {"Content-Type": "application/json"},
            400,
            "no request",
        ),
        (
            b"x" * 2_000_000,
            {"Content-Type": "application/json"},
            413,
            "exceeds the limit of 1048576",
        ),
    ]
    for body, headers, status, words in cases:
        code, out = webhook.request("POST", "/validate/pods", body, headers)
        assert code == status, out
        assert words in json.loads(out)["message"]
    code, out = webhook.get("/metrics")
    assert (
        code == 200
        and b'controller_runtime_webhook_requests_total{code="413",webhook="/validate/pods"}' in out
    )


def test_certificate_rotation_during_a_stream_of_pod_creations(
    enrolled: str, kube_api: client.ApiClient, webhook: WebhookServer
) -> None:
    """~40 s of pod creations across several serving-certificate renewals and a CA rollover:
    every single creation must pass through the webhooks."""
    core = client.CoreV1Api(kube_api)
    seen_certs: set[str] = set()
    seen_cas: set[bytes] = set()
    stop = threading.Event()

    def watch_tls() -> None:
        while not stop.is_set():
            try:
                seen_certs.add(webhook.peer_fingerprint())
                seen_cas.add(webhook.secret()["ca-signer.crt"])
            except Exception:  # - a missed sample is fine; failures are counted below
                pass
            stop.wait(0.5)

    watcher = threading.Thread(target=watch_tls, daemon=True)
    watcher.start()
    created, failures = 0, []
    deadline = time.monotonic() + 40
    index = 0
    try:
        while time.monotonic() < deadline:
            index += 1
            try:
                body = pod(f"stream-{index}")
                result = core.create_namespaced_pod(enrolled, body, _request_timeout=15)
                assert result.metadata.labels["managed-by"] == "admission-webhook"
                created += 1
            except client.ApiException as exc:
                failures.append(f"stream-{index}: {exc.status} {denial_message(exc)}")
            time.sleep(0.15)
    finally:
        stop.set()
        watcher.join(5)
    assert failures == [], failures[:5]
    assert created >= 100
    assert len(seen_certs) >= 4, f"only {len(seen_certs)} serving certificates seen"
    assert len(seen_cas) >= 2, f"only {len(seen_cas)} CAs seen"
    assert "certificates renewed" in webhook.logs()
