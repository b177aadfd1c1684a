"""File locks (flock): shared by processes and by the daemon's threads alike.

flock locks belong to an open file description, so two threads that each open the file
exclude each other just as two plugin processes do.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

# The daemon moves this next to its socket (a hostPath that is writable and shared with the
# host); the standalone plugin uses the same default path.
LOCK_DIR = "/run/kubext-cni"


def use_dir(directory: str) -> None:
    global LOCK_DIR
    LOCK_DIR = directory


@contextmanager
def held(path: str) -> Iterator[None]:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last fd of the description releases the lock


def bridge_lock(bridge: str) -> str:
    """Serialises ensure-bridge and its gateway addresses across concurrent ADDs."""
    return os.path.join(LOCK_DIR, f"bridge-{bridge}.lock")
