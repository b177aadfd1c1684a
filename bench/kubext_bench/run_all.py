"""``bench/run-all``: every benchmark of the project one after another, one report.

Each benchmark runs as its own process (``python <script> <report size>``, in this venv, from the
repository root) under a timeout; its stdout and stderr are kept in ``<out>/<name>.log`` and
``<name>.stderr.log``, its output read into rows by ``report`` and the table written to
``<out>/report.md`` and ``report.json``. A benchmark that fails, times out or prints something
unexpected gets a row saying why; the others still run.

    bench/run-all [--only NAME ...] [--list] [--timeout S] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import fcntl
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from kubext_bench import report

REPO = Path(__file__).resolve().parents[2]
# The scheduler bench is also run by hand by the scheduler's engineers: one at a time.
SCHED_LOCK = "/tmp/sched-bench.lock"


@dataclasses.dataclass(frozen=True)
class Bench:
    name: str
    script: str  # relative to the repository root
    args: tuple[str, ...]  # the report size: a few minutes each
    peer: str
    parse: report.Parser
    timeout_s: int
    lock: str | None = None  # a file run-all holds (flock) around the run
    note: str = ""

    def command(self) -> str:
        argv = ["python", self.script, *self.args]
        prefix = f"flock {self.lock} " if self.lock else ""
        return prefix + shlex.join(argv)


BENCHES: tuple[Bench, ...] = (
    Bench(
        "cni",
        "services/cni/bench/cni_bench.py",
        ("--cycles", "50", "--leak-cycles", "20"),
        "reference bridge v1.9.0",
        report.parse_cni,
        900,
    ),
    Bench(
        "csi",
        "services/csi/bench/csi_bench.py",
        ("--volumes", "20"),
        "csi-driver-host-path",
        report.parse_csi,
        1200,
    ),
    Bench(
        "deviceplugin",
        "services/deviceplugin/bench/deviceplugin_bench.py",
        ("--allocates", "2000", "--rounds", "5"),
        "upstream sample device plugin",
        report.parse_deviceplugin,
        600,
    ),
    Bench(
        "operator",
        "services/operator/bench/webapps_bench.py",
        ("--count", "200", "--nodes", "20", "--gogc", "400"),
        "controller-runtime peer",
        report.parse_operator,
        1200,
    ),
    Bench(
        "scheduler",
        "services/scheduler/bench/scheduler_bench.py",
        ("--nodes", "100", "--pods", "500", "--run-timeout", "120"),
        "kube-scheduler",
        report.parse_scheduler,
        1200,
        lock=SCHED_LOCK,
    ),
    Bench(
        "webhooks",
        "services/webhooks/bench/webhooks_bench.py",
        ("--duration", "5"),
        "Go net/http webhook",
        report.parse_webhooks,
        600,
    ),
    Bench(
        "audit",
        "services/audit/bench/audit_vs_kube_score.py",
        ("--rounds", "5"),
        "kube-score v1.20.0",
        report.parse_audit,
        300,
    ),
    Bench(
        "real-node",
        "bench/real_node_bench.py",
        ("--pods", "20", "--batch", "10", "--volume-pods", "10"),
        "reference bridge v1.9.0",
        report.parse_real_node,
        1800,
        # It takes ~/.cache/kubext/real-node-test.lock itself (real_node_testing.machine_lock):
        # holding it here too would deadlock; its wait counts against the timeout.
        note="takes the real-node lock itself",
    ),
)
BY_NAME = {b.name: b for b in BENCHES}


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def say(msg: str) -> None:
    print(f"[run-all] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def held(path: str | None, timeout_s: float) -> Iterator[bool]:
    """Holds ``path``'s flock (True), or gives up after ``timeout_s`` (False); no path: True."""
    if path is None:
        yield True
        return
    with open(path, "a") as fh:
        deadline = time.monotonic() + timeout_s
        said = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                if not said:
                    say(f"waiting for {path} (held by another run)")
                    said = True
                time.sleep(2)
        yield True


def _tail(path: Path, n: int = 1) -> str:
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return " / ".join(lines[-n:])[-300:]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the bench's process group (the benches clean up on it), SIGKILL after 120 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_one(bench: Bench, out: Path, timeout_s: int) -> report.Outcome:
    stdout_path, stderr_path = out / f"{bench.name}.log", out / f"{bench.name}.stderr.log"
    load_start, t0 = load(), time.monotonic()

    def outcome(
        status: str, reason: str, rows: Sequence[report.Row] = (), last: str = ""
    ) -> report.Outcome:
        return report.Outcome(
            bench.name,
            bench.command(),
            status,  # type: ignore[arg-type]
            reason,
            time.monotonic() - t0,
            load_start,
            load(),
            last,
            tuple(rows),
        )

    with held(bench.lock, timeout_s) as got:
        if not got:
            return outcome("not run", f"{bench.lock} stayed held by another run for {timeout_s} s")
        load_start, t0 = load(), time.monotonic()  # from the start of the bench itself
        say(f"{bench.name}: {bench.command()} (timeout {timeout_s} s, load {load_start})")
        with stdout_path.open("wb") as so, stderr_path.open("wb") as se:
            proc = subprocess.Popen(
                [sys.executable, bench.script, *bench.args],
                cwd=REPO,
                stdout=so,
                stderr=se,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: a timeout stops its children too
            )
            try:
                rc = proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                _stop(proc)
                rc = None
            except BaseException:  # Ctrl-C: the bench's clusters and daemons must not stay
                _stop(proc)
                raise
    output = stdout_path.read_text(errors="replace")
    last = report.last_line(output)
    if rc is None:
        return outcome(
            "timed out",
            f"no result within {timeout_s} s; its last output: {_tail(stderr_path) or _tail(stdout_path) or '-'}",
            last=last,
        )
    if rc != 0:
        return outcome("failed", f"exit {rc}: {_tail(stderr_path, 2) or last or '-'}", last=last)
    try:
        rows = bench.parse(output)
    except report.Unparsed as exc:
        return outcome(
            "failed", f"output not understood ({exc}); last line: {last or '-'}", last=last
        )
    return outcome("ok", "", rows, last)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", choices=list(BY_NAME), help="run these only"
    )
    parser.add_argument(
        "--list", action="store_true", help="print the benchmarks and their commands"
    )
    parser.add_argument(
        "--timeout", type=int, metavar="S", help="seconds per benchmark (default: each one's own)"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "dist" / "bench", help="report directory"
    )
    args = parser.parse_args(argv)
    chosen = [BY_NAME[n] for n in dict.fromkeys(args.only)] if args.only else list(BENCHES)
    if args.list:
        for b in chosen:
            extra = f"; {b.note}" if b.note else ""
            print(
                f"{b.name:<13} peer: {b.peer}; timeout {args.timeout or b.timeout_s} s{extra}\n    {b.command()}"
            )
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    machine = f"{platform.node()}, {os.cpu_count()} cores"
    outcomes: list[report.Outcome] = []
    for bench in chosen:
        done = run_one(bench, args.out, args.timeout or bench.timeout_s)
        outcomes.append(done)
        say(
            f"{bench.name}: {done.status} in {done.seconds:.0f} s{': ' + done.reason if done.reason else ''}"
        )
        # Written after each, so an interrupted run still leaves what it measured.
        (args.out / "report.md").write_text(
            report.markdown(outcomes, started=started, machine=machine)
        )
        (args.out / "report.json").write_text(
            report.as_json(outcomes, started=started, machine=machine)
        )
    print((args.out / "report.md").read_text(), end="")
    return 0 if all(o.status == "ok" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
