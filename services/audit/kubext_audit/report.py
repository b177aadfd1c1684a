"""The findings as text (a table grouped by object), JSON, SARIF 2.1.0 or JUnit XML. Pure: each
renderer returns a string."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePosixPath
from urllib.parse import quote
from xml.etree import ElementTree

from kubext_audit import checks
from kubext_audit.checks.model import Finding, Ref, Severity

JSON_SCHEMA_VERSION = 1
SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
COLOUR = {Severity.ERROR: "\033[31m", Severity.WARNING: "\033[33m", Severity.INFO: "\033[36m"}
RESET = "\033[0m"

# Where a finding's object came from: (file, line of the field); None where unknown (live).
Locate = Callable[[Finding], tuple[str, int] | None]


def no_location(finding: Finding) -> None:
    return None


def text(findings: Sequence[Finding], *, colour: bool = False, locate: Locate = no_location) -> str:
    if not findings:
        return "no findings\n"
    by_object: dict[Ref, list[Finding]] = {}
    for finding in findings:
        by_object.setdefault(finding.ref, []).append(finding)
    lines: list[str] = []
    for ref, group in by_object.items():
        where = locate(group[0])
        lines.append(f"{ref}" + (f"  ({where[0]})" if where else ""))
        for finding in group:
            severity = f"{finding.severity!s:<7}"
            if colour:
                severity = f"{COLOUR[finding.severity]}{severity}{RESET}"
            lines.append(f"  {severity} {finding.rule:<7} {finding.field}: {finding.message}")
    counts = {s: sum(f.severity == s for f in findings) for s in Severity}
    summary = ", ".join(f"{counts[s]} {s}" for s in sorted(Severity, reverse=True))
    lines.append(f"{len(findings)} findings ({summary}) in {len(by_object)} objects")
    return "\n".join(lines) + "\n"


def as_json(findings: Sequence[Finding], *, locate: Locate = no_location) -> str:
    def one(finding: Finding) -> dict[str, object]:
        where = locate(finding)
        return {
            "rule": finding.rule,
            "severity": str(finding.severity),
            "object": {
                "kind": finding.ref.kind,
                "namespace": finding.ref.namespace or None,
                "name": finding.ref.name,
            },
            "path": finding.field,
            "message": finding.message,
            "location": {"file": where[0], "line": where[1]} if where else None,
        }

    return json.dumps(
        {"version": JSON_SCHEMA_VERSION, "findings": [one(f) for f in findings]}, indent=2
    )


def artifact_location(file: str, base: PurePosixPath) -> dict[str, str]:
    """A file under ``base`` (the checkout code scanning runs in) as a URI relative to
    %SRCROOT%, any other as an absolute file URI."""
    path = PurePosixPath(posixpath.normpath(posixpath.join(base, file)))
    if path.is_relative_to(base):
        return {"uri": quote(str(path.relative_to(base))), "uriBaseId": "%SRCROOT%"}
    return {"uri": path.as_uri()}


def sarif(
    findings: Sequence[Finding],
    *,
    version: str,
    locate: Locate = no_location,
    base: PurePosixPath = PurePosixPath("/"),
) -> str:
    """SARIF 2.1.0 as GitHub code scanning takes it: every rule with its help, each result at
    its object (a logical location) and, where it came from a file, the field's line there."""
    rules = [
        {
            "id": r.id,
            "name": r.check.__name__,
            "shortDescription": {"text": r.title},
            "fullDescription": {"text": r.rationale},
            "help": {
                "text": f"{r.rationale} Fix: {r.fix}",
                "markdown": f"{r.rationale}\n\n**Fix:** {r.fix}",
            },
            "defaultConfiguration": {"level": SARIF_LEVEL[r.severity]},
        }
        for r in checks.RULES
    ]
    index = {r.id: i for i, r in enumerate(checks.RULES)}
    results = []
    for finding in findings:
        result: dict[str, object] = {
            "ruleId": finding.rule,
            "ruleIndex": index[finding.rule],
            "level": SARIF_LEVEL[finding.severity],
            "message": {"text": f"{finding.ref} {finding.field}: {finding.message}"},
        }
        location: dict[str, object] = {
            "logicalLocations": [
                {
                    "name": finding.ref.name,
                    "fullyQualifiedName": str(finding.ref),
                    "kind": "resource",
                }
            ]
        }
        where = locate(finding)
        if where:
            location["physicalLocation"] = {
                "artifactLocation": artifact_location(where[0], base),
                "region": {"startLine": where[1]},
            }
        result["locations"] = [location]
        results.append(result)
    doc = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "kubext-audit",
                        "version": version,
                        "informationUri": "https://github.com/kubext/kubext",
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }
    return json.dumps(doc, indent=2)


def junit(findings: Sequence[Finding], *, objects: Mapping[Ref, object] | None = None) -> str:
    """One test case per object (audited ones without findings pass), a failure per finding."""
    by_object: dict[Ref, list[Finding]] = {ref: [] for ref in objects or {}}
    for finding in findings:
        by_object.setdefault(finding.ref, []).append(finding)
    failed = sum(bool(group) for group in by_object.values())
    suite = ElementTree.Element(
        "testsuite", name="kubext-audit", tests=str(len(by_object)), failures=str(failed)
    )
    for ref, group in by_object.items():
        case = ElementTree.SubElement(suite, "testcase", classname=ref.kind, name=str(ref))
        for finding in group:
            failure = ElementTree.SubElement(
                case, "failure", type=finding.rule, message=f"{finding.field}: {finding.message}"
            )
            failure.text = finding.line()
    return ElementTree.tostring(suite, encoding="unicode")
