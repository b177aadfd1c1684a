"""The extender endpoints over HTTP (Starlette's test client), malformed bodies included."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from kubext_scheduler import extender, profiles_file
from kubext_scheduler.tests.objects import container, node, pod

GPU_TAINT = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}


def client(pods: Any = None) -> TestClient:
    [fw] = profiles_file.load(None).frameworks.values()
    ext = extender.Extender(fw, pods) if pods else extender.Extender(fw)
    return TestClient(extender.app(ext))


def args(p: dict, nodes: list[dict]) -> dict:
    return {"pod": p, "nodes": {"items": nodes}, "nodenames": None}


NODES = [node("small", cpu="500m"), node("tainted", taints=[GPU_TAINT]), node("free")]


def test_filter_answers_an_extender_filter_result() -> None:
    reply = client().post("/filter", json=args(pod(containers=[container(cpu="1")]), NODES))
    assert reply.status_code == 200
    body = reply.json()
    assert [n["metadata"]["name"] for n in body["nodes"]["items"]] == ["free"]
    assert body["failedNodes"] == {"small": "Insufficient CPU: requested 1000m, available 500m"}
    assert body["failedAndUnresolvableNodes"] == {
        "tainted": "node(s) had untolerated taint {dedicated: gpu}"
    }
    assert body["error"] == ""


def test_filter_counts_the_pods_the_cache_knows() -> None:
    running = pod("old", containers=[container(cpu="3500m")], node_name="free")
    reply = client(lambda names: [running]).post(
        "/filter", json=args(pod(containers=[container(cpu="1")]), NODES)
    )
    assert reply.json()["nodes"]["items"] == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param(b"{not json", "the body is not JSON", id="not-json"),
        pytest.param(b"[]", "ExtenderArgs must be a JSON object, not list", id="not-an-object"),
        pytest.param(
            json.dumps({"nodes": {"items": []}}).encode(), "pod: expected a Pod object", id="no-pod"
        ),
        pytest.param(json.dumps({"pod": pod()}).encode(), "nodes: missing", id="no-nodes"),
        pytest.param(
            json.dumps({"pod": pod(), "nodenames": ["a"]}).encode(),
            "nodeCacheCapable: false",
            id="nodenames",
        ),
        pytest.param(
            json.dumps({"pod": pod(), "nodes": {"items": [{"metadata": {}}]}}).encode(),
            "nodes.items[0]: expected a Node object with metadata.name",
            id="nameless-node",
        ),
        pytest.param(
            json.dumps(args(pod(containers=[container(memory="1 Gi")]), NODES)).encode(),
            "spec.containers[0].resources.requests.memory",
            id="invalid-quantity",
        ),
    ],
)
def test_malformed_filter_requests_get_the_error_field(body: bytes, error: str) -> None:
    reply = client().post("/filter", content=body)
    assert reply.status_code == 200
    assert error in reply.json()["error"]
    assert reply.json()["nodes"] is None


def test_an_unreadable_node_fails_alone() -> None:
    broken = node("broken", cpu="many")
    body = client().post("/filter", json=args(pod(), [broken, node("ok")])).json()
    assert [n["metadata"]["name"] for n in body["nodes"]["items"]] == ["ok"]
    assert "status.allocatable.cpu" in body["failedAndUnresolvableNodes"]["broken"]


def test_prioritize_answers_a_host_priority_list_of_0_to_10() -> None:
    p = pod(containers=[container(cpu="1", memory="1Gi")])
    busy = node("busy")
    running = pod("old", containers=[container(cpu="3", memory="6Gi")], node_name="busy")
    reply = client(lambda names: [running]).post("/prioritize", json=args(p, [busy, node("idle")]))
    assert reply.status_code == 200
    scores = {h["host"]: h["score"] for h in reply.json()}
    assert set(scores) == {"busy", "idle"}
    assert all(0 <= s <= 10 for s in scores.values())
    assert scores["idle"] > scores["busy"]


def test_malformed_prioritize_is_a_400_with_the_reason() -> None:
    reply = client().post("/prioritize", content=b"{}")
    assert reply.status_code == 400
    assert reply.json() == {"error": "pod: expected a Pod object"}


def test_bind_is_not_offered() -> None:
    ok = {"podName": "p", "podNamespace": "default", "podUID": "u", "node": "n1"}
    assert "leave bindVerb unset" in client().post("/bind", json=ok).json()["error"]
    assert client().post("/bind", json={**ok, "node": ""}).json() == {
        "error": "node: expected a non-empty string"
    }
