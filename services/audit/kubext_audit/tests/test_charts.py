"""Our charts, rendered with their default values by the rig's pinned helm (as tests/helm builds
them), audited: the findings they really have, and a broken variant failing with its IDs."""

from __future__ import annotations

from pathlib import Path

import pytest

from helm import helmcharts  # pants: no-infer-dep
from kubext_audit import checks
from kubext_audit.checks.model import Inventory, Severity
from kubext_rig import tools


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> helmcharts.Helm:
    return helmcharts.Helm.with_built_charts(
        binary=str(tools.binary("helm")), work=tmp_path_factory.mktemp("helm")
    )


def audit(helm: helmcharts.Helm, chart: str, **values: object) -> set[tuple[str, str, str]]:
    rendered = helm.template(chart, values=dict(values) or None, extra=["--include-crds"])
    return {
        (f.rule, str(f.severity), str(f.ref))
        for f in checks.audit(Inventory(tuple(rendered.objects)))
    }


def errors(found: set[tuple[str, str, str]]) -> set[tuple[str, str]]:
    return {(rule, ref) for rule, severity, ref in found if severity == str(Severity.ERROR)}


@pytest.mark.parametrize("chart", ["webhooks", "scheduler", "cni", "csi", "deviceplugin"])
def test_each_chart_has_no_error(helm: helmcharts.Helm, chart: str) -> None:
    assert errors(audit(helm, chart)) == set()


def test_the_operator_chart_reads_every_secret_and_nothing_else_is_an_error(
    helm: helmcharts.Helm,
) -> None:
    found = audit(helm, "operator")
    assert errors(found) == {("RBAC003", "ClusterRole/kubext-operator")}
    # Its CRDs (crds/) pass the CRD checks.
    assert not {rule for rule, _, _ in found if rule.startswith("CRD")}


def test_the_charts_warnings(helm: helmcharts.Helm) -> None:
    webhooks = audit(helm, "webhooks")
    assert ("WH007", "warning", "ValidatingWebhookConfiguration/kubext-webhooks") in webhooks
    assert ("WH007", "warning", "MutatingWebhookConfiguration/kubext-webhooks") in webhooks
    scheduler = audit(helm, "scheduler")
    assert ("WL001", "warning", "Deployment/kubext-system/kubext-scheduler") in scheduler
    # The node agents' host access is info, saying why, not a failure.
    cni = audit(helm, "cni")
    assert ("SEC006", "info", "DaemonSet/kubext-system/kubext-cni") in cni
    assert ("SEC007", "info", "DaemonSet/kubext-system/kubext-cni") in cni


def test_a_broken_variant_fails_with_the_expected_ids(
    helm: helmcharts.Helm, tmp_path: Path
) -> None:
    rendered = helm.template("operator", extra=["--include-crds"])
    deployment = rendered.one("Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["image"] = "kubext/operator:latest"
    container["securityContext"]["allowPrivilegeEscalation"] = True
    del container["livenessProbe"]
    found = {(f.rule, str(f.ref)) for f in checks.audit(Inventory(tuple(rendered.objects)))}
    ref = "Deployment/kubext-system/kubext-operator"
    assert {("WL009", ref), ("SEC003", ref), ("WL007", ref)} <= found
