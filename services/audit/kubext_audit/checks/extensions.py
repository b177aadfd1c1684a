"""Extension-specific: CSI node plugins have their CSIDriver, device plugins mount the kubelet's
device-plugins directory, APIServices are available, scheduler configurations name plugins that
exist."""

from __future__ import annotations

import re
from collections.abc import Iterator

from kubext_audit.checks import pods
from kubext_audit.checks.model import Emit, Inventory, Obj, Ref, Severity, get, items, rule

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


# kube-scheduler v1.35's in-tree plugins (pkg/scheduler/framework/plugins/names/names.go).
KUBE_SCHEDULER_PLUGINS = frozenset(
    "PrioritySort DefaultBinder DefaultPreemption DynamicResources GangScheduling ImageLocality "
    "InterPodAffinity NodeAffinity NodeDeclaredFeatures NodeName NodePorts "
    "NodeResourcesBalancedAllocation NodeResourcesFit NodeUnschedulable NodeVolumeLimits "
    "PodTopologySpread SchedulingGates TaintToleration VolumeBinding VolumeRestrictions "
    "VolumeZone".split()
)
# services/scheduler's registry (a test holds the two equal; the checks import no service).
KUBEXT_SCHEDULER_PLUGINS = frozenset(
    "PrioritySort NodeName NodeUnschedulable TaintToleration NodeAffinity NodePorts "
    "NodeResourceFit NodeResourcesBalancedAllocation InterPodAffinity PodTopologySpread "
    "DefaultPreemption VolumeBinding".split()
)
SCHEDULER_CONFIG = "KubeSchedulerConfiguration"


def config_consumers(config_map: Obj, inventory: Inventory) -> list[Obj]:
    """The workloads in the ConfigMap's namespace that mount it."""
    namespace, name = get(config_map, "metadata", "namespace"), get(config_map, "metadata", "name")
    found = []
    for workload in inventory.of_kind(*pods.POD_KINDS):
        if get(workload, "metadata", "namespace") != namespace:
            continue
        for _, volume in items(pods.pod_spec(workload), "volumes"):
            sources = [volume, *(s for _, s in items(volume, "projected", "sources"))]
            if any(get(source, "configMap", "name") == name for source in sources):
                found.append(workload)
                break
    return found


def scheduler_plugins(config_map: Obj, inventory: Inventory) -> tuple[str, frozenset[str]] | None:
    """Which scheduler reads the configuration and the plugins it has; None for a scheduler
    binary of another kind (it may have out-of-tree plugins the audit cannot know)."""
    consumers = config_consumers(config_map, inventory)
    if not consumers:
        return "kube-scheduler (no consumer of this ConfigMap in the manifests)", (
            KUBE_SCHEDULER_PLUGINS
        )
    images = [str(c.get("image") or "") for w in consumers for _, c in pods.containers(w)]
    if any("kube-scheduler" in image for image in images):
        return "kube-scheduler", KUBE_SCHEDULER_PLUGINS
    if any("kubext/scheduler" in image or "kubext-scheduler" in image for image in images):
        return "kubext-scheduler", KUBEXT_SCHEDULER_PLUGINS
    return None


def unknown_plugins(profile: dict[str, object], known: frozenset[str]) -> list[str]:
    """``plugins.<point>.enabled|disabled[i] Name`` and ``pluginConfig[i] Name`` for each name
    the scheduler does not have (``*`` disables every plugin: always valid)."""
    unknown = []
    plugins = profile.get("plugins")
    for point, plugin_set in plugins.items() if isinstance(plugins, dict) else ():
        for which in ("enabled", "disabled"):
            for index, plugin in items(plugin_set, which):
                name = str(plugin.get("name"))
                if name not in known and name != "*":
                    unknown.append(f"plugins.{point}.{which}[{index}] {name}")
    for index, config in items(profile, "pluginConfig"):
        if str(config.get("name")) not in known:
            unknown.append(f"pluginConfig[{index}] {config.get('name')}")
    return unknown


@rule(
    "EXT004",
    Severity.ERROR,
    ("ConfigMap",),
    title="a scheduler's configuration names plugins that exist",
    rationale="kube-scheduler (and a scheduler built on its framework) refuses to start with a "
    "profile that enables, disables or configures a plugin it does not have: the scheduler "
    "crash-loops and no pod of its profiles is scheduled.",
    fix="Use the plugin names of the scheduler that reads the configuration (kube-scheduler's "
    "in-tree names, or those its --help lists), or remove the entry.",
)
def scheduler_config_plugins(obj: Obj, inventory: Inventory) -> Iterator[Emit]:
    ref = Ref.of(obj)
    for (owner, key), document in inventory.embedded.items():
        if owner != ref or document.get("kind") != SCHEDULER_CONFIG:
            continue
        reader = scheduler_plugins(obj, inventory)
        if reader is None:
            return
        scheduler, known = reader
        for _, profile in items(document, "profiles"):
            unknown = unknown_plugins(profile, known)
            if unknown:
                yield Emit(
                    ("data", key),
                    f"profile {profile.get('schedulerName', 'default-scheduler')}: "
                    f"{', '.join(unknown)}: no such plugin in {scheduler}",
                )


RULES = (csi_driver_object, device_plugin_mount, api_service_available, scheduler_config_plugins)
