"""The HTTP edge: FastAPI routes that decode reviews, call the pure deciders, encode answers.

Envelope problems (content type, size, JSON, apiVersion/kind, missing request) are answered
with a 4xx and a ``metav1.Status`` body, the API server's own error format, so its message
reaches the user; problems with the object inside a good envelope get a review denial. A bug
(an exception anywhere past the envelope) is logged with its traceback and answered in the
review's own format: an AdmissionReview denial with code 500, a ConversionReview with result
Failure. Only a body that cannot be read as a review at all gets a 500, as a ``Status``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import fastapi
import prometheus_client as prom
from fastapi import responses

from kubext_webhooks import (
    conversion,
    databases,
    metrics,
    mutation,
    podshape,
    ports,
    review,
    validation,
)

log = logging.getLogger(__name__)

JSON = "application/json"
Decider = Callable[[review.AdmissionRequest], Awaitable[review.Decision]]


@dataclass
class Context:
    """What the routes need; the server builds it, tests build their own."""

    policies: ports.PolicySource
    mutation: mutation.MutationSettings = field(default_factory=mutation.MutationSettings)
    databases: databases.DatabaseSettings = field(default_factory=databases.DatabaseSettings)
    namespaces: ports.NamespaceLookup | None = None
    registry: prom.CollectorRegistry = field(default_factory=prom.CollectorRegistry)
    max_body_bytes: int = 8 * 1024 * 1024
    ready: Callable[[], bool] = lambda: True
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    metrics: metrics.Metrics = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = metrics.Metrics.create(self.registry)


def status_body(code: int, message: str) -> bytes:
    reasons = {
        400: "BadRequest",
        404: "NotFound",
        413: "RequestEntityTooLarge",
        415: "UnsupportedMediaType",
        500: "InternalError",
    }
    return json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reasons.get(code, "BadRequest"),
            "code": code,
        }
    ).encode()


Answer = Callable[[dict[str, Any]], Awaitable[tuple[bytes, str]]]
_JSON_HEADERS = [(b"content-type", b"application/json")]


class WebhookEndpoint:
    """One webhook path as a plain ASGI endpoint (reached through :class:`Webhooks`).

    The hot path skips Starlette's Request/Response objects and FastAPI's dependency solving
    (about half the per-review cost for a 5 KB pod). Its metrics are plain numbers
    (:class:`metrics.WebhookStats`), read at scrape time.
    """

    def __init__(self, *, webhook: str, answer: Answer, ctx: Context) -> None:
        self.webhook = webhook
        self.answer = answer
        self.limit = ctx.max_body_bytes
        self._stats = ctx.metrics.webhooks.stats(webhook)

    async def _body(
        self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]]
    ) -> bytes | None:
        """The body (None if the client went away), 413 as soon as it exceeds the limit."""
        content_type = declared = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                declared = value
        review.check_content_type(content_type)
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            raise review.BadRequest(
                413, f"request body of {int(declared)} bytes exceeds the limit of {self.limit}"
            )
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise review.BadRequest(
                    413, f"request body exceeds the limit of {self.limit} bytes"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        stats = self._stats
        stats.in_flight += 1
        start = time.perf_counter()
        code, outcome = 200, "error"
        try:
            data: dict[str, Any] | None = None
            try:
                raw = await self._body(scope, receive)
                if raw is None:
                    outcome = "disconnected"
                    return
                data = review.decode_json(raw)
                body, outcome = await self.answer(data)
            except review.BadRequest as exc:
                code, outcome = exc.status, "bad-request"
                body = status_body(exc.status, exc.message)
            except Exception:  # a bug must not become a bare 500: answer in the review's format
                code, outcome, body = self._internal_error(data)
            headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": code, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            stats.in_flight -= 1
            stats.done(code, outcome, time.perf_counter() - start)

    def _internal_error(self, data: dict[str, Any] | None) -> tuple[int, str, bytes]:
        """(HTTP code, outcome, body) for an exception being handled: logged with its traceback;
        a review denial or Failure when the review names its uid, else a 500 Status."""
        uid = review.request_uid(data)
        log.exception("webhook %s failed on request %s", self.webhook, uid or "(unread)")
        message = f"internal error in webhook {self.webhook}; see its logs"
        body = review.encode_internal_error(data, f"{message} for uid {uid}") if uid else None
        if body is None:
            return 500, "error", status_body(500, message)
        return 200, "error", body


class Webhooks:
    """The service's ASGI app: a POST to a webhook path goes straight to its endpoint, past
    Starlette's middleware stack and route matching (a fifth of an in-process review); the rest
    (health, metrics, other methods and paths, with their 404/405 answers) to FastAPI."""

    def __init__(self, rest: fastapi.FastAPI) -> None:
        self.rest = rest
        self.endpoints: dict[str, WebhookEndpoint] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.endpoints.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.rest(scope, receive, send)


def create_app(ctx: Context) -> Webhooks:
    app = fastapi.FastAPI(title="kubext-webhooks", docs_url=None, redoc_url=None, openapi_url=None)
    webhooks = Webhooks(app)

    def admission(decide: Decider) -> Answer:
        async def answer(data: dict[str, Any]) -> tuple[bytes, str]:
            req = review.parse_admission(data)
            decision = await decide(req)  # an exception: WebhookEndpoint answers and logs it
            return review.encode_admission(req, decision), decision.label

        return answer

    async def validate_pod(req: review.AdmissionRequest) -> review.Decision:
        return validation.decide(req, ctx.policies.policy)

    async def mutate_pod(req: review.AdmissionRequest) -> review.Decision:
        labels = None
        pod = req.object
        if (
            ctx.namespaces is not None
            and req.operation == "CREATE"
            and req.kind == "Pod"
            and podshape.check(pod) is None
            and mutation.needs_namespace(pod, ctx.mutation)
        ):
            name = req.namespace or podshape.meta(pod).get("namespace") or "default"
            try:
                labels = await ctx.namespaces.get(name)
            except ports.KubeError as exc:
                return review.Decision(
                    allowed=False,
                    code=503,
                    reason="ServiceUnavailable",
                    message=f"cannot decide sidecar injection: {exc}",
                )
        now = ctx.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        return mutation.decide(req, ctx.mutation, namespace_labels=labels, now=now)

    async def validate_database(req: review.AdmissionRequest) -> review.Decision:
        return databases.validate(req, ctx.databases)

    async def mutate_database(req: review.AdmissionRequest) -> review.Decision:
        return databases.mutate(req)

    async def convert(data: dict[str, Any]) -> tuple[bytes, str]:
        req = review.parse_conversion(data)
        try:
            converted = conversion.convert_all(req.objects, req.desired_api_version)
        except conversion.ConversionError as exc:
            return review.encode_conversion(req, converted=None, error=str(exc)), "invalid"
        return review.encode_conversion(req, converted=converted), "allowed"

    def post(path: str, webhook: str, answer: Answer) -> None:
        endpoint = WebhookEndpoint(webhook=webhook, answer=answer, ctx=ctx)
        webhooks.endpoints[path] = endpoint
        # Also a route of FastAPI's, so a near miss (a trailing slash) is answered as before.
        app.add_route(path, endpoint, methods=["POST"], include_in_schema=False)

    post("/validate/pods", "/validate/pods", admission(validate_pod))
    post("/mutate/pods", "/mutate/pods", admission(mutate_pod))
    post("/validate/databases", "/validate/databases", admission(validate_database))
    post("/mutate/databases", "/mutate/databases", admission(mutate_database))
    post("/convert", "/convert", convert)
    # The seed's paths (12.9.3) for the pod webhooks, counted under the canonical names.
    post("/validate", "/validate/pods", admission(validate_pod))
    post("/mutate", "/mutate/pods", admission(mutate_pod))

    @app.get("/healthz")
    async def healthz() -> responses.PlainTextResponse:
        return responses.PlainTextResponse("ok\n")

    @app.get("/readyz")
    async def readyz() -> responses.PlainTextResponse:
        ok = ctx.ready()
        return responses.PlainTextResponse("ok\n" if ok else "not ready\n", 200 if ok else 503)

    @app.get("/metrics")
    async def metrics_route() -> fastapi.Response:
        return fastapi.Response(
            prom.generate_latest(ctx.registry), media_type=prom.CONTENT_TYPE_LATEST
        )

    @app.exception_handler(404)
    async def not_found(request: fastapi.Request, exc: Exception) -> fastapi.Response:
        return fastapi.Response(
            status_body(404, f"no webhook at {request.url.path}"), 404, media_type=JSON
        )

    @app.exception_handler(405)
    async def wrong_method(request: fastapi.Request, exc: Exception) -> fastapi.Response:
        body = json.loads(
            status_body(405, f"{request.method} is not allowed on {request.url.path}")
        )
        body["reason"] = "MethodNotAllowed"
        return responses.JSONResponse(body, 405)

    return webhooks
