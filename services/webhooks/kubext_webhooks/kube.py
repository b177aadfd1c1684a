"""The only module that talks to the API server: the TLS Secret, caBundle injection, namespaces.

Calls use the synchronous ``kubernetes`` client with raw JSON (``_preload_content=False``:
no model round trips) and run in worker threads, off the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from kubext_webhooks import certs, ports

log = logging.getLogger(__name__)


def _body(response: Any) -> dict[str, Any]:
    return json.loads(response.data)


def _status(exc: client.ApiException) -> str:
    try:
        return json.loads(exc.body).get("message") or exc.reason
    except (TypeError, ValueError, AttributeError):
        return f"{exc.status} {exc.reason}"


@dataclass
class SecretStore:
    """The Secret that holds the webhook PKI, with optimistic concurrency between replicas."""

    api: client.ApiClient
    namespace: str
    name: str
    resource_version: str | None = None

    def read(self) -> certs.Bundle | None:
        """The stored bundle; None if the Secret is missing or its content unusable."""
        core = client.CoreV1Api(self.api)
        try:
            secret = _body(
                core.read_namespaced_secret(self.name, self.namespace, _preload_content=False)
            )
        except client.ApiException as exc:
            if exc.status == 404:
                self.resource_version = None
                return None
            raise ports.KubeError(
                f"reading Secret {self.namespace}/{self.name}: {_status(exc)}"
            ) from None
        self.resource_version = secret["metadata"]["resourceVersion"]
        data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
        try:
            return certs.from_secret_data(data, secret["metadata"].get("annotations") or {})
        except certs.CertError as exc:
            log.warning("TLS Secret unusable; issuing anew", extra={"error": str(exc)})
            return None

    def write(self, bundle: certs.Bundle) -> bool:
        """Store ``bundle``; False if another replica changed the Secret first (re-read then)."""
        data, annotations = certs.to_secret_data(bundle)
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "annotations": annotations,
                "labels": {"app.kubernetes.io/managed-by": "kubext-webhooks"},
            },
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        }
        core = client.CoreV1Api(self.api)
        try:
            if self.resource_version is None:
                created = core.create_namespaced_secret(
                    self.namespace, body, _preload_content=False
                )
                self.resource_version = _body(created)["metadata"]["resourceVersion"]
            else:
                body["metadata"]["resourceVersion"] = self.resource_version
                replaced = core.replace_namespaced_secret(
                    self.name, self.namespace, body, _preload_content=False
                )
                self.resource_version = _body(replaced)["metadata"]["resourceVersion"]
        except client.ApiException as exc:
            if exc.status == 409:
                return False
            raise ports.KubeError(
                f"writing Secret {self.namespace}/{self.name}: {_status(exc)}"
            ) from None
        return True


@dataclass(frozen=True)
class InjectTarget:
    """An object whose webhook clientConfig(s) must carry our CA bundle."""

    kind: str  # ValidatingWebhookConfiguration | MutatingWebhookConfiguration | CustomResourceDefinition
    name: str


def inject_ca_bundle(api: client.ApiClient, target: InjectTarget, ca_bundle: bytes) -> bool:
    """Patch ``ca_bundle`` into ``target``; True if it changed. A missing object is an error."""
    encoded = base64.b64encode(ca_bundle).decode()
    reg = client.AdmissionregistrationV1Api(api)
    ext = client.ApiextensionsV1Api(api)
    read: Callable[..., Any]
    patch: Callable[..., Any]
    if target.kind == "ValidatingWebhookConfiguration":
        read, patch = (
            reg.read_validating_webhook_configuration,
            reg.patch_validating_webhook_configuration,
        )
    elif target.kind == "MutatingWebhookConfiguration":
        read, patch = (
            reg.read_mutating_webhook_configuration,
            reg.patch_mutating_webhook_configuration,
        )
    elif target.kind == "CustomResourceDefinition":
        read, patch = ext.read_custom_resource_definition, ext.patch_custom_resource_definition
    else:
        raise ports.KubeError(f"cannot inject a caBundle into a {target.kind}")
    try:
        obj = _body(read(target.name, _preload_content=False))
    except client.ApiException as exc:
        raise ports.KubeError(f"reading {target.kind} {target.name}: {_status(exc)}") from None
    ops: list[dict[str, Any]] = [
        {
            "op": "test",
            "path": "/metadata/resourceVersion",
            "value": obj["metadata"]["resourceVersion"],
        }
    ]
    if target.kind == "CustomResourceDefinition":
        conv = (obj.get("spec") or {}).get("conversion") or {}
        if conv.get("strategy") != "Webhook":
            raise ports.KubeError(
                f"CustomResourceDefinition {target.name} has no conversion webhook"
            )
        if ((conv.get("webhook") or {}).get("clientConfig") or {}).get("caBundle") != encoded:
            ops.append(
                {
                    "op": "add",
                    "path": "/spec/conversion/webhook/clientConfig/caBundle",
                    "value": encoded,
                }
            )
    else:
        for index, hook in enumerate(obj.get("webhooks") or []):
            if (hook.get("clientConfig") or {}).get("caBundle") != encoded:
                ops.append(
                    {
                        "op": "add",
                        "path": f"/webhooks/{index}/clientConfig/caBundle",
                        "value": encoded,
                    }
                )
    if len(ops) == 1:
        return False
    try:
        patch(target.name, ops, _preload_content=False)
    except client.ApiException as exc:
        raise ports.KubeError(
            f"patching the caBundle of {target.kind} {target.name}: {_status(exc)}"
        ) from None
    return True


@dataclass
class _Entry:
    labels: dict[str, str]
    fetched: float


@dataclass
class NamespaceLabels:
    """Namespace labels by name, cached for ``ttl`` seconds; concurrent misses share one call.

    When the API server cannot be reached, a stale entry is better than failing pod creation,
    so it is served (and logged); without one, the lookup error propagates.
    """

    api: client.ApiClient
    ttl: float = 30.0
    clock: Callable[[], float] = time.monotonic
    on_lookup: Callable[[str], None] | None = None
    _cache: dict[str, _Entry] = field(default_factory=dict)
    _pending: dict[str, asyncio.Future[dict[str, str]]] = field(default_factory=dict)

    async def get(self, name: str) -> dict[str, str]:
        entry = self._cache.get(name)
        if entry is not None and self.clock() - entry.fetched < self.ttl:
            self._count("hit")
            return entry.labels
        pending = self._pending.get(name)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
        self._pending[name] = future
        try:
            labels = await self._load(name, entry)
        except BaseException as exc:
            future.set_exception(
                exc if isinstance(exc, Exception) else ports.KubeError("lookup cancelled")
            )
            future.exception()  # retrieved: the waiters re-raise it; nothing else should log it
            raise
        else:
            future.set_result(labels)
            return labels
        finally:
            self._pending.pop(name, None)

    async def _load(self, name: str, stale: _Entry | None) -> dict[str, str]:
        try:
            labels = await asyncio.to_thread(self._fetch, name)
        except ports.KubeError as exc:
            self._count("error")
            if stale is None:
                raise
            log.warning("namespace lookup failed; using cached labels", extra={"error": str(exc)})
            return stale.labels
        self._count("miss")
        self._cache[name] = _Entry(labels, self.clock())
        return labels

    def _fetch(self, name: str) -> dict[str, str]:
        core = client.CoreV1Api(self.api)
        try:
            ns = _body(core.read_namespace(name, _preload_content=False, _request_timeout=3))
        except client.ApiException as exc:
            if exc.status == 404:
                return {}
            raise ports.KubeError(f"reading Namespace {name}: {_status(exc)}") from None
        except Exception as exc:  # urllib3 connection errors and time-outs
            raise ports.KubeError(f"reading Namespace {name}: {exc}") from None
        return (ns.get("metadata") or {}).get("labels") or {}

    def _count(self, result: str) -> None:
        if self.on_lookup is not None:
            self.on_lookup(result)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
