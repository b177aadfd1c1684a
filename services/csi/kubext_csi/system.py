"""The node's storage primitives: sparse image files, loop devices, ext filesystems and mounts.

Thin wrappers over util-linux and e2fsprogs (losetup, mount, umount, mkfs.ext*, resize2fs) and
over /proc and /sys for reading state. Failures are ``CommandFailed`` (INTERNAL, with the tool's
own message); checks that find nothing return None rather than raising.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc

from kubext_csi import errors

# Tools the driver runs, and the Debian packages that ship them (scripts/ensure-tools.sh).
TOOLS = {
    "losetup": "mount",
    "mount": "mount",
    "umount": "mount",
    "mkfs.ext4": "e2fsprogs",
    "resize2fs": "e2fsprogs",
    "e2fsck": "e2fsprogs",
}
COMMAND_TIMEOUT_S = 120  # mkfs of a large image or resize2fs can take a while; never forever
FIFREEZE = 0xC0045877  # _IOWR('X', 119, int)
FITHAW = 0xC0045878  # _IOWR('X', 120, int)
SYS_BLOCK = Path("/sys/block")
MOUNTINFO = Path("/proc/self/mountinfo")
# Per-mount flags a bind mount can change on remount; other flags belong to the filesystem.
BIND_FLAGS = frozenset(
    "ro rw nosuid suid nodev dev noexec exec noatime atime nodiratime diratime "
    "relatime norelatime strictatime".split()
)


class CommandFailed(errors.CsiError):
    def __init__(self, argv: Sequence[str], returncode: int, output: str) -> None:
        detail = output.strip().splitlines()[-1] if output.strip() else f"exit status {returncode}"
        super().__init__(grpc.StatusCode.INTERNAL, f"{' '.join(argv[:2])} failed: {detail}")
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
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
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
        offset = 0
        while offset < end:
            try:
                data = os.lseek(src_fd, offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole remains
                    break
                raise
            hole = os.lseek(src_fd, data, os.SEEK_HOLE)
            _copy_range(src_fd, dst_fd, data, hole - data)
            offset = hole
        if size < end:
            os.ftruncate(dst_fd, size)
        os.fsync(dst_fd)
    os.replace(tmp, target)


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


@dataclasses.dataclass(frozen=True)
class ExtInfo:
    fs_type: str
    size: int


def ext_info(path: Path | str) -> ExtInfo | None:
    """Reads the ext2/3/4 superblock of an image or device; None if there is none."""
    try:
        with open(path, "rb") as f:
            f.seek(1024)
            sb = f.read(1024)
    except OSError:
        return None
    if len(sb) < 1024 or struct.unpack_from("<H", sb, 0x38)[0] != 0xEF53:
        return None
    blocks_lo, log_block = (
        struct.unpack_from("<I", sb, 0x4)[0],
        struct.unpack_from("<I", sb, 0x18)[0],
    )
    compat, incompat = struct.unpack_from("<I", sb, 0x5C)[0], struct.unpack_from("<I", sb, 0x60)[0]
    blocks_hi = struct.unpack_from("<I", sb, 0x150)[0] if incompat & 0x80 else 0
    block_size = 1024 << log_block
    if incompat & (0x40 | 0x80 | 0x200):  # extents, 64bit, flex_bg: ext4 only
        fs_type = "ext4"
    elif compat & 0x4:  # has_journal
        fs_type = "ext3"
    else:
        fs_type = "ext2"
    return ExtInfo(fs_type, ((blocks_hi << 32) | blocks_lo) * block_size)


def mkfs(path: Path | str, fs_type: str) -> None:
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
            str(path),
        ]
    )


CAP_SYS_RESOURCE = 24


def has_capability(bit: int) -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> bit & 1)
    return False


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


def loops_for(image: Path) -> list[str]:
    """The loop devices (/dev/loopN) whose backing file is ``image``."""
    wanted = str(image)
    found = []
    for entry in SYS_BLOCK.glob("loop*"):
        if _loop_backing(entry.name) == wanted:
            found.append(f"/dev/{entry.name}")
    return sorted(found)


def attach_loop(image: Path) -> str:
    """The loop device for ``image``, attaching one if none is."""
    existing = loops_for(image)
    if existing:
        return existing[0]
    return run(["losetup", "--find", "--show", "--nooverlap", str(image)]).strip()


def refresh_loop(device: str) -> None:
    """Makes the loop device pick up its backing file's new size."""
    run(["losetup", "--set-capacity", device])


def detach_loops(image: Path) -> None:
    for device in loops_for(image):
        try:
            run(["losetup", "--detach", device])
        except CommandFailed as exc:
            if "No such device" not in exc.output:
                raise


def device_size(device: str) -> int:
    fd = os.open(device, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


# ---- mounts ----


@dataclasses.dataclass(frozen=True)
class Mount:
    mount_point: str
    root: str
    source: str
    fs_type: str
    options: frozenset[str]


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 6 or len(tail) < 2:
            continue
        options = frozenset(fields[5].split(","))
        mounts.append(
            Mount(_unescape(fields[4]), _unescape(fields[3]), _unescape(tail[1]), tail[0], options)
        )
    return mounts


def mounts() -> list[Mount]:
    return parse_mountinfo(MOUNTINFO.read_text())


def mount_at(path: str) -> Mount | None:
    """The topmost mount at exactly ``path`` (symlinks resolved), if any."""
    path = os.path.realpath(path)
    found = None
    for m in mounts():
        if m.mount_point == path:
            found = m
    return found


def mount_device(
    device: str, path: str, *, fs_type: str, flags: Sequence[str], read_only: bool
) -> None:
    options = [*flags, "ro"] if read_only else list(flags)
    argv = ["mount", "-t", fs_type]
    if options:
        argv += ["-o", ",".join(options)]
    run([*argv, device, path])


def bind_mount(source: str, target: str, *, flags: Sequence[str], read_only: bool) -> None:
    run(["mount", "--bind", source, target])
    remount = [f for f in flags if f in BIND_FLAGS and f not in ("ro", "rw")]
    if read_only:
        remount.append("ro")
    if remount:
        try:
            run(["mount", "-o", ",".join(["remount", "bind", *remount]), target])
        except CommandFailed:
            unmount(target)  # never leave a writable mount behind a failed read-only request
            raise


def unmount(path: str, *, attempts: int = 8) -> None:
    """Unmounts everything stacked at ``path``; nothing mounted is fine."""
    for _ in range(attempts):
        if mount_at(path) is None:
            return
        run(["umount", path])
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
    for entry in SYS_BLOCK.glob("loop*"):
        backing = _loop_backing(entry.name)
        if backing and backing.startswith(prefix):
            with contextlib.suppress(errors.CsiError):
                run(["losetup", "--detach", f"/dev/{entry.name}"])
