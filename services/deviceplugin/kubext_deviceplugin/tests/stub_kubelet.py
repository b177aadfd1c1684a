"""The Go stub kubelet (``services/deviceplugin/stubkubelet``, on the upstream
``k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1`` package, built by ``rig/build.sh stub-kubelet``)
as a process, driven over its JSON-lines protocol; and the upstream sample device plugin
(``k8s.io/kubernetes/test/images/sample-device-plugin``) run against a plugin dir of ours.

Times in the stub's answers (``mono_ns``) are CLOCK_MONOTONIC, the clock of
``time.monotonic_ns()``, so they compare with the caller's own."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from kubext_rig import tools


class StubError(RuntimeError):
    """The stub answered a command with an error (``answer`` holds the whole answer)."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__(f"stub kubelet: {answer['cmd']}: {answer['error']}")
        self.answer = answer


class StubKubelet:
    def __init__(self, plugin_dir: Path, *, log: Path | None = None) -> None:
        self.dir = plugin_dir
        self._log = log or plugin_dir.parent / "stub-kubelet.log"
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> StubKubelet:
        binary = tools.binary("stub-kubelet")
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(binary), "-dir", str(self.dir)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        ready = self._read()
        if not ready.get("ok"):
            raise StubError(ready)
        return self

    def _read(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"stub kubelet exited ({self._proc.poll()}); see {self._log}")
        return json.loads(line)  # type: ignore[no-any-return]

    def call(self, cmd: str, *, check: bool = True, **args: Any) -> dict[str, Any]:
        """Send one command; its answer (an answer with ``error`` raises StubError if ``check``)."""
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self._proc.stdin.flush()
        answer = self._read()
        if check and "error" in answer:
            raise StubError(answer)
        return answer

    def registration(self, after: int = 0, timeout: float = 5) -> dict[str, Any]:
        return self.call("registration", after=after, timeout=timeout)["registration"]  # type: ignore[no-any-return]

    def registrations(self, n: int, timeout: float = 5) -> dict[str, dict[str, Any]]:
        """The first ``n`` registrations, by resource name."""
        got = [self.registration(after=i, timeout=timeout) for i in range(n)]
        return {r["resource"]: r for r in got}

    def update(self, resource: str, after: int = 0, timeout: float = 5) -> dict[str, Any]:
        return self.call("update", resource=resource, after=after, timeout=timeout)["update"]  # type: ignore[no-any-return]

    def allocate(self, resource: str, *containers: list[str]) -> list[dict[str, Any]]:
        return self.call("allocate", resource=resource, containers=list(containers))["containers"]  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._proc is None:
            return
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write('{"cmd": "quit"}\n')
            self._proc.stdin.close()
            self._proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()
        self._proc = None


# The sample plugin registers with the fixed /var/lib/kubelet/device-plugins/kubelet.sock (its
# constant): in a mount namespace of its own, a tmpfs over /var/lib carries that path, bound to
# our dir, so the host's kubelet dir is never touched; a tmpfs over /tmp takes the files its
# Allocate creates (/tmp/Dev-N).
# The binary is opened first and run through its descriptor: the tmpfs mounts hide whatever
# is below /var/lib and /tmp, the cache (KUBEXT_CACHE, HOME) included when it lives there.
_SAMPLE_NAMESPACE = (
    "exec 3< {binary} && mount -t tmpfs tmpfs /var/lib && mkdir -p /var/lib/kubelet/device-plugins"
    " && mount --bind {dir} /var/lib/kubelet/device-plugins && mount -t tmpfs tmpfs /tmp"
    " && exec /proc/self/fd/3"
)
SAMPLE_RESOURCE = "example.com/resource"


def sample_plugin_unavailable() -> str | None:
    """Why the sample plugin cannot run here (it needs root for its mount namespace), or None."""
    if os.geteuid() != 0:
        return "the sample device plugin runs in a mount namespace of its own: needs root"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is missing"
    return None


def start_sample_plugin(plugin_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    binary = tools.binary("sample-device-plugin")
    script = _SAMPLE_NAMESPACE.format(
        dir=shlex.quote(str(plugin_dir)), binary=shlex.quote(str(binary))
    )
    with log.open("ab") as out:
        return subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
