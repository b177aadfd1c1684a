"""Small helpers every e2e test over the rig needs: polling with a clear failure, a probe for a
deleted object, a free port."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client

T = TypeVar("T")


def wait_for(
    what: str, probe: Callable[[], T | None], *, timeout: float = 60, every: float = 0.5
) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` and the last value.

    An ApiException counts as "not yet" (its status is kept as the last value)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except client.ApiException as exc:
            last = f"{exc.status} {exc.reason}"  # for the failure message only: not a result
        else:
            if value:
                return value
            last = value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


def gone(read: Callable[[], object]) -> Callable[[], bool]:
    """A ``wait_for`` probe: true once ``read`` (e.g. a ``read_namespaced_pod``) answers 404."""

    def probe() -> bool:
        try:
            read()
        except client.ApiException as exc:
            return exc.status == 404
        return False

    return probe


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
