"""Entry point: ``kubext-scheduler [--config PATH] [--log-level L]``."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Sequence

from kubext import cli, health
from kubext_scheduler import config, profiles_file
from kubext_scheduler.framework import profiles

log = logging.getLogger("kubext_scheduler")


def serve(cfg: config.Config) -> int:
    try:
        loaded = profiles_file.load(cfg.scheduler_config)
        name = cfg.extender.profile or next(iter(loaded.frameworks))
        if name not in loaded.frameworks:
            raise profiles.ProfileError(
                f"extender.profile: no profile is named {name!r} "
                f"(profiles: {', '.join(loaded.frameworks)})"
            )
    except profiles.ProfileError as exc:
        print(f"kubext-scheduler: scheduler config error: {exc}", file=sys.stderr)
        return 2
    for warning in loaded.warnings:
        log.warning(warning, extra={"file": cfg.scheduler_config})
    log.info("profiles loaded", extra={"profiles": list(loaded.frameworks)})
    stop = cli.stop_event()
    server = health.HealthServer(host=cfg.health.host, port=cfg.health.port).start()
    log.info("health server listening", extra={"port": server.port})
    extender_server = None
    if cfg.extender.enabled:
        import uvicorn  # the HTTP edge only when it is served

        from kubext_scheduler import extender

        app = extender.app(extender.Extender(loaded.frameworks[name]))
        extender_server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=cfg.extender.host,
                port=cfg.extender.port,
                log_config=None,
                access_log=False,
            )
        )
        thread = threading.Thread(target=extender_server.run, name="extender", daemon=True)
        thread.start()
        while not extender_server.started and thread.is_alive():
            time.sleep(0.05)
        if not extender_server.started:  # uvicorn logged why (the port is taken, ...)
            server.stop()
            return 1
        log.info("extender listening", extra={"port": cfg.extender.port, "profile": name})
    stop.wait()
    if extender_server is not None:
        extender_server.should_exit = True
        thread.join(timeout=10)
    server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(
        name="scheduler",
        package="kubext_scheduler",
        description="kubext scheduler: the scheduling framework and its plugins, served as a "
        "kube-scheduler extender (no standalone scheduling yet).",
        model=config.Config,
        main=serve,
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
