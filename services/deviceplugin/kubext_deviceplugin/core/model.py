"""The device inventory a backend discovers: devices, their health, NUMA node and host paths."""

from __future__ import annotations

import dataclasses
import hashlib
import re

HEALTHY = "Healthy"
UNHEALTHY = "Unhealthy"
MAX_ID_LENGTH = 63  # the kubelet's limit on a device ID
# A device ID is used in env values, file names and CDI names: keep it to a safe alphabet.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# A name part that maps onto an ID one-to-one: '/' becomes '.', which such a part never holds.
_PLAIN_PART = re.compile(r"[A-Za-z0-9_/-]*")
_OUTSIDE_ID = re.compile(r"[^A-Za-z0-9._-]")
ID_HASH_CHARS = 10


@dataclasses.dataclass(frozen=True)
class DeviceNode:
    """A host device node given to the container (a cgroup device rule plus the node itself)."""

    host_path: str
    container_path: str
    permissions: str = "rw"


@dataclasses.dataclass(frozen=True)
class Mount:
    """A host path bind-mounted into the container."""

    host_path: str
    container_path: str
    read_only: bool = True


@dataclasses.dataclass(frozen=True)
class Device:
    """One schedulable unit: ``nodes`` and ``mounts`` are what a container that gets it needs.

    Allocation never changes a device: an allocated device stays Healthy (the kubelet tracks what
    is in use; Unhealthy means "broken", and would take it out of the node's allocatable).
    """

    id: str
    healthy: bool = True
    numa_node: int | None = None
    nodes: tuple[DeviceNode, ...] = ()
    mounts: tuple[Mount, ...] = ()
    # Environment for the container, merged over every allocated device (e.g. per-device paths).
    envs: tuple[tuple[str, str], ...] = ()

    @property
    def health(self) -> str:
        return HEALTHY if self.healthy else UNHEALTHY


@dataclasses.dataclass(frozen=True)
class Inventory:
    """Every device of one resource, sorted by ID, as the kubelet sees them in ListAndWatch."""

    devices: tuple[Device, ...] = ()

    @classmethod
    def of(cls, devices: list[Device] | tuple[Device, ...]) -> Inventory:
        ordered = tuple(sorted(devices, key=lambda d: d.id))
        ids = [d.id for d in ordered]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate device IDs: {', '.join(duplicates)}")
        return cls(ordered)

    def by_id(self) -> dict[str, Device]:
        return {d.id: d for d in self.devices}

    def counts(self) -> dict[str, int]:
        """Devices by health, for the metrics."""
        healthy = sum(d.healthy for d in self.devices)
        return {HEALTHY: healthy, UNHEALTHY: len(self.devices) - healthy}


def id_problem(device_id: str) -> str | None:
    """Why ``device_id`` cannot be a kubelet device ID, or None when it can."""
    if len(device_id) > MAX_ID_LENGTH:
        return f"device ID {device_id!r} is longer than {MAX_ID_LENGTH} characters"
    if not _ID.fullmatch(device_id):
        return f"device ID {device_id!r} must be letters, digits, '.', '_' or '-'"
    return None


def derived_id(prefix: str, part: str, suffix: str = "", *, salt: int = 0) -> str:
    """A stable device ID from what the device is: ``prefix`` + ``part`` + ``suffix``.

    ``part`` (e.g. what a glob's wildcards matched in a device's path) is kept as it is when it
    fits the ID alphabet ('/' as '.') and the ID stays within ``MAX_ID_LENGTH``; otherwise it is
    made safe and cut, and a hash of the whole ``part`` keeps IDs distinct. The same input always
    gives the same ID, whatever else exists. ``salt`` > 0 picks another hashed ID, for the rare
    clash the caller finds between devices. ``prefix`` must start with a letter or digit.
    """
    if not salt and _PLAIN_PART.fullmatch(part):
        plain = prefix + part.replace("/", ".")
        if len(plain) + len(suffix) <= MAX_ID_LENGTH:
            return plain + suffix
    digest = hashlib.sha256(f"{prefix}\0{part}\0{salt}".encode()).hexdigest()[:ID_HASH_CHARS]
    readable = _OUTSIDE_ID.sub("_", prefix + part)
    keep = max(1, MAX_ID_LENGTH - len(suffix) - 1 - ID_HASH_CHARS)
    return f"{readable[:keep]}-{digest}{suffix}"
