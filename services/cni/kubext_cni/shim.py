#!/usr/bin/python3 -SI
"""kubext-bridge CNI plugin launcher: forwards one CNI call to the kubext-cni node daemon.

This file is the template ``kubext_cni.install`` copies into a CNI bin directory. The
runtime starts it for every ADD/DEL, so interpreter start is its whole cost: it runs with
``-S -I`` (no site, no user paths) and imports only C modules (``posix``, ``_socket``,
``_struct``) on the hot path; ``json`` and ``os`` load only for VERSION or the fallback.
The constants below are rewritten at install time.

Without a daemon, it runs the plugin in-process when FALLBACK_PATH points at the package
(a development install); otherwise it answers with error 11 ("try again later").

Wire format (``kubext_cni.daemon`` reads the same): request = magic, env count, then
length-prefixed key/value pairs, stdin, and this process's netns (st_dev, st_ino); reply =
status byte (0 result, 1 netns mismatch), exit code, stdout, stderr.
"""

import _socket
import _struct
import posix
import sys

SOCKET = "/run/kubext-cni/plugin.sock"
FALLBACK_PATH: list = []
SUPPORTED = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
TIMEOUT_S = 600.0  # a whole ADD, IPAM included; the runtime has its own deadline too
CONNECT_ATTEMPTS = 40  # about 8 s of backoff in all

MAGIC = b"KXC1"
REPLY_RESULT = 0
REPLY_NETNS_MISMATCH = 1
TRY_AGAIN_LATER = 11  # kubext_cni.core.errors.TRY_AGAIN_LATER
DAEMON_UNUSABLE = 106  # kubext_cni.core.errors.DAEMON_UNUSABLE

_U32 = _struct.Struct(">I")


def _blob(data: bytes) -> bytes:
    return _U32.pack(len(data)) + data


def encode_request(env: dict, stdin: bytes, netns: tuple) -> bytes:
    parts = [MAGIC, _U32.pack(len(env))]
    for key, value in env.items():
        parts += [_blob(key), _blob(value)]
    parts += [_blob(stdin), _struct.pack(">QQ", netns[0], netns[1])]
    return b"".join(parts)


def _read_exact(sock, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise ConnectionError("daemon closed the connection")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def ask_daemon(path: str, request: bytes):
    """(status, exit code, stdout, stderr), or None when no daemon listens at ``path``."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
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
                import time

                time.sleep(0.01 * (attempt + 1))
        sock.sendall(_U32.pack(len(request)) + request)
        (size,) = _U32.unpack(_read_exact(sock, 4))
        reply = _read_exact(sock, size)
    finally:
        sock.close()
    status, code, out_len = _struct.unpack_from(">BiI", reply)
    out = reply[9 : 9 + out_len]
    (err_len,) = _U32.unpack_from(reply, 9 + out_len)
    err = reply[13 + out_len : 13 + out_len + err_len]
    return status, code, out, err


def _error(code: int, msg: str, details: str) -> bytes:
    import json

    body = {"cniVersion": "1.1.0", "code": code, "msg": msg, "details": details}
    return json.dumps(body, indent=4).encode() + b"\n"


def _in_process(env: dict, stdin: bytes):
    sys.path[:0] = FALLBACK_PATH
    from kubext_cni import plugin

    text_env = {
        k.decode("utf-8", "surrogateescape"): v.decode("utf-8", "surrogateescape")
        for k, v in env.items()
    }
    outcome = plugin.run(text_env, stdin)
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
    env = posix.environ  # bytes -> bytes; no os module needed
    stdin = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
    if env.get(b"CNI_COMMAND") == b"VERSION":
        sys.stdout.buffer.write(_version(stdin))
        return 0
    path = (env.get(b"KUBEXT_CNI_SOCKET") or SOCKET.encode()).decode()
    st = posix.stat("/proc/thread-self/ns/net")
    try:
        reply = ask_daemon(path, encode_request(env, stdin, (st.st_dev, st.st_ino)))
    except (OSError, ValueError, _struct.error) as exc:
        # Connected but the exchange broke: the daemon died mid-call or timed out.
        reply = (
            REPLY_RESULT,
            1,
            _error(TRY_AGAIN_LATER, "kubext-cni daemon failed", str(exc)),
            b"",
        )
    if reply is not None and reply[0] == REPLY_RESULT:
        code, out, err = reply[1:]
    elif FALLBACK_PATH:
        code, out, err = _in_process(env, stdin)
    elif reply is None:
        code, out, err = (
            1,
            _error(TRY_AGAIN_LATER, "kubext-cni daemon not reachable", f"no daemon at {path}"),
            b"",
        )
    else:
        code, out, err = (
            1,
            _error(
                DAEMON_UNUSABLE,
                "kubext-cni daemon runs in another network namespace",
                "run the daemon with hostNetwork, in the runtime's namespace",
            ),
            b"",
        )
    sys.stdout.buffer.write(out)
    sys.stderr.buffer.write(err)
    return code


if __name__ == "__main__":
    sys.exit(main())
