"""Entry point: ``kubext-operator [--config PATH] [--log-level L]``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from kubext import cli
from kubext_operator import config

OPTIONAL_CLIENTS = ("kubernetes", "pykube")
"""kopf imports these client libraries when it finds them, only to recognise their objects; the
official client alone costs ~35 MB of RSS. The operator never passes such objects to kopf."""


def serve(cfg: config.Config) -> int:
    for name in OPTIONAL_CLIENTS:
        sys.modules.setdefault(name, None)  # type: ignore[assignment]  # import -> ImportError
    from kubext_operator import app  # kopf and aiohttp load only when the operator runs

    return app.serve(cfg)


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(
        name="operator",
        package="kubext_operator",
        description="kubext operator: reconciles WebApp and Database custom resources.",
        model=config.Config,
        main=serve,
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
