"""The services as Helm releases whose pods run on the rig's real node: what `./kubext up` installs
when the cluster has that node (without it the services run as host processes, `stack`).

Every service's chart (helm/<svc>) is installed as release ``kubext-<svc>`` in ``kubext-system``;
a release name holding the chart's name is the objects' name too (kubext-operator,
kubext-webhooks, ...): the names the operator chart's Database CRD points its conversion webhook
at. The images are the ones `./pants package services/<svc>:image`
built, pushed to the node's registry (``images.push``) and pulled from it by the node's containerd.
The values are pure functions of the cluster (``values``); the I/O is helm and kubectl.

What each release is configured to do here:
- webhooks: the pod policy that trusts the node's registry (``policy`` value), self-managed TLS,
  the CA injected into both webhook configurations and the Database CRD; the API server calls the
  pods through their Service;
- csi: no upstream sidecar (their images cannot be pulled here): the driver registers with the
  kubelet itself and provisions with its built-in provisioner; the StorageClass ``kubext-local``
  is the cluster's default; its state under the rig's node dir, its kubelet dir the node's;
- deviceplugin: 4 simulated ``example.com/gpu`` devices;
- operator: its pods (WebApps, Databases, their Jobs) on the real node, PostgreSQL from the node's
  registry (``samples.operator_config``);
- scheduler: standalone, the seed's ``custom-scheduler`` profile
  (services/scheduler/deploy/custom-scheduler.yaml);
- cni: installed first and the node's pod network from then on, as a CNI DaemonSet is on a
  cluster: the rig's own daemon (which networked the node until then) stops
  (``node.release_network``); the release's pod, on the host network, installs its launcher into
  containerd's CNI bin dir, writes its conflist (the same network: bridge, range, IPAM data,
  portmap) into containerd's conf dir and serves the launcher's socket; every pod after it gets
  its address from the release's daemon.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from kubext_rig import cluster, images, node, real_node_csi, tools
from kubext_rig import samples as real_samples

NAMESPACE = "kubext-system"
# The network first (every other pod needs it; its own pod is on the host network, and the
# webhooks leave the release namespace out); then the webhooks (the operator's CRD conversion and
# every admitted pod go through them); storage and devices before the samples need them.
ORDER = ("cni", "webhooks", "csi", "deviceplugin", "operator", "scheduler")
INSTALL_TIMEOUT_S = 300  # a cold pull of ~200 MB and the pex unpacking, on a busy machine
MARKER = "releases.json"  # under <state>/services: which releases `up` installed
SCHEDULER_PROFILE = "services/scheduler/deploy/custom-scheduler.yaml"
GPU_RESOURCE = "example.com/gpu"
GPU_DEVICES = 4  # simulated: gpu-0 .. gpu-3, each a container's KUBEXT_DEVICES, no device node
CNI_HEALTH_PORT = 18085  # plus the port offset: the cni pod is on the host network


def release_name(svc: str) -> str:
    """The release of ``svc``'s chart, which is also its objects' name."""
    return f"kubext-{svc}"


def status_key(svc: str) -> str:
    """``status``'s name for the release (the rig's own CNI daemon is ``kubext-cni``)."""
    return f"release/{release_name(svc)}"


# --- pure: values --------------------------------------------------------------------------------


def values(
    svc: str, *, image: str, digest: str, root: Path, registry: str, repo: Path
) -> dict[str, Any]:
    """The chart values of ``svc``'s release on the real node of the cluster at ``root``: its
    ``image`` pinned to ``digest`` (what the registry serves), so a rebuilt image rolls the pods."""
    repository, tag = image.rsplit(":", 1)
    placement = node.placement()
    out: dict[str, Any] = {
        "image": {"repository": repository, "tag": tag, "digest": digest},
        **({"node": placement} if svc == "csi" else placement),
    }
    out.update(_SERVICE_VALUES[svc](root=root, registry=registry, repo=repo))
    return out


def _webhooks(*, registry: str, repo: Path, **_: Any) -> dict[str, Any]:
    return {"policy": pod_policy(repo, registry)}


def pod_policy(repo: Path, registry: str | None) -> dict[str, Any]:
    """The webhooks' pod policy (services/webhooks/deploy/policy.yaml) with the registries the
    samples' images come from added: ``localhost`` (podman's name for what is built here, which
    the kwok fakes never pull) and the real node's registry, by its real name."""
    policy = yaml.safe_load((repo / "services/webhooks/deploy/policy.yaml").read_text())
    allowed = policy["spec"]["rules"]["allowedRegistries"]["registries"]
    allowed += [r for r in ("localhost", registry) if r and r not in allowed]
    return dict(policy)


def _csi(*, root: Path, **_: Any) -> dict[str, Any]:
    return {
        "kubeletDir": str(real_node_csi.kubelet_dir(root)),
        "config": {
            "state_dir": str(real_node_csi.csi_dir(root) / "state"),
            "pool_size": real_samples.CSI_POOL_SIZE,
            "provisioner": {"resync_period": real_samples.CSI_RESYNC_SECONDS},
        },
        "csiDriver": {"storageCapacity": False},  # the built-in provisioner publishes none
        "storageClass": {"name": real_samples.STORAGE_CLASS, "isDefault": True},
        "sidecars": {
            "nodeDriverRegistrar": {"enabled": False},
            "provisioner": {"enabled": False},
            "snapshotter": {"enabled": False},
        },
    }


def _deviceplugin(**_: Any) -> dict[str, Any]:
    resource = {"name": GPU_RESOURCE, "backend": "simulated"}
    return {
        "devicePluginDir": str(node.DEVICE_PLUGINS_DIR),
        "config": {"resources": [{**resource, "simulated": {"count": GPU_DEVICES}}]},
    }


def _operator(*, registry: str, **_: Any) -> dict[str, Any]:
    return {"config": real_samples.operator_config(registry, {})}


def _scheduler(*, repo: Path, **_: Any) -> dict[str, Any]:
    profiles = yaml.safe_load((repo / SCHEDULER_PROFILE).read_text())["profiles"]
    (name,) = {p["schedulerName"] for p in profiles}
    return {"schedulerName": name, "profiles": profiles}


def _cni(*, root: Path, repo: Path, **_: Any) -> dict[str, Any]:
    """The node's network as the rig's daemon served it (``node.cni_conflist``), so the pods
    running at the handover keep their addresses: containerd's dirs, the same socket (its path
    is in the launcher) and the IPAM data dir, mounted at the same path in the pod. The chart's
    own plugin options the rig's list does not set are nulled (helm merges maps, and its
    isDefaultGateway and mtu would change the network)."""
    conflist = node.cni_conflist(root)
    plugins = conflist["plugins"]
    assert isinstance(plugins, list)
    bridge, *chain = plugins
    chart = yaml.safe_load((repo / "helm" / "cni" / "values.yaml").read_text())["cni"]["plugin"]
    return {
        "cni": {
            "binDir": str(node.cni_bin_dir(root)),
            "confDir": str(node.cni_conf_dir(root)),
            "cniVersion": conflist["cniVersion"],
            "networkName": conflist["name"],
            "plugin": {**dict.fromkeys(chart), **{k: v for k, v in bridge.items() if k != "type"}},
            "chain": chain,
        },
        "stateDir": bridge["ipam"]["dataDir"],
        "config": {
            "socket_path": str(node.cni_socket(root)),
            "health": {"port": CNI_HEALTH_PORT + cluster.PORT_OFFSET},
        },
    }


_SERVICE_VALUES: dict[str, Callable[..., dict[str, Any]]] = {
    "webhooks": _webhooks,
    "csi": _csi,
    "deviceplugin": _deviceplugin,
    "operator": _operator,
    "scheduler": _scheduler,
    "cni": _cni,
}


@dataclasses.dataclass(frozen=True)
class ReleaseState:
    """A release's pods as the status table and `status` show them."""

    svc: str
    ready: int
    want: int
    problems: tuple[str, ...]
    image: str

    @property
    def healthy(self) -> bool:
        return self.want > 0 and self.ready == self.want and not self.problems

    @property
    def state(self) -> str:
        """`status`'s word: healthy, unhealthy (pods not all Ready), stopped (none runs)."""
        if self.healthy:
            return "healthy"
        return "stopped" if self.ready == 0 and self.want == 0 else "unhealthy"

    @property
    def detail(self) -> str:
        where = f"{self.ready}/{self.want} pods Ready on {node.NODE_NAME}"
        # The digest's first 12 hex digits, as `crictl images` shows an image ID.
        image = re.sub(r"@sha256:([0-9a-f]{12})[0-9a-f]+", r"@sha256:\1", self.image)
        what = f"Helm release {release_name(self.svc)}, image {image or '?'}"
        return f"{where}; {what}" + (f"; {'; '.join(self.problems)}" if self.problems else "")


def release_state(
    svc: str,
    workloads: list[dict[str, Any]],
    pods: list[dict[str, Any]],
    problems: list[str],
) -> ReleaseState:
    """From the release's workloads (Deployments, DaemonSets) and pods as the API gives them, and
    why its pods are not all Ready on the real node (``stack.pod_problems``)."""
    want = 0
    for w in workloads:
        spec, st = w.get("spec") or {}, w.get("status") or {}
        want += int(spec["replicas"] if "replicas" in spec else st.get("desiredNumberScheduled", 0))
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    ready = sum(
        any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        for conditions in (((p.get("status") or {}).get("conditions") or []) for p in live)
    )
    used = {
        c.get("image", "")
        for p in live
        for c in (p.get("spec") or {}).get("containers") or []
        if re.search(rf"/{images.REPOSITORY_PREFIX}/{svc}[:@]", c.get("image", ""))
    }
    return ReleaseState(svc, ready, want, tuple(problems), ", ".join(sorted(used)))


def selector(svc: str) -> str:
    return f"app.kubernetes.io/instance={release_name(svc)},app.kubernetes.io/name={svc}"


# --- I/O: helm and kubectl ---------------------------------------------------------------------


def _helm(info: cluster.ClusterInfo, *args: str, timeout: float = INSTALL_TIMEOUT_S + 60) -> str:
    res = subprocess.run(
        [str(tools.binary("helm")), *args, "--kubeconfig", info.kubeconfig],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if res.returncode != 0:
        detail = (res.stderr.strip() or res.stdout.strip())[-1500:]
        raise cluster.RigError(f"helm {' '.join(args[:2])} failed: {detail}")
    return res.stdout


def dependency_build(info: cluster.ClusterInfo, chart: Path) -> None:
    """The library chart (helm/kubext-common) into ``chart``/charts, as `helm dependency build`
    puts it (git-ignored; a fresh clone has none)."""
    _helm(info, "dependency", "build", "--skip-refresh", str(chart), timeout=120)


def install(info: cluster.ClusterInfo, svc: str, chart_values: dict[str, Any], repo: Path) -> float:
    """``helm upgrade --install`` of ``svc``'s chart, waiting until its pods are Ready; seconds."""
    t = time.monotonic()
    chart = repo / "helm" / svc
    dependency_build(info, chart)
    path = info.root / "services" / f"release-{svc}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(chart_values))
    _helm(
        info, "upgrade", "--install", release_name(svc), str(chart), "--namespace", NAMESPACE,
        "--create-namespace", "--values", str(path), "--wait",
        "--timeout", f"{INSTALL_TIMEOUT_S}s",
    )  # fmt: skip
    return time.monotonic() - t


def mark_installed(root: Path, services: list[str]) -> None:
    path = root / "services" / MARKER
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(services))


def installed(root: Path) -> list[str]:
    """The releases `up` installed on the cluster at ``root`` (none: host processes)."""
    try:
        return list(json.loads((root / "services" / MARKER).read_text()))
    except (OSError, ValueError):
        return []


def uninstall(info: cluster.ClusterInfo, svc: str, timeout: float = 120) -> None:
    """``helm uninstall``; nothing to do when the chart's release is not there."""
    try:
        _helm(
            info, "uninstall", release_name(svc), "--namespace", NAMESPACE, "--wait",
            "--timeout", f"{timeout:.0f}s", timeout=timeout + 30,
        )  # fmt: skip
    except cluster.RigError as exc:
        if "not found" not in str(exc):
            raise
