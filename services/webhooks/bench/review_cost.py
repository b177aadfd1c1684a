"""Where one pod review's time goes, in-process: each layer of the stack measured on its own.

    python services/webhooks/bench/review_cost.py [--rounds 5] [--corpus 400]

The corpus is webhooks_bench's (~5 KB Deployment pods). Each figure is CPU microseconds per review
(this thread's CPU time, so time spent descheduled on a busy machine does not count), the best
of ``--rounds`` passes over the corpus. Layers, innermost first:

- JSON parse (stdlib ``json`` against ``orjson``), the envelope read (``review.parse_admission``),
  the pod's type check (``podshape.check``: the service validates with plain checks, there is
  no pydantic model on this path), the policy decision, and the response's encoding;
- the webhook endpoint as an ASGI app (all of the above plus body reading and metrics), then
  the metrics alone, then through FastAPI (routing, Starlette's middleware stack) and through
  the service's app (which sends webhook POSTs straight to their endpoint);
- uvicorn's HTTP protocol (httptools, what the service runs, and h11) fed the request's bytes
  over a fake transport, with the app uvicorn would wrap (proxy headers middleware included);
- TLS: the server's side of one request/response record exchange over memory BIOs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib
import json
import random
import ssl
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import prometheus_client as prom
import uvicorn
import uvloop
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from kubext_webhooks import app, certs, podshape, policy_store, review, validation
from kubext_webhooks.tests import asgi

# The corpus of webhooks_bench, beside this file (by name: the dev venv's ruff and Pants' would
# sort a `from bench import` differently).
webhooks_bench = importlib.import_module("bench.webhooks_bench")
PATH = "/validate/pods"


def best(rounds: int, bodies: list[Any], step: Callable[[Any], object]) -> float:
    """Microseconds per item of ``step`` over ``bodies``, the best of ``rounds`` passes."""
    fastest = float("inf")
    for _ in range(rounds):
        start = time.thread_time()
        for body in bodies:
            step(body)
        fastest = min(fastest, time.thread_time() - start)
    return fastest / len(bodies) * 1e6


def best_async(rounds: int, bodies: list[Any], step: Callable[[Any], Any]) -> float:
    async def one_pass() -> float:
        start = time.thread_time()
        for body in bodies:
            await step(body)
        return time.thread_time() - start

    fastest = min(uvloop.run(one_pass()) for _ in range(rounds))
    return fastest / len(bodies) * 1e6


class FakeTransport(asyncio.Transport):
    """Collects what uvicorn writes; answers the socket questions it asks."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8443), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


def http_protocol_cost(
    rounds: int,
    webhook_app: Any,
    raw_requests: list[bytes],
    protocol: type[Any],
    http: str,
    *,
    proxy_headers: bool = False,
) -> float:
    """Microseconds per review through uvicorn's ``protocol`` on one keep-alive connection,
    configured as server.py does (``proxy_headers`` on: uvicorn's default middleware too)."""

    async def one_pass() -> float:
        config = uvicorn.Config(
            webhook_app,
            http=http,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=proxy_headers,
        )
        config.load()
        transport = FakeTransport()
        proto = protocol(config, ServerState(), {}, asyncio.get_running_loop())
        proto.connection_made(transport)
        start = time.thread_time()
        for raw in raw_requests:
            transport.written.clear()
            proto.data_received(raw)
            while not transport.written or not _complete(transport.written):
                await asyncio.sleep(0)
        elapsed = time.thread_time() - start
        proto.connection_lost(None)
        return elapsed

    fastest = min(uvloop.run(one_pass()) for _ in range(rounds))
    return fastest / len(raw_requests) * 1e6


def _complete(written: list[bytes]) -> bool:
    data = b"".join(written)
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


def tls_cost(rounds: int, raw_requests: list[bytes], response: bytes) -> float:
    """Microseconds the server spends decrypting one request and encrypting its response."""
    bundle = certs.plan(
        None,
        certs.Settings(dns_names=("localhost",), ip_addresses=("127.0.0.1",)),
        dt.datetime.now(dt.UTC),
    )
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "tls.crt").write_bytes(bundle.serving.cert_pem)
        (Path(tmp) / "tls.key").write_bytes(bundle.serving.key_pem)
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        server_ctx.load_cert_chain(Path(tmp) / "tls.crt", Path(tmp) / "tls.key")
    client_ctx = ssl.create_default_context(cadata=bundle.ca_bundle.decode())
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):  # handshake
        for side in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    fastest = float("inf")
    for _ in range(rounds):
        spent = 0.0
        for raw in raw_requests:
            client.write(raw)
            s_in.write(c_out.read())
            start = time.thread_time()
            got = b""
            while len(got) < len(raw):
                got += server.read(65536)
            server.write(response)
            out = s_out.read()
            spent += time.thread_time() - start
            c_in.write(out)
            while client.pending() or c_in.pending:
                try:
                    client.read(65536)
                except ssl.SSLWantReadError:
                    break
        fastest = min(fastest, spent)
    return fastest / len(raw_requests) * 1e6


def prometheus_children() -> dict[str, Any]:
    """The endpoint's metrics as prometheus_client objects (how they were kept before)."""
    registry, names = prom.CollectorRegistry(), ["webhook"]
    return {
        "in_flight": prom.Gauge("in_flight", "", names, registry=registry),
        "latency": prom.Histogram("latency", "", names, registry=registry),
        "requests": prom.Counter("requests", "", [*names, "code"], registry=registry),
        "decisions": prom.Counter("decisions", "", [*names, "d"], registry=registry),
        "decision_latency": prom.Histogram("decision_l", "", [*names, "d"], registry=registry),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="passes over the corpus; best kept")
    parser.add_argument("--corpus", type=int, default=400, help="distinct reviews")
    args = parser.parse_args(argv)
    rounds = args.rounds

    rng = random.Random(20240607)
    bodies = [
        json.dumps(webhooks_bench.realistic_review(rng, i), separators=(",", ":")).encode()
        for i in range(args.corpus)
    ]
    pod_policy = policy_store.PolicyStore.open(None).policy
    datas = [review.decode_json(b) for b in bodies]
    requests = [review.parse_admission(d) for d in datas]
    decisions = [validation.decide(r, pod_policy) for r in requests]
    pairs = list(zip(requests, decisions, strict=True))
    pods = [r.object for r in requests]

    figures: list[tuple[str, float]] = []

    def add(name: str, micros: float) -> None:
        figures.append((name, micros))
        print(f"{name:58} {micros:8.1f} us")

    print(f"corpus: {len(bodies)} reviews, median {sorted(map(len, bodies))[len(bodies) // 2]} B")
    add(
        "JSON parse, stdlib json (decode + loads)",
        best(rounds, bodies, lambda b: json.loads(b.decode())),
    )
    add("JSON parse, orjson.loads", best(rounds, bodies, orjson.loads))
    add("JSON parse as served (review.decode_json)", best(rounds, bodies, review.decode_json))
    add("envelope read (review.parse_admission)", best(rounds, datas, review.parse_admission))
    add("pod type check (podshape.check)", best(rounds, pods, podshape.check))
    add(
        "decision incl. type check (validation.decide)",
        best(rounds, requests, lambda r: validation.decide(r, pod_policy)),
    )
    add(
        "response encode as served (review.encode_admission)",
        best(rounds, pairs, lambda p: review.encode_admission(*p)),
    )

    ctx = app.Context(policies=policy_store.PolicyStore.open(None))
    webhook_app = app.create_app(ctx)
    endpoint = webhook_app.endpoints[PATH]

    async def direct(body: bytes) -> None:
        status, _, _ = await asgi.call(endpoint, PATH, body)
        assert status == 200

    async def through_fastapi(body: bytes) -> None:
        status, _, _ = await asgi.call(webhook_app.rest, PATH, body)
        assert status == 200

    async def full(body: bytes) -> None:
        status, _, _ = await asgi.call(webhook_app, PATH, body)
        assert status == 200

    add(
        "webhook endpoint as ASGI app (body, decode..encode, metrics)",
        best_async(rounds, bodies, direct),
    )

    def prometheus_updates(_: object) -> None:
        g = old_metrics["in_flight"].labels(PATH)
        g.inc()
        g.dec()
        old_metrics["latency"].labels(PATH).observe(0.001)
        old_metrics["requests"].labels(PATH, "200").inc()
        old_metrics["decisions"].labels(PATH, "allowed").inc()
        old_metrics["decision_latency"].labels(PATH, "allowed").observe(0.001)

    old_metrics = prometheus_children()
    stats = ctx.metrics.webhooks.stats(PATH)

    def plain_updates(_: object) -> None:
        stats.in_flight += 1
        stats.in_flight -= 1
        stats.done(200, "allowed", 0.001)

    add(
        "  metrics as prometheus_client children (6 updates)",
        best(rounds, bodies, prometheus_updates),
    )
    add("  metrics as plain numbers (what the endpoint does)", best(rounds, bodies, plain_updates))
    add(
        "through FastAPI (routing, middleware, endpoint)",
        best_async(rounds, bodies, through_fastapi),
    )
    add("the service's app (path lookup, endpoint)", best_async(rounds, bodies, full))

    raw_requests = [
        b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:8443\r\nUser-Agent: Go-http-client/1.1\r\n"
        b"Content-Length: %d\r\nContent-Type: application/json\r\n"
        b"Accept-Encoding: gzip\r\n\r\n%s" % (PATH.encode(), len(b), b)
        for b in bodies
    ]
    add(
        "uvicorn httptools protocol + app (the service's choice)",
        http_protocol_cost(rounds, webhook_app, raw_requests, HttpToolsProtocol, "httptools"),
    )
    add(
        "  the same with proxy headers on (uvicorn's default)",
        http_protocol_cost(
            rounds, webhook_app, raw_requests, HttpToolsProtocol, "httptools", proxy_headers=True
        ),
    )
    add(
        "uvicorn h11 protocol + app (for comparison)",
        http_protocol_cost(rounds, webhook_app, raw_requests, H11Protocol, "h11"),
    )
    response = b"HTTP/1.1 200 OK\r\ncontent-length: 150\r\n\r\n" + review.encode_admission(
        *pairs[0]
    )
    add(
        "TLS, server side: decrypt request + encrypt response",
        tls_cost(rounds, raw_requests, response),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
