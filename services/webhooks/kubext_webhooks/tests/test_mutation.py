"""Pod mutation: patches applied with jsonpatch to many pod shapes, and idempotence."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubext_webhooks import mutation, podshape, policy, review, validation
from kubext_webhooks.tests import pods

SETTINGS = mutation.MutationSettings()
NOW = "2026-01-02T03:04:05Z"


def mutate(
    pod: dict[str, Any], *, inject: bool = False
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(mutated pod, patch): the patch applied exactly as the API server would."""
    ops = mutation.patch(pod, SETTINGS, inject=inject, now=NOW)
    patched = jsonpatch.JsonPatch(ops).apply(copy.deepcopy(pod))
    return patched, ops


def bare(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "app", "image": "nginx"}], **spec},
    }


SHAPES = {
    "no-metadata": {"spec": {"containers": [{"name": "a", "image": "nginx"}]}},
    "null-metadata": {"metadata": None, "spec": {"containers": [{"name": "a", "image": "x"}]}},
    "no-labels-no-annotations": bare(),
    "null-labels": {**bare(), "metadata": {"labels": None, "annotations": None}},
    "empty-labels": {**bare(), "metadata": {"labels": {}, "annotations": {}}},
    "slash-and-tilde-keys": {
        **bare(),
        "metadata": {
            "labels": {"app.kubernetes.io/name": "x", "a~b": "y", "~/~1": "z"},
            "annotations": {"example.com/owner": "me", "sidecar.example.com/inject": "true"},
        },
    },
    "default-label-present-other-value": {**bare(), "metadata": {"labels": {"managed-by": "helm"}}},
    "existing-security-contexts": bare(
        containers=[
            {"name": "a", "image": "x", "securityContext": {"runAsUser": 5}},
            {"name": "b", "image": "x", "securityContext": {}},
            {"name": "c", "image": "x", "securityContext": None},
        ],
        securityContext={"runAsNonRoot": True},
    ),
    "partial-resources": bare(
        containers=[
            {"name": "a", "image": "x", "resources": {}},
            {"name": "b", "image": "x", "resources": {"requests": {"cpu": "1"}}},
            {
                "name": "c",
                "image": "x",
                "resources": {"limits": {"memory": "64Mi"}, "requests": None},
            },
            {"name": "d", "image": "x", "resources": {"requests": {"memory": "2Gi"}, "limits": {}}},
        ]
    ),
    "init-and-ephemeral": bare(
        initContainers=[{"name": "init", "image": "busybox"}],
        ephemeralContainers=[{"name": "dbg", "image": "busybox"}],
    ),
    "no-volumes": bare(),
    "null-volumes": bare(volumes=None),
    "existing-volumes": bare(volumes=[{"name": "data", "emptyDir": {}}]),
    "volume-name-taken": bare(volumes=[{"name": "varlog", "hostPath": {"path": "/var/log"}}]),
    "sidecar-already-there": bare(
        containers=[{"name": "app", "image": "x"}, {"name": "logging-sidecar", "image": "y"}]
    ),
    "no-containers-key": {"metadata": {}, "spec": {}},
    "null-containers": {"metadata": {}, "spec": {"containers": None}},
    "no-spec": {"metadata": {"name": "x"}},
    "compliant": pods.compliant_pod(),
}


@pytest.mark.parametrize("inject", [False, True], ids=["plain", "inject"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_patch_applies_and_second_pass_is_empty(shape: str, inject: bool) -> None:
    pod = SHAPES[shape]
    before = copy.deepcopy(pod)
    patched, ops = mutate(pod, inject=inject)
    assert pod == before, "the input must not be modified"
    assert all(op["op"] == "add" for op in ops)
    again = mutation.patch(patched, SETTINGS, inject=inject, now="2030-01-01T00:00:00Z")
    assert again == [], f"not idempotent: {again}"
    meta = patched.get("metadata") or {}
    original_labels = (pod.get("metadata") or {}).get("labels") or {}
    assert meta["labels"]["managed-by"] == original_labels.get("managed-by", "admission-webhook")
    assert meta["annotations"]["mutated-by"] == "admission-webhook"
    # Every user-provided key survives untouched.
    for key in ("labels", "annotations"):
        for k, v in (((pod.get("metadata") or {}).get(key)) or {}).items():
            assert meta[key][k] == v


def test_keys_with_slash_and_tilde_are_escaped() -> None:
    settings_ = mutation.MutationSettings(
        default_labels={"example.com/tier": "web", "odd~key/x": "1"}
    )
    ops = mutation.patch(
        {"metadata": {"labels": {}}, "spec": None}, settings_, inject=False, now=NOW
    )
    label_paths = [op["path"] for op in ops if op["path"].startswith("/metadata/labels/")]
    assert label_paths == ["/metadata/labels/example.com~1tier", "/metadata/labels/odd~0key~1x"]
    patched = jsonpatch.JsonPatch(ops).apply({"metadata": {"labels": {}}, "spec": None})
    assert patched["metadata"]["labels"] == {"example.com/tier": "web", "odd~key/x": "1"}


def test_sidecar_injection_adds_container_and_shared_volume_once() -> None:
    patched, _ = mutate(SHAPES["existing-volumes"], inject=True)
    names = [c["name"] for c in patched["spec"]["containers"]]
    assert names == ["app", "logging-sidecar"]
    assert patched["spec"]["volumes"] == [
        {"name": "data", "emptyDir": {}},
        {"name": "varlog", "emptyDir": {}},
    ]
    sidecar = patched["spec"]["containers"][1]
    assert sidecar["volumeMounts"] == [{"name": "varlog", "mountPath": "/var/log"}]
    assert sidecar["image"] == "fluent/fluent-bit:1.9"
    # A second webhook pass (reinvocation) adds nothing.
    assert mutation.patch(patched, SETTINGS, inject=True, now=NOW) == []


def test_defaults_fit_under_existing_limits_and_above_existing_requests() -> None:
    patched, _ = mutate(SHAPES["partial-resources"])
    res = {c["name"]: c["resources"] for c in patched["spec"]["containers"]}
    assert res["a"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
    }
    assert res["b"]["requests"] == {"cpu": "1", "memory": "128Mi"}
    assert res["b"]["limits"] == {"cpu": "1", "memory": "512Mi"}  # limit raised to the request
    assert res["c"]["requests"] == {"cpu": "100m", "memory": "64Mi"}  # request lowered to the limit
    assert res["d"]["limits"] == {"cpu": "500m", "memory": "2Gi"}


def test_security_context_only_where_none_is_set() -> None:
    patched, _ = mutate(SHAPES["existing-security-contexts"])
    contexts = [c.get("securityContext") for c in patched["spec"]["containers"]]
    assert contexts[0] == {"runAsUser": 5}
    assert contexts[1] == contexts[2] == mutation.RESTRICTED_SECURITY_CONTEXT
    assert patched["spec"]["securityContext"] == {"runAsNonRoot": True}


def test_ephemeral_containers_are_left_alone() -> None:
    patched, _ = mutate(SHAPES["init-and-ephemeral"])
    assert patched["spec"]["ephemeralContainers"] == [{"name": "dbg", "image": "busybox"}]
    assert "resources" in patched["spec"]["initContainers"][0]


def test_mutated_pod_passes_the_policy_apart_from_labels() -> None:
    """Mutation then validation, as the API server runs them: the defaults satisfy the rules."""
    patched, _ = mutate(bare(), inject=True)
    patched["metadata"]["labels"].update({"app": "a", "version": "1", "environment": "dev"})
    assert validation.violations(patched, policy.PodPolicy()) == []


@pytest.mark.parametrize(
    ("annotation", "namespace_label", "expected"),
    [
        (None, None, False),
        ("true", None, True),
        ("false", "true", False),
        (None, "true", True),
        ("yes", None, False),
    ],
)
def test_sidecar_wanted(annotation, namespace_label, expected: bool) -> None:
    pod = bare()
    if annotation is not None:
        pod["metadata"]["annotations"] = {"sidecar.example.com/inject": annotation}
    labels = {"sidecar.example.com/inject": namespace_label} if namespace_label else {}
    assert mutation.sidecar_wanted(pod, SETTINGS, labels) is expected
    assert mutation.needs_namespace(pod, SETTINGS) is (annotation is None)


def test_decide_mutates_create_only() -> None:
    req = review.parse_admission(pods.review(bare(), operation="UPDATE", old=bare()))
    assert mutation.decide(req, SETTINGS, namespace_labels=None, now=NOW).patch is None
    req = review.parse_admission(pods.review(bare()))
    decision = mutation.decide(
        req, SETTINGS, namespace_labels={"sidecar.example.com/inject": "true"}, now=NOW
    )
    assert decision.allowed and any(op["path"] == "/spec/containers/-" for op in decision.patch)


# Random pods built from the pieces that make patches go wrong: absent/null/empty maps and
# lists, keys full of '/' and '~', existing sidecars and volumes, odd resources.
_keys = st.text(alphabet="ab/~.-_1", min_size=1, max_size=8)
_maybe_map = st.one_of(
    st.none(), st.just({}), st.dictionaries(_keys, st.text(max_size=4), max_size=4)
)
_quantity = st.sampled_from(["1", "100m", "64Mi", "2Gi", "0.5", 3])
_resources = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "requests": st.one_of(
                st.none(), st.dictionaries(st.sampled_from(["cpu", "memory"]), _quantity)
            ),
            "limits": st.one_of(
                st.none(), st.dictionaries(st.sampled_from(["cpu", "memory"]), _quantity)
            ),
        },
    ),
)
_container = st.fixed_dictionaries(
    {"name": st.sampled_from(["app", "web", "logging-sidecar", "x"]), "image": st.just("nginx")},
    optional={
        "resources": _resources,
        "securityContext": st.one_of(st.none(), st.just({}), st.just({"runAsUser": 7})),
    },
)
_containers = st.one_of(st.none(), st.lists(_container, max_size=3))
_pods = st.fixed_dictionaries(
    {},
    optional={
        "metadata": st.one_of(
            st.none(),
            st.fixed_dictionaries({}, optional={"labels": _maybe_map, "annotations": _maybe_map}),
        ),
        "spec": st.fixed_dictionaries(
            {},
            optional={
                "containers": _containers,
                "initContainers": _containers,
                "volumes": st.one_of(
                    st.none(),
                    st.lists(
                        st.fixed_dictionaries({"name": st.sampled_from(["varlog", "data"])}),
                        max_size=2,
                    ),
                ),
            },
        ),
    },
)


@settings(
    max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(pod=_pods, inject=st.booleans())
def test_patch_is_valid_and_idempotent_for_random_pods(pod: dict[str, Any], inject: bool) -> None:
    assert podshape.check(pod) is None
    patched, ops = mutate(pod, inject=inject)
    assert mutation.patch(patched, SETTINGS, inject=inject, now="later") == []
    if inject and pod.get("spec") is not None:
        names = [c["name"] for c in patched["spec"]["containers"]]
        assert names.count("logging-sidecar") == max(
            1, [c["name"] for c in (pod["spec"].get("containers") or [])].count("logging-sidecar")
        )
