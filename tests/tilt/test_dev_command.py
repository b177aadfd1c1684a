"""`./kubext dev` on a cluster where `./kubext up` installed its Helm releases: Tilt would replace
them with the charts' defaults, so it stops first, saying what to do, before building anything."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path


def test_dev_refuses_a_cluster_running_ups_releases_and_says_what_to_do(tmp_path: Path) -> None:
    state = tmp_path / "cluster"
    (state / "services").mkdir(parents=True)
    (state / "services" / "releases.json").write_text(json.dumps(["cni", "webhooks"]))
    done = subprocess.run(
        ["bash", "kubext", "dev"],
        env={**os.environ, "KUBEXT_RIG_DIR": str(state), "KUBEXT_CACHE": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    [line] = done.stderr.splitlines()  # one line, and nothing was built or started before it
    assert f"the cluster in {state} runs `./kubext up`'s Helm releases" in line
    assert "`./kubext down` first" in line
    assert not (tmp_path / "cache").exists()
