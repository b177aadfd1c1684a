"""Configuration of the operator service (file + KUBEXT_OPERATOR_* environment)."""

from __future__ import annotations

from typing import Annotated, Literal

import pydantic

from kubext import cli, config, quantity
from kubext_operator.planning import engines


class LeaderElection(config.StrictModel):
    """A coordination.k8s.io Lease decides which replica acts (client-go's timings)."""

    enabled: bool = True
    namespace: str = "kubext-system"
    name: str = "kubext-operator"
    lease_duration_seconds: float = pydantic.Field(15.0, gt=0)
    renew_deadline_seconds: float = pydantic.Field(10.0, gt=0)
    retry_period_seconds: float = pydantic.Field(2.0, gt=0)


class Watching(config.StrictModel):
    """kopf watch-stream timeouts: without them a dead stream stalls silently."""

    server_timeout_seconds: int = pydantic.Field(300, gt=0)
    client_timeout_seconds: int = pydantic.Field(330, gt=0)
    connect_timeout_seconds: int = pydantic.Field(10, gt=0)
    list_page_size: int = pydantic.Field(100, gt=0)
    object_workers: int = pydantic.Field(200, gt=0)


class Client(config.StrictModel):
    qps: float = pydantic.Field(200.0, gt=0)
    burst: int = pydantic.Field(400, gt=0)
    timeout_seconds: float = pydantic.Field(30.0, gt=0)


def _quantity(value: str) -> str:
    try:
        quantity.parse_quantity(value)
    except quantity.QuantityError as exc:
        raise ValueError(str(exc)) from None
    return value


Quantity = Annotated[str, pydantic.AfterValidator(_quantity)]
LabelValue = Annotated[
    str,
    pydantic.StringConstraints(
        pattern=r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", max_length=63
    ),
]


LabelKey = Annotated[
    str,
    pydantic.StringConstraints(
        pattern=(
            r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
            r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
        ),
        max_length=317,
    ),
]


class Toleration(config.StrictModel):
    """A pod toleration, as core/v1 has it (snake_case keys); the API server's rules apply."""

    key: LabelKey | Literal[""] = ""
    operator: Literal["Exists", "Equal"] = "Equal"
    value: LabelValue = ""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""
    toleration_seconds: int | None = None

    @pydantic.model_validator(mode="after")
    def _as_the_api_server_requires(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise ValueError("value must be empty when operator is Exists")
        if not self.key and self.operator != "Exists":
            raise ValueError("an empty key needs operator Exists (it tolerates every taint)")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("toleration_seconds needs effect NoExecute")
        return self

    def manifest(self) -> dict[str, object]:
        out: dict[str, object] = {"operator": self.operator}
        if self.key:
            out["key"] = self.key
        if self.value:
            out["value"] = self.value
        if self.effect:
            out["effect"] = self.effect
        if self.toleration_seconds is not None:
            out["tolerationSeconds"] = self.toleration_seconds
        return out


class PodPlacement(config.StrictModel):
    """Node selector and tolerations on every pod template the operator makes (WebApp
    Deployments, Database StatefulSets, backup and restore Jobs): e.g. a node pool of its own."""

    node_selector: dict[LabelKey, LabelValue] = {}
    tolerations: list[Toleration] = []


class WebAppDefaults(config.StrictModel):
    """Requests (and limits) for WebApps whose spec leaves resources out."""

    cpu: Quantity = "100m"
    memory: Quantity = "128Mi"


def _image_template(value: str) -> str:
    problem = engines.template_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _image_reference(value: str) -> str:
    problem = engines.template_problem(value)
    if problem or "{" in value:
        raise ValueError(problem or f"{value!r}: an exporter image takes no placeholders")
    return value


EngineType = Literal["postgresql", "mysql", "mongodb"]
ImageTemplate = Annotated[str, pydantic.AfterValidator(_image_template)]
ImageReference = Annotated[str, pydantic.AfterValidator(_image_reference)]


class DatabaseSettings(config.StrictModel):
    """Which images a Database's pods run. By default the Docker Hub names (postgres:15.20,
    mysql:8.0.36, mongo:7.0.5: the engine's tag of spec.version), prefixed by image_registry
    when set; ``images`` names an engine's image outright, as a template of spec.version."""

    image_registry: str = ""
    # e.g. {postgresql: "registry.example:5000/kubext/postgres:{major}"}; placeholders
    # {major} {minor} {patch} {version} {tag} (tag: the engine's default tag, 15.20 for 15.20.0).
    images: dict[EngineType, ImageTemplate] = {}
    # The exporter sidecar's image per engine (default: the upstream exporter's).
    exporter_images: dict[EngineType, ImageReference] = {}


class Config(cli.ServiceConfig):
    """Every key the operator service accepts; unknown keys are errors."""

    kubeconfig: str | None = None
    namespaces: list[str] = []
    workers: int = pydantic.Field(16, ge=1, le=128)
    resync_period_seconds: float = pydantic.Field(600.0, ge=0)
    status_settle_seconds: float = pydantic.Field(5.0, ge=0)
    leader_election: LeaderElection = LeaderElection()
    watching: Watching = Watching()
    client: Client = Client()
    webapp_defaults: WebAppDefaults = WebAppDefaults()
    # Labels on every pod template the operator makes, beside app (the object's name) and version
    # (image tag or engine version): what a platform pod policy asks for (the seed's: environment).
    pod_labels: dict[str, LabelValue] = {"environment": "production"}
    pod_placement: PodPlacement = PodPlacement()
    database: DatabaseSettings = DatabaseSettings()

    @pydantic.model_validator(mode="after")
    def _leases_make_sense(self) -> Config:
        le = self.leader_election
        if not le.retry_period_seconds < le.renew_deadline_seconds < le.lease_duration_seconds:
            raise ValueError(
                "leader_election: retry_period < renew_deadline < lease_duration must hold"
            )
        return self
