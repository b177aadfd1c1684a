"""Entry point: ``kubext-cni [--config PATH] [--log-level L]`` - the node daemon.

Serves the kubext-bridge launcher's calls on a unix socket, optionally installs the
launcher into the CNI bin directory, and exposes /healthz, /readyz and /metrics.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from kubext import cli, health
from kubext_cni import config

log = logging.getLogger("kubext_cni")


def serve(cfg: config.Config) -> int:
    from kubext_cni import daemon, install

    stop = cli.stop_event()
    plugins = daemon.PluginServer(cfg.socket_path).start()
    try:
        log.info("plugin socket listening", extra={"socket": cfg.socket_path})
        if cfg.cni_bin_dir:
            path = install.install(
                cfg.cni_bin_dir,
                python=cfg.plugin_python,
                socket_path=cfg.socket_path,
                standalone=cfg.standalone_fallback,
                compiled=install.pick_launcher(cfg.launcher, standalone=cfg.standalone_fallback),
            )
            log.info("launcher installed", extra={"path": path})
        server = health.HealthServer(
            host=cfg.health.host, port=cfg.health.port, ready=plugins.ready
        ).start()
        log.info("health server listening", extra={"port": server.port})
        stop.wait()
        server.stop()
    finally:
        plugins.stop()  # removes the socket: launchers then fail fast with code 11
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(
        name="cni",
        package="kubext_cni",
        description="kubext cni: CNI bridge plugin (veth, bridge, IPAM delegation, masquerade).",
        model=config.Config,
        main=serve,
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
