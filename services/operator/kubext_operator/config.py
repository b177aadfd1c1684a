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
    database: DatabaseSettings = DatabaseSettings()

    @pydantic.model_validator(mode="after")
    def _leases_make_sense(self) -> Config:
        le = self.leader_election
        if not le.retry_period_seconds < le.renew_deadline_seconds < le.lease_duration_seconds:
            raise ValueError(
                "leader_election: retry_period < renew_deadline < lease_duration must hold"
            )
        return self
