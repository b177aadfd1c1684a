"""kube-score as the audit's peer: the comparison corpus (our charts rendered with their defaults
plus the deliberately flawed manifests in corpus/), both tools run over it, and their findings
put side by side per category. Shared by test_kube_score_parity.py and the bench."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kubext_audit import checks, embedded
from kubext_audit.checks.model import Obj, Ref

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
# kube-score leaves seccomp off by default; the audit always checks it.
KUBE_SCORE_ARGS = (
    "score",
    "--output-format",
    "json",
    "--enable-optional-test",
    "container-seccomp-profile",
)
# kube-score's grades: 1 critical, 5 warning, 7 almost OK, 10 OK; it prints 7 as OK.
FLAGGED_GRADE = 5
# The check's comment, for the one kube-score check that mixes two concerns.
NO_SECURITY_CONTEXT = "Container has no configured security context"


@dataclass(frozen=True)
class Category:
    name: str
    kube_score: frozenset[str] = frozenset()  # its check IDs
    ours: frozenset[str] = frozenset()  # our rule IDs

    @property
    def shared(self) -> bool:
        return bool(self.kube_score and self.ours)


def category(name: str, kube_score: Iterable[str] = (), ours: Iterable[str] = ()) -> Category:
    return Category(name, frozenset(kube_score), frozenset(ours))


# What each tool checks, as categories both cover, then each tool's own. A kube-score check not
# listed falls into "kube-score: other"; one of our rules not listed into "audit: other".
CATEGORIES: tuple[Category, ...] = (
    category("requests and limits", ["container-resources"], ["WL005", "WL006"]),
    category("image tag pinned", ["container-image-tag"], ["WL009"]),
    category("liveness/readiness probes", ["pod-probes"], ["WL007", "WL008"]),
    # kube-score's user-group-id check's "no security context" comment: may run as root.
    category("not root", ["container-security-context-user-group-id/none"], ["SEC001"]),
    category("not privileged", ["container-security-context-privileged"], ["SEC006"]),
    category(
        "read-only root filesystem",
        ["container-security-context-readonlyrootfilesystem"],
        ["SEC002"],
    ),
    category("seccomp profile", ["container-seccomp-profile"], ["SEC005"]),
    category(
        "PodDisruptionBudget",
        ["deployment-has-poddisruptionbudget", "statefulset-has-poddisruptionbudget"],
        ["WL003"],
    ),
    category(
        "spread over nodes",
        ["deployment-has-host-podantiaffinity", "statefulset-has-host-podantiaffinity"],
        ["WL004"],
    ),
    # kube-score only.
    category("UID/GID above 10000", ["container-security-context-user-group-id/low-id"]),
    category("replicas behind a Service", ["deployment-replicas"]),
    category("pull policy Always", ["container-image-pull-policy"]),
    category("ephemeral storage", ["container-ephemeral-storage-request-and-limit"]),
    category("NetworkPolicy", ["pod-networkpolicy", "networkpolicy-targets-pod"]),
    category("probes not identical", ["pod-probes-identical"]),
    category("StatefulSet serviceName", ["statefulset-has-servicename"]),
    category("Service targets pods", ["service-targets-pod", "service-type"]),
    category(
        "CronJob deadline and restart policy", ["cronjob-has-deadline", "cronjob-restartpolicy"]
    ),
    # Ours only: the extension-specific categories kube-score lacks, and the rest.
    category(
        "CRDs",
        ours=[
            "CRD001",
            "CRD002",
            "CRD003",
            "CRD004",
            "CRD005",
            "CRD006",
            "CRD007",
            "CRD008",
            "CRD009",
        ],
    ),
    category(
        "admission webhooks",
        ours=["WH001", "WH002", "WH003", "WH004", "WH005", "WH006", "WH007", "WH008", "WH009"],
    ),
    category("controller replicas and leader election", ours=["WL001", "WL002"]),
    category("ServiceAccount and token", ours=["WL010", "WL011"]),
    category("privilege escalation and capabilities", ours=["SEC003", "SEC004"]),
    category("host namespaces and hostPath", ours=["SEC007", "SEC008"]),
    category("RBAC", ours=["RBAC001", "RBAC002", "RBAC003"]),
    category("Pod Security Admission", ours=["PSA001"]),
    category(
        "CSI, device plugins, APIServices, scheduler plugins",
        ours=["EXT001", "EXT002", "EXT003", "EXT004"],
    ),
)
KUBE_SCORE_OTHER = category("kube-score: other")
OURS_OTHER = category("audit: other")


def category_of_kube_score(check: str) -> Category:
    return next((c for c in CATEGORIES if check in c.kube_score), KUBE_SCORE_OTHER)


def category_of_rule(rule: str) -> Category:
    return next((c for c in CATEGORIES if rule in c.ours), OURS_OTHER)


# --- the corpus ---------------------------------------------------------------------------------


def corpus_files() -> list[Path]:
    return sorted(CORPUS_DIR.glob("*.yaml"))


def load_corpus() -> dict[str, list[dict[str, Any]]]:
    """The flawed manifests, per file name."""
    return {
        path.name: [d for d in yaml.safe_load_all(path.read_text()) if d] for path in corpus_files()
    }


def write_manifests(sources: Mapping[str, Sequence[Obj]], into: Path) -> list[Path]:
    """One multi-document file per source, as kube-score reads them."""
    into.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, objects in sources.items():
        path = into / (name if name.endswith(".yaml") else f"{name}.yaml")
        path.write_text(yaml.safe_dump_all([dict(o) for o in objects], sort_keys=False))
        paths.append(path)
    return paths


# --- both tools ---------------------------------------------------------------------------------

Flags = dict[str, set[str]]  # category name -> the objects (Ref strings) it flagged


@dataclass
class Comparison:
    kube_score: Flags = field(default_factory=dict)
    ours: Flags = field(default_factory=dict)

    def missed(self) -> dict[str, set[str]]:
        """Per shared category, what kube-score flags and we do not."""
        return {
            c.name: gap
            for c in CATEGORIES
            if c.shared
            and (gap := self.kube_score.get(c.name, set()) - self.ours.get(c.name, set()))
        }

    def rows(self) -> list[tuple[str, str, int, int, int, int]]:
        """(category, who covers it, kube-score's objects, ours, both, kube-score's we miss)."""
        out = []
        for c in (*CATEGORIES, KUBE_SCORE_OTHER, OURS_OTHER):
            theirs, ours = self.kube_score.get(c.name, set()), self.ours.get(c.name, set())
            if c in (KUBE_SCORE_OTHER, OURS_OTHER) and not (theirs or ours):
                continue
            who = "both" if c.shared else ("kube-score" if c.kube_score else "audit")
            if c is KUBE_SCORE_OTHER:
                who = "kube-score"
            out.append(
                (
                    c.name,
                    who,
                    len(theirs),
                    len(ours),
                    len(theirs & ours),
                    len(theirs - ours) if c.shared else 0,
                )
            )
        return out

    def table(self) -> str:
        header = ("category", "covered by", "kube-score", "audit", "both", "missed")
        rows = [header, *((r[0], r[1], *map(str, r[2:])) for r in self.rows())]
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
        lines = [
            "  ".join(
                str(cell).ljust(w) if i < 2 else str(cell).rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


def kube_score_ref(scored: Mapping[str, Any]) -> str:
    meta = scored.get("object_meta") or {}
    return str(
        Ref(
            kind=str((scored.get("type_meta") or {}).get("kind", "")),
            name=str(meta.get("name", "")),
            namespace=str(meta.get("namespace") or ""),
        )
    )


def kube_score_flags(report: Sequence[Mapping[str, Any]]) -> Flags:
    """Per category, the objects kube-score grades warning or critical (skipped checks aside)."""
    flags: Flags = {}
    for scored in report:
        ref = kube_score_ref(scored)
        for result in scored.get("checks") or []:
            if result.get("skipped") or result.get("grade", 10) > FLAGGED_GRADE:
                continue
            check = str(result["check"]["id"])
            if check == "container-security-context-user-group-id":
                summaries = {c.get("summary") for c in result.get("comments") or []}
                if NO_SECURITY_CONTEXT in summaries:
                    flags.setdefault(category_of_kube_score(f"{check}/none").name, set()).add(ref)
                if summaries - {NO_SECURITY_CONTEXT}:
                    flags.setdefault(category_of_kube_score(f"{check}/low-id").name, set()).add(ref)
                continue
            flags.setdefault(category_of_kube_score(check).name, set()).add(ref)
    return flags


def run_kube_score(binary: Path | str, manifests: Sequence[Path]) -> list[dict[str, Any]]:
    """kube-score's JSON report; it exits 1 when it grades anything critical."""
    done = subprocess.run(
        [str(binary), *KUBE_SCORE_ARGS, *map(str, manifests)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode not in (0, 1):
        raise RuntimeError(f"kube-score exited {done.returncode}: {done.stderr.strip()}")
    return json.loads(done.stdout or "[]")


def our_flags(objects: Sequence[Obj]) -> Flags:
    """Per category, the objects the audit finds anything on (at any severity)."""
    flags: Flags = {}
    for finding in checks.audit(embedded.inventory(objects)):
        flags.setdefault(category_of_rule(finding.rule).name, set()).add(str(finding.ref))
    return flags


def compare(kube_score: Path | str, sources: Mapping[str, Sequence[Obj]], work: Path) -> Comparison:
    """Both tools over the same manifests."""
    manifests = write_manifests(sources, work)
    everything = [o for objects in sources.values() for o in objects]
    return Comparison(
        kube_score=kube_score_flags(run_kube_score(kube_score, manifests)),
        ours=our_flags(everything),
    )
