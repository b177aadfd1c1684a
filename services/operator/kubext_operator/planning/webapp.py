"""WebApp -> Deployment + Service; WebApp status from the observed Deployment."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from kubext import quantity
from kubext.crds import webapp
from kubext_operator.planning import common

APP = "webapp"
FINALIZER = "webapp.example.com/finalizer"
CONTAINER = "web"
SERVICE_PORT = 80


@dataclasses.dataclass(frozen=True, slots=True)
class Defaults:
    """Requests (and limits) for a WebApp whose spec leaves ``resources`` (or a part) out."""

    cpu: str = "100m"
    memory: str = "128Mi"
    pod_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Extra labels on every pod template (config.pod_labels)."""
    placement: common.Placement = dataclasses.field(default_factory=common.Placement)
    """Node selector and tolerations of every pod template (config.pod_placement)."""


def selector(name: str) -> dict[str, str]:
    """Immutable once the Deployment exists, so it names only the app and the instance."""
    return {common.LABEL_NAME: APP, common.LABEL_INSTANCE: name}


def _canonical(value: str) -> str:
    # The API server stores quantities canonically (0.5 -> 500m); plan what it will store.
    return str(quantity.parse_quantity(value))


def resources(spec: webapp.WebAppSpec, defaults: Defaults) -> dict[str, Any]:
    given = spec.resources or webapp.Resources()
    amounts = {
        "cpu": _canonical(given.cpu or defaults.cpu),
        "memory": _canonical(given.memory or defaults.memory),
    }
    return {"requests": dict(amounts), "limits": dict(amounts)}


def plan_children(
    owner: common.Owner, spec: webapp.WebAppSpec, defaults: Defaults
) -> list[common.Desired]:
    """The Deployment and the Service a WebApp stands for."""
    name = owner.name
    labels = common.labels(app=APP, instance=name)
    match = selector(name)
    container = {
        "name": CONTAINER,
        "image": spec.image,
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "resources": resources(spec, defaults),
    }
    deployment = common.child(
        api_version="apps/v1",
        kind="Deployment",
        name=name,
        owner=owner,
        labels=labels,
        body={
            "spec": {
                "replicas": spec.replicas,
                "selector": {"matchLabels": match},
                "template": {
                    "metadata": {
                        "labels": common.pod_labels(
                            labels,
                            app=name,
                            version=common.image_version(spec.image),
                            extra=defaults.pod_labels,
                        )
                    },
                    "spec": defaults.placement.apply({"containers": [container]}),
                },
            }
        },
    )
    service = common.child(
        api_version="v1",
        kind="Service",
        name=name,
        owner=owner,
        labels=labels,
        body={
            "spec": {
                "type": "ClusterIP",
                "selector": match,
                "ports": [
                    {
                        "name": "http",
                        "port": SERVICE_PORT,
                        "targetPort": spec.port,
                        "protocol": "TCP",
                    }
                ],
            }
        },
    )
    return [deployment, service]


def _base_status(owner: common.Owner, previous: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "selector": common.selector_string(selector(owner.name)),
        "observedGeneration": owner.generation,
        "conditions": list(previous.get("conditions") or []),
    }


def status(
    *,
    owner: common.Owner,
    spec: webapp.WebAppSpec,
    deployment: Mapping[str, Any] | None,
    deployment_current: bool,
    previous: Mapping[str, Any],
    now: str,
) -> dict[str, Any]:
    """Status from the Deployment's facts (see ``views``); ``deployment_current`` says whether the
    observed Deployment carries the spec the operator applied last (hash and generation)."""
    out = _base_status(owner, previous)
    facts = deployment or {}
    ready, updated = int(facts.get("ready", 0)), int(facts.get("updated", 0))
    out["replicas"] = int(facts.get("replicas", 0))
    out["readyReplicas"] = ready
    failure = facts.get("failure")
    wanted = spec.replicas
    if failure:
        phase, cond, reason, message = "Failed", "False", "DeploymentFailed", str(failure)
    elif deployment_current and ready >= wanted and updated >= wanted:
        phase, cond, reason = "Running", "True", "DeploymentReady"
        message = f"Ready replicas: {ready}/{wanted}"
    else:
        phase, cond, reason = "Pending", "False", "DeploymentNotReady"
        message = f"Ready replicas: {ready}/{wanted}"
    out["phase"] = phase
    out["conditions"] = common.set_condition(
        out["conditions"],
        type_="Ready",
        status=cond,
        reason=reason,
        message=message,
        generation=owner.generation,
        now=now,
    )
    return out


def invalid_status(
    *,
    owner: common.Owner,
    problem: str,
    previous: Mapping[str, Any],
    now: str,
    reason: str = "InvalidSpec",
) -> dict[str, Any]:
    """Failed, with the reason: a spec the API server admitted but the operator cannot act on
    (InvalidSpec, e.g. a bad quantity), or a child the API server refuses (ApplyFailed)."""
    out = _base_status(owner, previous)
    out["replicas"] = previous.get("replicas", 0)
    out["readyReplicas"] = previous.get("readyReplicas", 0)
    out["phase"] = "Failed"
    out["conditions"] = common.set_condition(
        out["conditions"],
        type_="Ready",
        status="False",
        reason=reason,
        message=problem,
        generation=owner.generation,
        now=now,
    )
    return out
