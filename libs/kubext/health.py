"""A small HTTP server for /healthz, /readyz and /metrics, for services that do not speak HTTP."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import prometheus_client

log = logging.getLogger(__name__)

Check = Callable[[], bool]
"""True when healthy. A check may raise :class:`Unhealthy` to fail with a reason."""


class Unhealthy(Exception):
    """A check's "not ok" with the reason, which the probe's body carries (for kubectl describe
    and whoever curls the probe)."""


class HealthServer:
    """Serves liveness, readiness and Prometheus metrics on ``host:port`` in a daemon thread."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        live: Check | None = None,
        ready: Check | None = None,
        registry: prometheus_client.CollectorRegistry = prometheus_client.REGISTRY,
    ) -> None:
        checks = {"/healthz": live or (lambda: True), "/readyz": ready or (lambda: True)}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # - http.server's naming
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body = prometheus_client.generate_latest(registry)
                    self._reply(200, body, prometheus_client.CONTENT_TYPE_LATEST)
                elif path in checks:
                    reason = ""
                    try:
                        ok = checks[path]()
                    except Unhealthy as exc:
                        ok, reason = False, str(exc)
                    except Exception:  # a failing check means "not ok", never a crash
                        log.exception("health check %s raised", path)
                        ok = False
                    text = "ok" if ok else f"not ok: {reason}" if reason else "not ok"
                    self._reply(200 if ok else 503, f"{text}\n".encode(), "text/plain")
                else:
                    self._reply(404, b"not found\n", "text/plain")

            def _reply(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # probes are too chatty to log
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
