"""The one adapter to the Kubernetes API for the operator's own reads and writes (aiohttp).

kopf does the watching; every write the operator makes goes through :class:`Api`, so writes
are counted (``rest_client_requests_total``), throttled (kopf has no client-side QPS limit)
and mapped to :class:`ApiError` with the API server's own message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kopf

from kubext.crds import database as db_crd
from kubext.crds import webapp as wa_crd
from kubext_operator import metrics
from kubext_operator.planning import common


@dataclasses.dataclass(frozen=True, slots=True)
class Kind:
    group: str
    version: str
    plural: str

    def path(self, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{name}"
        if sub is not None:
            base += f"/{sub}"
        return base


KINDS: dict[str, Kind] = {
    wa_crd.KIND: Kind(wa_crd.GROUP, wa_crd.VERSION, wa_crd.PLURAL),
    db_crd.KIND: Kind(db_crd.GROUP, db_crd.VERSION, db_crd.PLURAL),
    "Deployment": Kind("apps", "v1", "deployments"),
    "StatefulSet": Kind("apps", "v1", "statefulsets"),
    "CronJob": Kind("batch", "v1", "cronjobs"),
    "Job": Kind("batch", "v1", "jobs"),
    "Service": Kind("", "v1", "services"),
    "Secret": Kind("", "v1", "secrets"),
    "PersistentVolumeClaim": Kind("", "v1", "persistentvolumeclaims"),
    "Pod": Kind("", "v1", "pods"),
    "Event": Kind("", "v1", "events"),
    "Lease": Kind("coordination.k8s.io", "v1", "leases"),
}


def resource_of(path: str) -> str:
    """``pods``, ``webapps/status``, ...: the resource (and subresource) a request path names."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    if "namespaces" in parts and len(parts) > parts.index("namespaces") + 2:
        parts = parts[parts.index("namespaces") + 2 :]
    else:
        parts = parts[2:] if parts[0] == "api" else parts[3:]
    return parts[0] + (f"/{parts[2]}" if len(parts) > 2 else "")


class ApiError(Exception):
    """A non-2xx answer: ``status`` (HTTP code), ``reason`` (Status.reason), the server's message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message

    @property
    def conflict(self) -> bool:
        return self.status == 409 and self.reason == "Conflict"

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def already_exists(self) -> bool:
        return self.status == 409 and self.reason == "AlreadyExists"

    @property
    def invalid(self) -> bool:
        """The request can never succeed as is (schema, immutability, admission)."""
        return self.status in (400, 403, 422)


class TokenBucket:
    """``qps`` requests per second on average, bursts up to ``burst``."""

    def __init__(self, qps: float, burst: int) -> None:
        self.qps, self.burst = qps, float(burst)
        self._tokens, self._at = float(burst), time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.qps)
            self._at = now
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self.qps)
                self._tokens = 1
                self._at = time.monotonic()
            self._tokens -= 1


class Api:
    """Requests to the API server with the operator's credentials (a kopf ConnectionInfo)."""

    def __init__(
        self, info: kopf.ConnectionInfo, *, qps: float, burst: int, timeout: float = 30.0
    ) -> None:
        self.info = info
        self.server = info.server.rstrip("/")
        self.host = urllib.parse.urlsplit(self.server).netloc
        self._limiter = TokenBucket(qps, burst)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            headers = {**self.info.as_http_headers(), "User-Agent": common.FIELD_MANAGER}
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.info.as_ssl_context(), limit=64),
                headers=headers,
                timeout=self._timeout,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        await self._limiter.take()
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        started = time.monotonic()
        try:
            async with self._client().request(
                method, self.server + path, params=params, data=data, headers=headers
            ) as response:
                text = await response.text()
                code = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            metrics.REST_REQUESTS.labels("<error>", method, self.host).inc()
            raise ApiError(0, "ConnectionError", f"{method} {path}: {exc!r}") from None
        metrics.REST_REQUESTS.labels(str(code), method, self.host).inc()
        if method != "GET":
            metrics.WRITES.labels(resource_of(path), method).inc()
        metrics.REST_LATENCY.labels(method, self.host).observe(time.monotonic() - started)
        payload: dict[str, Any] = {}
        if text:
            try:
                payload = json.loads(text)
            except ValueError:
                payload = {"message": text[:500]}
        if code >= 400:
            raise ApiError(code, str(payload.get("reason") or code), str(payload.get("message")))
        return payload

    async def watch(
        self, path: str, *, params: dict[str, str], timeout: float
    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events, one JSON object per line, until the server ends the stream. A stream
        silent for ``timeout`` seconds (no event, no bookmark) raises TimeoutError."""
        timing = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout)
        async with self._client().get(
            self.server + path, params=params, timeout=timing
        ) as response:
            metrics.REST_REQUESTS.labels(str(response.status), "GET", self.host).inc()
            if response.status >= 400:
                payload = await response.text()
                raise ApiError(response.status, "WatchFailed", payload[:500])
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return await self.request("GET", KINDS[kind].path(namespace, name))

    async def list(self, kind: str, namespace: str, *, selector: str) -> list[dict[str, Any]]:
        params = {"labelSelector": selector}
        answer = await self.request("GET", KINDS[kind].path(namespace), params=params)
        return list(answer.get("items") or [])

    async def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply (create or update) as the operator's field manager, forcing
        ownership of the fields it sets back from anyone who edited them."""
        meta = body["metadata"]
        path = KINDS[body["kind"]].path(meta["namespace"], meta["name"])
        params = {"fieldManager": common.FIELD_MANAGER, "force": "true"}
        return await self.request(
            "PATCH", path, params=params, body=body, content_type="application/apply-patch+yaml"
        )

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        path = KINDS[body["kind"]].path(meta["namespace"])
        return await self.request(
            "POST", path, params={"fieldManager": common.FIELD_MANAGER}, body=body
        )

    async def merge_patch(
        self, kind: str, namespace: str, name: str, patch: dict[str, Any], *, sub: str | None = None
    ) -> dict[str, Any]:
        return await self.request(
            "PATCH",
            KINDS[kind].path(namespace, name, sub),
            params={"fieldManager": common.FIELD_MANAGER},
            body=patch,
            content_type="application/merge-patch+json",
        )

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete (background propagation); already gone counts as done."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        try:
            await self.request("DELETE", KINDS[kind].path(namespace, name), body=body)
        except ApiError as exc:
            if not exc.not_found:
                raise
