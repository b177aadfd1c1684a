"""The CDI spec (Container Device Interface, spec 0.6.0) that names the allocated devices.

With CDI on, Allocate answers ``vendor/class=ID`` names and the runtime reads the edits for each
name from this spec, which the edge writes into the CDI directory (``/var/run/cdi``).
"""

from __future__ import annotations

from typing import Any

from .model import Inventory

CDI_VERSION = "0.6.0"


def spec(kind: str, inventory: Inventory) -> dict[str, Any]:
    """The spec for every device of the inventory (healthy or not: a name must always resolve)."""
    devices = []
    for device in inventory.devices:
        edits: dict[str, Any] = {}
        if device.nodes:
            edits["deviceNodes"] = [
                {"path": n.container_path, "hostPath": n.host_path, "permissions": n.permissions}
                for n in device.nodes
            ]
        if device.mounts:
            edits["mounts"] = [
                {
                    "hostPath": m.host_path,
                    "containerPath": m.container_path,
                    "options": ["bind", "ro" if m.read_only else "rw"],
                }
                for m in device.mounts
            ]
        if device.envs:
            edits["env"] = [f"{k}={v}" for k, v in device.envs]
        devices.append({"name": device.id, "containerEdits": edits})
    return {"cdiVersion": CDI_VERSION, "kind": kind, "devices": devices}


def file_name(kind: str) -> str:
    """The spec's file name in the CDI directory: one per kind, ours by prefix."""
    return "kubext-" + kind.replace("/", "_") + ".json"
