"""Configuration of the csi service (file + KUBEXT_CSI_* environment)."""

from __future__ import annotations

import re

import pydantic

from kubext import cli, quantity
from kubext import config as kconfig

# CSI's plugin name rule: a DNS-style name of at most 63 characters.
_DRIVER_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


def _bytes(value: object) -> int:
    try:
        size = quantity.to_bytes(value)  # type: ignore[arg-type]
    except (quantity.QuantityError, TypeError) as exc:
        raise ValueError(str(exc)) from None
    if size <= 0:
        raise ValueError("must be a positive size such as 100Gi")
    return size


class RegistrationConfig(kconfig.StrictModel):
    """The kubelet's plugin registration served by the driver (instead of node-driver-registrar)."""

    enabled: bool = False
    # The kubelet's --root-dir: the socket goes into its plugins_registry/.
    kubelet_dir: str = "/var/lib/kubelet"
    # The CSI socket's path as the kubelet sees it; empty: the endpoint's path (a host process).
    kubelet_csi_path: str = ""

    @pydantic.field_validator("kubelet_dir", "kubelet_csi_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if value and not value.startswith("/"):
            raise ValueError(f"{value!r} must be an absolute path")
        return value


class ProvisionerConfig(kconfig.StrictModel):
    """The built-in provisioner (instead of the csi-provisioner sidecar in --node-deployment)."""

    enabled: bool = False
    # Empty: the pod's service account in a cluster, else $KUBECONFIG (or ~/.kube/config).
    kubeconfig: str = ""
    # A full pass over claims and PVs at least this often (watch events start one sooner).
    resync_period: pydantic.PositiveFloat = 60.0
    # A failed claim or PV is retried after 1, 2, 4 ... times this, at most retry_interval_max.
    retry_interval_start: pydantic.PositiveFloat = 1.0
    retry_interval_max: pydantic.PositiveFloat = 300.0


class Config(cli.ServiceConfig):
    """Every key the csi service accepts; unknown keys are errors."""

    driver_name: str = "csi.kubext.io"
    # unix:///path/csi.sock; empty means $CSI_ENDPOINT (the sidecars' convention).
    endpoint: str = ""
    # Empty means $NODE_ID, then $KUBE_NODE_NAME, then the host name.
    node_id: str = ""
    topology_key: str = "topology.csi.kubext.io/node"
    state_dir: str = "/var/lib/kubext-csi"
    pool_size: pydantic.PositiveInt = pydantic.Field(default=100 << 30)
    max_volume_size: pydantic.PositiveInt | None = None  # None: the pool size
    default_volume_size: pydantic.PositiveInt = pydantic.Field(default=1 << 30)
    max_volumes_per_node: pydantic.NonNegativeInt = 0  # 0: no limit
    # Staging and target paths must lie under one of these (empty: any absolute path).
    path_roots: list[str] = []
    # Node IDs besides node_id that ControllerPublish attaches to (records only; the volumes
    # stay on this node's disk). Empty: only this node.
    attachable_node_ids: list[str] = []
    registration: RegistrationConfig = RegistrationConfig()
    provisioner: ProvisionerConfig = ProvisionerConfig()

    @pydantic.field_validator("pool_size", "max_volume_size", "default_volume_size", mode="before")
    @classmethod
    def _sizes(cls, value: object) -> object:
        return None if value is None else _bytes(value)

    @pydantic.field_validator("driver_name")
    @classmethod
    def _driver_name(cls, value: str) -> str:
        if len(value) > 63 or not _DRIVER_NAME.fullmatch(value):
            raise ValueError("must be a DNS-style name of at most 63 characters")
        return value

    @pydantic.field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if value and not value.startswith("unix://"):
            raise ValueError("must be unix:///path/to/csi.sock (CSI serves only unix sockets)")
        return value

    @pydantic.field_validator("path_roots")
    @classmethod
    def _roots(cls, value: list[str]) -> list[str]:
        for root in value:
            if not root.startswith("/"):
                raise ValueError(f"{root!r} must be an absolute path")
        return value
