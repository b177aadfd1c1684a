"""Pure parsers of what the kernel reports, and of mount options: no I/O, standard library only.

``system`` reads /proc and devices and hands the text or bytes here, so every rule below is
tested on fixture strings without root.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Sequence

# ---- /proc/self/mountinfo ----


@dataclasses.dataclass(frozen=True)
class Mount:
    mount_point: str
    root: str
    source: str
    fs_type: str
    options: frozenset[str]


def unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo (octal)."""
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


def mountinfo(text: str) -> list[Mount]:
    """The mounts in mountinfo order (a later one at the same point is stacked on top)."""
    mounts = []
    for line in text.splitlines():
        # Optional fields ("shared:1" ...) vary in number; " - " ends them.
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 6 or len(tail) < 2:
            continue
        options = frozenset(fields[5].split(","))
        mounts.append(
            Mount(unescape(fields[4]), unescape(fields[3]), unescape(tail[1]), tail[0], options)
        )
    return mounts


# ---- mount options ----

# Per-mount flags a bind mount can change on remount; other flags belong to the filesystem.
BIND_FLAGS = frozenset(
    "ro rw nosuid suid nodev dev noexec exec noatime atime nodiratime diratime "
    "relatime norelatime strictatime".split()
)
# mount(2) flags for the generic options; everything else is filesystem data (e.g. "discard").
_FLAG_BITS = {
    "ro": (0x1, True),
    "rw": (0x1, False),
    "nosuid": (0x2, True),
    "suid": (0x2, False),
    "nodev": (0x4, True),
    "dev": (0x4, False),
    "noexec": (0x8, True),
    "exec": (0x8, False),
    "sync": (0x10, True),
    "async": (0x10, False),
    "dirsync": (0x80, True),
    "noatime": (0x400, True),
    "atime": (0x400, False),
    "nodiratime": (0x800, True),
    "diratime": (0x800, False),
    "relatime": (1 << 21, True),
    "norelatime": (1 << 21, False),
    "strictatime": (1 << 24, True),
    "lazytime": (1 << 25, True),
    "nolazytime": (1 << 25, False),
    "defaults": (0, True),
}


def mount_options(options: Sequence[str]) -> tuple[int, str]:
    """Splits mount options into mount(2) flag bits and the filesystem's data string.

    Later options win, as with mount(8): ``["ro", "rw"]`` is read-write.
    """
    flags, data = 0, []
    for option in options:
        if option in _FLAG_BITS:
            bit, on = _FLAG_BITS[option]
            flags = flags | bit if on else flags & ~bit
        else:
            data.append(option)
    return flags, ",".join(data)


# ---- /proc/self/status ----


def effective_capabilities(status: str) -> frozenset[int]:
    """The capability numbers set in the ``CapEff:`` mask of a /proc/<pid>/status text."""
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            mask = int(line.split()[1], 16)
            return frozenset(bit for bit in range(mask.bit_length()) if mask >> bit & 1)
    return frozenset()


# ---- ext2/3/4 superblock ----

EXT_SUPERBLOCK_OFFSET = 1024
EXT_SUPERBLOCK_SIZE = 1024
_EXT_MAGIC = 0xEF53
_COMPAT_HAS_JOURNAL = 0x4
_INCOMPAT_EXTENTS, _INCOMPAT_64BIT, _INCOMPAT_FLEX_BG = 0x40, 0x80, 0x200


@dataclasses.dataclass(frozen=True)
class ExtInfo:
    fs_type: str
    size: int
    label: str = ""  # s_volume_name


def ext_superblock(sb: bytes) -> ExtInfo | None:
    """The filesystem type and size from the 1024 superblock bytes; None if they are not one."""
    if len(sb) < EXT_SUPERBLOCK_SIZE or struct.unpack_from("<H", sb, 0x38)[0] != _EXT_MAGIC:
        return None
    blocks_lo, log_block = (
        struct.unpack_from("<I", sb, 0x4)[0],
        struct.unpack_from("<I", sb, 0x18)[0],
    )
    compat, incompat = struct.unpack_from("<I", sb, 0x5C)[0], struct.unpack_from("<I", sb, 0x60)[0]
    blocks_hi = struct.unpack_from("<I", sb, 0x150)[0] if incompat & _INCOMPAT_64BIT else 0
    block_size = 1024 << log_block
    if incompat & (_INCOMPAT_EXTENTS | _INCOMPAT_64BIT | _INCOMPAT_FLEX_BG):  # ext4 only
        fs_type = "ext4"
    elif compat & _COMPAT_HAS_JOURNAL:
        fs_type = "ext3"
    else:
        fs_type = "ext2"
    label = sb[0x78 : 0x78 + 16].split(b"\0", 1)[0].decode(errors="replace")
    return ExtInfo(fs_type, ((blocks_hi << 32) | blocks_lo) * block_size, label)
