"""The HTTP edge: bad input gets precise 4xx answers, good reviews well-formed responses."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import jsonpatch
import pytest

from kubext_webhooks import app, conversion, kube, policy_store, ports
from kubext_webhooks.tests import asgi, pods

REVIEW = json.dumps(pods.review(pods.compliant_pod())).encode()


def make_app(**kw: Any) -> tuple[Any, app.Context]:
    ctx = app.Context(policies=policy_store.PolicyStore.open(None), **kw)
    return app.create_app(ctx), ctx


def post(application, path: str, body: bytes, **kw) -> tuple[int, dict[str, Any]]:
    status, headers, out = asyncio.run(asgi.call(application, path, body, **kw))
    assert headers[b"content-type"].startswith(b"application/json")
    return status, json.loads(out)


JSON_HEADERS = ((b"content-type", b"application/json"),)


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        pytest.param(b"", JSON_HEADERS, 400, "empty request body", id="empty"),
        pytest.param(b"  \n", JSON_HEADERS, 400, "empty request body", id="blank"),
        pytest.param(REVIEW, (), 415, "unsupported Content-Type 'none'", id="no-content-type"),
        pytest.param(
            REVIEW,
            ((b"content-type", b"text/yaml"),),
            415,
            "'text/yaml', expected application/json",
            id="yaml",
        ),
        pytest.param(
            b'{"apiVersion": ',
            JSON_HEADERS,
            400,
            "not valid JSON: Expecting value at line 1 column 16",
            id="truncated",
        ),
        pytest.param(b"\xff\xfe{}", JSON_HEADERS, 400, "not UTF-8", id="binary"),
        pytest.param(b"[1, 2]", JSON_HEADERS, 400, "must be a JSON object, got array", id="array"),
        pytest.param(
            b"[" * 100000 + b"]" * 100000, JSON_HEADERS, 400, "nests too deeply", id="deep"
        ),
        pytest.param(
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v2"}',
            JSON_HEADERS,
            400,
            "unsupported AdmissionReview apiVersion 'admission.k8s.io/v2'",
            id="apiversion",
        ),
        pytest.param(
            b'{"kind": "Pod", "apiVersion": "v1"}',
            JSON_HEADERS,
            400,
            "expected kind AdmissionReview, got 'Pod'",
            id="kind",
        ),
        pytest.param(
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}',
            JSON_HEADERS,
            400,
            "AdmissionReview has no request",
            id="no-request",
        ),
        pytest.param(
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid": 7}}',
            JSON_HEADERS,
            400,
            "request.uid must be a non-empty string",
            id="uid-number",
        ),
        pytest.param(
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid": "u", "kind": []}}',
            JSON_HEADERS,
            400,
            "request.kind must be an object, got array",
            id="kind-array",
        ),
    ],
)
def test_bad_envelopes_get_a_4xx_status_with_a_clear_message(
    body, headers, status, message
) -> None:
    application, _ = make_app()
    for path in ("/validate/pods", "/mutate/pods", "/validate/databases", "/mutate/databases"):
        code, answer = post(application, path, body, headers=headers)
        assert code == status
        assert (
            answer["kind"] == "Status"
            and answer["code"] == status
            and answer["status"] == "Failure"
        )
        assert message in answer["message"]


def test_oversized_body_is_refused_with_413_declared_or_streamed() -> None:
    application, _ = make_app(max_body_bytes=1024)
    big = json.dumps(pods.review(pods.compliant_pod(name="x" * 2000))).encode()
    code, answer = post(
        application,
        "/validate/pods",
        big,
        headers=(*JSON_HEADERS, (b"content-length", str(len(big)).encode())),
    )
    assert code == 413 and "exceeds the limit of 1024" in answer["message"]
    code, answer = post(application, "/validate/pods", big, chunk=100)  # no content-length
    assert code == 413 and answer["reason"] == "RequestEntityTooLarge"


def test_non_pod_gets_a_well_formed_denial() -> None:
    application, _ = make_app()
    body = pods.review(
        {"apiVersion": "apps/v1", "kind": "Deployment"},
        kind={"group": "apps", "version": "v1", "kind": "Deployment"},
    )
    for path in ("/validate/pods", "/mutate/pods"):
        code, answer = post(application, path, json.dumps(body).encode())
        assert code == 200 and answer["kind"] == "AdmissionReview"
        response = answer["response"]
        assert response["uid"] == "0b1c-uid" and response["allowed"] is False
        assert response["status"]["code"] == 400 and "core/v1 Pods" in response["status"]["message"]


def test_v1beta1_reviews_are_answered_in_v1beta1() -> None:
    application, _ = make_app()
    body = pods.review(pods.compliant_pod())
    body["apiVersion"] = "admission.k8s.io/v1beta1"
    code, answer = post(application, "/validate/pods", json.dumps(body).encode())
    assert code == 200 and answer["apiVersion"] == "admission.k8s.io/v1beta1"


def test_mutation_answer_carries_a_base64_json_patch_that_applies() -> None:
    application, _ = make_app()
    pod = pods.compliant_pod()
    pod["metadata"]["annotations"] = {"sidecar.example.com/inject": "true"}
    code, answer = post(application, "/mutate/pods", json.dumps(pods.review(pod)).encode())
    response = answer["response"]
    assert code == 200 and response["allowed"] and response["patchType"] == "JSONPatch"
    patched = jsonpatch.JsonPatch(json.loads(base64.b64decode(response["patch"]))).apply(pod)
    assert [c["name"] for c in patched["spec"]["containers"]] == ["app", "logging-sidecar"]


class FakeNamespaces(kube.NamespaceLabels):
    """NamespaceLabels with the API call replaced: counts calls, can fail, can be slow."""

    def __init__(self, labels: dict[str, dict[str, str]], **kw: Any) -> None:
        super().__init__(api=None, **kw)  # type: ignore[arg-type]
        self.labels = labels
        self.calls = 0
        self.fail = False

    def _fetch(self, name: str) -> dict[str, str]:
        self.calls += 1
        threading_sleep(0.05)
        if self.fail:
            raise ports.KubeError(f"reading Namespace {name}: connection refused")
        return self.labels.get(name, {})


def threading_sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)


def test_namespace_label_injects_with_one_cached_lookup() -> None:
    now = [0.0]
    namespaces = FakeNamespaces(
        {"team-a": {"sidecar.example.com/inject": "true"}}, ttl=30, clock=lambda: now[0]
    )
    application, ctx = make_app(namespaces=namespaces)
    body = json.dumps(pods.review(pods.compliant_pod())).encode()

    async def burst() -> list[tuple[int, dict[bytes, bytes], bytes]]:
        return await asyncio.gather(
            *(asgi.call(application, "/mutate/pods", body) for _ in range(20))
        )

    results = asyncio.run(burst())
    assert namespaces.calls == 1  # concurrent misses share one lookup
    for _, _, out in results:
        patch = json.loads(base64.b64decode(json.loads(out)["response"]["patch"]))
        assert any(op["path"] == "/spec/containers/-" for op in patch)
    now[0] = 31.0
    namespaces.fail = True
    code, answer = post(application, "/mutate/pods", body)
    assert code == 200 and answer["response"]["allowed"]  # stale labels beat failing pod creation
    assert namespaces.calls == 2


def test_namespace_lookup_failure_without_cache_denies_clearly() -> None:
    namespaces = FakeNamespaces({})
    namespaces.fail = True
    application, _ = make_app(namespaces=namespaces)
    code, answer = post(
        application, "/mutate/pods", json.dumps(pods.review(pods.compliant_pod())).encode()
    )
    status = answer["response"]["status"]
    assert code == 200 and status["code"] == 503
    assert (
        "cannot decide sidecar injection: reading Namespace team-a: connection refused"
        in status["message"]
    )
    # A pod that decides by annotation never needs the namespace.
    pod = pods.compliant_pod()
    pod["metadata"]["annotations"] = {"sidecar.example.com/inject": "false"}
    code, answer = post(application, "/mutate/pods", json.dumps(pods.review(pod)).encode())
    assert answer["response"]["allowed"]


def test_conversion_endpoint() -> None:
    application, _ = make_app()
    beta = {
        "apiVersion": conversion.V1BETA1,
        "kind": "Database",
        "metadata": {"name": "a"},
        "spec": {"engine": "mysql", "version": "8.0.1", "storageSize": "1Gi"},
    }
    review = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "request": {"uid": "c1", "desiredAPIVersion": conversion.V1, "objects": [beta]},
    }
    code, answer = post(application, "/convert", json.dumps(review).encode())
    response = answer["response"]
    assert code == 200 and response["uid"] == "c1" and response["result"] == {"status": "Success"}
    assert response["convertedObjects"][0]["spec"] == {
        "type": "mysql",
        "version": "8.0.1",
        "storage": {"size": "1Gi"},
    }
    review["request"]["desiredAPIVersion"] = "db.example.com/v9"
    code, answer = post(application, "/convert", json.dumps(review).encode())
    assert code == 200 and answer["response"]["result"]["status"] == "Failure"
    assert (
        "cannot convert to apiVersion 'db.example.com/v9'"
        in answer["response"]["result"]["message"]
    )
    code, answer = post(
        application,
        "/convert",
        json.dumps(
            {
                "kind": "ConversionReview",
                "apiVersion": "apiextensions.k8s.io/v1",
                "request": {"uid": "x"},
            }
        ).encode(),
    )
    assert code == 400 and "desiredAPIVersion must be a non-empty string" in answer["message"]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(2**70, id="past-64-bits"),
        pytest.param(-(2**63) - 1, id="below-int64"),
        pytest.param(18446744073709551615, id="uint64-max"),
        pytest.param("\ud800 lone surrogate", id="lone-surrogate"),
    ],
)
def test_json_the_fast_parser_refuses_or_misreads_travels_unchanged(value: Any) -> None:
    """orjson reads integers past 64 bits as floats and refuses lone surrogates (the stdlib
    takes both): such a review must be answered exactly as the stdlib reads it."""
    application, _ = make_app()
    beta = {
        "apiVersion": conversion.V1BETA1,
        "kind": "Database",
        "metadata": {"name": "a", "labels": {"odd": value} if isinstance(value, str) else {}},
        "spec": {"engine": "mysql", "version": "8.0.1", "storageSize": "1Gi"},
        "status": {"observed": value, "nested": [{"n": value}]},
    }
    review = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "request": {"uid": "c1", "desiredAPIVersion": conversion.V1, "objects": [beta]},
    }
    code, answer = post(application, "/convert", json.dumps(review).encode())
    assert code == 200 and answer["response"]["result"] == {"status": "Success"}
    converted = answer["response"]["convertedObjects"][0]
    assert converted["status"] == beta["status"]
    assert type(converted["status"]["observed"]) is type(value)
    assert converted["metadata"].get("labels") == beta["metadata"]["labels"]


def test_nan_the_fast_parser_refuses_is_read_as_before() -> None:
    body = REVIEW.replace(b'"apiVersion": "v1"', b'"apiVersion": "v1", "x-extra": NaN', 1)
    assert b"NaN" in body
    for path in ("/validate/pods", "/mutate/pods"):
        code, answer = post(make_app()[0], path, body)
        assert code == 200 and answer["response"]["allowed"] is True


def test_webhook_posts_skip_fastapi_and_everything_else_goes_through_it() -> None:
    application, _ = make_app()
    seen: list[str] = []
    rest = application.rest

    async def spy(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(f"{scope['method']} {scope['path']}")
        await rest(scope, receive, send)

    application.rest = spy
    for path in ("/validate/pods", "/mutate/pods", "/validate", "/mutate"):
        code, answer = post(application, path, REVIEW)
        assert code == 200 and answer["response"]["uid"] == "0b1c-uid"
    assert seen == []
    near_miss = asyncio.run(asgi.call(application, "/validate/pods/", REVIEW))  # FastAPI's
    assert near_miss[0] == 307 and near_miss[1][b"location"].endswith(b"/validate/pods")
    assert asyncio.run(asgi.call(application, "/healthz", b"", method="GET"))[0] == 200
    code, answer = post(application, "/validate/pods", b"", method="GET")
    assert code == 405 and answer["reason"] == "MethodNotAllowed"
    assert seen == ["POST /validate/pods/", "GET /healthz", "GET /validate/pods"]


def test_metrics_count_by_webhook_code_and_decision() -> None:
    application, ctx = make_app()
    bad = pods.compliant_pod()
    bad["spec"]["hostNetwork"] = True
    post(application, "/validate/pods", REVIEW)
    post(application, "/validate/pods", json.dumps(pods.review(bad)).encode())
    post(application, "/validate/pods", b"")
    status, _, text = asyncio.run(asgi.call(application, "/metrics", b"", method="GET"))
    lines = text.decode().splitlines()
    assert status == 200
    for line in (
        'controller_runtime_webhook_requests_total{code="200",webhook="/validate/pods"} 2.0',
        'controller_runtime_webhook_requests_total{code="400",webhook="/validate/pods"} 1.0',
        'kubext_webhooks_decisions_total{decision="allowed",webhook="/validate/pods"} 1.0',
        'kubext_webhooks_decisions_total{decision="denied",webhook="/validate/pods"} 1.0',
        'kubext_webhooks_decisions_total{decision="bad-request",webhook="/validate/pods"} 1.0',
        'controller_runtime_webhook_latency_seconds_count{webhook="/validate/pods"} 3.0',
        'controller_runtime_webhook_requests_in_flight{webhook="/validate/pods"} 0.0',
    ):
        assert line in lines, line


def test_health_readiness_and_unknown_paths() -> None:
    ready = [False]
    application, _ = make_app(ready=lambda: ready[0])
    assert asyncio.run(asgi.call(application, "/healthz", b"", method="GET"))[0] == 200
    assert asyncio.run(asgi.call(application, "/readyz", b"", method="GET"))[0] == 503
    ready[0] = True
    assert asyncio.run(asgi.call(application, "/readyz", b"", method="GET"))[0] == 200
    code, answer = post(application, "/validate/nothing", REVIEW)
    assert code == 404 and "no webhook at /validate/nothing" in answer["message"]
    code, answer = post(application, "/validate/pods", b"", method="GET")
    assert code == 405 and answer["reason"] == "MethodNotAllowed"


def test_a_bug_in_a_decider_is_a_denial_not_a_500(monkeypatch) -> None:
    from kubext_webhooks import validation

    def boom(*_: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(validation, "decide", boom)
    application, ctx = make_app()
    code, answer = post(application, "/validate/pods", REVIEW)
    assert code == 200 and answer["response"]["allowed"] is False
    assert answer["response"]["status"]["code"] == 500
    assert "internal error in webhook /validate/pods" in answer["response"]["status"]["message"]


def _conversion_review(obj: Any, desired: str = conversion.V1BETA1) -> bytes:
    return json.dumps(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "ConversionReview",
            "request": {"uid": "c-deep", "desiredAPIVersion": desired, "objects": [obj]},
        }
    ).encode()


@pytest.mark.parametrize("levels", [600, 900])
def test_a_deeply_nested_database_gets_a_failed_conversion_not_a_500(levels: int) -> None:
    application, _ = make_app()
    deep: Any = "leaf"
    for _ in range(levels):
        deep = {"x": deep}
    obj = {
        "apiVersion": conversion.V1,
        "kind": "Database",
        "metadata": {"name": "pg"},
        "spec": {"type": "mysql", "extra": deep},
    }
    code, answer = post(application, "/convert", _conversion_review(obj))
    assert code == 200 and answer["kind"] == "ConversionReview"
    assert answer["response"]["uid"] == "c-deep"
    assert answer["response"]["convertedObjects"] == []
    assert answer["response"]["result"] == {
        "status": "Failure",
        "message": "Database 'pg': spec.extra.x.x... nests deeper than 100 levels",
    }


def test_an_unusable_residue_annotation_is_ignored_by_the_endpoint() -> None:
    application, _ = make_app()
    stored = json.dumps({"apiVersion": conversion.V1, "spec": [1, 2]})
    obj = {
        "apiVersion": conversion.V1BETA1,
        "kind": "Database",
        "metadata": {"name": "pg", "annotations": {conversion.RESIDUE_ANNOTATION: stored}},
        "spec": {"engine": "mysql", "version": "8.0.1", "storageSize": "1Gi"},
    }
    code, answer = post(application, "/convert", _conversion_review(obj, conversion.V1))
    assert code == 200 and answer["response"]["result"] == {"status": "Success"}
    (converted,) = answer["response"]["convertedObjects"]
    assert converted["spec"] == {"type": "mysql", "version": "8.0.1", "storage": {"size": "1Gi"}}


def _boom(*_: Any, **__: Any) -> Any:
    raise RuntimeError("bug")


_DATABASE_V1BETA1 = {
    "apiVersion": conversion.V1BETA1,
    "kind": "Database",
    "metadata": {"name": "pg"},
    "spec": {"engine": "mysql"},
}


@pytest.mark.parametrize(
    ("path", "module", "function", "body"),
    [
        pytest.param("/validate/pods", "validation", "decide", REVIEW, id="admission-decider"),
        pytest.param("/mutate/pods", "mutation", "decide", REVIEW, id="mutation-decider"),
        pytest.param("/validate/pods", "review", "encode_admission", REVIEW, id="admission-encode"),
        pytest.param(
            "/convert",
            "conversion",
            "convert_all",
            _conversion_review(_DATABASE_V1BETA1),
            id="conversion-decider",
        ),
        pytest.param(
            "/convert",
            "review",
            "encode_conversion",
            _conversion_review(_DATABASE_V1BETA1),
            id="conversion-encode",
        ),
    ],
)
def test_an_unexpected_exception_answers_in_the_reviews_own_format_and_is_logged(
    monkeypatch, caplog, path, module, function, body
) -> None:
    import importlib

    monkeypatch.setattr(importlib.import_module(f"kubext_webhooks.{module}"), function, _boom)
    application, _ = make_app()
    with caplog.at_level("ERROR", logger="kubext_webhooks.app"):
        code, answer = post(application, path, body)
    assert code == 200
    uid = json.loads(body)["request"]["uid"]
    message = f"internal error in webhook {path}; see its logs for uid {uid}"
    if path == "/convert":
        assert answer["kind"] == "ConversionReview"
        assert answer["apiVersion"] == "apiextensions.k8s.io/v1"
        assert answer["response"] == {
            "uid": uid,
            "convertedObjects": [],
            "result": {"status": "Failure", "message": message},
        }
    else:
        assert answer["kind"] == "AdmissionReview" and answer["apiVersion"] == "admission.k8s.io/v1"
        assert answer["response"] == {
            "uid": uid,
            "allowed": False,
            "status": {"code": 500, "message": message, "reason": "InternalError"},
        }
    (record,) = (r for r in caplog.records if r.name == "kubext_webhooks.app")
    assert record.exc_info is not None and str(record.exc_info[1]) == "bug"
    assert uid in record.getMessage()


def test_a_review_that_cannot_even_be_read_gets_a_500_status_not_a_bare_500(
    monkeypatch, caplog
) -> None:
    from kubext_webhooks import review

    monkeypatch.setattr(review, "decode_json", _boom)
    application, _ = make_app()
    with caplog.at_level("ERROR", logger="kubext_webhooks.app"):
        code, answer = post(application, "/convert", b"{}")
    assert code == 500
    assert answer == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "internal error in webhook /convert; see its logs",
        "reason": "InternalError",
        "code": 500,
    }
    assert any(r.exc_info is not None for r in caplog.records)
