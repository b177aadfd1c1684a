"""GC for host-local: delete reservation files of attachments that are no longer valid.

Runs under host-local's own lock (``<dir>/lock``), so it never races an allocation.
"""

from __future__ import annotations

import os

from kubext_cni import locks
from kubext_cni.core import errors, gc
from kubext_cni.core.netconf import NetConf


def data_dir(conf: NetConf) -> str:
    configured = (conf.ipam or {}).get("dataDir")
    return os.path.join(configured or gc.DEFAULT_DATA_DIR, conf.name)


def reclaim(conf: NetConf, valid: frozenset[tuple[str, str]]) -> list[str]:
    """Release leaked IPs; returns the addresses whose reservation was removed."""
    directory = data_dir(conf)
    if not os.path.isdir(directory):
        return []
    removed = []
    try:
        with locks.held(os.path.join(directory, "lock")):
            files = {}
            for name in os.listdir(directory):
                if gc.is_reservation(name):
                    try:
                        # newline="": keep host-local's "\r\n" separator intact.
                        path = os.path.join(directory, name)
                        with open(path, encoding="utf-8", newline="") as f:
                            files[name] = f.read()
                    except FileNotFoundError:
                        continue
            for name in gc.stale_reservations(files, valid):
                try:
                    os.unlink(os.path.join(directory, name))
                except FileNotFoundError:
                    continue
                removed.append(name)
    except OSError as exc:
        raise errors.CNIError(
            errors.IO_FAILURE,
            f"failed to reclaim host-local reservations in {directory}",
            str(exc),
        ) from None
    return removed
