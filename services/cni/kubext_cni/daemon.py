"""The node daemon's plugin socket: the launcher's calls, served by ``plugin.run`` in threads.

A thick-plugin design (as Multus and Cilium use): the runtime still execs a tiny plugin
per call, but the plugin code stays imported here and its host netlink sockets open. Each call is served by one
of a set of threads waiting in ``accept()``; it may enter a container's netns (setns is per
thread) and always comes back before it serves again.
Wire format: a 4-byte big-endian length, then the binary request/reply ``shim`` defines
(binary, so the launcher needs no json import).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping

import prometheus_client

from kubext_cni import locks, netns, plugin, shim

log = logging.getLogger("kubext_cni.daemon")
MAX_REQUEST = 16 << 20  # a config with a large prevResult is still far below this

REQUESTS = prometheus_client.Counter(
    "kubext_cni_requests_total", "CNI calls served by the daemon", ["command", "code"]
)
DURATION = prometheus_client.Histogram(
    "kubext_cni_request_seconds",
    "Time to serve one CNI call",
    ["command"],
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 30),
)

Handler = Callable[[Mapping[str, str], bytes], plugin.Outcome]


def _read_exact(conn: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(min(size - len(data), 1 << 20))
        if not chunk:
            raise ConnectionError("client closed the connection")
        data += chunk
    return bytes(data)


def read_frame(conn: socket.socket) -> bytes:
    (size,) = struct.unpack(">I", _read_exact(conn, 4))
    if size > MAX_REQUEST:
        raise ValueError(f"request of {size} bytes exceeds {MAX_REQUEST}")
    return _read_exact(conn, size)


def write_frame(conn: socket.socket, payload: bytes) -> None:
    conn.sendall(struct.pack(">I", len(payload)) + payload)


def decode_request(raw: bytes) -> tuple[dict[str, str], bytes, tuple[int, int]]:
    """The launcher's request -> (environment, stdin, caller's netns id); ValueError if bad."""
    try:
        return _decode_request(raw)
    except struct.error as exc:
        raise ValueError(f"truncated request: {exc}") from None


def _decode_request(raw: bytes) -> tuple[dict[str, str], bytes, tuple[int, int]]:
    if raw[:4] != shim.MAGIC:
        raise ValueError("not a kubext-bridge launcher request")
    offset = 4
    (count,) = struct.unpack_from(">I", raw, offset)
    offset += 4

    def blob() -> bytes:
        nonlocal offset
        (size,) = struct.unpack_from(">I", raw, offset)
        data = raw[offset + 4 : offset + 4 + size]
        if len(data) != size:
            raise ValueError("truncated request")
        offset += 4 + size
        return data

    env = {}
    for _ in range(count):
        key = blob().decode("utf-8", "surrogateescape")
        env[key] = blob().decode("utf-8", "surrogateescape")
    stdin = blob()
    dev, ino = struct.unpack_from(">QQ", raw, offset)
    return env, stdin, (dev, ino)


def encode_reply(status: int, outcome: plugin.Outcome | None = None) -> bytes:
    out = outcome or plugin.Outcome(0)
    return (
        struct.pack(">BiI", status, out.exit_code, len(out.stdout))
        + out.stdout
        + struct.pack(">I", len(out.stderr))
        + out.stderr
    )


def serve_one(raw: bytes, handler: Handler, own_netns: tuple[int, int]) -> bytes:
    """One request -> reply bytes. Refuses calls made from another network namespace."""
    env, stdin, caller_netns = decode_request(raw)
    if caller_netns != own_netns:
        return encode_reply(shim.REPLY_NETNS_MISMATCH)
    started = time.monotonic()
    outcome = handler(env, stdin)
    command = env.get("CNI_COMMAND", "")
    code = "0"
    if outcome.exit_code:
        try:
            code = str(json.loads(outcome.stdout).get("code", outcome.exit_code))
        except ValueError:
            code = str(outcome.exit_code)
    REQUESTS.labels(command=command, code=code).inc()
    DURATION.labels(command=command).observe(time.monotonic() - started)
    return encode_reply(shim.REPLY_RESULT, outcome)


class PluginServer:
    """Listens on a root-only unix socket; ``start()``/``stop()``; ``ready`` for /readyz.

    Threads that each block in ``accept()`` and serve the call they get (the kernel wakes
    one): a call costs one wake-up of the daemon, not two (an accept loop handing the
    connection to a new thread). When the last idle one takes a call, another starts, so
    a burst of ADDs is served in parallel as before; idle ones beyond ``IDLE_KEPT`` exit.
    """

    IDLE_KEPT = 4

    def __init__(self, socket_path: str, handler: Handler = plugin.run) -> None:
        self.socket_path = socket_path
        self.own_netns = netns.current_id()
        self._handler = handler
        directory = os.path.dirname(socket_path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        locks.use_dir(directory)
        if os.path.exists(socket_path):
            os.unlink(socket_path)  # a stale socket from a previous run
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is born 0600: it performs root operations
        try:
            self._sock.bind(socket_path)
        finally:
            os.umask(old_umask)
        # A runtime may start dozens of pods at once; a full backlog makes connect fail.
        self._sock.listen(socket.SOMAXCONN)
        self._lock = threading.Lock()
        self._idle = 0
        self._stopping = False
        self._started = False

    def _spawn(self) -> None:
        self._idle += 1  # under self._lock
        threading.Thread(target=self._serve, name="cni-plugin", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                with self._lock:
                    self._idle -= 1
                return  # stopped
            with self._lock:
                self._idle -= 1
                if self._idle == 0 and not self._stopping:
                    self._spawn()  # keep one waiting in accept() while this call runs
            with conn:
                self._answer(conn)
            with self._lock:
                # setns is per thread: one that did not come home must not serve again.
                if self._stopping or self._idle >= self.IDLE_KEPT:
                    return
                if netns.current_id() != self.own_netns:
                    log.error("a plugin thread is left in another netns; it exits")
                    return
                self._idle += 1

    def _answer(self, conn: socket.socket) -> None:
        try:
            reply = serve_one(read_frame(conn), self._handler, self.own_netns)
        except (OSError, ValueError) as exc:
            log.warning("bad plugin request: %s", exc)
            return
        try:
            write_frame(conn, reply)
        except OSError as exc:  # the launcher gave up (runtime timeout)
            log.warning("could not answer the plugin: %s", exc)

    def start(self) -> PluginServer:
        with self._lock:
            self._started = True
            self._spawn()
        return self

    def ready(self) -> bool:
        return self._started and not self._stopping and os.path.exists(self.socket_path)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes every thread blocked in accept()
        self._sock.close()
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
