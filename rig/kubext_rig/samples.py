"""The Database sample for real on the rig's real node: the pieces `./kubext up` (and the
real-node e2e test) put together.

- ``build_postgres_images``: images/postgres/build.sh (PostgreSQL 15 and Debian's exporter from
  the Debian mirror; cached by the script itself);
- ``push_local_images``: podman tag + push of local images into the rig's registry, which the
  node's containerd pulls from;
- ``database_operator_config``: the operator's config fragment naming those images and placing
  its pods on the real node (its taint tolerated, its hostname selected);
- ``csi_driver_config``: our CSI driver as a host process on the real node, with the kubelet's
  registration and the built-in provisioner on;
- ``ensure_storage``: the CSIDriver object and the StorageClass ``kubext-local`` (the default
  class, so claims without a class, as examples/database.yaml's, are provisioned by the driver).

The manifests and configs are pure functions; the I/O is podman, the build script and kubectl."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kubext_rig import cluster, images, node, real_node_csi, tools

POSTGRES_IMAGE = "localhost/kubext/postgres:15"
# Debian bookworm's prometheus-postgres-exporter; its tag picks the operator's 0.11 flag set.
EXPORTER_IMAGE = "localhost/kubext/postgres-exporter:0.11.1"
POSTGRES_IMAGES = (POSTGRES_IMAGE, EXPORTER_IMAGE)
BUILD_SCRIPT = "images/postgres/build.sh"
BUILD_TIMEOUT_S = 1800.0  # a cold mmdebstrap from the mirror took minutes at high load
STORAGE_CLASS = "kubext-local"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
CSI_POOL_SIZE = "64Gi"  # sparse images: the sample's claims (3 x 10Gi) fit with room left
CSI_RESYNC_SECONDS = 5.0  # a missed watch event costs seconds, not the default minute


def _quiet(_: str) -> None:
    pass


# --- pure: refs, configs, manifests --------------------------------------------------------------


def remote_ref(registry: str, local: str) -> str:
    """Where ``local`` (``localhost/<path>:<tag>``, podman's name for an image built here) goes in
    ``registry``: the same path and tag under the registry's host."""
    path = local.removeprefix("localhost/")
    if "/" not in path or ":" not in path.rsplit("/", 1)[-1]:
        raise images.ImageError(f"{local!r} is no local image reference (localhost/<path>:<tag>)")
    return f"{registry}/{path}"


def placement() -> dict[str, Any]:
    """The operator's ``pod_placement`` for the real node: select it, tolerate its taint."""
    pod = node.placement()  # the operator's keys are snake_case; a toleration's are the same
    return {"node_selector": pod["nodeSelector"], "tolerations": pod["tolerations"]}


def database_operator_config(registry: str) -> dict[str, Any]:
    """The operator's config fragment for the Database sample on the real node: PostgreSQL and
    its exporter from ``registry`` (as `push_local_images` put them there; the engine image by
    spec.version's major, so 15.x.0 is ``:15``), every pod on the real node."""
    postgres = remote_ref(registry, POSTGRES_IMAGE).rsplit(":", 1)[0]
    return {
        "database": {
            "images": {"postgresql": f"{postgres}:{{major}}"},
            "exporter_images": {"postgresql": remote_ref(registry, EXPORTER_IMAGE)},
        },
        "pod_placement": placement(),
    }


def csi_driver_config(
    state: Path,
    *,
    kubeconfig: str,
    health_port: int = 0,
    pool_size: str = CSI_POOL_SIZE,
    resync_period: float = CSI_RESYNC_SECONDS,
) -> dict[str, Any]:
    """The CSI driver on the real node of ``state``: registered with its kubelet, the built-in
    provisioner on (with ``kubeconfig``), health on 127.0.0.1:``health_port`` (0: any)."""
    provisioner = {"enabled": True, "kubeconfig": kubeconfig, "resync_period": resync_period}
    cfg = real_node_csi.driver_config(state, pool_size=pool_size, provisioner=provisioner)
    cfg["health"] = {"host": "127.0.0.1", "port": health_port}
    return cfg


def storage_class(name: str = STORAGE_CLASS, *, default: bool = True) -> dict[str, Any]:
    """Our driver's class: WaitForFirstConsumer (the provisioner makes the volume on the node
    the scheduler picked), Delete, expansion allowed; with ``default`` the cluster's default
    class, which the API server's DefaultStorageClass admission gives claims naming none."""
    annotations = {DEFAULT_CLASS_ANNOTATION: "true"} if default else {}
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name, "annotations": annotations},
        "provisioner": real_node_csi.DRIVER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
    }


def storage_manifests(*, default: bool = True) -> dict[str, Any]:
    """The CSIDriver and the StorageClass, as one List for `kubectl apply`."""
    return {
        "apiVersion": "v1",
        "kind": "List",
        "items": [real_node_csi.csi_driver_manifest(), storage_class(default=default)],
    }


# --- I/O ---------------------------------------------------------------------------------------


def build_postgres_images(
    repo: Path | None = None,
    *,
    say: Callable[[str], None] = _quiet,
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> None:
    """images/postgres/build.sh (a second or so when its inputs are unchanged); a failure is one
    line: the script's last line of output."""
    script = (repo or tools.repo_root()) / BUILD_SCRIPT
    try:
        done = run([str(script)], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise images.ImageError(f"{BUILD_SCRIPT} did not run: {exc}") from None
    lines = (done.stderr or "").strip().splitlines()
    if done.returncode != 0:
        detail = lines[-1] if lines else f"exit {done.returncode}, no output"
        raise images.ImageError(f"{BUILD_SCRIPT} failed: {detail}")
    if lines:
        say(lines[-1])
    missing = [ref for ref in POSTGRES_IMAGES if not images.image_exists(ref)]
    if missing:  # e.g. Debian moved the exporter to a version the refs above do not name
        raise images.ImageError(f"{BUILD_SCRIPT} ran but left no {', '.join(missing)}")


def push_local_images(
    registry: str, refs: tuple[str, ...] | list[str], *, say: Callable[[str], None] = _quiet
) -> dict[str, str]:
    """Tag and push each local image (``localhost/<path>:<tag>``) into ``registry``; returns
    local ref -> pushed ref. Every image is checked to exist before anything is pushed."""
    images.check_registry(registry)
    targets = {ref: remote_ref(registry, ref) for ref in refs}
    missing = [ref for ref in targets if not images.image_exists(ref)]
    if missing:
        raise images.ImageError(f"not built: {', '.join(missing)} (run {BUILD_SCRIPT})")
    for source, target in targets.items():
        say(f"pushing {source} -> {target}")
        images.tag_and_push(source, target)
    return targets


def ensure_storage(info: cluster.ClusterInfo, *, default: bool = True) -> None:
    """The CSIDriver and the StorageClass ``kubext-local`` on the cluster (kubectl apply: kept
    when there already)."""
    cluster.kubectl(info, "apply", "-f", "-", stdin=json.dumps(storage_manifests(default=default)))


def operator_config(registry: str, base: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` (an operator config) with the Database sample's fragment merged in."""
    out = dict(base)
    for key, value in database_operator_config(registry).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out
