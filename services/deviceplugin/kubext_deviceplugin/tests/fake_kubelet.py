"""An in-process stand-in for the kubelet's side: Registration on ``kubelet.sock`` (real gRPC
over a unix socket), and a client that dials the registered plugin as the kubelet does."""

from __future__ import annotations

import contextlib
import queue
import time
from concurrent import futures
from pathlib import Path

import grpc

from kubext_proto.deviceplugin.v1beta1 import api_pb2, api_pb2_grpc


class _Registration(api_pb2_grpc.RegistrationServicer):
    def __init__(self, registered: queue.Queue[tuple[float, api_pb2.RegisterRequest]]) -> None:
        self._registered = registered

    def Register(self, request, context):  # - gRPC's naming
        self._registered.put((time.monotonic(), request))
        return api_pb2.Empty()


class FakeKubelet:
    def __init__(self, plugin_dir: Path) -> None:
        self.dir = plugin_dir
        self.registered: queue.Queue[tuple[float, api_pb2.RegisterRequest]] = queue.Queue()
        self._server: grpc.Server | None = None

    def start(self) -> FakeKubelet:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        api_pb2_grpc.add_RegistrationServicer_to_server(
            _Registration(self.registered), self._server
        )
        self._server.add_insecure_port(f"unix:{self.dir / 'kubelet.sock'}")
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=0).wait()
            self._server = None

    def restart(self) -> float:
        """As a restarted kubelet does: every socket in the dir removed, kubelet.sock served anew.
        Returns the monotonic time kubelet.sock was back."""
        self.stop()
        for sock in self.dir.glob("*.sock"):
            sock.unlink(missing_ok=True)
        self.start()
        return time.monotonic()

    def next_registration(self, timeout: float = 5) -> tuple[float, api_pb2.RegisterRequest]:
        return self.registered.get(timeout=timeout)

    @contextlib.contextmanager
    def dial(self, endpoint: str):  # type: ignore[no-untyped-def]
        with grpc.insecure_channel(f"unix:{self.dir / endpoint}") as channel:
            yield api_pb2_grpc.DevicePluginStub(channel)
