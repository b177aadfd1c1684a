"""run-all's pure half on the benchmarks' real output (``outputs/``: runs of each benchmark on
this machine, cut to the figures), and the met/missed decision and the table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from kubext_bench import report
from kubext_bench.report import Outcome, Row, Target

OUTPUTS = Path(__file__).parent / "outputs"


def output(name: str) -> str:
    return (OUTPUTS / f"{name}.txt").read_text()


def by_figure(rows: list[Row]) -> dict[str, Row]:
    return {r.figure: r for r in rows}


def test_last_line_skips_trailing_blank_lines() -> None:
    assert report.last_line("a\nratio: 1.5\n\n  \n") == "ratio: 1.5"
    assert report.last_line("") == ""


def test_cni_rows_per_config_with_the_last_lines_worst_first() -> None:
    rows = report.parse_cni(output("cni"))
    assert rows[0].figure == "dual-stack ADD p99 (ms)"  # the last line: 2.13 (dual-stack ADD p99)
    assert (rows[0].ours, rows[0].theirs, rows[0].ratio) == (1205.9, 565.1, 2.13)
    assert rows[0].verdict == "missed"
    got = by_figure(rows)
    assert set(got) == {
        "dual-stack ADD p99 (ms)",
        "no-masq ADD p50 (ms)",
        "masq-nft ADD p50 (ms)",
        "portmap ADD p99 (ms)",
    }
    assert (got["masq-nft ADD p50 (ms)"].ours, got["masq-nft ADD p50 (ms)"].theirs) == (
        731.3,
        685.6,
    )
    assert all(r.peer == "reference bridge v1.9.0" for r in rows)


def test_csi_sanity_ratio_and_lifecycle() -> None:
    sanity, life = report.parse_csi(output("csi"))
    assert sanity.ours == pytest.approx(2.13 + 1.61)
    assert sanity.theirs == pytest.approx(1.73 + 236.07)
    assert sanity.ratio == 0.02 and sanity.verdict == "met"
    assert (life.ours, life.theirs) == (143.6, 81.2)
    assert life.verdict == "met"  # ours <= 300 ms


def test_csi_without_the_peer_says_why() -> None:
    text = (
        "kubext-csi: lifecycle over 20 volumes: p50 412.0 ms, p99 900.1 ms, mean 420.0 ms\n"
        "kubext-csi: lifecycle p50 412.0 ms vs target 300 ms: MISSED\n"
        "csi-driver-host-path: not built (go: module lookup disabled); no comparison in this run\n"
        "ratio csi-sanity wall time kubext-csi/hostpath: n/a (hostpath not built)\n"
    )
    sanity, life = report.parse_csi(text)
    assert sanity.ratio is None and sanity.verdict == "n/a"
    assert "go: module lookup disabled" in sanity.note
    assert life.verdict == "missed"


def test_deviceplugin_allocate_and_reregister() -> None:
    got = by_figure(report.parse_deviceplugin(output("deviceplugin")))
    p99 = got["Allocate p99 (ms)"]
    assert (p99.ours, p99.theirs, p99.ratio) == (2.663, 0.887, 3.00)
    assert p99.verdict == "missed"  # ours <= 2 ms
    restart = got["kubelet restart -> register, max (s)"]
    assert (restart.ours, restart.theirs) == (0.331, 10.012) and restart.verdict == "met"
    assert report.parse_deviceplugin(output("deviceplugin"))[0] is not None
    assert report.parse_deviceplugin(output("deviceplugin"))[0].figure == "Allocate p99 (ms)"


def test_operator_table_with_targets_and_the_named_row_first() -> None:
    rows = report.parse_operator(output("operator"))
    assert rows[0].figure == "writes per new WebApp, GOGC=400"  # the row the last line names
    got = by_figure(rows)
    ready = got["time to all Ready (s), GOGC=400"]
    assert (ready.ours, ready.theirs, ready.ratio) == (49.76, 47.71, 1.04)
    assert ready.verdict == "met"  # <= 1.1
    assert got["operator CPU (s), GOGC=400"].verdict == "met"
    assert got["writes per new WebApp, GOGC=400"].verdict == "met"  # equal
    assert got["Events per new WebApp, GOGC=400"].target is None
    resync = got["writes on restart+resync, GOGC=400"]
    assert resync.ratio is None and resync.ours == 0.0 and resync.verdict == "met"
    assert len(rows) == 6  # the load-average lines are not rows


def test_scheduler_standalone_ratio_and_extender_rate() -> None:
    standalone, extender = report.parse_scheduler(output("scheduler"))
    assert (standalone.ours, standalone.theirs, standalone.ratio) == (57.1, 365.2, 0.16)
    assert standalone.verdict == "missed"  # >= 0.5
    assert extender.ours == 89.9 and extender.verdict == "missed"  # >= 100 pods/s


def test_webhooks_throughput_p99_and_cost() -> None:
    got = by_figure(report.parse_webhooks(output("webhooks")))
    tput = got["max throughput (reviews/s)"]
    assert (tput.ours, tput.theirs, tput.ratio, tput.verdict) == (2289, 4170, 0.55, "missed")
    p99 = got["p99 at 1,000 reviews/s (ms)"]
    assert (p99.ours, p99.theirs, p99.verdict) == (910.28, 7.78, "missed")
    assert got["CPU per review (us)"].ours == 412


def test_audit_time_without_target() -> None:
    (row,) = report.parse_audit(output("audit"))
    assert (row.ours, row.theirs, row.ratio, row.verdict) == (1386.5, 126.9, 10.93, "n/a")


def test_real_node_pod_ready() -> None:
    p50, p99 = report.parse_real_node(output("real-node"))
    assert (p50.ours, p50.theirs, p50.ratio, p50.verdict) == (2.00, 2.88, 0.69, "met")
    assert p99.ratio == 0.69


@pytest.mark.parametrize(
    "parse, name",
    [
        (report.parse_cni, "cni"),
        (report.parse_csi, "csi"),
        (report.parse_deviceplugin, "deviceplugin"),
        (report.parse_operator, "operator"),
        (report.parse_scheduler, "scheduler"),
        (report.parse_webhooks, "webhooks"),
        (report.parse_audit, "audit"),
        (report.parse_real_node, "real-node"),
    ],
)
def test_output_cut_before_its_last_line_is_not_understood(parse: report.Parser, name: str) -> None:
    text = output(name).rstrip("\n")
    with pytest.raises(report.Unparsed):
        parse(text.rsplit("\n", 1)[0])


@pytest.mark.parametrize(
    "target, ours, ratio, verdict",
    [
        (Target("ratio<=", 1.0), 5.0, 1.0, True),
        (Target("ratio<=", 1.0), 5.0, 1.01, False),
        (Target("ratio>=", 0.9), 5.0, 0.9, True),
        (Target("ratio>=", 0.9), 5.0, 0.89, False),
        (Target("ratio=", 1.0), 4.0, 1.0, True),
        (Target("ratio=", 1.0), 4.0, 0.98, False),  # fewer writes misses too
        (Target("ours<=", 2.0), 2.5, 0.1, False),  # our own figure, whatever the ratio
        (Target("ours>=", 100.0), 100.0, 0.2, True),
        (Target("ratio<=", 1.0), 5.0, None, None),
        (Target("ratio<=", 1.0), 5.0, math.nan, None),
        (Target("ours<=", 2.0), None, 0.5, None),
    ],
)
def test_target_met(
    target: Target, ours: float | None, ratio: float | None, verdict: bool | None
) -> None:
    assert target.met(ours, ratio) is verdict


def test_target_text() -> None:
    assert str(Target("ratio<=", 1.1)) == "ratio <= 1.1"
    assert str(Target("ours>=", 100.0)) == "ours >= 100"
    assert str(Target("ratio=", 1.0)) == "ratio == 1"


def outcome(**kw: object) -> Outcome:
    base: dict[str, object] = {
        "name": "cni",
        "command": "python services/cni/bench/cni_bench.py --cycles 50",
        "status": "ok",
        "reason": "",
        "seconds": 12.0,
        "load_start": "1.00 2.00 3.00",
        "load_end": "4.00 5.00 6.00",
        "last_line": "worst ratio: 1.2",
        "rows": (),
    }
    base.update(kw)
    return Outcome(**base)  # type: ignore[arg-type]


def test_table_has_a_line_per_row_with_verdict_load_and_command() -> None:
    rows = (
        Row("ADD p50 (ms)", "reference", 44.1, 49.5, 0.891, Target("ratio<=", 1.0)),
        Row("DEL p50 (ms)", "reference", 43.2, 20.9, 2.067, Target("ratio<=", 1.0), "a | note"),
    )
    md = report.markdown([outcome(rows=rows)], started="now", machine="m")
    lines = [line for line in md.splitlines() if line.startswith("| cni ")]
    assert lines == [
        "| cni | ADD p50 (ms) | reference | 44.1 | 49.5 | 0.891 | ratio <= 1 | met | 1.00 2.00 3.00 "
        "| 4.00 5.00 6.00 | `python services/cni/bench/cni_bench.py --cycles 50` |",
        "| cni | DEL p50 (ms) | reference | 43.2 | 20.9 | 2.07 | ratio <= 1 | missed (a \\| note) "
        "| 1.00 2.00 3.00 | 4.00 5.00 6.00 | `python services/cni/bench/cni_bench.py --cycles 50` |",
    ]
    assert "- cni (ok, 12 s): `worst ratio: 1.2`" in md


def test_a_failed_or_timed_out_benchmark_gets_one_line_with_its_reason() -> None:
    md = report.markdown(
        [
            outcome(status="timed out", reason="no result within 900 s", last_line=""),
            outcome(name="csi", status="failed", reason="exit 2: csi bench: needs root"),
        ],
        started="now",
        machine="m",
    )
    assert "| cni | - | - | - | - | - | - | timed out: no result within 900 s |" in md
    assert "| csi | - | - | - | - | - | - | failed: exit 2: csi bench: needs root |" in md


def test_json_has_every_benchmark_and_no_nan() -> None:
    rows = (Row("ADD p99 (ms)", "reference", 5.0, 0.0, math.inf, Target("ratio<=", 1.0)),)
    doc = json.loads(report.as_json([outcome(rows=rows)], started="now", machine="m"))
    (bench,) = doc["benchmarks"]
    assert bench["name"] == "cni" and bench["load_start"] == "1.00 2.00 3.00"
    assert bench["rows"][0]["ratio"] == "inf"
    assert bench["rows"][0]["verdict"] == "missed" and bench["rows"][0]["target"] == "ratio <= 1"
