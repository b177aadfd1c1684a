"""The HTTP edge: FastAPI routes that decode reviews, call the pure deciders, encode answers.

Envelope problems (content type, size, JSON, apiVersion/kind, missing request) are answered
with a 4xx and a ``metav1.Status`` body, the API server's own error format, so its message
reaches the user; problems with the object inside a good envelope get a review denial.
Nothing here answers 500.
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
    kube,
    metrics,
    mutation,
    podshape,
    policy,
    review,
    validation,
)

log = logging.getLogger(__name__)

JSON = "application/json"
Decider = Callable[[review.AdmissionRequest], Awaitable[review.Decision]]


@dataclass
class Context:
    """What the routes need; the server builds it, tests build their own."""

    policies: policy.PolicyStore
    mutation: mutation.MutationSettings = field(default_factory=mutation.MutationSettings)
    databases: databases.DatabaseSettings = field(default_factory=databases.DatabaseSettings)
    namespaces: kube.NamespaceLabels | None = None
    registry: prom.CollectorRegistry = field(default_factory=prom.CollectorRegistry)
    max_body_bytes: int = 8 * 1024 * 1024
    ready: Callable[[], bool] = lambda: True
    clock: Callable[[], dt.datetime] = kube.utcnow
    metrics: metrics.Metrics = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = metrics.Metrics.create(self.registry)


def status_body(code: int, message: str) -> bytes:
    reasons = {400: "BadRequest", 404: "NotFound", 413: "RequestEntityTooLarge", 415: "UnsupportedMediaType"}
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


async def read_body(request: fastapi.Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise review.BadRequest(413, f"request body of {declared} bytes exceeds the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise review.BadRequest(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(ctx: Context) -> fastapi.FastAPI:
    app = fastapi.FastAPI(
        title="kubext-webhooks", docs_url=None, redoc_url=None, openapi_url=None
    )
    m = ctx.metrics

    async def envelope(
        request: fastapi.Request, webhook: str, answer: Callable[[dict[str, Any]], Awaitable[tuple[bytes, str]]]
    ) -> fastapi.Response:
        in_flight = m.in_flight.labels(webhook)
        in_flight.inc()
        start = time.perf_counter()
        code, outcome = 200, "error"
        try:
            try:
                review.check_content_type(request.headers.get("content-type"))
                data = review.decode_json(await read_body(request, ctx.max_body_bytes))
                body, outcome = await answer(data)
            except review.BadRequest as exc:
                code, outcome = exc.status, "bad-request"
                return fastapi.Response(status_body(exc.status, exc.message), exc.status, media_type=JSON)
            return fastapi.Response(body, media_type=JSON)
        finally:
            elapsed = time.perf_counter() - start
            in_flight.dec()
            m.requests.labels(webhook, str(code)).inc()
            m.latency.labels(webhook).observe(elapsed)
            m.decisions.labels(webhook, outcome).inc()
            m.decision_latency.labels(webhook, outcome).observe(elapsed)

    def admission(webhook: str, decide: Decider) -> Callable[[fastapi.Request], Awaitable[fastapi.Response]]:
        async def answer(data: dict[str, Any]) -> tuple[bytes, str]:
            req = review.parse_admission(data)
            try:
                decision = await decide(req)
            except Exception:  # a bug must not become a 500: deny, say so, log the trace
                log.exception("webhook %s failed on request %s", webhook, req.uid)
                decision = review.Decision(
                    allowed=False, code=500, reason="InternalError",
                    message=f"internal error in webhook {webhook}; see its logs for uid {req.uid}",
                )
            return review.encode_admission(req, decision), decision.label

        async def route(request: fastapi.Request) -> fastapi.Response:
            return await envelope(request, webhook, answer)

        return route

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
            except kube.KubeError as exc:
                return review.Decision(
                    allowed=False, code=503, reason="ServiceUnavailable",
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

    async def convert_route(request: fastapi.Request) -> fastapi.Response:
        return await envelope(request, "/convert", convert)

    routes = {
        "/validate/pods": validate_pod,
        "/mutate/pods": mutate_pod,
        "/validate/databases": validate_database,
        "/mutate/databases": mutate_database,
    }
    for path, decide in routes.items():
        app.add_api_route(path, admission(path, decide), methods=["POST"], include_in_schema=False)
    # The seed's paths (12.9.3) for the pod webhooks.
    app.add_api_route("/validate", admission("/validate/pods", validate_pod), methods=["POST"])
    app.add_api_route("/mutate", admission("/mutate/pods", mutate_pod), methods=["POST"])
    app.add_api_route("/convert", convert_route, methods=["POST"])

    @app.get("/healthz")
    async def healthz() -> responses.PlainTextResponse:
        return responses.PlainTextResponse("ok\n")

    @app.get("/readyz")
    async def readyz() -> responses.PlainTextResponse:
        ok = ctx.ready()
        return responses.PlainTextResponse("ok\n" if ok else "not ready\n", 200 if ok else 503)

    @app.get("/metrics")
    async def metrics_route() -> fastapi.Response:
        return fastapi.Response(prom.generate_latest(ctx.registry), media_type=prom.CONTENT_TYPE_LATEST)

    @app.exception_handler(404)
    async def not_found(request: fastapi.Request, exc: Exception) -> fastapi.Response:
        return fastapi.Response(status_body(404, f"no webhook at {request.url.path}"), 404, media_type=JSON)

    @app.exception_handler(405)
    async def wrong_method(request: fastapi.Request, exc: Exception) -> fastapi.Response:
        body = json.loads(status_body(405, f"{request.method} is not allowed on {request.url.path}"))
        body["reason"] = "MethodNotAllowed"
        return responses.JSONResponse(body, 405)

    return app
