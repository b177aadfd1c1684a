"""Which loop devices `down` detaches: those backed by files under the cluster's state dir, also
when the device names its file by a path of another mount namespace (the CSI driver's pod)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from kubext_rig import node

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loop devices need root")


def _attach(path: Path) -> str:
    return subprocess.run(
        ["losetup", "--find", "--show", str(path)], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_loop_devices_of_files_under_the_state_dir_by_path_and_by_inode(tmp_path: Path) -> None:
    state, elsewhere = tmp_path / "state", tmp_path / "elsewhere"
    (state / "volumes").mkdir(parents=True)
    elsewhere.mkdir()
    images = [state / "volumes" / "by-path.img", state / "volumes" / "by-inode.img"]
    outside = elsewhere / "not-ours.img"
    for image in [*images, outside]:
        with open(image, "wb") as f:
            f.truncate(8 << 20)
    # Attached through a bind mount that is gone by now, as a container's device looks to the
    # host: the kernel names the file "/by-inode.img".
    other = tmp_path / "container-mount"
    other.mkdir()
    subprocess.run(["mount", "--bind", str(state / "volumes"), str(other)], check=True)
    devices = []
    try:
        devices.append(_attach(images[0]))
        devices.append(_attach(other / images[1].name))
        subprocess.run(["umount", "--lazy", str(other)], check=True)
        assert not node.our_loop_devices(elsewhere)
        devices.append(_attach(outside))
        assert sorted(node.our_loop_devices(state)) == sorted(devices[:2])
    finally:
        subprocess.run(["umount", "--lazy", str(other)], check=False, capture_output=True)
        for device in devices:
            subprocess.run(["losetup", "--detach", device], check=False)
