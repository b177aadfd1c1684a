"""csi-sanity (kubernetes-csi/csi-test, built by the rig) against the real driver process."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kubext_rig import tools as rig_tools

from .. import system
from .conftest import needs_root, start_process

pytestmark = needs_root

# The specs csi-sanity skips for what this driver does not advertise (PUBLISH_READONLY; the attach
# limit spec, which also needs -csi.testnodevolumeattachlimit; ModifyVolume; GroupController).
UNADVERTISED = (
    "ControllerPublishVolume should fail when publishing more volumes than the node max attach",
    "ControllerPublishVolume should fail when the volume is already published but is incompatible",
    "ModifyVolume",
    "volume attribute class",
    "GroupController",
)


def run_sanity(root: Path, endpoint: str, *extra: str) -> ET.Element:
    junit = root / "junit.xml"
    result = subprocess.run(
        [
            str(rig_tools.binary("csi-sanity")),
            f"-csi.endpoint={endpoint}",
            f"-csi.mountdir={root}/mnt",
            f"-csi.stagingdir={root}/staging",
            f"-csi.junitfile={junit}",
            "-ginkgo.no-color",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert junit.exists(), result.stdout[-4000:] + result.stderr[-2000:]
    suite = ET.parse(junit).getroot()
    assert result.returncode == 0, result.stdout[-6000:]
    return suite


@pytest.mark.parametrize("access_type", ["mount", "block"])
def test_csi_sanity_has_no_failures(tools: None, workdir: Path, access_type: str) -> None:
    driver = start_process(workdir)
    try:
        suite = run_sanity(workdir, driver.endpoint, f"-csi.testvolumeaccesstype={access_type}")
    finally:
        assert driver.stop() == 0, driver.log.read_text()[-2000:]
    cases = list(suite.iter("testcase"))
    status = {c.get("name"): c.get("status") for c in cases}
    passed = [n for n, s in status.items() if s == "passed"]
    skipped = [n for n, s in status.items() if s == "skipped"]
    failed = [n for n, s in status.items() if s not in ("passed", "skipped", "pending")]
    print(
        f"csi-sanity {access_type}: {len(passed)} passed, {len(skipped)} skipped, "
        f"{len(failed)} failed of {len(cases)}"
    )
    for name in skipped:
        print(f"  skipped: {name}")
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    assert failed == []
    # Every spec for what the driver advertises (csi-test v5.4.0; 67 and 24 skipped before
    # ControllerPublish and LIST_VOLUMES_PUBLISHED_NODES).
    assert len(passed) >= 75
    assert len(skipped) <= 16
    assert [n for n in skipped if not any(word in n for word in UNADVERTISED)] == []
    # csi-sanity cleaned up through the driver: nothing of ours is mounted or attached.
    assert [m for m in system.mounts() if m.mount_point.startswith(str(workdir))] == []
    assert list((workdir / "state" / "volumes").iterdir()) == []
