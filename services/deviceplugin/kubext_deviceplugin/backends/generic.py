"""Devices by path glob (like squat/generic-device-plugin): groups, replicas, mounts, optional paths.

Each match of a group's first path is one device; the group's other paths are given to every
device of the group (a shared control node, a library dir). A device's ID says which path it is:
the group's name plus what the glob's wildcards matched (``/dev/fake[0-9]`` matching
``/dev/fake2`` in group ``fake`` is ``fake2``; a literal first path is ``<name>0``), so unplugging
one device removes exactly its ID, a replug brings the same ID back and no other ID moves (the
kubelet keeps allocations by ID: a shifted ID would hand a pod another device). With ``count`` > 1
each device is offered that many times (``<ID>-<replica>``), for devices several containers may
share. A device whose required path is gone disappears (a glob match unplugged) or, for a literal
first path, stays listed as Unhealthy until it is back.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import logging
import os

from ..config import GenericConfig, GroupConfig, PathConfig
from ..core import model

log = logging.getLogger(__name__)
_GLOB_CHARS = set("*?[")


def is_glob(pattern: str) -> bool:
    return bool(_GLOB_CHARS & set(pattern))


@functools.lru_cache(maxsize=256)  # a handful of patterns, asked on every scan
def literal_ends(pattern: str) -> tuple[str, str]:
    """The literal text of ``pattern`` before its first wildcard and after its last one."""
    first, last_end, i = len(pattern), len(pattern), 0
    while i < len(pattern):
        end = i + 1
        if pattern[i] == "[":  # a set, as fnmatch reads it: ']' first is a member
            j = i + 1 + (pattern[i + 1 : i + 2] == "!")
            j += pattern[j : j + 1] == "]"
            close = pattern.find("]", j)
            if close < 0:  # a lone '[' is literal
                i += 1
                continue
            end = close + 1
        elif pattern[i] not in "*?":
            i += 1
            continue
        first, last_end = min(first, i), end
        i = end
    if first == len(pattern):
        return pattern, ""
    return pattern[:first], pattern[last_end:]


def matched_part(pattern: str, path: str) -> str:
    """What the wildcards of ``pattern`` matched in ``path`` (the whole path if it differs)."""
    prefix, suffix = literal_ends(pattern)
    if path.startswith(prefix) and path.endswith(suffix) and len(path) >= len(prefix + suffix):
        return path[len(prefix) : len(path) - len(suffix)]
    return path.lstrip("/")


class Generic:
    def __init__(self, cfg: GenericConfig) -> None:
        self._cfg = cfg
        self._root = cfg.root.rstrip("/")
        self._reported_clashes: set[str] = set()

    def _matches(self, pattern: str) -> list[str]:
        """The host paths (as the host names them) that ``pattern`` matches under the root."""
        found = glob.glob(glob.escape(self._root) + pattern) if is_glob(pattern) else []
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

    def _group(self, group: GroupConfig) -> list[tuple[str, str, model.Device]]:
        """The group's devices, each with the ID part and replica suffix it was named from."""
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
        suffixes = [f"-{r}" for r in range(group.count)] if group.count > 1 else [""]
        devices = []
        for primary in primaries:
            nodes, mounts = self._edits(first, [primary])
            part = matched_part(first.path, primary) if is_glob(first.path) else "0"
            for suffix in suffixes:
                device = model.Device(
                    model.derived_id(group.name, part, suffix),
                    healthy=healthy,
                    nodes=tuple(nodes + shared_nodes),
                    mounts=tuple(mounts + shared_mounts),
                )
                devices.append((part, suffix, device))
        return devices

    def scan(self) -> model.Inventory:
        devices: list[model.Device] = []
        taken: set[str] = set()
        for group in self._cfg.groups:
            for part, suffix, device in self._group(group):
                # Two groups may name different paths alike (group "tty" matching "10", group
                # "tty1" matching "0"): the earlier group keeps the ID, the later gets a hash.
                device_id, salt = device.id, 0
                while device_id in taken:
                    salt += 1
                    device_id = model.derived_id(group.name, part, suffix, salt=salt)
                if device_id != device.id:
                    if device.id not in self._reported_clashes:
                        self._reported_clashes.add(device.id)
                        log.warning(
                            "device ID clash: renamed",
                            extra={"id": device.id, "renamed": device_id, "group": group.name},
                        )
                    device = dataclasses.replace(device, id=device_id)
                taken.add(device_id)
                devices.append(device)
        return model.Inventory.of(devices)

    def close(self) -> None:
        pass
