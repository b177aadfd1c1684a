"""The CLI over manifest files: input errors, line numbers, outputs, exit codes, the README."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubext import cli
from kubext_audit import checks, manifests
from kubext_audit.__main__ import main
from kubext_audit.tests import samples, sarif_schema

GOOD = yaml.safe_dump_all([samples.good_deployment(), samples.pdb(), samples.binding()])


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_version_is_the_version_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"kubext-audit {cli.read_version('kubext_audit')}"


def test_clean_manifests_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-f", write(tmp_path, GOOD)]) == 0
    assert capsys.readouterr().out == "no findings\n"


def test_exit_1_only_at_or_above_fail_on(tmp_path: Path) -> None:
    one_replica = samples.good_deployment()
    one_replica["spec"]["replicas"] = 1  # WL001, a warning
    path = write(tmp_path, yaml.safe_dump_all([one_replica, samples.binding()]))
    assert main(["-f", path]) == 0
    assert main(["-f", path, "--fail-on", "warning"]) == 1
    assert main(["-f", path, "--fail-on", "warning", "--disable", "WL001"]) == 0


def test_an_unknown_fail_on_severity_is_a_usage_error_naming_the_valid_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["-f", write(tmp_path, GOOD), "--fail-on", "bogus"])
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines()[-1] == (
        "kubext-audit: error: argument --fail-on: unknown severity 'bogus' "
        "(error, warning or info)"
    )
    assert "Traceback" not in err


def test_a_yaml_syntax_error_names_file_and_line_and_the_rest_is_audited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = samples.good_deployment()
    broken["spec"]["template"]["spec"]["containers"][0]["image"] = "x:latest"
    text = yaml.safe_dump(broken) + "---\nkind: Pod\nmetadata: {name: [\n---\n" + GOOD
    path = write(tmp_path, text)
    bad_line = text.splitlines().index("metadata: {name: [") + 1
    assert main(["-f", path, "--output", "json"]) == 2
    out, err = capsys.readouterr()
    [line] = err.splitlines()
    assert re.fullmatch(
        rf"kubext-audit: {re.escape(path)}:{bad_line + 1}:\d+: YAML syntax error: .+", line
    )
    assert "Traceback" not in err
    assert {f["rule"] for f in json.loads(out)["findings"]} == {"WL009"}


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("apiVersion: v1\nmetadata: {name: x}\n", "document has no kind"),
        ("kind: Pod\nmetadata: {name: x}\n", "Pod has no apiVersion"),
        ("apiVersion: v1\nkind: Pod\n", "Pod has no metadata.name"),
        ("- a\n- b\n", "a list, not a Kubernetes object"),
    ],
)
def test_a_bad_document_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: str, problem: str
) -> None:
    path = write(tmp_path, "# comment\n---\n" + document)
    assert main(["-f", path]) == 2
    assert capsys.readouterr().err == f"kubext-audit: {path}:3: {problem}\n"


def test_a_missing_file_and_an_unknown_check_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-f", str(tmp_path / "nope.yaml")]) == 2
    assert (
        capsys.readouterr().err
        == f"kubext-audit: {tmp_path / 'nope.yaml'}: no such file or directory\n"
    )
    assert main(["-f", write(tmp_path, GOOD), "--disable", "XX999"]) == 2
    assert "unknown check IDs: XX999" in capsys.readouterr().err


def test_lists_stdin_and_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bare = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}
    listed = {"apiVersion": "v1", "kind": "List", "items": [bare]}
    (tmp_path / "sub").mkdir()
    write(tmp_path, yaml.safe_dump(listed), "sub/list.yml")
    write(tmp_path, "not: [yaml", "sub/ignored.txt")
    loaded = manifests.load([str(tmp_path)])
    assert (loaded.objects, loaded.problems) == ([bare], [])
    from_stdin = manifests.load(["-"], stdin=io.StringIO(json.dumps(listed)))
    assert from_stdin.objects == [bare]


def test_findings_are_located_at_the_fields_line(tmp_path: Path) -> None:
    broken = samples.good_deployment()
    broken["spec"]["template"]["spec"]["containers"][0]["image"] = "x:latest"
    text = "---\n" + GOOD + "---\n" + yaml.safe_dump(broken, sort_keys=False).replace("ctl", "two")
    loaded = manifests.load([write(tmp_path, text)])
    [finding] = [
        f for f in checks.audit(checks.Inventory(tuple(loaded.objects))) if f.rule == "WL009"
    ]
    line = loaded.locations[finding.ref].line_of(finding.path)
    assert text.splitlines()[line - 1].strip() == "image: x:latest"


def test_json_output_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one_replica = samples.good_deployment()
    one_replica["spec"]["replicas"] = 1
    path = write(tmp_path, yaml.safe_dump_all([one_replica, samples.binding()]))
    main(["-f", path, "--output", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["version"] == 1
    [finding] = doc["findings"]
    assert finding == {
        "rule": "WL001",
        "severity": "warning",
        "object": {"kind": "Deployment", "namespace": "sys", "name": "ctl"},
        "path": "spec.replicas",
        "message": "controller with 1 replica",
        "location": {"file": path, "line": finding["location"]["line"]},
    }
    assert (
        Path(path).read_text().splitlines()[finding["location"]["line"] - 1].strip()
        == "replicas: 1"
    )


def test_sarif_has_every_rule_with_help_and_located_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}
    path = write(tmp_path, yaml.safe_dump(bare))
    main(["-f", path, "--output", "sarif"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["version"] == "2.1.0"
    [run] = doc["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == [r.id for r in checks.RULES]
    assert all(r["help"]["text"] and r["shortDescription"]["text"] for r in rules)
    [result] = run["results"]
    assert result["ruleId"] == "PSA001"
    assert rules[result["ruleIndex"]]["id"] == "PSA001"
    assert result["level"] == "warning"
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == Path(path).as_uri()
    assert location["region"]["startLine"] == 3


def test_junit_has_a_case_per_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bare = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}
    main(["-f", write(tmp_path, yaml.safe_dump_all([bare, samples.pdb()])), "--output", "junit"])
    out = capsys.readouterr().out
    assert 'tests="2" failures="1"' in out
    assert '<failure type="PSA001"' in out


def test_the_readme_documents_every_check() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    documented = set(re.findall(r"^\| ([A-Z]+\d{3}) \|", readme, flags=re.M))
    assert documented == set(checks.BY_ID)


def test_a_malformed_object_is_one_line_and_the_rest_is_audited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Valid YAML in a shape no API server accepts (labels as a list, versions as strings):
    never a traceback; the object and what could not be read are named."""
    odd = samples.good_deployment()
    odd["metadata"]["labels"] = ["app"]
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.org"},
        "spec": {"versions": ["v1"]},
    }
    bare = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}
    path = write(tmp_path, yaml.safe_dump_all([odd, crd, bare]))
    assert main(["-f", path, "--output", "json"]) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    lines = err.splitlines()
    prefix = f"kubext-audit: {path}:1: Deployment/sys/ctl: "
    assert all(
        re.fullmatch(rf"{re.escape(prefix)}WL\d{{3}} cannot read it \(.+\)", x) for x in lines
    )
    assert any(line.startswith(f"{prefix}WL001 cannot read it") for line in lines), err
    rules = {(f["rule"], f["object"]["kind"]) for f in json.loads(out)["findings"]}
    # The CRD's versions list has no version in it: no storage version.
    assert {("CRD001", "CustomResourceDefinition"), ("PSA001", "Namespace")} <= rules


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (
            "apiVersion: apps/v1\nkind: Deploymnet\nmetadata: {name: x}\n",
            "unknown kind Deploymnet in apps/v1: not audited",
        ),
        (
            "apiVersion: v1\nkind: Deployment\nmetadata: {name: x}\n",
            "unknown kind Deployment in v1 (it is in apps): not audited",
        ),
    ],
)
def test_an_unknown_kind_of_a_built_in_group_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: str, problem: str
) -> None:
    path = write(tmp_path, "# comment\n---\n" + document)
    assert main(["-f", path]) == 2
    assert capsys.readouterr().err == f"kubext-audit: {path}:3: {problem}\n"


def test_custom_resources_and_every_kind_of_our_charts_are_known(tmp_path: Path) -> None:
    custom = {"apiVersion": "kubext.io/v1", "kind": "WebApp", "metadata": {"name": "w"}}
    built_in = [
        {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}}
        for api_version, kind in [
            ("v1", "ConfigMap"),
            ("v1", "Secret"),
            ("apps/v1", "Deployment"),
            ("storage.k8s.io/v1", "CSIDriver"),
            ("storage.k8s.io/v1", "StorageClass"),
            ("policy/v1", "PodDisruptionBudget"),
            ("networking.k8s.io/v1", "NetworkPolicy"),
            ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ]
    ]
    loaded = manifests.load([write(tmp_path, yaml.safe_dump_all([custom, *built_in]))])
    assert loaded.problems == []
    assert len(loaded.objects) == 1 + len(built_in)


CORPUS = Path(__file__).resolve().parent / "corpus"


def sarif_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    main([*argv, "--output", "sarif"])
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


def test_sarif_is_valid_against_the_2_1_0_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files under the working directory (as code scanning runs in the checkout): URIs relative
    to %SRCROOT% with the field's line; files elsewhere: file URIs; stdin: no file at all."""
    (tmp_path / "deploy").mkdir()
    for source in CORPUS.glob("*.yaml"):
        (tmp_path / "deploy" / source.name).write_text(source.read_text())
    monkeypatch.chdir(tmp_path)
    doc = sarif_of(["-f", "deploy"], capsys)
    assert sarif_schema.validate(doc) == []
    [run] = doc["runs"]
    assert len(run["results"]) > 50
    for result in run["results"]:
        [location] = result["locations"]
        physical = location["physicalLocation"]
        assert physical["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
        assert physical["artifactLocation"]["uri"].startswith("deploy/")
        assert physical["region"]["startLine"] >= 1
        [logical] = location["logicalLocations"]
        assert logical["fullyQualifiedName"].count("/") in (1, 2)
    elsewhere = sarif_of(["-f", str(CORPUS / "workloads.yaml")], capsys)
    assert sarif_schema.validate(elsewhere) == []
    uri = elsewhere["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert uri == {"uri": (CORPUS / "workloads.yaml").as_uri()}
    monkeypatch.setattr("sys.stdin", io.StringIO((CORPUS / "workloads.yaml").read_text()))
    piped = sarif_of(["-f", "-"], capsys)
    assert sarif_schema.validate(piped) == []
    assert all("physicalLocation" not in r["locations"][0] for r in piped["runs"][0]["results"])


@pytest.mark.parametrize(
    ("breakage", "complaint"),
    [
        (lambda doc: doc.pop("version"), "$: version is required"),
        (lambda doc: doc["runs"][0]["results"][0].update(level="fatal"), "is not one of"),
        (
            lambda doc: doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"][
                "artifactLocation"
            ].update(uri="<stdin>"),
            "is not a uri-reference",
        ),
        (
            lambda doc: doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"][
                "region"
            ].update(startLine=0),
            "0 < 1",
        ),
    ],
)
def test_the_schema_check_can_fail(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    breakage: Callable[[dict[str, Any]], object],
    complaint: str,
) -> None:
    doc = sarif_of(["-f", str(CORPUS / "workloads.yaml")], capsys)
    breakage(doc)
    assert any(complaint in error for error in sarif_schema.validate(doc))


def test_colour_only_on_a_tty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}
    path = write(tmp_path, yaml.safe_dump(bare))
    main(["-f", path])
    assert "\033[" not in capsys.readouterr().out
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    main(["-f", path])
    assert "\033[33mwarning\033[0m PSA001" in capsys.readouterr().out
