"""The entry point every service shares: --help, --version, --config, env overrides, JSON logs."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Literal, TypeVar

from kubext import config, logs

Cfg = TypeVar("Cfg", bound="ServiceConfig")
log = logging.getLogger(__name__)


class HealthConfig(config.StrictModel):
    host: str = "0.0.0.0"
    port: int = 8080


class ServiceConfig(config.StrictModel):
    """Fields every service has; each service extends it."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    health: HealthConfig = HealthConfig()


def read_version(package: str) -> str:
    """The service's semver, from the VERSION file shipped inside its package."""
    return resources.files(package).joinpath("VERSION").read_text().strip()


def run(
    *,
    name: str,
    package: str,
    description: str,
    model: type[Cfg],
    main: Callable[[Cfg], int],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse arguments, load and validate config, set up logging, then call ``main(cfg)``.

    Config sources, later wins: model defaults, ``--config`` file (or ``$KUBEXT_<NAME>_CONFIG``),
    ``KUBEXT_<NAME>_<KEY>`` variables (``__`` separates nested keys).
    """
    prefix = f"KUBEXT_{name.upper().replace('-', '_')}_"
    version = read_version(package)
    parser = argparse.ArgumentParser(
        prog=f"kubext-{name}",
        description=description,
        epilog=f"Environment: {prefix}CONFIG (config path), {prefix}<KEY> and "
        f"{prefix}<KEY>__<SUBKEY> override file values.",
    )
    parser.add_argument("--version", action="version", version=f"kubext-{name} {version}")
    parser.add_argument("--config", metavar="PATH", default=os.environ.get(f"{prefix}CONFIG"))
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    environ = {k: v for k, v in os.environ.items() if k != f"{prefix}CONFIG"}
    try:
        cfg = config.load(model, path=args.config, env_prefix=prefix, environ=environ)
        if args.log_level:
            cfg.log_level = args.log_level
    except config.ConfigError as exc:
        print(f"kubext-{name}: config error: {exc}", file=sys.stderr)
        return 2
    logs.configure(service=name, level=cfg.log_level)
    log.info("starting", extra={"version": version})
    return main(cfg)


def stop_event() -> threading.Event:
    """An Event set by SIGTERM or SIGINT: long-running services wait on it, then shut down."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop
