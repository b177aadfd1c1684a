"""WebApp (``webapps.example.com``, version v1): a Deployment and a Service from four fields."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic

from kubext import quantity
from kubext.crds import common

GROUP = "example.com"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "WebApp"
PLURAL = "webapps"
SINGULAR = "webapp"
SHORT_NAMES = ["wa"]

Phase = Literal["Pending", "Running", "Failed"]
PHASES: tuple[str, ...] = ("Pending", "Running", "Failed")


def _quantity(value: str | None) -> str | None:
    if value is not None:
        try:
            quantity.parse_quantity(value)
        except quantity.QuantityError as exc:
            raise ValueError(str(exc)) from None
    return value


Quantity = Annotated[
    str,
    pydantic.Field(pattern=common.QUANTITY_PATTERN),
    pydantic.AfterValidator(_quantity),
]


class Resources(common.SpecModel):
    """Requests (and equal limits) of the web container; absent values get defaults."""

    cpu: Quantity | None = pydantic.Field(None, description="CPU, e.g. 500m.")
    memory: Quantity | None = pydantic.Field(None, description="Memory, e.g. 512Mi.")


class WebAppSpec(common.SpecModel):
    """Desired state of a WebApp."""

    replicas: int = pydantic.Field(ge=1, le=100, description="Number of pods.")
    image: str = pydantic.Field(min_length=1, description="Container image of the web server.")
    port: int = pydantic.Field(
        ge=1, le=65535, description="Container port; the Service's port 80 targets it."
    )
    resources: Resources | None = pydantic.Field(None, description="Container resources.")


class WebAppStatus(common.StatusModel):
    """Observed state of a WebApp."""

    phase: Phase | None = None
    replicas: int | None = pydantic.Field(
        None, description="Pods the Deployment has (scale subresource)."
    )
    ready_replicas: int | None = None
    selector: str | None = pydantic.Field(
        None, description="Label selector of the pods (scale subresource)."
    )
    observed_generation: int | None = None
    conditions: list[common.Condition] | None = pydantic.Field(
        None, json_schema_extra=common.CONDITIONS_SCHEMA_EXTRA
    )


class WebApp(pydantic.BaseModel):
    """The object as a whole; ``metadata`` is the API server's and is not validated here."""

    model_config = pydantic.ConfigDict(populate_by_name=True, extra="ignore")

    api_version: str = pydantic.Field(API_VERSION, alias="apiVersion")
    kind: str = KIND
    metadata: dict[str, Any] = pydantic.Field(default_factory=dict)
    spec: WebAppSpec
    status: WebAppStatus | None = None
