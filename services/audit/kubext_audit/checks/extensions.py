"""Extension-specific: CSI node plugins have their CSIDriver, device plugins mount the kubelet's
device-plugins directory, APIServices are available."""

from __future__ import annotations

import re
from collections.abc import Iterator

from kubext_audit.checks import pods
from kubext_audit.checks.model import Emit, Inventory, Obj, Severity, get, items, rule

DEVICE_PLUGINS_DIR = "/var/lib/kubelet/device-plugins"
# node-driver-registrar's --kubelet-registration-path=/var/lib/kubelet/plugins/<driver>/csi.sock
REGISTRATION_PATH = re.compile(r"--kubelet-registration-path=/var/lib/kubelet/plugins/([^/]+)/")
DEVICE_PLUGIN_MARKS = ("device-plugin", "deviceplugin")


def csi_driver_names(obj: Obj) -> list[str]:
    names: list[str] = []
    for _, container in pods.containers(obj):
        for arg in container.get("args") or []:
            match = REGISTRATION_PATH.match(str(arg))
            if match:
                names.append(match.group(1))
    return names


@rule(
    "EXT001",
    Severity.ERROR,
    ("DaemonSet",),
    title="a CSIDriver object for each CSI node plugin",
    rationale="Without a CSIDriver the kubelet applies defaults (attach required, no pod info "
    "on mount, no fsGroup policy) that the driver may not expect: volumes wait for an attach "
    "that never comes.",
    fix="Ship a storage.k8s.io/v1 CSIDriver named after the driver with its attachRequired, "
    "podInfoOnMount and volumeLifecycleModes.",
)
def csi_driver_object(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    if pods.node_agent(obj) != "CSI node plugin":
        return
    drivers = {str(get(d, "metadata", "name")) for d in inventory.of_kind("CSIDriver")}
    names = csi_driver_names(obj)
    missing = [name for name in names if name not in drivers]
    if missing or (not names and not drivers):
        yield Emit(
            ("spec", "template", "spec", "containers"),
            f"no CSIDriver {', '.join(missing) or 'object'} for this CSI node plugin",
        )


def looks_like_device_plugin(obj: Obj) -> bool:
    meta = obj.get("metadata") or {}
    words = [str(meta.get("name", "")), *map(str, (meta.get("labels") or {}).values())]
    return any(mark in word for word in words for mark in DEVICE_PLUGIN_MARKS)


@rule(
    "EXT002",
    Severity.ERROR,
    ("DaemonSet",),
    title="device plugins mount the device-plugins directory",
    rationale="A device plugin registers through the kubelet's socket in "
    "/var/lib/kubelet/device-plugins and serves its own socket there: without the mount it "
    "can never register, and the node advertises no devices.",
    fix="Mount hostPath /var/lib/kubelet/device-plugins into the plugin's container.",
)
def device_plugin_mount(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    if not looks_like_device_plugin(obj):
        return
    if not any(p.rstrip("/") == DEVICE_PLUGINS_DIR for p in pods.host_paths(obj)):
        yield Emit(("spec", "template", "spec", "volumes"), f"no hostPath {DEVICE_PLUGINS_DIR}")


@rule(
    "EXT003",
    Severity.ERROR,
    ("APIService",),
    title="APIServices are Available",
    rationale="An unavailable aggregated API breaks discovery for every client (kubectl, "
    "namespace deletion and garbage collection stall on it).",
    fix="Fix the Service behind spec.service (its pods, endpoints and TLS), or delete the "
    "APIService.",
    live_only=True,
)
def api_service_available(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    if not get(obj, "spec", "service"):
        return  # a local (built-in) API group
    for index, condition in items(obj, "status", "conditions"):
        if condition.get("type") == "Available" and condition.get("status") != "True":
            yield Emit(
                ("status", "conditions", index),
                f"not Available: {condition.get('reason')}: {condition.get('message')}",
            )
            return


RULES = (csi_driver_object, device_plugin_mount, api_service_available)
