"""Entry point: ``kubext-csi [--config PATH] [--log-level L]``."""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from kubext import cli, health

from . import config, driver, registration, server, system

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
    the_driver = driver.Driver(settings_from(cfg, os.environ))
    try:
        the_driver.recover()
        grpc_server = server.build(the_driver, endpoint)
        registered = _serve_registration(cfg, server.socket_path(endpoint))
        health_server = health.HealthServer(
            host=cfg.health.host,
            port=cfg.health.port,
            ready=lambda: not system.missing_tools(),
        ).start()
        log.info("health server listening", extra={"port": health_server.port})
        stop.wait()
        log.info("stopping")
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
