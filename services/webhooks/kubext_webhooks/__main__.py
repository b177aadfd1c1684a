"""Entry point: ``kubext-webhooks [--config PATH] [--log-level L]``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from kubext import cli
from kubext_webhooks import config, server


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(
        name="webhooks",
        package="kubext_webhooks",
        description="kubext webhooks: validating, mutating and CRD conversion admission webhooks.",
        model=config.Config,
        main=server.main,
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
