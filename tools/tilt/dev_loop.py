"""The dev loop's process supervisor: runs a service's pex so that Tilt's live update reaches it.

The Tiltfile starts each service's container with this file (from a ConfigMap) in place of the
image's entrypoint: ``python3.11 dev_loop.py --pex /app/kubext-<svc>.pex --src DIR -- ARGS...``.

- DIR is an emptyDir (the image's root is read-only). On the container's first start the pex's
  first-party packages (``kubext_<svc>``, ``kubext``, generated code) are copied into it, so it
  holds complete packages; Tilt's ``sync()`` then overwrites the files that changed.
- The pex runs with ``PEX_INHERIT_PATH=prefer`` and ``PYTHONPATH=DIR``: DIR's packages come
  before the pex's own on ``sys.path``, so the synced sources are what runs.
- When ``DIR/.restart`` changes (Tilt's ``run("touch ...")`` after a sync), the pex gets SIGTERM
  and is started again, in the same container: no image build, no new pod, no container restart
  (a restart would count towards CrashLoopBackOff's growing delays). When the pex exits by
  itself, so does this, with its status; SIGTERM and SIGINT are passed on to it.

Standard library only: it runs on the image's interpreter, outside the pex.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

# What a pex holds besides the project's own code (its bootstrap, third-party wheels, metadata).
PEX_INTERNALS = frozenset({".bootstrap", ".deps", "__pex__", "PEX-INFO", "__main__.py"})
COPIED_MARKER = ".copied-from-pex"
TRIGGER = ".restart"
POLL_S = 0.2
STOP_GRACE_S = 20.0


def first_party(names: Iterable[str]) -> list[str]:
    """The members of a pex's zip that are the project's own code."""
    return [n for n in names if n.split("/", 1)[0] not in PEX_INTERNALS]


def copy_sources(pex: Path, src: Path) -> bool:
    """Copy the pex's own code into ``src`` once per pod (the emptyDir outlives a container, and
    what Tilt synced since must not be overwritten); True when it copied."""
    if (src / COPIED_MARKER).exists():
        return False
    with zipfile.ZipFile(pex) as zf:
        zf.extractall(src, first_party(zf.namelist()))
    (src / COPIED_MARKER).write_text(f"{pex}\n")
    return True


def child_env(env: dict[str, str], src: Path) -> dict[str, str]:
    """The pex's environment: ``src`` first on its ``sys.path``, and no bytecode written there (a
    .pyc records its source's mtime to the second and its size: a same-size edit within that
    second would run the stale bytecode)."""
    path = [str(src), *filter(None, [env.get("PYTHONPATH")])]
    return {
        **env,
        "PEX_INHERIT_PATH": "prefer",
        "PYTHONPATH": os.pathsep.join(path),
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def stamp(trigger: Path) -> int | None:
    """What identifies one restart request: the trigger file's mtime (None while absent)."""
    try:
        return trigger.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def log(message: str) -> None:
    print(f"[kubext dev-loop] {message}", file=sys.stderr, flush=True)


class Supervisor:
    """Runs ``command`` until it exits by itself, restarting it on each new trigger stamp."""

    def __init__(
        self,
        command: Sequence[str],
        env: dict[str, str],
        trigger: Path,
        *,
        poll_s: float = POLL_S,
        spawn: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
    ) -> None:
        self.command, self.env, self.trigger, self.poll_s = list(command), env, trigger, poll_s
        self.spawn = spawn
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping: int | None = None  # the signal that asked us to stop
        self.starts = 0

    def on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = signum
        if self.child and self.child.poll() is None:
            self.child.send_signal(signum)

    def _stop_child(self) -> None:
        assert self.child is not None
        self.child.terminate()
        try:
            self.child.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()

    def run(self) -> int:
        while True:
            seen = stamp(self.trigger)
            self.child = self.spawn(self.command, env=self.env)
            self.starts += 1
            if self.starts > 1:
                log(f"restarted {self.command[0]} (pid {self.child.pid})")
            while (code := self.child.poll()) is None:
                if self.stopping is None and stamp(self.trigger) != seen:
                    break
                time.sleep(self.poll_s)
            else:
                if self.stopping is None:
                    log(f"{self.command[0]} exited with {code}")
                return 128 - code if code < 0 else code  # killed by a signal: as a shell says
            log(f"{self.trigger} changed: restarting {self.command[0]}")
            self._stop_child()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pex", type=Path, required=True, help="the service's pex")
    parser.add_argument("--src", type=Path, required=True, help="the synced sources' directory")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="-- then the pex's arguments")
    opts = parser.parse_args(argv)
    args = opts.args[1:] if opts.args[:1] == ["--"] else opts.args
    if copy_sources(opts.pex, opts.src):
        log(f"copied the first-party code of {opts.pex} into {opts.src}")
    supervisor = Supervisor(
        [str(opts.pex), *args], child_env(dict(os.environ), opts.src), opts.src / TRIGGER
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, supervisor.on_signal)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
