"""Device discovery, one backend per kind, chosen by a resource's config ``backend`` key.

A backend only discovers: ``scan()`` returns the current inventory (devices and health); the
lifecycle (``plugin``) polls it and tells the kubelet about changes. Backends read the host
through an injectable root or binding, so tests give them a fake device tree or a fake NVML.
"""

from __future__ import annotations

from typing import Protocol

from ..config import ResourceConfig
from ..core import allocation, model


class Backend(Protocol):
    def scan(self) -> model.Inventory: ...

    def close(self) -> None: ...


def ids_env(resource: ResourceConfig) -> str:
    if resource.ids_env:
        return resource.ids_env
    return "NVIDIA_VISIBLE_DEVICES" if resource.backend == "nvidia" else "KUBEXT_DEVICES"


def allocate_options(resource: ResourceConfig) -> allocation.AllocateOptions:
    return allocation.AllocateOptions(
        ids_env=ids_env(resource),
        envs=dict(resource.envs),
        annotations=dict(resource.annotations),
        cdi_kind=resource.name if resource.cdi.enabled else None,
    )


def build(resource: ResourceConfig) -> Backend:
    """The backend a resource's config names (NVML is imported only when asked for)."""
    if resource.backend == "simulated":
        from . import simulated

        return simulated.Simulated(resource.simulated)
    if resource.backend == "generic":
        from . import generic

        return generic.Generic(resource.generic)
    from . import nvidia

    return nvidia.Nvidia(resource.nvidia)
