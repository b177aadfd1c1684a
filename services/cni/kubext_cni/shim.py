#!/usr/bin/python3 -SI
"""kubext-bridge CNI plugin launcher: forwards one CNI call to the kubext-cni node daemon.

This file is the template ``kubext_cni.install`` copies into a CNI bin directory. It must
stay standard-library only and import almost nothing: the runtime starts it for every
ADD/DEL, so interpreter start is its whole cost (``-S -I``: no site, no user paths).
The constants below are rewritten at install time.

Without a daemon, it runs the plugin in-process when FALLBACK_PATH points at the package
(a development install); otherwise it answers with error 11 ("try again later").
"""

import os
import socket
import struct
import sys
import time

SOCKET = "/run/kubext-cni/plugin.sock"
FALLBACK_PATH: list = []
SUPPORTED = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
TIMEOUT_S = 600.0  # a whole ADD, IPAM included; the runtime has its own deadline too
CONNECT_ATTEMPTS = 40  # about 8 s of backoff in all

TRY_AGAIN_LATER = 11  # kubext_cni.core.errors.TRY_AGAIN_LATER
DAEMON_UNUSABLE = 106  # kubext_cni.core.errors.DAEMON_UNUSABLE


def _frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def _read_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise ConnectionError("daemon closed the connection")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _netns_id() -> list:
    st = os.stat("/proc/thread-self/ns/net")
    return [st.st_dev, st.st_ino]


def ask_daemon(path: str, env: dict, stdin: bytes):
    """The daemon's reply as a dict, or None when no daemon listens at ``path``."""
    import json  # only on this path: VERSION never needs it

    request = json.dumps(
        {"env": env, "stdin": stdin.decode("latin-1"), "netns": _netns_id()}
    ).encode()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(TIMEOUT_S)
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                return None
            except BlockingIOError:  # backlog full under a burst of calls: wait, retry
                if attempt == CONNECT_ATTEMPTS - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
        sock.sendall(_frame(request))
        (size,) = struct.unpack(">I", _read_exact(sock, 4))
        return json.loads(_read_exact(sock, size))
    finally:
        sock.close()


def _error(code: int, msg: str, details: str) -> bytes:
    import json

    body = {"cniVersion": "1.1.0", "code": code, "msg": msg, "details": details}
    return json.dumps(body, indent=4).encode() + b"\n"


def _in_process(env: dict, stdin: bytes):
    sys.path[:0] = FALLBACK_PATH
    from kubext_cni import plugin

    outcome = plugin.run(env, stdin)
    return outcome.exit_code, outcome.stdout, outcome.stderr


def _version(stdin: bytes) -> bytes:
    import json

    requested = "1.1.0"
    try:
        body = json.loads(stdin or b"{}")
        if isinstance(body, dict) and isinstance(body.get("cniVersion"), str):
            requested = body["cniVersion"] or requested
    except ValueError:
        pass
    return json.dumps({"cniVersion": requested, "supportedVersions": SUPPORTED}).encode() + b"\n"


def main() -> int:
    env = dict(os.environ)
    stdin = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
    if env.get("CNI_COMMAND") == "VERSION":
        sys.stdout.buffer.write(_version(stdin))
        return 0
    path = env.get("KUBEXT_CNI_SOCKET") or SOCKET
    try:
        reply = ask_daemon(path, env, stdin)
    except (OSError, ValueError) as exc:
        # Connected but the exchange broke: the daemon died mid-call or timed out.
        code, out, err = 1, _error(TRY_AGAIN_LATER, "kubext-cni daemon failed", str(exc)), b""
    else:
        if reply is not None and not reply.get("netns_mismatch"):
            code = reply["exit_code"]
            out = reply["stdout"].encode("latin-1")
            err = reply["stderr"].encode("latin-1")
        elif FALLBACK_PATH:
            code, out, err = _in_process(env, stdin)
        elif reply is None:
            out = _error(TRY_AGAIN_LATER, "kubext-cni daemon not reachable", f"no daemon at {path}")
            code, err = 1, b""
        else:
            out = _error(
                DAEMON_UNUSABLE,
                "kubext-cni daemon runs in another network namespace",
                "run the daemon with hostNetwork, in the runtime's namespace",
            )
            code, err = 1, b""
    sys.stdout.buffer.write(out)
    sys.stderr.buffer.write(err)
    return code


if __name__ == "__main__":
    sys.exit(main())
