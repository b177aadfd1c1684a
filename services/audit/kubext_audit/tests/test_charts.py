"""Our charts, rendered with their default values by the rig's pinned helm (as tests/helm builds
them), audited: the findings they really have, and a broken variant failing with its IDs."""

from __future__ import annotations

from pathlib import Path

import pytest

from helm import helmcharts  # pants: no-infer-dep
from kubext_audit import checks, embedded
from kubext_audit.__main__ import main
from kubext_audit.checks.model import IGNORE_ANNOTATION, Severity
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
        for f in checks.audit(embedded.inventory(rendered.objects))
    }


def errors(found: set[tuple[str, str, str]]) -> set[tuple[str, str]]:
    return {(rule, ref) for rule, severity, ref in found if severity == str(Severity.ERROR)}


@pytest.mark.parametrize("chart", helmcharts.CHARTS)
def test_each_chart_with_its_defaults_has_no_error(
    helm: helmcharts.Helm, chart: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert errors(audit(helm, chart)) == set()
    # The CLI over helm's own output: every document read (no input problem), exit 0.
    rendered = tmp_path / f"{chart}.yaml"
    rendered.write_text(
        helm.run(
            "template", "kubext", str(helm.charts / chart), "-n", "kubext-system", "--include-crds"
        )
    )
    assert main(["-f", str(rendered)]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("mode", ["standalone", "extender"])
def test_the_scheduler_configurations_name_plugins_that_exist(
    helm: helmcharts.Helm, mode: str
) -> None:
    assert not {rule for rule, _, _ in audit(helm, "scheduler", mode=mode) if rule == "EXT004"}
    profiles = [
        {
            "schedulerName": "kubext-scheduler",
            "plugins": {"filter": {"enabled": [{"name": "NodeResourcesFitt"}]}},
        }
    ]
    found = audit(helm, "scheduler", mode=mode, profiles=profiles)
    assert ("EXT004", "error", "ConfigMap/kubext-system/kubext-scheduler-profiles") in found


def test_the_operators_cluster_wide_secret_reads_are_ignored_by_name_only(
    helm: helmcharts.Helm,
) -> None:
    """By default the operator manages Databases in every namespace, so it reads Secrets
    cluster-wide: the chart says so with the ignore annotation, for RBAC003 alone."""
    rendered = helm.template("operator", extra=["--include-crds"])
    role = rendered.one("ClusterRole", "kubext-operator")
    assert role["metadata"]["annotations"][IGNORE_ANNOTATION] == "RBAC003"
    found = audit(helm, "operator")
    # Without the annotation, the finding is there.
    del role["metadata"]["annotations"][IGNORE_ANNOTATION]
    bare = {(f.rule, str(f.ref)) for f in checks.audit(embedded.inventory(rendered.objects))}
    assert ("RBAC003", "ClusterRole/kubext-operator") in bare
    # Its CRDs (crds/) pass the CRD checks.
    assert not {rule for rule, _, _ in found if rule.startswith("CRD")}


def test_the_operator_limited_to_namespaces_reads_secrets_only_there(
    helm: helmcharts.Helm,
) -> None:
    namespaces = ["team-a", "team-b"]
    rendered = helm.template(
        "operator", values={"config": {"namespaces": namespaces}}, extra=["--include-crds"]
    )
    role = rendered.one("ClusterRole", "kubext-operator")
    assert IGNORE_ANNOTATION not in (role["metadata"].get("annotations") or {})
    assert not any("secrets" in r.get("resources", []) for r in role["rules"])
    roles = {
        r["metadata"]["namespace"]: r
        for r in rendered.of_kind("Role")
        if r["metadata"]["name"] == "kubext-operator-secrets"
    }
    assert sorted(roles) == namespaces
    for namespace, secrets_role in roles.items():
        assert [r["resources"] for r in secrets_role["rules"]] == [["secrets"]]
        (binding,) = (
            b
            for b in rendered.of_kind("RoleBinding")
            if b["metadata"]["namespace"] == namespace
            and b["roleRef"]["name"] == "kubext-operator-secrets"
        )
        assert binding["subjects"][0]["name"] == "kubext-operator"
    found = {
        (f.rule, str(f.severity), str(f.ref))
        for f in checks.audit(embedded.inventory(rendered.objects))
    }
    assert errors(found) == set()
    # A Role reading its namespace's Secrets is a warning, not an error.
    assert ("RBAC003", "warning", "Role/team-a/kubext-operator-secrets") in found


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
    found = {(f.rule, str(f.ref)) for f in checks.audit(embedded.inventory(rendered.objects))}
    ref = "Deployment/kubext-system/kubext-operator"
    assert {("WL009", ref), ("SEC003", ref), ("WL007", ref)} <= found
