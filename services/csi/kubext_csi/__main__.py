"""Entry point: ``kubext-csi [--config PATH] [--log-level L]``."""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc

from kubext import cli, health, kubeclient
from kubext_proto.csi.v1 import csi_pb2_grpc

from . import config, driver, provisioner, provisioning, registration, server, system

log = logging.getLogger("kubext_csi")


def settings_from(cfg: config.Config, environ: Mapping[str, str]) -> driver.Settings:
    """Driver settings; node id and endpoint fall back to the CSI sidecars' variables."""
    node_id = (
        cfg.node_id
        or environ.get("NODE_ID")
        or environ.get("KUBE_NODE_NAME")
        or socket.gethostname()
    )
    return driver.Settings(
        name=cfg.driver_name,
        version=cli.read_version("kubext_csi"),
        node_id=node_id,
        topology_key=cfg.topology_key,
        state_dir=Path(cfg.state_dir),
        pool_bytes=cfg.pool_size,
        max_volume_bytes=cfg.max_volume_size or cfg.pool_size,
        default_volume_bytes=cfg.default_volume_size,
        max_volumes_per_node=cfg.max_volumes_per_node,
        path_roots=tuple(cfg.path_roots),
        attachable_node_ids=tuple(cfg.attachable_node_ids),
    )


def serve(cfg: config.Config) -> int:
    endpoint = cfg.endpoint or os.environ.get("CSI_ENDPOINT", "")
    if not endpoint:
        print(
            "kubext-csi: no endpoint: set endpoint in the config or CSI_ENDPOINT", file=sys.stderr
        )
        return 2
    missing = system.missing_tools()
    if missing:
        print(
            f"kubext-csi: missing tools {', '.join(missing)} "
            "(install e2fsprogs; see scripts/ensure-tools.sh)",
            file=sys.stderr,
        )
        return 2
    stop = cli.stop_event()
    settings = settings_from(cfg, os.environ)
    try:
        api = _provisioner_api(cfg)
    except kubeclient.KubeConfigError as exc:
        print(f"kubext-csi: provisioner.enabled: {exc}", file=sys.stderr)
        return 2
    the_driver = driver.Driver(settings)
    try:
        the_driver.recover()
        grpc_server = server.build(the_driver, endpoint)
        registered = _serve_registration(cfg, server.socket_path(endpoint))
        provisioning_loop = _start_provisioner(cfg, settings, endpoint, api)
        health_server = health.HealthServer(
            host=cfg.health.host,
            port=cfg.health.port,
            ready=lambda: not system.missing_tools(),
        ).start()
        log.info("health server listening", extra={"port": health_server.port})
        stop.wait()
        log.info("stopping")
        if provisioning_loop is not None:  # no new volumes from a driver that is leaving
            provisioning_loop.stop()
        if registered is not None:  # first: the kubelet stops calling a driver that is leaving
            registered.stop()
        grpc_server.stop(grace=5).wait(10)
        health_server.stop()
        system.remove(server.socket_path(endpoint))
    finally:
        the_driver.close()
    return 0


def _serve_registration(cfg: config.Config, csi_socket: Path) -> registration.Served | None:
    if not cfg.registration.enabled:
        return None
    return registration.serve(
        driver_name=cfg.driver_name,
        csi_socket=Path(cfg.registration.kubelet_csi_path or csi_socket),
        socket=registration.socket_path(Path(cfg.registration.kubelet_dir), cfg.driver_name),
    )


def _provisioner_api(cfg: config.Config) -> Any:
    if not cfg.provisioner.enabled:
        return None
    return kubeclient.api_client(kubeconfig=cfg.provisioner.kubeconfig or None)


def _start_provisioner(
    cfg: config.Config, settings: driver.Settings, endpoint: str, api: Any
) -> provisioner.Provisioner | None:
    """The built-in provisioner, calling the driver through its own socket like the sidecar."""
    if api is None:
        return None
    channel = grpc.insecure_channel(endpoint)
    return provisioner.Provisioner(
        api=api,
        controller=csi_pb2_grpc.ControllerStub(channel),
        me=provisioning.Identity(
            driver=settings.name, node_id=settings.node_id, topology_key=settings.topology_key
        ),
        resync_seconds=cfg.provisioner.resync_period,
        retry_initial_seconds=cfg.provisioner.retry_interval_start,
        retry_max_seconds=cfg.provisioner.retry_interval_max,
    ).start()


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(
        name="csi",
        package="kubext_csi",
        description="kubext csi: CSI driver with real local volumes over gRPC on a unix socket.",
        model=config.Config,
        main=serve,
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
