"""The pure half of ``bench/run-all``: read each benchmark's output into rows, decide met/missed,
render the report (markdown and JSON). No I/O here; ``run_all`` runs the benchmarks.

Each benchmark prints its figures and then, last, the ratio it is judged by; a parser takes the
whole stdout and returns the rows for the report (the last line's ratio first). A parser raises
``Unparsed`` when the output is not what the benchmark prints, so the report says so instead of
showing a wrong figure.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal


class Unparsed(ValueError):
    """The output does not hold the line a parser looks for."""


TargetKind = Literal["ratio<=", "ratio>=", "ratio=", "ours<=", "ours>="]


@dataclasses.dataclass(frozen=True)
class Target:
    """What a row must reach: a bound on the ratio ours/peer, or on our own figure."""

    kind: TargetKind
    value: float

    def met(self, ours: float | None, ratio: float | None) -> bool | None:
        """True/False, or None when the figure it needs was not measured."""
        figure = ratio if self.kind.startswith("ratio") else ours
        if figure is None or math.isnan(figure):
            return None
        if self.kind.endswith("<="):
            return figure <= self.value
        if self.kind.endswith(">="):
            return figure >= self.value
        return math.isclose(figure, self.value, rel_tol=1e-6)  # "=": writes must be equal

    def __str__(self) -> str:
        subject, op = (
            ("ratio", self.kind[5:]) if self.kind.startswith("ratio") else ("ours", self.kind[4:])
        )
        return f"{subject} {'==' if op == '=' else op} {self.value:g}"


@dataclasses.dataclass(frozen=True)
class Row:
    """One compared figure of one benchmark."""

    figure: str
    peer: str
    ours: float | None
    theirs: float | None
    ratio: float | None
    target: Target | None = None
    note: str = ""

    @property
    def verdict(self) -> str:
        """met / missed, or n/a (no target, or the figure it needs is missing)."""
        if self.target is None:
            return "n/a"
        met = self.target.met(self.ours, self.ratio)
        return "n/a" if met is None else "met" if met else "missed"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One benchmark's run as run-all saw it."""

    name: str
    command: str
    status: Literal["ok", "failed", "timed out", "not run"]
    reason: str
    seconds: float
    load_start: str
    load_end: str
    last_line: str
    rows: tuple[Row, ...]


def last_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _search(pattern: str, text: str, flags: int = re.MULTILINE) -> re.Match[str]:
    found = re.search(pattern, text, flags)
    if found is None:
        raise Unparsed(f"no line matching {pattern!r}")
    return found


def _num(text: str) -> float:
    return float(text)


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs


# --- one parser per benchmark, each reading the lines that benchmark prints ----------------------

_CNI_SUMMARY = (
    r"^  (?P<label>.+?)\s+ADD p50\s+(?P<add50>[\d.]+) ms\s+p99\s+(?P<add99>[\d.]+) ms"
    r" \| DEL p50\s+(?P<del50>[\d.]+) ms\s+p99\s+(?P<del99>[\d.]+) ms"
)


def parse_cni(output: str) -> list[Row]:
    """cni_bench.py: per configuration, the worst of ADD/DEL p50/p99 ours/reference (<= 1.0);
    the last line's overall worst first."""
    last = _search(
        r"^worst ratio ours/reference \(.*\): (?P<ratio>[\d.]+|inf) \((?P<config>\S+) (?P<key>.+)\)$",
        output,
    )
    rows: list[Row] = []
    blocks = re.split(r"^(?=\S+: \(load )", output, flags=re.MULTILINE)
    for block in blocks[1:]:
        config = block.split(":", 1)[0]
        sides = list(re.finditer(_CNI_SUMMARY, block, re.MULTILINE))
        ratios = _search(r"^  ratio ours/reference: (?P<list>.+)$", block)
        if len(sides) < 2:
            raise Unparsed(f"cni config {config}: fewer than two summary lines")
        found = {
            key.strip(): _num(value)
            for key, value in (item.rsplit(" ", 1) for item in ratios["list"].split(", "))
        }
        key = max(found, key=lambda k: found[k])
        field = key.lower().replace(" p", "")  # "ADD p99" -> "add99"
        ours, ref = sides[0], sides[1]
        rows.append(
            Row(
                figure=f"{config} {key} (ms)",
                peer=ref["label"],
                ours=_num(ours[field]),
                theirs=_num(ref[field]),
                ratio=found[key],
                target=Target("ratio<=", 1.0),
            )
        )
    if not rows:
        raise Unparsed("no configuration block")
    worst = next((r for r in rows if r.figure.startswith(f"{last['config']} {last['key']} ")), None)
    if worst is None:
        raise Unparsed(f"the last line's worst ({last['config']} {last['key']}) has no block")
    return [worst, *(r for r in rows if r is not worst)]


def parse_csi(output: str) -> list[Row]:
    """csi_bench.py: csi-sanity wall time (mount + block) ours/hostpath (<= 1.5), and the
    lifecycle p50 (ours <= 300 ms)."""
    peer = "csi-driver-host-path"
    life_ours = _num(
        _search(r"^kubext-csi: lifecycle over \d+ volumes: p50 ([\d.]+) ms", output)[1]
    )
    if re.search(r"^ratio csi-sanity wall time kubext-csi/hostpath: n/a", output, re.MULTILINE):
        why = _search(r"^csi-driver-host-path: not built \((.*)\); no comparison", output)[1]
        return [
            Row(
                "csi-sanity wall time, mount + block (s)",
                peer,
                None,
                None,
                None,
                Target("ratio<=", 1.5),
                f"peer not built: {why}",
            ),
            Row("volume lifecycle p50 (ms)", peer, life_ours, None, None, Target("ours<=", 300.0)),
        ]
    ratio = _num(
        _search(
            r"^ratio csi-sanity wall time \(mount \+ block\) kubext-csi/hostpath: ([\d.]+)", output
        )[1]
    )

    def sanity_seconds(prefix: str) -> float:
        found = re.findall(
            rf"^{prefix}: csi-sanity (?:mount|block): .*, ([\d.]+) s$", output, re.MULTILINE
        )
        if len(found) != 2:
            raise Unparsed(f"{prefix}: expected csi-sanity mount and block lines")
        return sum(map(_num, found))

    life_peer = _num(
        _search(r"^hostpath \S*: lifecycle over \d+ volumes: p50 ([\d.]+) ms", output)[1]
    )
    return [
        Row(
            "csi-sanity wall time, mount + block (s)",
            peer,
            sanity_seconds("kubext-csi"),
            sanity_seconds(r"hostpath \S*"),
            ratio,
            Target("ratio<=", 1.5),
        ),
        Row(
            "volume lifecycle p50 (ms)",
            peer,
            life_ours,
            life_peer,
            _ratio(life_ours, life_peer),
            Target("ours<=", 300.0),
        ),
    ]


def _describe(output: str, name: str) -> dict[str, float]:
    """deviceplugin_bench.py's ``describe`` line: p50, p99, max."""
    found = _search(
        rf"^{re.escape(name)}\s+n=\d+\s+p50\s+([\d.]+) \S+\s+p99\s+([\d.]+) \S+\s+max\s+([\d.]+) ",
        output,
    )
    return {"p50": _num(found[1]), "p99": _num(found[2]), "max": _num(found[3])}


def parse_deviceplugin(output: str) -> list[Row]:
    """deviceplugin_bench.py: Allocate p99 (ours <= 2 ms; the last line is its ratio ours/sample),
    Allocate p50, and the re-registration after a kubelet restart (ours max <= 1 s)."""
    peer = "upstream sample device plugin"
    ours_alloc = _describe(output, "ours: Allocate")
    ours_restart = _describe(output, "ours: kubelet restart -> register")
    if re.search(r"^sample plugin not run: ", output, re.MULTILINE):
        why = _search(r"^sample plugin not run: (.*)$", output)[1]
        return [
            Row(
                "Allocate p99 (ms)",
                peer,
                ours_alloc["p99"],
                None,
                None,
                Target("ours<=", 2.0),
                f"peer not run: {why}",
            ),
            Row(
                "kubelet restart -> register, max (s)",
                peer,
                ours_restart["max"],
                None,
                None,
                Target("ours<=", 1.0),
            ),
        ]
    ratio = _num(_search(r"^ratio ours/sample Allocate p99: ([\d.]+)$", output)[1])
    sample_alloc = _describe(output, "sample: Allocate")
    sample_restart = _describe(output, "sample: kubelet restart -> register")
    return [
        Row(
            "Allocate p99 (ms)",
            peer,
            ours_alloc["p99"],
            sample_alloc["p99"],
            ratio,
            Target("ours<=", 2.0),
        ),
        Row(
            "Allocate p50 (ms)",
            peer,
            ours_alloc["p50"],
            sample_alloc["p50"],
            _ratio(ours_alloc["p50"], sample_alloc["p50"]),
        ),
        Row(
            "kubelet restart -> register, max (s)",
            peer,
            ours_restart["max"],
            sample_restart["max"],
            _ratio(ours_restart["max"], sample_restart["max"]),
            Target("ours<=", 1.0),
        ),
    ]


_OPERATOR_TARGETS: dict[str, Target] = {
    "time to all Ready (s)": Target("ratio<=", 1.1),
    "operator CPU (s)": Target("ratio<=", 2.0),
    "operator peak RSS (MB)": Target("ratio<=", 1.5),
    "writes per new WebApp": Target("ratio=", 1.0),
    "writes on restart+resync": Target("ours<=", 0.0),
}


def parse_operator(output: str) -> list[Row]:
    """webapps_bench.py's table: one row per figure and GOGC, with issue 18's targets; the row
    the last line names (the worst ratio to its target) first."""
    last = _search(r"^worst ratio to target \(<= 1 meets all\): ([\d.]+) \((.*)\)$", output)
    number = r"(-?[\d.]+|nan|inf)"
    rows: list[Row] = []
    for found in re.finditer(
        rf"^\s*(\d+) (.+?)\s+{number}\s+{number}\s+{number}(?:\s+[\d.]+)?\s*$", output, re.MULTILINE
    ):
        gogc, label = found[1], found[2].strip()
        ours, theirs, ratio = (_num(found[i]) for i in (3, 4, 5))
        rows.append(
            Row(
                f"{label}, GOGC={gogc}",
                "controller-runtime peer",
                None if math.isnan(ours) else ours,
                None if math.isnan(theirs) else theirs,
                None if math.isnan(ratio) else ratio,
                _OPERATOR_TARGETS.get(label),
            )
        )
    if not rows:
        raise Unparsed("no table row")
    named = last[2].split(":", 1)[0]  # "time to all Ready (s) at GOGC=400"
    label, _, gogc = named.rpartition(" at GOGC=")
    first = next((r for r in rows if r.figure == f"{label}, GOGC={gogc}"), None)
    return [first, *(r for r in rows if r is not first)] if first else rows


def parse_scheduler(output: str) -> list[Row]:
    """scheduler_bench.py: standalone / kube-scheduler pods/s (>= 0.5; the last line) and the
    extender's pods/s (>= 100)."""
    peer = "kube-scheduler"
    ratio = _num(
        _search(r"^standalone / kube-scheduler pods/s \(target >= [\d.]+\): ([\d.]+)$", output)[1]
    )

    def rate(name: str) -> float:
        return _num(_search(rf"^\s*{re.escape(name)}: \d+/\d+ bound, ([\d.]+) pods/s", output)[1])

    kube = rate("kube-scheduler")
    rows = [
        Row("pods/s, standalone", peer, rate("standalone"), kube, ratio, Target("ratio>=", 0.5))
    ]
    if re.search(r"^\s*extender: \d+/\d+ bound", output, re.MULTILINE):
        ext = rate("extender")
        rows.append(
            Row(
                "pods/s, kube-scheduler + our extender",
                peer,
                ext,
                kube,
                _ratio(ext, kube),
                Target("ours>=", 100.0),
            )
        )
    return rows


def parse_webhooks(output: str) -> list[Row]:
    """webhooks_bench.py: closed-loop throughput python/go (>= 0.9; the last line), p99 at
    1,000/s (ours <= 2 ms), CPU per review."""
    peer = "Go net/http webhook"
    last = _search(
        r"^throughput ratio python/go: ([\d.]+) \(medians of \d+: python ([\d.]+)/s, go ([\d.]+)/s\)",
        output,
    )
    rows = [
        Row(
            "max throughput (reviews/s)",
            peer,
            _num(last[2]),
            _num(last[3]),
            _num(last[1]),
            Target("ratio>=", 0.9),
        )
    ]
    p99 = {
        name: _num(found[1])
        for name in ("python", "go")
        if (
            found := re.search(
                rf"^{name}\s+1000\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s", output, re.MULTILINE
            )
        )
    }
    if "python" in p99:
        rows.append(
            Row(
                "p99 at 1,000 reviews/s (ms)",
                peer,
                p99["python"],
                p99.get("go"),
                _ratio(p99["python"], p99.get("go")),
                Target("ours<=", 2.0),
            )
        )
    cost = re.search(r"^CPU per review: python ([\d.]+) us, go ([\d.]+) us", output, re.MULTILINE)
    if cost:
        ours, theirs = _num(cost[1]), _num(cost[2])
        rows.append(Row("CPU per review (us)", peer, ours, theirs, _ratio(ours, theirs)))
    return rows


def parse_audit(output: str) -> list[Row]:
    """audit_vs_kube_score.py: the time over the same files, audit/kube-score (no target set)."""
    ratio = _num(_search(r"^ratio audit/kube-score: ([\d.]+)$", output)[1])
    ours = _num(_search(r"^audit \(parse \+ check, in-process\):\s+([\d.]+) ms$", output)[1])
    theirs = _num(_search(r"^kube-score \(process\):\s+([\d.]+) ms$", output)[1])
    return [Row("time over the corpus (ms)", "kube-score v1.20.0", ours, theirs, ratio)]


def parse_real_node(output: str) -> list[Row]:
    """real_node_bench.py: pod create-to-Ready p50 and p99, kubext-bridge/reference (<= 1.0)."""
    last = _search(
        r"^ratio kubext-bridge/reference pod Ready p50: ([\d.]+) \(p99 ([\d.]+);", output
    )

    def figures(label: str) -> tuple[float, float]:
        found = _search(rf"^{re.escape(label)}\s+p50\s+([\d.]+) s\s+p99\s+([\d.]+) s", output)
        return _num(found[1]), _num(found[2])

    ours, ref = (
        figures("pod create-to-Ready, kubext-bridge"),
        figures("pod create-to-Ready, reference bridge v1.9.0"),
    )
    peer = "reference bridge v1.9.0"
    return [
        Row(
            "pod create-to-Ready p50 (s)",
            peer,
            ours[0],
            ref[0],
            _num(last[1]),
            Target("ratio<=", 1.0),
        ),
        Row(
            "pod create-to-Ready p99 (s)",
            peer,
            ours[1],
            ref[1],
            _num(last[2]),
            Target("ratio<=", 1.0),
        ),
    ]


Parser = Callable[[str], list[Row]]


# --- the report ----------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def table_rows(outcome: Outcome) -> list[list[str]]:
    """The markdown cells for one benchmark: one line per row, or one saying why none."""
    common = [outcome.load_start, outcome.load_end, f"`{outcome.command}`"]
    if outcome.status != "ok" or not outcome.rows:
        why = outcome.status if outcome.status != "ok" else "no figures"
        return [[outcome.name, "-", "-", "-", "-", "-", "-", f"{why}: {outcome.reason}", *common]]
    return [
        [
            outcome.name,
            row.figure,
            row.peer,
            _fmt(row.ours),
            _fmt(row.theirs),
            _fmt(row.ratio),
            str(row.target) if row.target else "-",
            row.verdict + (f" ({row.note})" if row.note else ""),
            *common,
        ]
        for row in outcome.rows
    ]


HEADER = [
    "benchmark",
    "figure",
    "peer",
    "ours",
    "peer's",
    "ratio",
    "target",
    "met/missed",
    "load at start",
    "load at end",
    "rerun",
]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(outcomes: Sequence[Outcome], *, started: str, machine: str) -> str:
    lines = [
        "# Benchmark report",
        "",
        f"Run by `bench/run-all` at {started} on {machine}. ratio = ours / peer's; load = the "
        "1, 5 and 15 minute load averages when the benchmark started and ended.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + " --- |" * len(HEADER),
    ]
    for outcome in outcomes:
        for cells in table_rows(outcome):
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", "Each benchmark's last line:", ""]
    for outcome in outcomes:
        lines.append(
            f"- {outcome.name} ({outcome.status}, {outcome.seconds:.0f} s): `{outcome.last_line or '-'}`"
        )
    return "\n".join(lines) + "\n"


def as_json(outcomes: Sequence[Outcome], *, started: str, machine: str) -> str:
    def row(r: Row) -> dict[str, Any]:
        out = dataclasses.asdict(r)
        for key in ("ours", "theirs", "ratio"):  # JSON has no inf/nan
            if isinstance(out[key], float) and not math.isfinite(out[key]):
                out[key] = str(out[key])
        out["target"] = str(r.target) if r.target else None
        out["verdict"] = r.verdict
        return out

    doc = {
        "started": started,
        "machine": machine,
        "benchmarks": [
            {**dataclasses.asdict(o), "rows": [row(r) for r in o.rows]} for o in outcomes
        ],
    }
    return json.dumps(doc, indent=2, allow_nan=False, default=str) + "\n"
