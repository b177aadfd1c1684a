"""The declarative pod policy: its schema and parsing with precise errors (pure; the file and
its hot reload are :mod:`kubext_webhooks.policy_store`).

A policy file is a Kubernetes-style document::

    apiVersion: webhooks.kubext.io/v1alpha1
    kind: PodPolicy
    metadata: {name: default}
    spec:
      mode: Enforce                       # or Audit: allow, but answer with warnings
      rules:
        allowedRegistries: {registries: [docker.io, gcr.io]}
        requiredLabels: {labels: [app, version, environment]}
        noPrivileged: {enabled: true}
      namespaces:                         # first entry whose names match wins
        - names: ["legacy-*"]
          exemptRules: [allowedRegistries]  # or ["*"] for every rule
          mode: Audit
"""

from __future__ import annotations

import fnmatch
from enum import Enum
from typing import Any, Final, Literal

import pydantic
import yaml
from pydantic.alias_generators import to_camel

from kubext import config

API_VERSION: Final = "webhooks.kubext.io/v1alpha1"
# The public registries of the seed's validating webhook (12.4.1). Its placeholder
# "your-private-registry.com" is left out: a domain anyone could register would be trusted by
# default. A private registry is a policy value, as 12.9.1's single one:
# `allowedRegistries: {registries: [registry.company.com]}`.
DEFAULT_REGISTRIES = [
    "docker.io",
    "gcr.io",
    "quay.io",
    "registry.k8s.io",
]


class PolicyError(Exception):
    """A policy file that cannot be used; the message names the file and the key."""


class Mode(str, Enum):
    ENFORCE = "Enforce"
    AUDIT = "Audit"


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class Toggle(_Model):
    enabled: bool = True


class RegistriesRule(Toggle):
    registries: list[str] = list(DEFAULT_REGISTRIES)

    @pydantic.field_validator("registries")
    @classmethod
    def _registries(cls, value: list[str]) -> list[str]:
        out = []
        for entry in value:
            cleaned = entry.strip().rstrip("/").lower()
            if not cleaned or "://" in cleaned or " " in cleaned:
                raise ValueError(f"{entry!r} is not a registry host (optionally host/path)")
            out.append(cleaned)
        return out


class ResourcesRule(Toggle):
    resources: list[str] = ["cpu", "memory"]

    @pydantic.field_validator("resources")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if any(not name.strip() for name in value):
            raise ValueError("resource names must be non-empty")
        return value


class LabelsRule(Toggle):
    labels: list[str] = ["app", "version", "environment"]


class Rules(_Model):
    allowed_registries: RegistriesRule = RegistriesRule()
    no_privileged: Toggle = Toggle()
    no_run_as_root: Toggle = Toggle()
    no_host_namespaces: Toggle = Toggle()
    resources: ResourcesRule = ResourcesRule()
    required_labels: LabelsRule = LabelsRule()


RULE_NAMES = tuple(to_camel(name) for name in Rules.model_fields)


class NamespaceOverride(_Model):
    names: list[str] = pydantic.Field(min_length=1)
    exempt_rules: list[str] = []
    mode: Mode | None = None

    @pydantic.field_validator("exempt_rules")
    @classmethod
    def _known_rules(cls, value: list[str]) -> list[str]:
        for name in value:
            if name != "*" and name not in RULE_NAMES:
                raise ValueError(f"unknown rule {name!r}; rules are {', '.join(RULE_NAMES)} or '*'")
        return value


class Spec(_Model):
    mode: Mode = Mode.ENFORCE
    rules: Rules = Rules()
    namespaces: list[NamespaceOverride] = []


class Metadata(_Model):
    name: str = "default"


class PodPolicy(_Model):
    api_version: Literal["webhooks.kubext.io/v1alpha1"] = API_VERSION
    kind: Literal["PodPolicy"] = "PodPolicy"
    metadata: Metadata = Metadata()
    spec: Spec = Spec()

    @property
    def name(self) -> str:
        return self.metadata.name

    def for_namespace(self, namespace: str) -> tuple[Mode, frozenset[str]]:
        """The mode and the exempt rule names for ``namespace`` (first matching entry wins)."""
        for entry in self.spec.namespaces:
            if any(fnmatch.fnmatchcase(namespace, pattern) for pattern in entry.names):
                exempt = frozenset(RULE_NAMES if "*" in entry.exempt_rules else entry.exempt_rules)
                return entry.mode or self.spec.mode, exempt
        return self.spec.mode, frozenset()


def parse_policy(text: str, *, source: str) -> PodPolicy:
    """Parse and validate a policy document; :class:`PolicyError` names ``source`` and the key."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise PolicyError(
            f"{source}: not valid YAML{where}: {getattr(exc, 'problem', exc)}"
        ) from None
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: a policy must be a mapping, got {type(data).__name__}")
    try:
        return PodPolicy.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = config.validation_problems(exc)
        raise PolicyError(f"{source}: " + "; ".join(problems)) from None
