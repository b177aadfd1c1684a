"""Devices by path glob (like squat/generic-device-plugin): groups, replicas, mounts, optional paths.

Each match of a group's first path is one device (``<name><index>``, by sorted path); the group's
other paths are given to every device of the group (a shared control node, a library dir). With
``count`` > 1 each device is offered that many times (``<name><index>-<replica>``), for devices
several containers may share. A device whose required path is gone disappears (a glob match
unplugged) or, for a literal first path, stays listed as Unhealthy until it is back.
"""

from __future__ import annotations

import glob
import os

from ..config import GenericConfig, GroupConfig, PathConfig
from ..core import model

_GLOB_CHARS = set("*?[")


def is_glob(pattern: str) -> bool:
    return bool(_GLOB_CHARS & set(pattern))


class Generic:
    def __init__(self, cfg: GenericConfig) -> None:
        self._cfg = cfg
        self._root = cfg.root.rstrip("/")

    def _matches(self, pattern: str) -> list[str]:
        """The host paths (as the host names them) that ``pattern`` matches under the root."""
        found = glob.glob(self._root + pattern) if is_glob(pattern) else []
        if not is_glob(pattern) and os.path.exists(self._root + pattern):
            found = [self._root + pattern]
        return sorted(p[len(self._root) :] or "/" for p in found)

    def missing_patterns(self) -> list[str]:
        """Required first paths that match nothing now (a config mistake at start)."""
        return [
            g.paths[0].path
            for g in self._cfg.groups
            if not g.paths[0].optional and not self._matches(g.paths[0].path)
        ]

    @staticmethod
    def _edits(
        spec: PathConfig, host_paths: list[str]
    ) -> tuple[list[model.DeviceNode], list[model.Mount]]:
        nodes, mounts = [], []
        for host in host_paths:
            # A glob's matches keep their own names; a literal path may be renamed by mount_path.
            inside = spec.mount_path if spec.mount_path and len(host_paths) == 1 else host
            if spec.type == "device":
                nodes.append(model.DeviceNode(host, inside, spec.permissions))
            else:
                mounts.append(model.Mount(host, inside, spec.read_only))
        return nodes, mounts

    def _group(self, group: GroupConfig) -> list[model.Device]:
        first, shared = group.paths[0], group.paths[1:]
        primaries = self._matches(first.path)
        healthy = True
        if not primaries and not is_glob(first.path) and not first.optional:
            primaries, healthy = [first.path], False  # a literal node that is gone: Unhealthy
        shared_nodes: list[model.DeviceNode] = []
        shared_mounts: list[model.Mount] = []
        for spec in shared:
            matches = self._matches(spec.path)
            if not matches and not spec.optional:
                healthy = False
            nodes, mounts = self._edits(spec, matches)
            shared_nodes += nodes
            shared_mounts += mounts
        devices = []
        for index, primary in enumerate(primaries):
            nodes, mounts = self._edits(first, [primary])
            ids = [f"{group.name}{index}"]
            if group.count > 1:
                ids = [f"{group.name}{index}-{r}" for r in range(group.count)]
            for device_id in ids:
                devices.append(
                    model.Device(
                        device_id,
                        healthy=healthy,
                        nodes=tuple(nodes + shared_nodes),
                        mounts=tuple(mounts + shared_mounts),
                    )
                )
        return devices

    def scan(self) -> model.Inventory:
        return model.Inventory.of([d for g in self._cfg.groups for d in self._group(g)])

    def close(self) -> None:
        pass
