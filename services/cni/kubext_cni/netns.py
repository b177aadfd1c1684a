"""Network namespaces: open CNI_NETNS with precise errors, and run code inside one.

setns(2) with CLONE_NEWNET changes the calling *thread* only, so the daemon can serve
requests for different containers in parallel threads (the Go plugins lock their OS thread
for the same reason). Children forked while inside a namespace inherit it: never spawn a
delegated plugin or ``nft`` inside ``entered()``.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from kubext_cni.core import errors

CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703  # ioctl on an nsfs fd: which kind of namespace it is
_libc = ctypes.CDLL(None, use_errno=True)


class NetNS:
    """An open handle on a network namespace (an nsfs file descriptor)."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> NetNS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_netns(path: str) -> NetNS:
    """Open CNI_NETNS: code 3 if it does not exist, code 4 if it is not a usable netns."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise errors.CNIError(
            errors.UNKNOWN_CONTAINER,
            f"network namespace {path!r} (CNI_NETNS) does not exist",
        ) from None
    except OSError as exc:
        raise errors.CNIError(
            errors.INVALID_ENV, f"CNI_NETNS: failed to open {path!r}: {exc.strerror}"
        ) from None
    try:
        kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError:
        kind = None
    if kind != CLONE_NEWNET:
        os.close(fd)
        raise errors.CNIError(errors.INVALID_ENV, f"CNI_NETNS: {path!r} is not a network namespace")
    if os.fstat(fd).st_ino == os.stat("/proc/thread-self/ns/net").st_ino:
        os.close(fd)
        raise errors.CNIError(
            errors.INVALID_ENV,
            "CNI_NETNS: plugin's netns and netns from CNI_NETNS should not be the same",
            path,
        )
    return NetNS(path, fd)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def entered(ns: NetNS) -> Iterator[None]:
    """Run the block with this thread inside ``ns``; always come back."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(ns.fd)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def current_id() -> tuple[int, int]:
    """(device, inode) of this thread's network namespace: equal means same namespace."""
    st = os.stat("/proc/thread-self/ns/net")
    return st.st_dev, st.st_ino


def write_sysctl(name: str, value: str) -> None:
    """Set ``/proc/sys/<name>`` (as seen from the calling thread's netns) if it differs."""
    path = f"/proc/sys/{name}"
    try:
        with open(path) as f:
            if f.read().strip() == value:
                return
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        if exc.errno in (errno.ENOENT,):
            raise errors.CNIError(errors.NETLINK_FAILURE, f"sysctl {name} does not exist") from None
        raise errors.CNIError(
            errors.NETLINK_FAILURE, f"failed to set sysctl {name}={value}: {exc.strerror}"
        ) from None
