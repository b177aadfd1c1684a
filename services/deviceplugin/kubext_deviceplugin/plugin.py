"""The kubelet lifecycle of one resource, apart from discovery: serve, register, watch, restart.

As in squat/generic-device-plugin's ``plugin.go``: each start serves a new socket in the
device-plugin dir, dials it, and only then registers with ``kubelet.sock``; a watcher then checks
every ``SOCKET_CHECK_SECONDS`` that our socket is still there and that ``kubelet.sock`` is the
same file. A restarted kubelet removes every socket in the dir and creates a new kubelet.sock,
so either check ends the run and the loop starts again at once (the upstream sample plugin takes
about 10 s; this takes well under 1 s). Errors restart with backoff; shutdown removes our socket.
A plugin killed outright (SIGKILL, OOM) cannot remove its sockets and the kubelet leaves them, so
each start first removes those of its resource that nothing listens on any more.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import stat
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import prometheus_client

from kubext_proto.deviceplugin.v1beta1 import api_pb2, api_pb2_grpc

from . import backends, server
from .config import ResourceConfig
from .core import cdi

log = logging.getLogger(__name__)
API_VERSION = "v1beta1"
SOCKET_CHECK_SECONDS = 0.1
DIAL_TIMEOUT_SECONDS = 5.0
BACKOFF_FIRST_SECONDS, BACKOFF_MAX_SECONDS = 0.1, 5.0
DEVICES = prometheus_client.Gauge(
    "kubext_deviceplugin_devices",
    "Devices advertised, by resource and health.",
    ["resource", "health"],
)
REGISTRATIONS = prometheus_client.Counter(
    "kubext_deviceplugin_registrations_total",
    "Registrations with the kubelet, by resource and result (ok or error).",
    ["resource", "result"],
)


def _socket_stem(resource: str) -> str:
    return f"kubext-{resource.replace('/', '_')}-"


def socket_name(resource: str) -> str:
    """A new name per start (the kubelet may still hold the old endpoint for minutes)."""
    return f"{_socket_stem(resource)}{time.time_ns()}.sock"


def remove_stale_sockets(plugin_dir: Path, resource: str) -> list[str]:
    """Remove the sockets of ``resource`` that no process listens on (an earlier start's that was
    killed); a live one (another instance's) is kept. Returns the names removed."""
    ours = re.compile(re.escape(_socket_stem(resource)) + r"[0-9]+\.sock")
    removed = []
    for path in sorted(p for p in plugin_dir.iterdir() if ours.fullmatch(p.name)):
        try:
            if not stat.S_ISSOCK(path.lstat().st_mode):
                continue  # not a socket: not ours to judge
        except FileNotFoundError:
            continue
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            try:
                probe.connect(str(path))
                continue  # someone serves it
            except ConnectionRefusedError:
                pass  # a socket file whose listener is gone
            except OSError:
                continue  # gone already, or busy: left alone
        path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_ctime_ns


class ResourcePlugin:
    def __init__(
        self,
        resource: ResourceConfig,
        backend: backends.Backend,
        *,
        plugin_dir: Path,
        kubelet_socket: str = "kubelet.sock",
        scan_interval: float = 0.25,
    ) -> None:
        self.resource = resource
        self.backend = backend
        self.state = server.ResourceState()
        self.plugin_dir = plugin_dir
        self.kubelet_socket = plugin_dir / kubelet_socket
        self.scan_interval = scan_interval
        self.registered = threading.Event()
        self.socket: Path | None = None  # our socket while a run serves it

    # -- discovery ---------------------------------------------------------------------------

    def scan_once(self) -> bool:
        inventory = self.backend.scan()
        changed = self.state.update(inventory)
        if changed:
            counts = inventory.counts()
            for health, n in counts.items():
                DEVICES.labels(self.resource.name, health).set(n)
            log.info("devices", extra={"resource": self.resource.name, **counts})
            if self.resource.cdi.enabled:
                self._write_cdi_spec()
        return changed

    def _write_cdi_spec(self) -> None:
        directory = Path(self.resource.cdi.dir)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / cdi.file_name(self.resource.name)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(cdi.spec(self.resource.name, self.state.snapshot()), indent=1))
        os.replace(tmp, target)  # the runtime never reads half a spec

    def scan_loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.scan_interval):
            try:
                self.scan_once()
            except Exception:  # keep the last inventory; the next scan may succeed
                log.exception("scan failed", extra={"resource": self.resource.name})

    # -- kubelet lifecycle -------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        backoff = BACKOFF_FIRST_SECONDS
        while not stop.is_set():
            try:
                self.run_once(stop)
                backoff = BACKOFF_FIRST_SECONDS
            except Exception as exc:
                REGISTRATIONS.labels(self.resource.name, "error").inc()
                log.warning(
                    "serving or registering failed; retrying",
                    extra={"resource": self.resource.name, "error": str(exc), "in_s": backoff},
                )
                stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)

    def _wait_for_kubelet(self, stop: threading.Event) -> None:
        while _identity(self.kubelet_socket) is None and not stop.wait(SOCKET_CHECK_SECONDS):
            pass

    def run_once(self, stop: threading.Event) -> None:
        """Serve, register, then return when the kubelet restarted or our socket was removed."""
        self._wait_for_kubelet(stop)
        if stop.is_set():
            return
        self.plugin_dir.mkdir(parents=True, exist_ok=True)
        if stale := remove_stale_sockets(self.plugin_dir, self.resource.name):
            log.info(
                "removed stale sockets", extra={"resource": self.resource.name, "sockets": stale}
            )
        path = self.plugin_dir / socket_name(self.resource.name)
        stopping = threading.Event()
        grpc_server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="dp"),
        )
        api_pb2_grpc.add_DevicePluginServicer_to_server(
            server.DevicePluginServicer(
                resource=self.resource.name,
                state=self.state,
                options=backends.allocate_options(self.resource),
                pre_start_required=self.resource.pre_start_required,
                preferred_allocation=self.resource.preferred_allocation,
                stopping=stopping,
            ),
            grpc_server,
        )
        if grpc_server.add_insecure_port(f"unix:{path}") != 1:
            raise RuntimeError(f"cannot listen on {path}")
        grpc_server.start()
        self.socket = path
        try:
            kubelet = _identity(self.kubelet_socket)
            self._dial_self(path)
            self._register(path.name)
            self.registered.set()
            REGISTRATIONS.labels(self.resource.name, "ok").inc()
            log.info("registered", extra={"resource": self.resource.name, "endpoint": path.name})
            while not stop.wait(SOCKET_CHECK_SECONDS):
                if _identity(path) is None:
                    log.info("our socket was removed: re-registering", extra={"socket": str(path)})
                    return
                if _identity(self.kubelet_socket) != kubelet:
                    log.info("kubelet.sock was re-created: re-registering")
                    return
        finally:
            self.registered.clear()
            stopping.set()
            # The streams end now, not at their next wake: the stop's grace was once spent
            # waiting for them, half a second of every re-registration.
            self.state.wake()
            grpc_server.stop(grace=0.5).wait()
            self.socket = None
            path.unlink(missing_ok=True)

    def _dial_self(self, path: Path) -> None:
        """Our socket accepts a connection before the kubelet is told to dial it. A plain
        connect: grpc's channel_ready_future polls the channel's state every 0.2 s, which
        was two thirds of each re-registration."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(DIAL_TIMEOUT_SECONDS)
            probe.connect(str(path))

    def _register(self, endpoint: str) -> None:
        request = api_pb2.RegisterRequest(
            version=API_VERSION,
            endpoint=endpoint,
            resource_name=self.resource.name,
            options=api_pb2.DevicePluginOptions(
                pre_start_required=self.resource.pre_start_required,
                get_preferred_allocation_available=self.resource.preferred_allocation,
            ),
        )
        with grpc.insecure_channel(f"unix:{self.kubelet_socket}") as channel:
            api_pb2_grpc.RegistrationStub(channel).Register(request, timeout=DIAL_TIMEOUT_SECONDS)

    def shutdown(self) -> None:
        """After the run loop has returned: the CDI spec goes with us."""
        if self.resource.cdi.enabled:
            (Path(self.resource.cdi.dir) / cdi.file_name(self.resource.name)).unlink(
                missing_ok=True
            )
