"""KubeBinder over a recording CoreV1Api: every response is read to the end, so urllib3 puts
its connection back in the pool (an unread one left each next request a new TLS connection)."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from kubext_scheduler.cluster import KubeBinder
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


def test_every_api_response_is_read_to_the_end() -> None:
    binder = KubeBinder(client.ApiClient(), component="kubext-scheduler", instance="i")
    core = RecordingCore()
    binder.core = core  # type: ignore[assignment]
    p = pod("p")
    binder.bind(p, "n1")
    binder.scheduled(p, "n1")
    binder.failed(p, "0/1 nodes are available.", reason="Unschedulable")
    binder.failed(p, "0/1 nodes are available.", reason="Unschedulable")  # the Event's count
    binder.nominate(p, "n1")
    binder.preempt(pod("victim"), preemptor=p, node_name="n1")
    verbs = [verb for verb, _ in core.responses]
    assert "create_namespaced_pod_binding" in verbs and "patch_namespaced_event" in verbs
    assert "delete_namespaced_pod" in verbs
    assert [verb for verb, r in core.responses if not r.read] == []
