"""Entry point: ``kubext-csi [--config PATH] [--log-level L]``."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence

from kubext import cli, health
from kubext_csi import config

log = logging.getLogger("kubext_csi")


def serve(cfg: config.Config) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = health.HealthServer(host=cfg.health.host, port=cfg.health.port).start()
    log.info("health server listening", extra={"port": server.port})
    stop.wait()
    server.stop()
    return 0


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
