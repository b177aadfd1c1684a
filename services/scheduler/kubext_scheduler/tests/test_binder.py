"""KubeBinder over a recording CoreV1Api: every response is read to the end, so urllib3 puts
its connection back in the pool (an unread one left each next request a new TLS connection)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from kubext_scheduler import cluster
from kubext_scheduler.cluster import KubeBinder
from kubext_scheduler.scheduler import BindError
from kubext_scheduler.tests.objects import pod


class Response:
    def __init__(self, body: bytes) -> None:
        self.body, self.read = body, False

    @property
    def data(self) -> bytes:
        self.read = True
        return self.body


class RecordingCore:
    def __init__(self) -> None:
        self.responses: list[tuple[str, Response]] = []

    def __getattr__(self, verb: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Response:
            assert kwargs.get("_preload_content") is False
            response = Response(b'{"metadata": {"name": "e1"}}')
            self.responses.append((verb, response))
            return response

        return call


def test_every_api_response_is_read_to_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    binder = KubeBinder(client.ApiClient(), component="kubext-scheduler", instance="i")
    core = RecordingCore()
    binder.core = core  # type: ignore[assignment]
    posted: list[str] = []

    def post(api: Any, path: str, body: Any) -> bytes:  # read to the end by urllib3 itself
        posted.append(
            f"binding {body['metadata']['name']}"
            if "/binding" in path
            else f"event {body['reason']}"
        )
        return b'{"metadata": {"name": "e1"}}'

    monkeypatch.setattr(cluster, "post_json", post)
    p = pod("p")
    binder.bind(p, "n1")
    binder.scheduled(p, "n1")
    binder.failed(p, "0/1 nodes are available.", reason="Unschedulable")
    binder.failed(p, "0/1 nodes are available.", reason="Unschedulable")  # the Event's count
    binder.nominate(p, "n1")
    binder.preempt(pod("victim"), preemptor=p, node_name="n1")
    verbs = [verb for verb, _ in core.responses]
    assert "patch_namespaced_event" in verbs and "delete_namespaced_pod" in verbs
    assert [verb for verb, r in core.responses if not r.read] == []
    assert posted == [
        "binding p",
        "event Scheduled",
        "event FailedScheduling",
        "event Preempted",
    ]


class _Api:
    """The API server's pods/binding and events (POST only), recording what came."""

    def __init__(self, refuse: bytes = b"") -> None:
        import http.server
        import threading

        self.requests: list[tuple[str, Any, dict[str, Any]]] = []
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.requests.append((self.path, self.headers, body))
                status, reply = (409, refuse) if refuse else (201, b'{"metadata":{"name":"e"}}')
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        cfg = client.Configuration(host=f"http://127.0.0.1:{self.server.server_address[1]}")
        cfg.api_key = {"BearerToken": "t0ken"}
        cfg.api_key_prefix = {"BearerToken": "Bearer"}
        self.client = client.ApiClient(cfg)


def test_binding_and_events_are_posted_without_the_generated_methods(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def generated(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the generated method (pydantic validation per call) was used")

    monkeypatch.setattr(client.CoreV1Api, "create_namespaced_pod_binding", generated)
    monkeypatch.setattr(client.CoreV1Api, "create_namespaced_event", generated)
    api = _Api()
    try:
        binder = KubeBinder(api.client, component="kubext-scheduler", instance="i")
        p = pod("p")
        binder.bind(p, "n1")
        binder.scheduled(p, "n1")
        (bind_path, headers, binding), (event_path, _, event) = api.requests
        assert bind_path == "/api/v1/namespaces/default/pods/p/binding"
        assert headers["Authorization"] == "Bearer t0ken"
        assert headers["Content-Type"] == "application/json"
        assert binding == {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": "p", "namespace": "default", "uid": p["metadata"]["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"},
        }
        assert event_path == "/api/v1/namespaces/default/events"
        assert event["reason"] == "Scheduled" and event["involvedObject"]["name"] == "p"
        assert event["message"] == "Successfully assigned default/p to n1"
    finally:
        api.server.shutdown()


def test_a_refused_binding_is_a_bind_error_with_the_api_servers_message() -> None:
    api = _Api(refuse=b'{"kind":"Status","message":"pod p is already assigned to node n2"}')
    try:
        binder = KubeBinder(api.client, component="kubext-scheduler", instance="i")
        with pytest.raises(BindError, match="^pod p is already assigned to node n2$"):
            binder.bind(pod("p"), "n1")
        binder.scheduled(pod("p"), "n1")  # an Event refused: logged, never raised
    finally:
        api.server.shutdown()


@pytest.mark.parametrize("extender", [True, False])
def test_the_api_pool_has_a_connection_for_each_extender_bind_thread(
    monkeypatch: pytest.MonkeyPatch, extender: bool
) -> None:
    import anyio  # pants: no-infer-dep (starlette's own dependency)
    import anyio.to_thread  # pants: no-infer-dep

    from kubext import kubeclient
    from kubext_scheduler import __main__ as main
    from kubext_scheduler import config

    async def default_threads() -> int:
        return int(anyio.to_thread.current_default_thread_limiter().total_tokens)

    assert anyio.run(default_threads) == main.EXTENDER_BIND_THREADS  # what /bind runs on
    sizes: list[int] = []

    def api_client(**kwargs: Any) -> None:
        sizes.append(kwargs["pool_maxsize"])
        raise kubeclient.KubeConfigError("stop here")

    monkeypatch.setattr(kubeclient, "api_client", api_client)
    cfg = config.Config.model_validate(
        {"extender": {"enabled": extender}, "standalone": {"bind_workers": 8}}
    )
    assert main.serve(cfg) == 2
    assert sizes == [16 + 8 + (main.EXTENDER_BIND_THREADS if extender else 0)]
