"""GC of host-local allocations: which reservation files belong to no valid attachment.

host-local keeps one file per reserved IP in ``<dataDir>/<network>/``, named by the IP and
holding ``"<containerID>\\r\\n<ifname>"`` (older versions: just the container ID). It has no
GC of its own, so leaked IPs stay reserved until someone deletes these files. Pure.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

DEFAULT_DATA_DIR = "/var/lib/cni/networks"
_LINE_BREAK = "\r\n"


def owner(content: str) -> tuple[str, str | None]:
    """File content -> (container ID, ifname or None for the pre-ifname format)."""
    container_id, sep, ifname = content.strip().partition(_LINE_BREAK)
    return container_id.strip(), (ifname.strip() if sep else None)


def is_reservation(filename: str) -> bool:
    """Only IP-named files are reservations (not ``lock`` or ``last_reserved_ip.N``)."""
    try:
        ipaddress.ip_address(filename)
    except ValueError:
        return False
    return True


def stale_reservations(files: Mapping[str, str], valid: frozenset[tuple[str, str]]) -> list[str]:
    """Names of reservation files whose owner is not a valid attachment."""
    valid_ids = {cid for cid, _ in valid}
    stale = []
    for name, content in sorted(files.items()):
        if not is_reservation(name):
            continue
        container_id, ifname = owner(content)
        # The old format names no interface: any valid interface of the container keeps it.
        alive = container_id in valid_ids if ifname is None else (container_id, ifname) in valid
        if not alive:
            stale.append(name)
    return stale
