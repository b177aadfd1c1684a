"""Entry point: ``kubext-deviceplugin [--config PATH] [--log-level L]``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from kubext import cli, health
from kubext_deviceplugin import config

log = logging.getLogger("kubext_deviceplugin")


def serve(cfg: config.Config) -> int:
    stop = cli.stop_event()
    server = health.HealthServer(host=cfg.health.host, port=cfg.health.port).start()
    log.info("health server listening", extra={"port": server.port})
    stop.wait()
    server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(
        name="deviceplugin",
        package="kubext_deviceplugin",
        description="kubext deviceplugin (skeleton: config, logs and health only; it serves no device yet).",
        model=config.Config,
        main=serve,
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
