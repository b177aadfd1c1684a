"""Pod requests and node allocatable, computed exactly as kube-scheduler does.

Pod requests (k8s.io/component-helpers resource.PodRequests): the app containers summed; each
init container taken by maximum, since they run one at a time; restartable (sidecar) init
containers keep running, so they add to the sum and to every later init container; pod-level
``spec.resources.requests`` replace the containers' figure for cpu and memory; then
``spec.overhead`` is added. Sums are exact (Decimal) before rounding up to millicores/bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from decimal import ROUND_CEILING, Decimal
from typing import Any

from kubext import quantity

CPU = "cpu"
MEMORY = "memory"
EPHEMERAL_STORAGE = "ephemeral-storage"
PODS = "pods"
# What the scorers assume for a container that requests no cpu/memory at all (the scheduler's
# DefaultMilliCPURequest and DefaultMemoryRequest), so best-effort pods still spread.
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024
_NON_MISSING = {CPU: Decimal("0.1"), MEMORY: Decimal(DEFAULT_MEMORY)}
_POD_LEVEL = (CPU, MEMORY)

Pod = Mapping[str, Any]


class InvalidObject(ValueError):
    """A pod or node field the scheduler cannot read (an invalid quantity, a wrong type)."""


@dataclasses.dataclass
class Resources:
    """Integer amounts: millicores, bytes, and extended resources (``example.com/gpu``) by name."""

    milli_cpu: int = 0
    memory: int = 0
    ephemeral_storage: int = 0
    scalar: dict[str, int] = dataclasses.field(default_factory=dict)

    def add(self, other: Resources) -> None:
        self.milli_cpu += other.milli_cpu
        self.memory += other.memory
        self.ephemeral_storage += other.ephemeral_storage
        for name, amount in other.scalar.items():
            self.scalar[name] = self.scalar.get(name, 0) + amount

    def subtract(self, other: Resources) -> None:
        self.milli_cpu -= other.milli_cpu
        self.memory -= other.memory
        self.ephemeral_storage -= other.ephemeral_storage
        for name, amount in other.scalar.items():
            self.scalar[name] = self.scalar.get(name, 0) - amount

    def get(self, name: str) -> int:
        if name == CPU:
            return self.milli_cpu
        if name == MEMORY:
            return self.memory
        if name == EPHEMERAL_STORAGE:
            return self.ephemeral_storage
        return self.scalar.get(name, 0)

    def is_zero(self) -> bool:
        return not (
            self.milli_cpu or self.memory or self.ephemeral_storage or any(self.scalar.values())
        )

    def copy(self) -> Resources:
        return dataclasses.replace(self, scalar=dict(self.scalar))


def _quantities(where: str, raw: object) -> dict[str, Decimal]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidObject(f"{where}: expected a map of resource quantities")
    out = {}
    for name, text in raw.items():
        try:
            out[str(name)] = quantity.parse_quantity(text).value
        except quantity.QuantityError as exc:
            raise InvalidObject(f"{where}.{name}: {exc}") from None
    return out


def _add(into: dict[str, Decimal], more: Mapping[str, Decimal]) -> None:
    for name, value in more.items():
        into[name] = into.get(name, Decimal(0)) + value


def _max(into: dict[str, Decimal], other: Mapping[str, Decimal]) -> None:
    for name, value in other.items():
        if value > into.get(name, Decimal(0)):
            into[name] = value


def _containers(spec: Mapping[str, Any], field: str) -> list[Mapping[str, Any]]:
    containers = spec.get(field) or []
    if not isinstance(containers, list) or not all(isinstance(c, Mapping) for c in containers):
        raise InvalidObject(f"spec.{field}: expected a list of containers")
    return containers


def _container_requests(
    where: str, container: Mapping[str, Any], non_missing: bool
) -> dict[str, Decimal]:
    resources = container.get("resources") or {}
    if not isinstance(resources, Mapping):
        raise InvalidObject(f"{where}.resources: expected a map")
    requests = _quantities(f"{where}.resources.requests", resources.get("requests"))
    if non_missing:
        for name, default in _NON_MISSING.items():
            requests.setdefault(name, default)
    return requests


def _is_sidecar(container: Mapping[str, Any]) -> bool:
    return container.get("restartPolicy") == "Always"


def pod_request_quantities(pod: Pod, *, non_missing: bool = False) -> dict[str, Decimal]:
    """The pod's effective requests per resource name, exact.

    ``non_missing`` puts the scorers' defaults (100m cpu, 200Mi memory) in for a container
    that names no cpu/memory request, as kube-scheduler's NonZeroRequested does.
    """
    spec = pod.get("spec") or {}
    if not isinstance(spec, Mapping):
        raise InvalidObject("spec: expected a map")
    reqs: dict[str, Decimal] = {}
    for i, container in enumerate(_containers(spec, "containers")):
        _add(reqs, _container_requests(f"spec.containers[{i}]", container, non_missing))
    sidecars: dict[str, Decimal] = {}
    init_max: dict[str, Decimal] = {}
    for i, container in enumerate(_containers(spec, "initContainers")):
        own = _container_requests(f"spec.initContainers[{i}]", container, non_missing)
        if _is_sidecar(container):
            _add(reqs, own)
            _add(sidecars, own)
            running = dict(sidecars)
        else:
            # A regular init container runs beside the sidecars started before it.
            running = dict(own)
            _add(running, sidecars)
        _max(init_max, running)
    _max(reqs, init_max)
    pod_resources = spec.get("resources") or {}
    if isinstance(pod_resources, Mapping) and pod_resources.get("requests"):
        pod_level = _quantities("spec.resources.requests", pod_resources.get("requests"))
        for name in _POD_LEVEL:
            if name in pod_level:
                reqs[name] = pod_level[name]
    _add(reqs, _quantities("spec.overhead", spec.get("overhead")))
    return reqs


def _to_int(name: str, value: Decimal) -> int:
    # MilliValue for cpu, Value for the rest: both round up.
    scaled = value * 1000 if name == CPU else value
    return int(scaled.to_integral_value(rounding=ROUND_CEILING))


def to_resources(quantities: Mapping[str, Decimal], *, skip: Iterable[str] = ()) -> Resources:
    out = Resources()
    skipped = set(skip)
    for name, value in quantities.items():
        if name in skipped:
            continue
        amount = _to_int(name, value)
        if name == CPU:
            out.milli_cpu = amount
        elif name == MEMORY:
            out.memory = amount
        elif name == EPHEMERAL_STORAGE:
            out.ephemeral_storage = amount
        else:
            out.scalar[name] = amount
    return out


def pod_requests(pod: Pod, *, non_missing: bool = False) -> Resources:
    """The pod's requests as integers (``pods`` is not a request: each pod counts as one)."""
    return to_resources(pod_request_quantities(pod, non_missing=non_missing), skip=(PODS,))


@dataclasses.dataclass(frozen=True)
class Allocatable:
    resources: Resources
    allowed_pods: int


def node_allocatable(node: Mapping[str, Any]) -> Allocatable:
    """``status.allocatable``; a node that reports none has room for nothing (as upstream)."""
    status = node.get("status") or {}
    raw = status.get("allocatable") if isinstance(status, Mapping) else None
    quantities = _quantities("status.allocatable", raw)
    pods = quantities.get(PODS, Decimal(0))
    return Allocatable(to_resources(quantities, skip=(PODS,)), _to_int(PODS, pods))
