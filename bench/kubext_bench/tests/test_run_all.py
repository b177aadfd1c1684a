"""run-all's edge with stand-in benchmarks (small scripts): a failure, a timeout and a lock held
by another run each become an outcome with its reason; run-all itself goes on."""

from __future__ import annotations

import fcntl
import time
from pathlib import Path

import pytest
from kubext_bench import report, run_all


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(body)
    return str(path)


def bench(tmp_path: Path, body: str, **kw: object) -> run_all.Bench:
    fields: dict[str, object] = {
        "name": "fake",
        "script": script(tmp_path, "fake", body),
        "args": ("--size", "3"),
        "peer": "peer",
        "parse": report.parse_audit,
        "timeout_s": 30,
    }
    fields.update(kw)
    return run_all.Bench(**fields)  # type: ignore[arg-type]


AUDIT_LIKE = """
import sys
assert sys.argv[1:] == ["--size", "3"], sys.argv
print("audit (parse + check, in-process):     10.0 ms")
print("kube-score (process):                  20.0 ms")
print("ratio audit/kube-score: 0.50")
"""


def test_ok_run_is_parsed(tmp_path: Path) -> None:
    done = run_all.run_one(bench(tmp_path, AUDIT_LIKE), tmp_path, 30)
    assert done.status == "ok", done.reason
    assert done.last_line == "ratio audit/kube-score: 0.50"
    (row,) = done.rows
    assert (row.ours, row.theirs, row.ratio) == (10.0, 20.0, 0.5)
    assert (tmp_path / "fake.log").read_text().endswith("ratio audit/kube-score: 0.50\n")
    assert len(done.load_start.split()) == 3


def test_failure_says_exit_code_and_stderr(tmp_path: Path) -> None:
    body = "import sys\nprint('fake: needs root', file=sys.stderr)\nsys.exit(2)\n"
    done = run_all.run_one(bench(tmp_path, body), tmp_path, 30)
    assert (done.status, done.reason) == ("failed", "exit 2: fake: needs root")


def test_unexpected_output_is_a_failure_not_a_figure(tmp_path: Path) -> None:
    done = run_all.run_one(bench(tmp_path, "print('ratio: 0.5')\n"), tmp_path, 30)
    assert done.status == "failed"
    assert "output not understood" in done.reason and "ratio: 0.5" in done.reason


def test_timeout_stops_the_bench_and_its_children(tmp_path: Path) -> None:
    marker = tmp_path / "child-alive"
    body = f"""
import subprocess, sys, time
print("warming up", file=sys.stderr, flush=True)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3); open({str(marker)!r}, 'w')"])
time.sleep(60)
"""
    done = run_all.run_one(bench(tmp_path, body), tmp_path, 1)
    assert done.status == "timed out"
    assert "no result within 1 s" in done.reason and "warming up" in done.reason
    assert done.seconds < 30
    time.sleep(4)
    assert not marker.exists()  # the whole process group got the signal


def test_a_held_lock_is_waited_for_then_reported(tmp_path: Path) -> None:
    lock = tmp_path / "sched.lock"
    with open(lock, "w") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        done = run_all.run_one(bench(tmp_path, AUDIT_LIKE, lock=str(lock)), tmp_path, 1)
    assert done.status == "not run"
    assert f"{lock} stayed held by another run" in done.reason
    assert not (tmp_path / "fake.log").exists()
    again = run_all.run_one(bench(tmp_path, AUDIT_LIKE, lock=str(lock)), tmp_path, 30)
    assert again.status == "ok"  # free now
    assert again.command.startswith(f"flock {lock} python ")


def test_the_scheduler_bench_runs_under_its_lock() -> None:
    assert run_all.BY_NAME["scheduler"].lock == "/tmp/sched-bench.lock"
    assert all(b.lock is None for b in run_all.BENCHES if b.name != "scheduler")


def test_every_bench_script_exists_and_takes_its_report_size_flags() -> None:
    for b in run_all.BENCHES:
        source = (run_all.REPO / b.script).read_text()
        for flag in b.args[::2]:
            assert f'"{flag}"' in source, (b.name, flag)


def test_main_list_and_bad_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_all.main(["--list", "--only", "audit", "scheduler"]) == 0
    listed = capsys.readouterr().out
    assert "audit" in listed and "flock /tmp/sched-bench.lock python" in listed
    assert "cni" not in listed
    with pytest.raises(SystemExit):
        run_all.main(["--only", "nope"])


def test_main_writes_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = bench(tmp_path, AUDIT_LIKE, name="audit")
    monkeypatch.setattr(run_all, "BY_NAME", {"audit": fake})
    monkeypatch.setattr(run_all, "BENCHES", (fake,))
    assert run_all.main(["--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| audit | time over the corpus (ms) | kube-score v1.20.0 | 10 | 20 | 0.5 |" in md
    assert (tmp_path / "out" / "report.json").exists()
