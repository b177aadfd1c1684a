"""System helpers that need no root: images, ext superblocks of real mkfs output, sparse copies.

The parsers they use are tested on fixtures in test_parse.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .. import system

MiB = 1 << 20


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
