"""Entry point: ``kubext-audit [-f FILE|DIR|-]... [--output text|json|sarif|junit]``.

With ``-f`` it audits rendered manifests; without, the cluster of the current kubeconfig context
(or ``--kubeconfig``/``--context``, ``--namespace``; in a pod, its own cluster).
Exit codes: 0 no finding at or above ``--fail-on``, 1 such findings, 2 usage or input errors
(every input problem is printed as one line on stderr; the readable objects are still audited).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import PurePosixPath

from kubext import cli
from kubext_audit import checks, embedded, manifests, report
from kubext_audit.checks.model import Finding, Inventory, Ref, Severity

OK, FINDINGS, BAD_INPUT = 0, 1, 2
OUTPUTS = ("text", "json", "sarif", "junit")


def severity(text: str) -> Severity:
    """--fail-on's type: argparse shows an ArgumentTypeError's own text (and exits 2)."""
    try:
        return Severity.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parser(version: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kubext-audit",
        description="Best-practice checks for Kubernetes extension components (CRDs, admission "
        "webhooks, controllers, node agents, RBAC), on manifests or a live cluster.",
    )
    p.add_argument("--version", action="version", version=f"kubext-audit {version}")
    p.add_argument(
        "-f",
        "--filename",
        action="append",
        default=[],
        metavar="PATH",
        help="manifest file, directory or - for stdin (repeatable); without it, a live cluster",
    )
    p.add_argument("--kubeconfig", help="kubeconfig file (live mode)")
    p.add_argument("--context", help="kubeconfig context (live mode)")
    p.add_argument("-n", "--namespace", help="only this namespace's objects (live mode)")
    p.add_argument("-o", "--output", choices=OUTPUTS, default="text")
    p.add_argument(
        "--fail-on",
        type=severity,
        default=Severity.ERROR,
        metavar="SEVERITY",
        help="exit 1 on findings at or above this severity (error, warning, info; default error)",
    )
    p.add_argument(
        "--disable",
        action="append",
        default=[],
        metavar="ID[,ID]",
        help="checks to skip (repeatable); per object: the audit.kubext.io/ignore annotation",
    )
    p.add_argument("--list-checks", action="store_true", help="print every check and exit")
    return p


class SourceError(Exception):
    """The cluster cannot be read at all (no configuration, not reachable): one line."""


def load(args: argparse.Namespace) -> tuple[Inventory, manifests.Loaded]:
    if args.filename:
        loaded = manifests.load(args.filename)
        return embedded.inventory(loaded.objects), loaded
    from kubext_audit import cluster  # only live mode needs the kubernetes client

    try:
        with cluster.api_client(kubeconfig=args.kubeconfig, context=args.context) as api:
            listed = cluster.read(api, namespace=args.namespace)
    except cluster.Unreachable as exc:
        raise SourceError(str(exc)) from None
    return embedded.inventory(listed.objects, live=True), manifests.Loaded(problems=listed.problems)


def main(argv: Sequence[str] | None = None) -> int:
    version = cli.read_version("kubext_audit")
    args = parser(version).parse_args(argv)
    if args.list_checks:
        for r in checks.RULES:
            live = " (live)" if r.live_only else ""
            print(f"{r.id:<8} {r.severity!s:<8} {r.title}{live}")
        return OK
    disabled = {part.strip() for value in args.disable for part in value.split(",") if part}
    unknown = sorted(disabled - set(checks.BY_ID))
    if unknown:
        print(f"kubext-audit: unknown check IDs: {', '.join(unknown)}", file=sys.stderr)
        return BAD_INPUT
    try:
        inventory, loaded = load(args)
    except SourceError as exc:
        print(f"kubext-audit: {exc}", file=sys.stderr)
        return BAD_INPUT
    for problem in loaded.problems:
        print(f"kubext-audit: {problem}", file=sys.stderr)
    unreadable: list[checks.Unreadable] = []
    findings = checks.audit(inventory, disabled=disabled, unreadable=unreadable)
    for problem in unreadable:
        where = loaded.locations.get(problem.ref)
        prefix = f"{where.file}:{where.line}: " if where else ""
        print(f"kubext-audit: {prefix}{problem}", file=sys.stderr)

    def locate(finding: Finding) -> tuple[str, int] | None:
        where = loaded.locations.get(finding.ref)
        return (where.file, where.line_of(finding.path)) if where else None

    if args.output == "json":
        print(report.as_json(findings, locate=locate))
    elif args.output == "sarif":

        def in_a_file(finding: Finding) -> tuple[str, int] | None:
            where = locate(finding)
            return where if where and where[0] != manifests.STDIN else None

        base = PurePosixPath(os.getcwd())
        print(report.sarif(findings, version=version, locate=in_a_file, base=base))
    elif args.output == "junit":
        print(report.junit(findings, objects={Ref.of(o): o for o in inventory.objects}))
    else:
        print(report.text(findings, colour=sys.stdout.isatty(), locate=locate), end="")
    if loaded.problems or unreadable:
        return BAD_INPUT
    return FINDINGS if any(f.severity >= args.fail_on for f in findings) else OK


if __name__ == "__main__":
    sys.exit(main())
