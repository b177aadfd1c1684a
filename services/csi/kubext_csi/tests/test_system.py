"""System helpers that need no root: mountinfo parsing, ext superblocks, sparse copies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .. import system

MiB = 1 << 20

MOUNTINFO = (
    "22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
    "98 22 7:3 / /tmp/kx\\040dir/staging rw,relatime shared:50 - ext4 /dev/loop3 rw\n"
    "99 22 7:3 / /tmp/kx\\040dir/target ro,relatime shared:50 - ext4 /dev/loop3 rw\n"
    "100 22 0:5 /loop4 /tmp/kx/block rw,nosuid - devtmpfs devtmpfs rw,size=1k\n"
)


def test_parse_mountinfo() -> None:
    mounts = system.parse_mountinfo(MOUNTINFO)
    assert [m.mount_point for m in mounts] == [
        "/",
        "/tmp/kx dir/staging",
        "/tmp/kx dir/target",
        "/tmp/kx/block",
    ]
    assert mounts[1].source == "/dev/loop3" and mounts[1].fs_type == "ext4"
    assert "ro" in mounts[2].options
    assert mounts[3].root == "/loop4"


@pytest.mark.parametrize("fs_type", ["ext4", "ext3", "ext2"])
def test_ext_info_reads_the_superblock(tmp_path: Path, fs_type: str) -> None:
    image = tmp_path / "img"
    system.create_image(image, 32 * MiB)
    assert system.ext_info(image) is None
    system.mkfs(image, fs_type)
    info = system.ext_info(image)
    assert info is not None and info.fs_type == fs_type
    assert 30 * MiB <= info.size <= 32 * MiB


def test_create_image_is_sparse_and_exclusive(tmp_path: Path) -> None:
    image = tmp_path / "img"
    system.create_image(image, 1 << 30)
    assert image.stat().st_size == 1 << 30
    assert image.stat().st_blocks * 512 < MiB
    with pytest.raises(FileExistsError):
        system.create_image(image, 1)


def test_copy_sparse_keeps_data_and_holes(tmp_path: Path) -> None:
    source = tmp_path / "src"
    system.create_image(source, 256 * MiB)
    with open(source, "r+b") as f:
        f.seek(100 * MiB)
        f.write(b"middle")
        f.seek(256 * MiB - 3)
        f.write(b"end")
    target = tmp_path / "dst"
    system.copy_sparse(source, target, size=300 * MiB)
    assert target.stat().st_size == 300 * MiB
    assert target.stat().st_blocks * 512 < 4 * MiB  # holes stayed holes
    with open(target, "rb") as f:
        f.seek(100 * MiB)
        assert f.read(6) == b"middle"
        f.seek(256 * MiB - 3)
        assert f.read(3) == b"end"
    assert not list(tmp_path.glob("*.partial"))


def test_command_failures_carry_the_tool_message(tmp_path: Path) -> None:
    with pytest.raises(system.CommandFailed) as err:
        system.mkfs(tmp_path / "missing-dir" / "img", "ext4")
    assert "mkfs.ext4" in err.value.message
    with pytest.raises(system.CommandFailed) as err:
        system.run(["definitely-not-a-tool-kx"])
    assert "not installed" in err.value.message


def test_capability_reading() -> None:
    assert isinstance(system.has_capability(system.CAP_SYS_RESOURCE), bool)
    assert system.has_capability(0) == (os.geteuid() == 0)
