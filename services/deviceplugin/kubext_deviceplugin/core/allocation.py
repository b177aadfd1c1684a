"""Allocation decisions: what a container gets for its devices, and which devices to prefer."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from .errors import Code, PluginError
from .model import Device, DeviceNode, Inventory, Mount

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class AllocateOptions:
    """How one resource describes an allocation to the container runtime."""

    # The variable that lists the allocated IDs, comma-separated (e.g. NVIDIA_VISIBLE_DEVICES).
    ids_env: str = "KUBEXT_DEVICES"
    envs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # The CDI kind (vendor/class) when CDI is on: devices go as CDI names instead of specs.
    cdi_kind: str | None = None


@dataclasses.dataclass(frozen=True)
class ContainerAllocation:
    """One ContainerAllocateResponse, as plain values."""

    envs: dict[str, str]
    mounts: tuple[Mount, ...]
    devices: tuple[DeviceNode, ...]
    annotations: dict[str, str]
    cdi_devices: tuple[str, ...]


def check(inventory: Inventory, ids: Sequence[str]) -> list[Device]:
    """The devices ``ids`` name, or a PluginError naming every unknown or unhealthy one."""
    if not ids:
        raise PluginError(Code.INVALID_ARGUMENT, "no device IDs in the request")
    repeated = sorted({i for i in ids if list(ids).count(i) > 1})
    if repeated:
        raise PluginError(Code.INVALID_ARGUMENT, f"device IDs repeated: {', '.join(repeated)}")
    known = inventory.by_id()
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise PluginError(Code.NOT_FOUND, f"unknown device IDs: {', '.join(unknown)}")
    unhealthy = [i for i in ids if not known[i].healthy]
    if unhealthy:
        raise PluginError(Code.FAILED_PRECONDITION, f"unhealthy device IDs: {', '.join(unhealthy)}")
    return [known[i] for i in ids]


def _unique(items: list[T], key: Callable[[T], str]) -> tuple[T, ...]:
    """First of each key, in order: devices sharing a node (a control device) list it once."""
    seen: dict[str, T] = {}
    for item in items:
        seen.setdefault(key(item), item)
    return tuple(seen.values())


def allocate(
    inventory: Inventory, ids: Sequence[str], options: AllocateOptions
) -> ContainerAllocation:
    """The response for one container. Pure: the inventory is not changed by allocating."""
    devices = check(inventory, ids)
    envs = dict(options.envs)
    for device in devices:
        envs.update(device.envs)
    envs[options.ids_env] = ",".join(ids)
    nodes = _unique([n for d in devices for n in d.nodes], key=lambda n: n.container_path)
    mounts = _unique([m for d in devices for m in d.mounts], key=lambda m: m.container_path)
    cdi: tuple[str, ...] = ()
    if options.cdi_kind:
        cdi, nodes = tuple(f"{options.cdi_kind}={i}" for i in ids), ()
    return ContainerAllocation(envs, mounts, nodes, dict(options.annotations), cdi)


def preferred(
    inventory: Inventory, available: Sequence[str], must_include: Sequence[str], size: int
) -> list[str]:
    """``size`` devices from ``available`` holding ``must_include``, packed on few NUMA nodes.

    The must-include devices come first; the rest are taken from the NUMA nodes they already use,
    then from the node that fits the remainder most tightly (leaving the bigger nodes whole for
    bigger requests), then from the fullest nodes. Only healthy, known devices are chosen; the
    answer is a hint, so a request that cannot be met gets the best partial answer.
    """
    known = inventory.by_id()
    chosen = [i for i in must_include if i in known][:size]
    pool = [i for i in sorted(set(available)) if i in known and known[i].healthy]
    pool = [i for i in pool if i not in chosen]
    by_numa: dict[int | None, list[str]] = {}
    for device_id in pool:
        by_numa.setdefault(known[device_id].numa_node, []).append(device_id)

    def take(numa: int | None) -> None:
        while by_numa.get(numa) and len(chosen) < size:
            chosen.append(by_numa[numa].pop(0))

    for numa in sorted({known[i].numa_node for i in chosen}, key=lambda n: (n is None, n or 0)):
        take(numa)
    while len(chosen) < size and any(by_numa.values()):
        need = size - len(chosen)
        candidates = [(len(ids), numa) for numa, ids in by_numa.items() if ids]
        fitting = [c for c in candidates if c[0] >= need]
        if fitting:  # the tightest node that holds the rest
            _, numa = min(fitting, key=lambda c: (c[0], c[1] is None, c[1] or 0))
        else:  # none holds it all: fill from the fullest node first
            _, numa = max(candidates, key=lambda c: (c[0], c[1] is not None, -(c[1] or 0)))
        take(numa)
    return chosen
