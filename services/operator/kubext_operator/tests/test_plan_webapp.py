"""WebApp planning: the children a spec stands for, and the status the Deployment implies."""

from __future__ import annotations

from typing import Any

import pytest

from kubext.crds import webapp as crd
from kubext_operator.planning import common
from kubext_operator.planning import webapp as plan

OWNER = common.Owner("example.com/v1", "WebApp", "shop", "prod", "uid-1", generation=4)
NOW = "2026-01-01T00:00:00Z"


def _spec(**over: Any) -> crd.WebAppSpec:
    return crd.WebAppSpec.model_validate(
        {"replicas": 3, "image": "nginx:1.21", "port": 8080, **over}
    )


def test_deployment_and_service_follow_the_spec() -> None:
    deployment, service = plan.plan_children(OWNER, _spec(), plan.Defaults())
    assert (deployment.kind, service.kind) == ("Deployment", "Service")
    dspec = deployment.body["spec"]
    assert dspec["replicas"] == 3
    (container,) = dspec["template"]["spec"]["containers"]
    assert container["image"] == "nginx:1.21"
    assert container["ports"][0]["containerPort"] == 8080
    assert service.body["spec"]["type"] == "ClusterIP"
    assert service.body["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}
    ]
    assert service.body["spec"]["selector"] == dspec["selector"]["matchLabels"]
    for child in (deployment, service):
        (ref,) = child.body["metadata"]["ownerReferences"]
        assert ref == {
            "apiVersion": "example.com/v1",
            "kind": "WebApp",
            "name": "shop",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
        assert child.body["metadata"]["annotations"][common.ANNOTATION_SPEC_HASH] == child.spec_hash


def test_selector_labels_are_a_subset_of_pod_labels() -> None:
    deployment, _ = plan.plan_children(OWNER, _spec(), plan.Defaults())
    match = deployment.body["spec"]["selector"]["matchLabels"]
    labels = deployment.body["spec"]["template"]["metadata"]["labels"]
    assert match.items() <= labels.items()


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        pytest.param(None, {"cpu": "100m", "memory": "128Mi"}, id="absent-uses-defaults"),
        pytest.param({"cpu": "0.5"}, {"cpu": "500m", "memory": "128Mi"}, id="partial-canonical"),
        pytest.param(
            {"cpu": "2", "memory": "1.5Gi"}, {"cpu": "2", "memory": "1536Mi"}, id="both-given"
        ),
    ],
)
def test_resources_are_defaulted_and_canonical(
    resources: dict[str, str] | None, expected: dict[str, str]
) -> None:
    spec = _spec(resources=resources) if resources is not None else _spec()
    deployment, _ = plan.plan_children(OWNER, spec, plan.Defaults())
    got = deployment.body["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert got == {"requests": expected, "limits": expected}


def test_hash_changes_with_the_spec_and_only_then() -> None:
    a, _ = plan.plan_children(OWNER, _spec(), plan.Defaults())
    b, _ = plan.plan_children(OWNER, _spec(), plan.Defaults())
    c, _ = plan.plan_children(OWNER, _spec(image="nginx:1.22"), plan.Defaults())
    d, _ = plan.plan_children(OWNER, _spec(replicas=5), plan.Defaults())
    assert a.spec_hash == b.spec_hash
    assert len({a.spec_hash, c.spec_hash, d.spec_hash}) == 3


def _status(facts: dict[str, Any] | None, *, current: bool = True, previous=None) -> dict:
    return plan.status(
        owner=OWNER,
        spec=_spec(),
        deployment=facts,
        deployment_current=current,
        previous=previous or {},
        now=NOW,
    )


def _ready(status: dict[str, Any]) -> dict[str, Any]:
    (cond,) = (c for c in status["conditions"] if c["type"] == "Ready")
    return cond


def test_all_ready_is_running_with_a_current_ready_condition() -> None:
    status = _status({"replicas": 3, "ready": 3, "updated": 3})
    assert status["phase"] == "Running"
    assert status["readyReplicas"] == 3 and status["replicas"] == 3
    assert status["observedGeneration"] == 4
    assert status["selector"] == "app.kubernetes.io/instance=shop,app.kubernetes.io/name=webapp"
    cond = _ready(status)
    assert (cond["status"], cond["reason"], cond["observedGeneration"]) == (
        "True",
        "DeploymentReady",
        4,
    )


@pytest.mark.parametrize(
    ("facts", "current"),
    [
        pytest.param(None, False, id="no-deployment-yet"),
        pytest.param({"replicas": 3, "ready": 2, "updated": 3}, True, id="two-of-three"),
        pytest.param({"replicas": 4, "ready": 3, "updated": 1}, True, id="rolling-out"),
        pytest.param({"replicas": 3, "ready": 3, "updated": 3}, False, id="old-spec-observed"),
    ],
)
def test_not_ready_is_pending(facts: dict[str, Any] | None, current: bool) -> None:
    status = _status(facts, current=current)
    assert status["phase"] == "Pending"
    assert _ready(status)["status"] == "False"


def test_a_stuck_deployment_is_failed_with_its_message() -> None:
    status = _status({"replicas": 3, "ready": 0, "updated": 3, "failure": "quota exceeded"})
    assert status["phase"] == "Failed"
    assert _ready(status)["message"] == "quota exceeded"


def test_transition_time_moves_only_when_the_condition_flips() -> None:
    first = _status({"replicas": 3, "ready": 3, "updated": 3})
    later = plan.status(
        owner=OWNER,
        spec=_spec(),
        deployment={"replicas": 3, "ready": 3, "updated": 3},
        deployment_current=True,
        previous=first,
        now="2026-01-02T00:00:00Z",
    )
    assert common.same_status(first, later)
    flipped = plan.status(
        owner=OWNER,
        spec=_spec(),
        deployment={"replicas": 3, "ready": 1, "updated": 3},
        deployment_current=True,
        previous=first,
        now="2026-01-03T00:00:00Z",
    )
    assert _ready(flipped)["lastTransitionTime"] == "2026-01-03T00:00:00Z"


def test_invalid_spec_status_names_the_problem() -> None:
    status = plan.invalid_status(
        owner=OWNER, problem="spec.resources.cpu: bad", previous={}, now=NOW
    )
    assert status["phase"] == "Failed"
    assert _ready(status)["reason"] == "InvalidSpec"
    assert _ready(status)["message"] == "spec.resources.cpu: bad"


@pytest.mark.parametrize(
    ("image", "version"),
    [
        pytest.param("nginx:1.21", "1.21", id="tag"),
        pytest.param("nginx", "latest", id="no-tag"),
        pytest.param("registry.local:5000/team/web", "latest", id="registry-port-no-tag"),
        pytest.param("registry.local:5000/team/web:v2+build", "v2-build", id="tag-sanitised"),
        pytest.param("nginx@sha256:" + "a" * 64, "latest", id="digest"),
    ],
)
def test_pod_template_carries_the_policy_labels(image: str, version: str) -> None:
    defaults = plan.Defaults(pod_labels={"environment": "staging"})
    deployment, _ = plan.plan_children(OWNER, _spec(image=image), defaults)
    labels = deployment.body["spec"]["template"]["metadata"]["labels"]
    assert labels["app"] == "shop"
    assert labels["version"] == version
    assert labels["environment"] == "staging"
    # The selector stays as it was: it is immutable once the Deployment exists.
    assert deployment.body["spec"]["selector"]["matchLabels"] == plan.selector("shop")
    assert set(plan.selector("shop").items()) <= set(labels.items())
