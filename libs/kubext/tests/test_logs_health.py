"""JSON log lines and the health/metrics server."""

from __future__ import annotations

import io
import json
import logging
import urllib.error
import urllib.request

import prometheus_client

from kubext import health, logs


def test_log_lines_are_json_with_extras() -> None:
    out = io.StringIO()
    logs.configure(service="svc", level="debug", stream=out)
    logging.getLogger("x").info("hello %s", "world", extra={"volume": "v1"})
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("x").exception("failed")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["msg"] == "hello world" and first["volume"] == "v1"
    assert first["service"] == "svc" and first["level"] == "info" and first["logger"] == "x"
    assert second["level"] == "error" and "ValueError: boom" in second["exc"]


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_health_ready_and_metrics() -> None:
    registry = prometheus_client.CollectorRegistry()
    counter = prometheus_client.Counter("kubext_test_things", "things", registry=registry)
    counter.inc(3)
    ready = {"ok": False}

    def raising() -> bool:
        raise RuntimeError("check broke")

    srv = health.HealthServer(ready=lambda: ready["ok"], live=raising, registry=registry).start()
    try:
        assert _get(srv.port, "/readyz")[0] == 503
        ready["ok"] = True
        assert _get(srv.port, "/readyz") == (200, "ok\n")
        assert _get(srv.port, "/healthz")[0] == 503  # a raising check is "not ok", not a crash
        code, body = _get(srv.port, "/metrics")
        assert code == 200 and "kubext_test_things_total 3.0" in body
        assert _get(srv.port, "/nope")[0] == 404
    finally:
        srv.stop()


def test_an_unhealthy_check_says_why() -> None:
    def reflector_down() -> bool:
        raise health.Unhealthy("reflect-Pod failed 5 times in a row")

    srv = health.HealthServer(live=reflector_down, ready=lambda: True).start()
    try:
        assert _get(srv.port, "/healthz") == (503, "not ok: reflect-Pod failed 5 times in a row\n")
        assert _get(srv.port, "/readyz") == (200, "ok\n")
    finally:
        srv.stop()
