"""Configuration of the deviceplugin service (file + KUBEXT_DEVICEPLUGIN_* environment)."""

from __future__ import annotations

import re
from typing import Literal

import pydantic

from kubext import cli, config

from .core import model

# An extended resource name: a DNS subdomain prefix and a name (e.g. example.com/gpu).
_RESOURCE = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")


class SimulatedConfig(config.StrictModel):
    # Devices <id_prefix>0 .. <id_prefix>N-1, all healthy, on no NUMA node.
    count: pydantic.PositiveInt = 2
    id_prefix: str = "gpu-"


class PathConfig(config.StrictModel):
    # An absolute path or glob, looked up under generic.root.
    path: str
    # device: a device node given with cgroup permissions; mount: a bind mount.
    type: Literal["device", "mount"] = "device"
    # Where the container sees it; empty means the same path.
    mount_path: str = ""
    permissions: str = "rw"
    read_only: bool = True  # mounts only
    # A missing optional path leaves the device healthy.
    optional: bool = False

    @pydantic.field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must be an absolute path or glob")
        return value

    @pydantic.field_validator("permissions")
    @classmethod
    def _permissions(cls, value: str) -> str:
        if not value or set(value) - set("rwm") or len(set(value)) != len(value):
            raise ValueError("must be some of r, w, m (e.g. rw or rwm)")
        return value


class GroupConfig(config.StrictModel):
    # Device IDs are <name><what the first path's wildcards matched>[-<replica>] (<name>0 for a
    # literal path): stable across unplug and replug.
    name: str
    # Each match of the first path is one device; the other paths go to every device (shared).
    paths: list[PathConfig] = pydantic.Field(min_length=1)
    # Replicas of each device (a shared device schedulable this many times).
    count: pydantic.PositiveInt = 1


class GenericConfig(config.StrictModel):
    # Where the host's / is seen (a hostPath mount); the specs name the host's own paths.
    root: str = "/"
    groups: list[GroupConfig] = []


class NvidiaConfig(config.StrictModel):
    # List MIG devices instead of their parent GPUs when MIG mode is on.
    mig: bool = True
    # Xids that do not make a GPU unhealthy (added to NVIDIA's application-error list).
    ignored_xids: list[int] = []
    driver_root: str = "/"


class CdiConfig(config.StrictModel):
    enabled: bool = False
    dir: str = "/var/run/cdi"


class ResourceConfig(config.StrictModel):
    name: str = "example.com/gpu"
    backend: Literal["simulated", "generic", "nvidia"] = "simulated"
    pre_start_required: bool = False
    preferred_allocation: bool = True
    # The variable listing the allocated IDs; empty: KUBEXT_DEVICES (NVIDIA_VISIBLE_DEVICES for nvidia).
    ids_env: str = ""
    envs: dict[str, str] = {}
    annotations: dict[str, str] = {}
    simulated: SimulatedConfig = SimulatedConfig()
    generic: GenericConfig = GenericConfig()
    nvidia: NvidiaConfig = NvidiaConfig()
    cdi: CdiConfig = CdiConfig()

    @pydantic.field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _RESOURCE.fullmatch(value) or value.startswith("kubernetes.io/"):
            raise ValueError("must be an extended resource name such as example.com/gpu")
        return value

    @pydantic.model_validator(mode="after")
    def _ids_fit(self) -> ResourceConfig:
        if self.backend == "simulated":
            longest = f"{self.simulated.id_prefix}{self.simulated.count - 1}"
            problem = model.id_problem(longest)
        elif self.backend == "generic":
            if not self.generic.groups:
                raise ValueError("generic.groups: the generic backend needs at least one group")
            names = [g.name for g in self.generic.groups]
            if len(set(names)) != len(names):
                raise ValueError("generic.groups: group names must be unique")
            # The shortest ID a group can give, and a hashed one (a path outside the alphabet).
            problem = next(
                (
                    p
                    for g in self.generic.groups
                    for part in ("0", "?")
                    if (p := model.id_problem(model.derived_id(g.name, part, f"-{g.count}")))
                ),
                None,
            )
        else:
            problem = None
        if problem:
            raise ValueError(problem)
        return self


class Config(cli.ServiceConfig):
    """Every key the deviceplugin service accepts; unknown keys are errors."""

    # The kubelet's device-plugin directory: kubelet.sock and our sockets.
    device_plugin_dir: str = "/var/lib/kubelet/device-plugins"
    kubelet_socket: str = "kubelet.sock"
    # Seconds between discovery scans (health and inventory changes reach the kubelet this fast).
    scan_interval: float = pydantic.Field(default=0.25, gt=0, le=1)
    resources: list[ResourceConfig] = [ResourceConfig()]

    @pydantic.field_validator("resources")
    @classmethod
    def _unique(cls, value: list[ResourceConfig]) -> list[ResourceConfig]:
        if not value:
            raise ValueError("at least one resource")
        names = [r.name for r in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate resource names: {', '.join(duplicates)}")
        return value
