"""host-local's store, in-process: ADD and DEL without exec'ing the binary, and GC.

The store is host-local's own: ``<dataDir>/<network>/`` holds one file per reserved IP
(named by the IP, holding ``"<containerID>\r\n<ifname>"``, mode 0600), ``last_reserved_ip.<set>``
and ``lock``, flock'ed around every change. So the reference binary reads, allocates
beside, releases and GCs what the daemon reserves, and the other way round.
``allocate``/``release`` answer None where ``core.ipalloc`` says host-local itself must
run (a requested IP, resolvConf, a config it would reject, no free address): the caller
then execs it, which gives host-local's own result or error.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from kubext_cni import locks
from kubext_cni.core import errors, gc, ipalloc
from kubext_cni.core.netconf import NetConf


@contextmanager
def _store(directory: str) -> Iterator[None]:
    """host-local's disk.New + Lock: the directory (0755) and an flock on its ``lock``."""
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd = os.open(os.path.join(directory, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _reservations(directory: str) -> Iterator[tuple[str, str]]:
    """(path, content) of every file host-local's ReleaseByID would look at."""
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            try:
                with open(path, encoding="utf-8", errors="replace", newline="") as f:
                    yield path, f.read()
            except OSError:
                continue


def _reserve(directory: str, ip: ipalloc.IPAddress, content: str) -> bool:
    try:
        fd = os.open(
            os.path.join(directory, str(ip)),
            os.O_RDWR | os.O_EXCL | os.O_CREAT | os.O_CLOEXEC,
            0o600,
        )
    except FileExistsError:
        return False
    try:
        os.write(fd, content.encode())
    except OSError:
        os.close(fd)
        os.unlink(os.path.join(directory, str(ip)))
        raise
    os.close(fd)
    return True


def _write_last(directory: str, set_index: int, ip: ipalloc.IPAddress) -> None:
    path = os.path.join(directory, f"{ipalloc.LAST_RESERVED_PREFIX}{set_index}")
    data = str(ip).encode()
    # No O_TRUNC: truncating costs ms on some filesystems; cut only a longer old address
    # (readers hold the lock, so none sees the file half-written).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.pwrite(fd, data, 0)
        if os.fstat(fd).st_size > len(data):
            os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def _read_last(directory: str, set_index: int) -> ipalloc.IPAddress | None:
    try:
        with open(os.path.join(directory, f"{ipalloc.LAST_RESERVED_PREFIX}{set_index}")) as f:
            return ipalloc.parse_last_reserved(f.read())
    except OSError:
        return None


def _network_dir(config: ipalloc.Config, network: str) -> str:
    return os.path.join(config.data_dir or gc.DEFAULT_DATA_DIR, network)


def allocate(
    netconf: Mapping[str, Any], container_id: str, ifname: str, cni_args: str
) -> dict[str, Any] | None:
    """host-local ADD in-process: its result, or None to run the binary instead."""
    config = ipalloc.parse(netconf, cni_args)
    if config is None:
        return None
    directory = _network_dir(config, str(netconf["name"]))
    content = ipalloc.owner_content(container_id, ifname)
    ips: list[dict[str, str]] = []
    try:
        for set_index, ranges in enumerate(config.ranges):
            with _store(directory):
                for path, existing in _reservations(directory):
                    owned = existing.strip() == content.strip()
                    ip = ipalloc.parse_last_reserved(os.path.basename(path)) if owned else None
                    if ip is not None and any(r.contains(ip) for r in ranges):
                        raise _Delegate  # host-local's "duplicate allocation" error
                for r, ip in ipalloc.candidates(ranges, _read_last(directory, set_index)):
                    if _reserve(directory, ip, content):
                        _write_last(directory, set_index, ip)
                        ips.append(ipalloc.ip_config(r, ip))
                        break
                else:
                    raise _Delegate  # exhausted: host-local's own error says so
    except _Delegate:
        release(netconf, container_id, ifname, cni_args)
        return None
    except OSError as exc:
        release(netconf, container_id, ifname, cni_args)
        raise errors.CNIError(
            errors.IPAM_FAILURE, f"host-local store {directory}: {exc.strerror or exc}"
        ) from None
    result: dict[str, Any] = {"cniVersion": str(netconf.get("cniVersion", "1.1.0")), "ips": ips}
    if config.routes:
        result["routes"] = [dict(r) for r in config.routes]
    return result


class _Delegate(Exception):
    """host-local itself must answer this call."""


def release(
    netconf: Mapping[str, Any], container_id: str, ifname: str, cni_args: str
) -> bool | None:
    """host-local DEL in-process (ReleaseByID: this attachment's files, else the old
    container-ID-only ones); None to run the binary instead."""
    config = ipalloc.parse(netconf, cni_args)
    if config is None:
        return None
    directory = _network_dir(config, str(netconf["name"]))
    match = ipalloc.owner_content(container_id, ifname).strip()
    try:
        with _store(directory):
            files = list(_reservations(directory))
            owned = [p for p, c in files if c.strip() == match]
            if not owned:
                owned = [p for p, c in files if c.strip() == container_id.strip()]
            for path in owned:
                try:
                    os.unlink(path)
                except OSError as exc:
                    if exc.errno != errno.ENOENT:
                        raise
    except OSError as exc:
        raise errors.CNIError(
            errors.IPAM_FAILURE, f"host-local store {directory}: {exc.strerror or exc}"
        ) from None
    return bool(owned)


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
