"""The node's storage primitives: sparse image files, loop devices, ext filesystems and mounts.

Mounts use mount(2)/umount2(2) and loop devices their ioctls directly (no helper process on the
hot path); filesystems use e2fsprogs (mkfs.ext*, resize2fs, e2fsck). State is read from /proc and
/sys and handed to the pure parsers in ``parse``. Failures carry a status code (INTERNAL with the
tool's or kernel's message); checks that find nothing return None rather than raising.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import fcntl
import os
import shutil
import struct
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from . import errors, parse

# Tools the driver runs, and the Debian packages that ship them (scripts/ensure-tools.sh).
# Mounts and loop devices use mount(2) and ioctls directly; losetup is only the fallback for
# kernels before 5.8 (no LOOP_CONFIGURE), so it is not required.
TOOLS = {
    "mkfs.ext4": "e2fsprogs",
    "resize2fs": "e2fsprogs",
    "e2fsck": "e2fsprogs",
    "e2label": "e2fsprogs",
}
COMMAND_TIMEOUT_S = 120  # mkfs of a large image or resize2fs can take a while; never forever
FIFREEZE = 0xC0045877  # _IOWR('X', 119, int)
FITHAW = 0xC0045878  # _IOWR('X', 120, int)
SYS_BLOCK = Path("/sys/block")
MOUNTINFO = Path("/proc/self/mountinfo")
PROC_STATUS = Path("/proc/self/status")


class CommandFailed(errors.CsiError):
    def __init__(self, argv: Sequence[str], returncode: int, output: str) -> None:
        detail = output.strip().splitlines()[-1] if output.strip() else f"exit status {returncode}"
        super().__init__(errors.Code.INTERNAL, f"{' '.join(argv[:2])} failed: {detail}")
        self.returncode = returncode
        self.output = output


def run(argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT_S) -> str:
    """Runs a tool; its stdout, or CommandFailed with its stderr."""
    try:
        proc = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise CommandFailed(argv, 127, f"{argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise CommandFailed(argv, 124, f"timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise CommandFailed(argv, proc.returncode, proc.stderr or proc.stdout)
    return proc.stdout


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


# ---- image files ----


def create_image(path: Path, size: int) -> None:
    """A new sparse file of ``size`` bytes; fails if the path exists."""
    # No fsync: the state commit that follows (an fsync on the same ext4 journal) makes the
    # new file durable first, and a file without a record is removed at the next start.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def grow_image(path: Path, size: int) -> None:
    """Extends the file to ``size`` bytes (sparse); never shrinks."""
    if path.stat().st_size < size:
        os.truncate(path, size)


def copy_sparse(source: Path, target: Path, *, size: int) -> None:
    """Copies the data regions of ``source`` into a new sparse ``target`` of ``size`` bytes.

    Writes to a temporary name and renames, so a crash never leaves a half-copied target.
    """
    tmp = target.with_name(target.name + ".partial")
    with open(source, "rb") as src, open(tmp, "wb") as dst:
        src_fd, dst_fd = src.fileno(), dst.fileno()
        end = os.fstat(src_fd).st_size
        os.ftruncate(dst_fd, max(size, end))
        for data, length in data_extents(src_fd, 0, end):
            _copy_range(src_fd, dst_fd, data, length)
        if size < end:
            os.ftruncate(dst_fd, size)
        os.fsync(dst_fd)
    os.replace(tmp, target)


def data_extents(fd: int, start: int, end: int) -> Iterator[tuple[int, int]]:
    """(offset, length) of each data region of an open file between ``start`` and ``end``
    (SEEK_DATA/SEEK_HOLE, at the granularity of the file's filesystem), ascending."""
    offset = start
    while offset < end:
        try:
            data = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole remains
                return
            raise
        if data >= end:
            return
        hole = min(end, os.lseek(fd, data, os.SEEK_HOLE))
        yield data, hole - data
        offset = hole


def _copy_range(src_fd: int, dst_fd: int, offset: int, length: int) -> None:
    done = 0
    while done < length:
        n = os.copy_file_range(src_fd, dst_fd, length - done, offset + done, offset + done)
        if n == 0:
            raise errors.internal("copy_file_range stopped before the end of the data")
        done += n


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


# ---- ext filesystems ----


def ext_info(path: Path | str) -> parse.ExtInfo | None:
    """Reads the ext2/3/4 superblock of an image or device; None if there is none."""
    try:
        with open(path, "rb") as f:
            f.seek(parse.EXT_SUPERBLOCK_OFFSET)
            sb = f.read(parse.EXT_SUPERBLOCK_SIZE)
    except OSError:
        return None
    return parse.ext_superblock(sb)


def mkfs(path: Path | str, fs_type: str, *, label: str = "") -> None:
    # No reserved blocks (the whole volume is the user's); lazy init keeps mkfs to milliseconds.
    run(
        [
            f"mkfs.{fs_type}",
            "-q",
            "-F",
            "-m",
            "0",
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
            *(["-L", label] if label else []),
            str(path),
        ]
    )


# FS_IOC_SETFSLABEL = _IOW(0x94, 50, char[FSLABEL_MAX]) (linux/fs.h): ext4 and xfs, Linux 5.5+.
FS_IOC_SETFSLABEL = 0x41009432
FSLABEL_MAX = 256


def set_label(path: Path | str, label: str, *, mounted_at: str | None = None) -> None:
    """Writes the ext filesystem label of an image or device (``label`` "" clears it).

    Mounted (``mounted_at``): FS_IOC_SETFSLABEL on the mount, so the kernel itself updates the
    live superblock; e2label writing under a mounted filesystem could be overwritten by it.
    """
    if mounted_at is None:
        run(["e2label", str(path), label])
        return
    fd = os.open(mounted_at, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, FS_IOC_SETFSLABEL, label.encode().ljust(FSLABEL_MAX, b"\0"))
    except OSError as exc:
        raise errors.internal(f"setting the label of {mounted_at}: {exc.strerror}") from None
    finally:
        os.close(fd)


CAP_SYS_RESOURCE = 24


def has_capability(bit: int) -> bool:
    """Whether this process holds capability ``bit`` (linux/capability.h) in its effective set."""
    return bit in parse.effective_capabilities(PROC_STATUS.read_text())


def can_resize_online() -> bool:
    """ext4 online resize needs CAP_SYS_RESOURCE (a privileged node plugin has it)."""
    return has_capability(CAP_SYS_RESOURCE)


def grow_fs(device: str, *, mounted: bool) -> bool:
    """Grows the ext filesystem on ``device`` to fill it; False if it already does."""
    info = ext_info(device)
    if info is None or info.size >= device_size(device) - 4096:
        return False
    if mounted and not can_resize_online():
        raise errors.precondition(
            "growing a mounted filesystem needs CAP_SYS_RESOURCE, which this driver lacks; "
            "unpublish and unstage the volume: the next NodeStageVolume grows it offline"
        )
    try:
        run(["resize2fs", device])
    except CommandFailed as exc:
        if mounted or "e2fsck" not in exc.output:
            raise
        run(["e2fsck", "-f", "-p", device])  # resize2fs wants a freshly checked filesystem
        run(["resize2fs", device])
    return True


# ---- loop devices ----


def _loop_backing(name: str) -> str | None:
    try:
        text = (SYS_BLOCK / name / "loop" / "backing_file").read_text().strip()
    except OSError:
        return None
    return text.removesuffix(" (deleted)")


def _detach_pending(name: str) -> bool:
    # This driver never sets autoclear itself: a set flag means LOOP_CLR_FD found the device
    # busy (someone, e.g. udev's probe, still had it open) and the kernel detaches it on close.
    try:
        return (SYS_BLOCK / name / "loop" / "autoclear").read_text().strip() == "1"
    except OSError:
        return False


def _loop_backing_identity(name: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the loop device's backing file, from the kernel (LOOP_GET_STATUS64);
    None when nothing is attached. Unlike ``backing_file``, which names the file as seen from
    the mount the attaching process opened it through, this is the same in every mount
    namespace: a driver container that restarted sees its predecessor's devices under a path of
    a mount it cannot reach ("/volumes/<id>.img")."""
    try:
        fd = os.open(f"/dev/{name}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = fcntl.ioctl(fd, LOOP_GET_STATUS64, bytes(_LOOP_INFO64.size))
    except OSError:  # ENXIO: nothing attached
        return None
    finally:
        os.close(fd)
    device, inode = _LOOP_INFO64.unpack_from(info)[:2]
    return device, inode


def loops_for(image: Path, *, detaching: bool = False) -> list[str]:
    """The loop devices (/dev/loopN) whose backing file is ``image``: the same file (device and
    inode) while it exists, else (deleted) by its path.

    Devices whose detach is pending are left out unless ``detaching``: they are going away and
    must not be handed out again.
    """
    try:
        st = os.stat(image)
        wanted_identity: tuple[int, int] | None = (st.st_dev, st.st_ino)
    except OSError:
        wanted_identity = None
    wanted = str(image)
    found = []
    for entry in SYS_BLOCK.glob("loop*"):
        if not (entry / "loop").is_dir():  # nothing attached
            continue
        if wanted_identity is not None:
            ours = _loop_backing_identity(entry.name) == wanted_identity
        else:
            ours = _loop_backing(entry.name) == wanted
        if ours and (detaching or not _detach_pending(entry.name)):
            found.append(f"/dev/{entry.name}")
    return sorted(found)


# Loop ioctls (linux/loop.h), used directly: no losetup process per stage and unstage.
LOOP_CLR_FD, LOOP_SET_CAPACITY, LOOP_CONFIGURE, LOOP_CTL_GET_FREE = 0x4C01, 0x4C07, 0x4C0A, 0x4C82
LOOP_GET_STATUS64 = 0x4C05
# struct loop_info64: lo_device, lo_inode, lo_rdevice, lo_offset, lo_sizelimit, then the rest.
_LOOP_INFO64 = struct.Struct("=QQQQQ IIII 64s64s32s QQ")
# struct loop_config: fd, block_size, struct loop_info64 (232 bytes), 8 reserved u64.
_LOOP_CONFIG = struct.Struct("=II QQQQQ IIII 64s64s32s QQ 8Q")
LO_FLAGS_DIRECT_IO = 0x10
ATTACH_ATTEMPTS = 16  # another process may take the free device between GET_FREE and CONFIGURE


def _open_loop(number: int) -> int:
    path = f"/dev/loop{number}"
    for _ in range(50):  # devtmpfs creates the node of a new loop device asynchronously
        try:
            return os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            time.sleep(0.01)
    return os.open(path, os.O_RDWR | os.O_CLOEXEC)


def _configure_loop(image: Path) -> str:
    backing = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    try:
        control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
        try:
            for _ in range(ATTACH_ATTEMPTS):
                number = fcntl.ioctl(control, LOOP_CTL_GET_FREE)
                loop = _open_loop(number)
                try:
                    name = str(image).encode()[:63]
                    # LO_FLAGS_DIRECT_IO: no second copy of the data in the image file's page
                    # cache, so unmounts and deletes do not wait on its writeback. The kernel
                    # falls back to buffered I/O where the host filesystem cannot do direct I/O.
                    config = _LOOP_CONFIG.pack(
                        backing, 0, *([0] * 8), LO_FLAGS_DIRECT_IO, name, b"", b"", 0, 0, *([0] * 8)
                    )
                    fcntl.ioctl(loop, LOOP_CONFIGURE, config)
                    return f"/dev/loop{number}"
                except OSError as exc:
                    if exc.errno != errno.EBUSY:  # EBUSY: someone else took it first
                        raise
                finally:
                    os.close(loop)
            raise errors.internal(f"no free loop device for {image} after {ATTACH_ATTEMPTS} tries")
        finally:
            os.close(control)
    finally:
        os.close(backing)


def attach_loop(image: Path) -> str:
    """The loop device for ``image``, attaching one if none is."""
    existing = loops_for(image)
    if existing:
        return existing[0]
    try:
        return _configure_loop(image)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTTY):  # ENOTTY: a kernel before 5.8
            raise errors.internal(f"attaching a loop device to {image}: {exc.strerror}") from None
    return run(["losetup", "--find", "--show", "--nooverlap", str(image)]).strip()


def _loop_ioctl(device: str, request: int, what: str) -> None:
    try:
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.ioctl(fd, request, 0)
    except OSError as exc:
        if exc.errno != errno.ENXIO:  # ENXIO: nothing attached (any more)
            raise errors.internal(f"{what} {device}: {exc.strerror}") from None
    finally:
        os.close(fd)


def refresh_loop(device: str) -> None:
    """Makes the loop device pick up its backing file's new size."""
    _loop_ioctl(device, LOOP_SET_CAPACITY, "refreshing the size of")


DETACH_WAIT_S = 2.0  # how long to wait for the kernel to finish a deferred detach


def detach_loops(image: Path) -> None:
    """Detaches every loop device backed by ``image``.

    A device someone still holds open is detached by the kernel on the last close; wait a
    bounded while for that, so the next attach of the image gets a clean device.
    """
    for device in loops_for(image):
        _loop_ioctl(device, LOOP_CLR_FD, "detaching")
    deadline = time.monotonic() + DETACH_WAIT_S
    while loops_for(image, detaching=True) and time.monotonic() < deadline:
        time.sleep(0.01)


def device_size(device: str) -> int:
    fd = os.open(device, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


# ---- mounts ----


def mounts() -> list[parse.Mount]:
    return parse.mountinfo(MOUNTINFO.read_text())


def mount_at(path: str) -> parse.Mount | None:
    """The topmost mount at exactly ``path`` (symlinks resolved), if any."""
    path = os.path.realpath(path)
    found = None
    for m in mounts():
        if m.mount_point == path:
            found = m
    return found


MS_RDONLY, MS_REMOUNT, MS_BIND = 0x1, 0x20, 0x1000  # mount(2) flags set here, not from options
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _mount(source: str | None, target: str, fs_type: str | None, flags: int, data: str) -> None:
    # mount(2) directly: no mount(8) process per call (it costs milliseconds, and this is hot).
    result = _libc.mount(
        source.encode() if source else None,
        target.encode(),
        fs_type.encode() if fs_type else None,
        flags,
        data.encode() if data else None,
    )
    if result != 0:
        err = ctypes.get_errno()
        what = f"mount {source or ''} on {target}".replace("  ", " ")
        if err == errno.EINVAL and data:
            raise errors.invalid(f"{what} failed: the kernel rejected the options {data!r}")
        raise errors.internal(f"{what} failed: {os.strerror(err)}")


def mount_device(
    device: str, path: str, *, fs_type: str, flags: Sequence[str], read_only: bool
) -> None:
    bits, data = parse.mount_options([*flags, "ro"] if read_only else flags)
    _mount(device, path, fs_type, bits, data)


def bind_mount(source: str, target: str, *, flags: Sequence[str], read_only: bool) -> None:
    """Bind-mounts ``source`` on ``target``; per-mount flags and read-only need a remount."""
    _mount(source, target, None, MS_BIND, "")
    bits, _ = parse.mount_options([f for f in flags if f in parse.BIND_FLAGS])
    if read_only:
        bits |= MS_RDONLY
    if bits:
        try:
            _mount(None, target, None, MS_REMOUNT | MS_BIND | bits, "")
        except errors.CsiError:
            unmount(target)  # never leave a writable mount behind a failed read-only request
            raise


def unmount(path: str, *, attempts: int = 8) -> None:
    """Unmounts everything stacked at ``path``; nothing mounted is fine."""
    for _ in range(attempts):
        if mount_at(path) is None:
            return
        if _libc.umount2(os.path.realpath(path).encode(), 0) != 0:
            err = ctypes.get_errno()
            if err != errno.EINVAL:  # EINVAL: not a mount point (any more)
                raise errors.internal(f"umount {path} failed: {os.strerror(err)}")
    raise errors.internal(f"{path} is still mounted after {attempts} unmounts")


@contextlib.contextmanager
def frozen(path: str) -> Iterator[None]:
    """Freezes the filesystem mounted at ``path`` (FIFREEZE) so a copy of it is consistent."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, FIFREEZE, 0)
        try:
            yield
        finally:
            fcntl.ioctl(fd, FITHAW, 0)
    finally:
        os.close(fd)


@dataclasses.dataclass(frozen=True)
class FsStats:
    total: int
    available: int
    used: int
    inodes_total: int
    inodes_free: int
    inodes_used: int


def fs_stats(path: str) -> FsStats:
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    free = st.f_bfree * st.f_frsize
    return FsStats(
        total=total,
        available=st.f_bavail * st.f_frsize,
        used=total - free,
        inodes_total=st.f_files,
        inodes_free=st.f_ffree,
        inodes_used=st.f_files - st.f_ffree,
    )


def release_under(root: Path) -> None:
    """Unmounts every mount below ``root`` (deepest first) and detaches every loop device whose
    backing file lies below it. For tests, benchmarks and uninstalling a node's state directory;
    it never touches mounts or loop devices outside ``root``.
    """
    prefix = os.path.realpath(root).rstrip("/") + "/"
    inside = [m.mount_point for m in mounts() if m.mount_point.startswith(prefix)]
    for mount_point in sorted(set(inside), key=len, reverse=True):
        with contextlib.suppress(errors.CsiError):
            unmount(mount_point)
    # Files below root by identity too: a device another mount namespace attached names its
    # file by a path of that namespace's (see _loop_backing_identity).
    identities = set()
    for directory, dirs, files in os.walk(prefix):
        dirs[:] = [d for d in dirs if not os.path.ismount(os.path.join(directory, d))]
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(directory, name))
                identities.add((st.st_dev, st.st_ino))
    for entry in SYS_BLOCK.glob("loop*"):
        backing = _loop_backing(entry.name)
        if backing is None:
            continue
        if backing.startswith(prefix) or _loop_backing_identity(entry.name) in identities:
            with contextlib.suppress(errors.CsiError):
                _loop_ioctl(f"/dev/{entry.name}", LOOP_CLR_FD, "detaching")
