"""The committed CRD manifests are exactly what the models in libs/kubext/crds generate."""

from __future__ import annotations

from pathlib import Path

from kubext.crds import manifests

CRD_DIR = Path(__file__).resolve().parents[2] / "deploy" / "crds"


def test_committed_crds_match_the_models() -> None:
    stale = manifests.drift(CRD_DIR)
    assert (
        stale == []
    ), f"{stale} differ from the models: run `python -m kubext.crds write {CRD_DIR}` and commit"


def test_every_committed_manifest_is_generated() -> None:
    assert sorted(p.name for p in CRD_DIR.glob("*.yaml")) == sorted(manifests.all_crds())
