"""kube-score v1.20.0 (built by the rig) and the audit side by side on one corpus: our charts
rendered with their defaults plus the deliberately flawed manifests in corpus/. Everything
kube-score flags in a category both tools cover, the audit flags on the same object."""

from __future__ import annotations

from pathlib import Path

import pytest

from helm import helmcharts  # pants: no-infer-dep
from kubext_audit.tests import kube_score_peer as peer
from kubext_rig import tools


@pytest.fixture(scope="module")
def comparison(tmp_path_factory: pytest.TempPathFactory) -> peer.Comparison:
    work = tmp_path_factory.mktemp("parity")
    helm = helmcharts.Helm.with_built_charts(binary=str(tools.binary("helm")), work=work / "helm")
    sources = {
        f"chart-{chart}": helm.template(chart, extra=["--include-crds"]).objects
        for chart in helmcharts.CHARTS
    }
    sources.update(peer.load_corpus())
    found = peer.compare(tools.binary("kube-score"), sources, work / "manifests")
    print("\n" + found.table())
    return found


def test_everything_kube_score_flags_in_a_shared_category_we_flag_too(
    comparison: peer.Comparison,
) -> None:
    assert comparison.missed() == {}


def test_the_corpus_gives_kube_score_something_in_every_shared_category(
    comparison: peer.Comparison,
) -> None:
    # Otherwise the parity above would hold vacuously.
    empty = [c.name for c in peer.CATEGORIES if c.shared and not comparison.kube_score.get(c.name)]
    assert empty == []


def test_every_kube_score_check_it_ran_has_a_category(comparison: peer.Comparison) -> None:
    assert peer.KUBE_SCORE_OTHER.name not in comparison.kube_score
    assert peer.OURS_OTHER.name not in comparison.ours


def test_the_extension_categories_kube_score_lacks_are_ours(comparison: peer.Comparison) -> None:
    for name in (
        "CRDs",
        "admission webhooks",
        "RBAC",
        "Pod Security Admission",
        "CSI, device plugins, APIServices, scheduler plugins",
    ):
        assert comparison.ours.get(name), name
        assert not comparison.kube_score.get(name), name


def test_a_flawed_object_is_flagged_by_both(comparison: peer.Comparison) -> None:
    web = "Deployment/corpus/web"
    for name in ("requests and limits", "image tag pinned", "liveness/readiness probes"):
        assert web in comparison.kube_score[name] & comparison.ours[name], name


def test_a_miss_is_reported(tmp_path: Path) -> None:
    """The comparison can fail: a kube-score flag without an audit finding is a miss."""
    report = [
        {
            "type_meta": {"kind": "Deployment"},
            "object_meta": {"name": "x", "namespace": "n"},
            "checks": [{"check": {"id": "container-image-tag"}, "grade": 1, "skipped": False}],
        }
    ]
    found = peer.Comparison(kube_score=peer.kube_score_flags(report), ours={})
    assert found.missed() == {"image tag pinned": {"Deployment/n/x"}}
