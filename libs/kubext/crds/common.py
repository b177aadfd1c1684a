"""Pieces every kubext CRD model shares: the camelCase base models and metav1.Condition."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic
from pydantic import alias_generators

# Kubernetes spells its JSON keys in camelCase; Python code uses snake_case attributes.
_CAMEL = pydantic.ConfigDict(
    alias_generator=alias_generators.to_camel, populate_by_name=True, validate_assignment=True
)

DateTime = Annotated[str, pydantic.Field(json_schema_extra={"format": "date-time"})]
"""An RFC 3339 timestamp as the API server stores it (kept as text: no parsing on the hot path)."""

QUANTITY_PATTERN = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
"""The API server's own pattern for a resource quantity (int-or-string quantity fields)."""


class SpecModel(pydantic.BaseModel):
    """A spec part: unknown keys are errors (the API server prunes them, admission rejects them)."""

    model_config = pydantic.ConfigDict(**_CAMEL, extra="forbid")

    def to_dict(self) -> dict[str, Any]:
        """The JSON body the API server stores (camelCase keys, unset optionals left out)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class StatusModel(pydantic.BaseModel):
    """A status part: tolerant of keys written by other versions of the operator."""

    model_config = pydantic.ConfigDict(**_CAMEL, extra="ignore")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Condition(StatusModel):
    """A metav1.Condition; stale when its observedGeneration is below metadata.generation."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    last_transition_time: DateTime | None = None
    observed_generation: int | None = None


CONDITIONS_SCHEMA_EXTRA: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}
"""Conditions are a map keyed by type, so server-side apply and merges treat them per type."""
