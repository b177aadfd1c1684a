"""The installed launcher and the daemon socket: framing, pass-through, fallbacks."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from kubext_cni import daemon, golauncher, install, plugin, shim
from kubext_cni.core import errors, versions

LAUNCHERS = ["python", "compiled"]


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[dict, bytes]] = []

    def __call__(self, env: Mapping[str, str], stdin: bytes) -> plugin.Outcome:
        self.calls.append((dict(env), stdin))
        return plugin.Outcome(3, b"out\xff\n", b"err line\n")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[daemon.PluginServer, Recorder]]:
    recorder = Recorder()
    srv = daemon.PluginServer(str(tmp_path / "run" / "plugin.sock"), handler=recorder).start()
    yield srv, recorder
    srv.stop()


@pytest.fixture(scope="session")
def compiled_launcher() -> str:
    built = golauncher.build()
    if built is None:
        pytest.skip("no Go toolchain to build the compiled launcher")
    return built


def _install(kind: str, request: pytest.FixtureRequest, bin_dir: str, **kwargs: object) -> str:
    """Install the launcher of ``kind`` (python or compiled) with install's own arguments."""
    compiled = request.getfixturevalue("compiled_launcher") if kind == "compiled" else None
    return install.install(bin_dir, compiled=compiled, **kwargs)  # type: ignore[arg-type]


def _launch(binary: str, stdin: bytes, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [binary],
        input=stdin,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_render_fills_in_the_constants() -> None:
    text = install.render(python="/usr/bin/python3", socket_path="/s.sock", fallback_path=["/a"])
    assert text.startswith("#!/usr/bin/python3 -SI\n")
    assert "SOCKET = '/s.sock'\n" in text
    assert "FALLBACK_PATH: list = ['/a']\n" in text
    assert f"SUPPORTED = {list(versions.SUPPORTED)!r}\n" in text
    compile(text, "kubext-bridge", "exec")


def test_the_launchers_codes_are_the_plugins() -> None:
    assert shim.TRY_AGAIN_LATER == errors.TRY_AGAIN_LATER
    assert shim.DAEMON_UNUSABLE == errors.DAEMON_UNUSABLE
    assert list(versions.SUPPORTED) == shim.SUPPORTED


@pytest.mark.parametrize("kind", LAUNCHERS)
def test_calls_pass_through_the_daemon_byte_for_byte(
    server: tuple[daemon.PluginServer, Recorder],
    tmp_path: Path,
    kind: str,
    request: pytest.FixtureRequest,
) -> None:
    srv, recorder = server
    assert srv.ready()
    assert oct(os.stat(srv.socket_path).st_mode & 0o777) == "0o600"
    binary = _install(kind, request, str(tmp_path / "bin"), socket_path=srv.socket_path)
    proc = _launch(binary, b"\x00\xff{}", CNI_COMMAND="ADD", CNI_IFNAME="eth0")
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, b"out\xff\n", b"err line\n")
    env, stdin = recorder.calls[0]
    assert stdin == b"\x00\xff{}"
    assert (env["CNI_COMMAND"], env["CNI_IFNAME"]) == ("ADD", "eth0")


@pytest.mark.parametrize("kind", LAUNCHERS)
def test_version_is_answered_without_any_daemon(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    binary = _install(kind, request, str(tmp_path / "bin"), socket_path=str(tmp_path / "n.sock"))
    proc = _launch(binary, b'{"cniVersion": "0.4.0"}', CNI_COMMAND="VERSION")
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == {
        "cniVersion": "0.4.0",
        "supportedVersions": list(versions.SUPPORTED),
    }


@pytest.mark.parametrize("kind", LAUNCHERS)
def test_no_daemon_is_try_again_later(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    missing = str(tmp_path / "none.sock")
    deployed = _install(kind, request, str(tmp_path / "a"), socket_path=missing)
    proc = _launch(deployed, b"{}", CNI_COMMAND="STATUS")
    assert proc.returncode == 1
    body = json.loads(proc.stdout)
    assert (body["code"], body["msg"]) == (
        errors.TRY_AGAIN_LATER,
        "kubext-cni daemon not reachable",
    )
    assert body["details"] == f"no daemon at {missing}"


def test_a_daemon_that_dies_mid_call_is_try_again_later(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    import socket as socketlib
    import threading

    path = str(tmp_path / "half.sock")
    listener = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)

    def hang_up() -> None:
        for _ in LAUNCHERS:
            conn, _ = listener.accept()
            daemon.read_frame(conn)
            conn.close()  # no reply

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        for kind in LAUNCHERS:
            binary = _install(kind, request, str(tmp_path / kind), socket_path=path)
            proc = _launch(binary, b"{}", CNI_COMMAND="ADD")
            body = json.loads(proc.stdout)
            assert (proc.returncode, body["code"]) == (1, errors.TRY_AGAIN_LATER), kind
            assert body["msg"] == "kubext-cni daemon failed", kind
    finally:
        listener.close()


def test_standalone_runs_in_process_without_a_daemon(tmp_path: Path) -> None:
    missing = str(tmp_path / "none.sock")

    dev = install.install(str(tmp_path / "b"), socket_path=missing, standalone=True)
    proc = _launch(dev, b"{}", CNI_COMMAND="STATUS")  # in-process: CNI_PATH is missing
    body = json.loads(proc.stdout)
    assert (proc.returncode, body["code"]) == (1, errors.INVALID_ENV)
    assert body["msg"] == "required env variables [CNI_PATH] missing"


@pytest.mark.parametrize("kind", LAUNCHERS)
def test_a_daemon_in_another_netns_is_not_used(
    server: tuple[daemon.PluginServer, Recorder],
    tmp_path: Path,
    kind: str,
    request: pytest.FixtureRequest,
) -> None:
    srv, recorder = server
    srv.own_netns = (0, 0)  # as if the daemon ran without hostNetwork
    deployed = _install(kind, request, str(tmp_path / "a"), socket_path=srv.socket_path)
    proc = _launch(deployed, b"{}", CNI_COMMAND="STATUS")
    assert json.loads(proc.stdout)["code"] == errors.DAEMON_UNUSABLE
    if kind == "compiled":
        assert recorder.calls == []
        return
    dev = install.install(str(tmp_path / "b"), socket_path=srv.socket_path, standalone=True)
    proc = _launch(dev, b"{}", CNI_COMMAND="STATUS")
    assert json.loads(proc.stdout)["code"] == errors.INVALID_ENV  # ran in-process instead
    assert recorder.calls == []


def test_serve_one_counts_requests_by_command_and_code() -> None:
    raw = shim.encode_request({b"CNI_COMMAND": b"DEL"}, b"", (1, 2))

    def failing(env: Mapping[str, str], stdin: bytes) -> plugin.Outcome:
        return plugin.Outcome(1, b'{"code": 11, "msg": "x"}')

    before = daemon.REQUESTS.labels(command="DEL", code="11")._value.get()
    reply = daemon.serve_one(raw, failing, (1, 2))
    assert reply == daemon.encode_reply(0, plugin.Outcome(1, b'{"code": 11, "msg": "x"}'))
    assert daemon.REQUESTS.labels(command="DEL", code="11")._value.get() == before + 1
    assert daemon.serve_one(raw, failing, (9, 9))[0] == shim.REPLY_NETNS_MISMATCH


def test_request_encoding_round_trips_arbitrary_bytes() -> None:
    env = {b"CNI_ARGS": b"A=\xff;B=2", b"K": b""}
    raw = shim.encode_request(env, b"\x00stdin\xff", (7, 8))
    decoded_env, stdin, netns = daemon.decode_request(raw)
    assert stdin == b"\x00stdin\xff" and netns == (7, 8)
    assert {k.encode(): v.encode("utf-8", "surrogateescape") for k, v in decoded_env.items()} == env
    with pytest.raises(ValueError):
        daemon.decode_request(b"JUNK" + raw[4:])
    with pytest.raises(ValueError):
        daemon.decode_request(raw[:12])


def test_install_replaces_atomically(tmp_path: Path) -> None:
    first = install.install(str(tmp_path), socket_path="/one.sock")
    second = install.install(str(tmp_path), socket_path="/two.sock")
    assert first == second
    assert "SOCKET = '/two.sock'" in Path(second).read_text()
    assert os.access(second, os.X_OK)
    assert os.listdir(tmp_path) == ["kubext-bridge"]


def test_the_compiled_launcher_speaks_the_same_protocol(compiled_launcher: str) -> None:
    source = (golauncher.SOURCE_DIR / "main.go").read_text()
    assert f'magic           = "{shim.MAGIC.decode()}"' in source
    assert f"tryAgainLater   = {errors.TRY_AGAIN_LATER} " in source
    assert f"daemonUnusable  = {errors.DAEMON_UNUSABLE} " in source
    supported = ", ".join(f'"{v}"' for v in versions.SUPPORTED)
    assert f"var supported = []string{{{supported}}}" in source


def test_the_compiled_launcher_gets_the_socket_path_patched_in(
    compiled_launcher: str, tmp_path: Path
) -> None:
    binary = Path(compiled_launcher).read_bytes()
    patched = golauncher.patched(binary, "/x/y.sock")
    assert len(patched) == len(binary) and patched != binary
    assert b"KXSOCK1:/x/y.sock\x00" in patched
    assert golauncher.patched(patched, "/z.sock") == golauncher.patched(binary, "/z.sock")
    with pytest.raises(ValueError):
        golauncher.patched(binary, "/" + "a" * golauncher.FIELD_SIZE)
    with pytest.raises(ValueError):
        golauncher.patched(b"not a launcher", "/x.sock")
    with pytest.raises(ValueError):
        install.install(str(tmp_path), compiled=compiled_launcher, standalone=True)


def test_install_picks_the_compiled_launcher_unless_told_otherwise(
    compiled_launcher: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBEXT_CNI_LAUNCHER", compiled_launcher)
    assert install.pick_launcher("auto", standalone=False) == compiled_launcher
    assert install.pick_launcher("auto", standalone=True) is None
    assert install.pick_launcher("python", standalone=False) is None
    assert install.pick_launcher("/p/l", standalone=False) == "/p/l"
    assert install.main(["--bin-dir", str(tmp_path), "--socket", "/s.sock"]) == 0
    assert Path(tmp_path / "kubext-bridge").read_bytes()[:4] == b"\x7fELF"
    assert os.access(tmp_path / "kubext-bridge", os.X_OK)
    assert install.main(["--bin-dir", str(tmp_path), "--launcher", "python"]) == 0
    assert Path(tmp_path / "kubext-bridge").read_bytes()[:2] == b"#!"
    assert os.listdir(tmp_path) == ["kubext-bridge"]


def test_calls_are_served_by_waiting_threads_in_parallel(tmp_path: Path) -> None:
    """No thread start per call (one daemon wake-up, not two), and still parallel."""
    import threading

    served = threading.local()
    counts: list[int] = []
    barrier = threading.Barrier(2, timeout=30)

    def handler(env: Mapping[str, str], stdin: bytes) -> plugin.Outcome:
        served.count = getattr(served, "count", 0) + 1
        counts.append(served.count)
        if env.get("CNI_COMMAND") == "ADD":
            barrier.wait()  # both ADDs must be in the daemon at once
        return plugin.Outcome(0, b"{}")

    srv = daemon.PluginServer(str(tmp_path / "run" / "p.sock"), handler=handler).start()
    try:
        binary = install.install(str(tmp_path / "bin"), socket_path=srv.socket_path)
        for _ in range(4):
            assert _launch(binary, b"{}", CNI_COMMAND="DEL").returncode == 0
        assert max(counts) > 1  # a thread served more than one call
        procs = [
            subprocess.Popen(
                [binary],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                env={"PATH": "/usr/bin:/bin", "CNI_COMMAND": "ADD"},
            )
            for _ in range(2)
        ]
        assert [p.wait(60) for p in procs] == [0, 0]
    finally:
        srv.stop()
    assert not srv.ready()
