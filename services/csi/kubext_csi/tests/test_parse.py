"""The pure parsers on fixture text and bytes: mountinfo, mount options, capabilities, superblocks."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest

from .. import parse, system

MiB = 1 << 20

MOUNTINFO = (
    "22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
    "98 22 7:3 / /tmp/kx\\040dir/staging rw,relatime shared:50 - ext4 /dev/loop3 rw\n"
    "99 22 7:3 / /tmp/kx\\040dir/target ro,relatime shared:50 master:2 - ext4 /dev/loop3 rw\n"
    "100 22 0:5 /loop4 /tmp/kx/block rw,nosuid - devtmpfs devtmpfs rw,size=1k\n"
    "101 22 0:6 / /tmp/tab\\011and\\134slash rw - tmpfs my\\040src rw\n"
    "not a mountinfo line\n"
)


def test_mountinfo_fields_with_any_number_of_optional_fields() -> None:
    mounts = parse.mountinfo(MOUNTINFO)
    assert [m.mount_point for m in mounts] == [
        "/",
        "/tmp/kx dir/staging",
        "/tmp/kx dir/target",
        "/tmp/kx/block",
        "/tmp/tab\tand\\slash",
    ]
    assert mounts[1] == parse.Mount(
        mount_point="/tmp/kx dir/staging",
        root="/",
        source="/dev/loop3",
        fs_type="ext4",
        options=frozenset({"rw", "relatime"}),
    )
    assert mounts[2].options == frozenset({"ro", "relatime"})  # per-mount, not the super options
    assert mounts[3].root == "/loop4"
    assert (mounts[4].source, mounts[4].fs_type) == ("my src", "tmpfs")


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        pytest.param("plain", "plain", id="nothing-escaped"),
        pytest.param("a\\040b", "a b", id="space"),
        pytest.param("\\012", "\n", id="newline-alone"),
        pytest.param("a\\04", "a\\04", id="truncated-escape-kept"),
        pytest.param("a\\xyz", "a\\xyz", id="not-octal-kept"),
    ],
)
def test_unescape(field: str, expected: str) -> None:
    assert parse.unescape(field) == expected


@pytest.mark.parametrize(
    ("options", "flags", "data"),
    [
        pytest.param(["ro", "nosuid", "discard"], 0x1 | 0x2, "discard", id="flags-and-data"),
        pytest.param(["ro", "rw"], 0, "", id="later-wins"),
        pytest.param(["noatime", "atime", "relatime"], 1 << 21, "", id="atime-family"),
        pytest.param(
            ["defaults", "errors=remount-ro", "noexec"], 0x8, "errors=remount-ro", id="fs"
        ),
    ],
)
def test_mount_options(options: list[str], flags: int, data: str) -> None:
    assert parse.mount_options(options) == (flags, data)


def test_bind_flags_are_per_mount_flags_only() -> None:
    assert {"ro", "nosuid", "noexec", "relatime"} <= parse.BIND_FLAGS
    assert not {"sync", "lazytime", "discard", "defaults"} & parse.BIND_FLAGS


# Docker's default set: chown, dac_override, fowner, fsetid, kill, setgid, setuid, setpcap,
# net_bind_service, net_raw, sys_chroot, mknod, audit_write, setfcap. No CAP_SYS_RESOURCE (24).
CONTAINER_STATUS = "Name:\tpython3\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\n"
PRIVILEGED_STATUS = (
    "CapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n"
)


def test_effective_capabilities_are_the_capeff_bits() -> None:
    assert parse.effective_capabilities(CONTAINER_STATUS) == {
        0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31,
    }  # fmt: skip
    assert parse.effective_capabilities(PRIVILEGED_STATUS) == set(range(41))
    assert parse.effective_capabilities("CapEff:\t0000000000000000\n") == set()
    assert parse.effective_capabilities("Name:\tno capability lines\n") == set()


def test_has_capability_reads_capeff_of_this_process(tmp_path, monkeypatch) -> None:
    status = tmp_path / "status"
    monkeypatch.setattr(system, "PROC_STATUS", status)
    status.write_text(CONTAINER_STATUS)
    assert system.has_capability(0)
    assert not system.has_capability(system.CAP_SYS_RESOURCE)
    assert not system.can_resize_online()
    status.write_text(PRIVILEGED_STATUS)
    assert system.can_resize_online()


def _superblock(*, blocks: int, log_block: int, compat: int = 0, incompat: int = 0) -> bytes:
    sb = bytearray(parse.EXT_SUPERBLOCK_SIZE)
    struct.pack_into("<I", sb, 0x4, blocks & 0xFFFFFFFF)
    struct.pack_into("<I", sb, 0x18, log_block)
    struct.pack_into("<H", sb, 0x38, 0xEF53)
    struct.pack_into("<I", sb, 0x5C, compat)
    struct.pack_into("<I", sb, 0x60, incompat)
    struct.pack_into("<I", sb, 0x150, blocks >> 32)
    return bytes(sb)


@pytest.mark.parametrize(
    ("sb", "expected"),
    [
        pytest.param(
            _superblock(blocks=8192, log_block=2, incompat=0x40),
            parse.ExtInfo("ext4", 32 * MiB),
            id="ext4-extents",
        ),
        pytest.param(
            _superblock(blocks=(1 << 32) + 1, log_block=2, incompat=0x80),
            parse.ExtInfo("ext4", ((1 << 32) + 1) * 4096),
            id="ext4-64bit-high-blocks",
        ),
        pytest.param(
            _superblock(blocks=(1 << 32) + 1, log_block=0, compat=0x4),
            parse.ExtInfo("ext3", 1024),
            id="ext3-high-blocks-ignored-without-64bit",
        ),
        pytest.param(
            _superblock(blocks=64, log_block=0), parse.ExtInfo("ext2", 64 * 1024), id="ext2"
        ),
        pytest.param(bytes(1024), None, id="no-magic"),
        pytest.param(_superblock(blocks=1, log_block=0)[:512], None, id="short-read"),
    ],
)
def test_ext_superblock(sb: bytes, expected: parse.ExtInfo | None) -> None:
    assert parse.ext_superblock(sb) == expected


def test_ext_superblock_label() -> None:
    sb = bytearray(_superblock(blocks=64, log_block=0))
    sb[0x78 : 0x78 + 16] = b"data-1".ljust(16, b"\0")  # s_volume_name, NUL-padded
    assert parse.ext_superblock(bytes(sb)) == parse.ExtInfo("ext2", 64 * 1024, "data-1")
    sb[0x78 : 0x78 + 16] = b"sixteen-chars-xy"  # the full 16 bytes: no NUL at all
    info = parse.ext_superblock(bytes(sb))
    assert info is not None and info.label == "sixteen-chars-xy"


PURITY_CHECK = """
import sys
sys.modules["grpc"] = None  # any import of grpc now fails
before = set(sys.modules)
import kubext_csi.parse
outside = {m.split(".")[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names)
assert outside <= {"kubext_csi"}, f"parse imports {sorted(outside)}"
import kubext_csi.errors, kubext_csi.state, kubext_csi.validation
"""


def test_the_pure_modules_import_no_grpc_and_parse_only_the_standard_library() -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run(
        [sys.executable, "-c", PURITY_CHECK], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
