"""tools/tilt/dev_loop.py, the supervisor the Tiltfile starts each service's pex with: real child
processes, a real zip, real signals; no cluster."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(os.environ.get("KUBEXT_REPO", Path(__file__).resolve().parents[2]))


def _load() -> ModuleType:
    # A script run on the image's interpreter, not a package: loaded from its file.
    path = REPO / "tools" / "tilt" / "dev_loop.py"
    spec = importlib.util.spec_from_file_location("dev_loop", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["dev_loop"] = module
    spec.loader.exec_module(module)
    return module


dev_loop = _load()


def _fake_pex(path: Path, main: str = "") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("__main__.py", main)
        for name in ("PEX-INFO", ".bootstrap/pex/__init__.py", "__pex__/x.py"):
            zf.writestr(name, "")
        zf.writestr(".deps/kopf-1.0.whl/kopf/__init__.py", "")
        zf.writestr("kubext_operator/__init__.py", "")
        zf.writestr("kubext_operator/VERSION", "0.1.0\n")
        zf.writestr("kubext/__init__.py", "")
        zf.writestr("kubext/health.py", "PORT = 8080\n")
    return path


def test_the_pex_first_party_code_is_copied_once_and_synced_files_survive(tmp_path: Path) -> None:
    pex, src = _fake_pex(tmp_path / "svc.pex"), tmp_path / "src"
    assert dev_loop.copy_sources(pex, src)
    copied = {str(p.relative_to(src)) for p in src.rglob("*") if p.is_file()}
    assert copied == {
        "kubext_operator/__init__.py",
        "kubext_operator/VERSION",
        "kubext/__init__.py",
        "kubext/health.py",
        dev_loop.COPIED_MARKER,
    }
    # What Tilt synced afterwards is kept when the container starts again in the same pod.
    (src / "kubext" / "health.py").write_text("PORT = 9090\n")
    assert not dev_loop.copy_sources(pex, src)
    assert (src / "kubext" / "health.py").read_text() == "PORT = 9090\n"


def test_the_synced_sources_come_first_on_the_pex_path(tmp_path: Path) -> None:
    env = dev_loop.child_env({"PYTHONPATH": "/other", "HOME": "/h"}, tmp_path)
    assert env["PEX_INHERIT_PATH"] == "prefer"
    assert env["PYTHONPATH"] == f"{tmp_path}{os.pathsep}/other"
    assert env["HOME"] == "/h"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"


CHILD = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
with open(sys.argv[1], "a") as fh:
    fh.write(f"{os.getpid()}\\n")
time.sleep(float(sys.argv[2]))
sys.exit(int(sys.argv[3]))
"""


def _pids(log: Path) -> list[int]:
    return [int(x) for x in log.read_text().split()] if log.exists() else []


def _wait(what: str, check, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := check():
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _supervisor(tmp_path: Path, sleep: float, code: int) -> tuple[object, Path, Path]:
    log, trigger = tmp_path / "pids", tmp_path / dev_loop.TRIGGER
    command = [sys.executable, "-c", CHILD, str(log), str(sleep), str(code)]
    sup = dev_loop.Supervisor(command, dict(os.environ), trigger, poll_s=0.05)
    return sup, log, trigger


def test_a_touched_trigger_restarts_the_process_and_its_own_exit_ends_the_loop(
    tmp_path: Path,
) -> None:
    sup, log, trigger = _supervisor(tmp_path, sleep=3.0, code=7)
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(sup.run()))
    runner.start()
    first = _wait("the first start", lambda: _pids(log))
    trigger.touch()
    pids = _wait("a second process", lambda: _pids(log) if len(_pids(log)) == 2 else None)
    assert pids[0] == first[0] and pids[1] != pids[0]
    # The first one was stopped, not left running beside the new one.
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)
    runner.join(timeout=15)
    assert result == [7]  # the process's own exit (after its sleep) is the loop's status
    assert sup.starts == 2


# A runnable stand-in for a pex: a zip behind a shebang whose __main__ puts the zip after the
# inherited path (a pex's PEX_INHERIT_PATH=prefer), then reports its pid and kubext.health.PORT.
PEX_MAIN = """
import os, signal, sys, time
zipped = sys.path.pop(0)
sys.path.append(zipped)
from kubext import health
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
with open(os.environ["REPORT"], "a") as fh:
    fh.write(f"{os.getpid()} {health.PORT}\\n")
time.sleep(60)
"""


def _runnable_pex(path: Path) -> Path:
    _fake_pex(path, PEX_MAIN)
    data = path.read_bytes()
    path.write_bytes(f"#!{sys.executable}\n".encode() + data)
    path.chmod(0o755)
    return path


def test_the_script_runs_the_synced_code_restarts_on_the_trigger_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    """The whole script as the container runs it: the pex's code copied, a synced change run
    after the trigger, SIGTERM (the kubelet stopping the pod) passed on, exit 0, no restart."""
    pex, src, report = _runnable_pex(tmp_path / "svc.pex"), tmp_path / "src", tmp_path / "report"
    script = REPO / "tools" / "tilt" / "dev_loop.py"
    proc = subprocess.Popen(
        [sys.executable, str(script), "--pex", str(pex), "--src", str(src), "--"],
        env={**os.environ, "REPORT": str(report)},
    )
    try:
        lines = lambda: report.read_text().splitlines() if report.exists() else []  # noqa: E731
        first = _wait("the first start", lines)
        assert first[0].split()[1] == "8080"  # the copied code, as the pex has it
        synced = src / "kubext" / "health.py"
        was = synced.stat()
        synced.write_text("PORT = 9090\n")  # what tilt's sync() does
        # Same size, same mtime: the case where bytecode written by the first run would win.
        os.utime(synced, ns=(was.st_atime_ns, was.st_mtime_ns))
        (src / dev_loop.TRIGGER).touch()  # tilt's run("touch ...")
        second = _wait("the restart", lambda: lines() if len(lines()) == 2 else None)
        assert second[1].split()[1] == "9090"
        assert second[1].split()[0] != second[0].split()[0]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert len(lines()) == 2
    finally:
        if proc.poll() is None:
            proc.kill()
