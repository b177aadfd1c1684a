"""The gRPC edge: the unix socket, the five services, and errors turned into gRPC statuses."""

from __future__ import annotations

import logging
import os
import socket
import stat
import time
from concurrent import futures
from pathlib import Path

import grpc
import prometheus_client

from kubext_proto.csi.v1 import csi_pb2_grpc

from . import controller, errors, groupcontroller, identity, node, snapshotmetadata
from . import driver as driver_

log = logging.getLogger(__name__)
RPC_SECONDS = prometheus_client.Histogram(
    "kubext_csi_rpc_duration_seconds",
    "Time to answer a CSI RPC, by method and gRPC status code.",
    ["method", "code"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


def socket_path(endpoint: str) -> Path:
    """``unix:///csi/csi.sock`` (or ``unix:/csi/csi.sock``) -> ``/csi/csi.sock``."""
    if not endpoint.startswith("unix:"):
        raise ValueError(f"endpoint {endpoint!r} must be unix:///path (CSI uses unix sockets)")
    path = endpoint[len("unix:") :]
    if path.startswith("//"):
        path = path[2:]
    if not path.startswith("/"):
        raise ValueError(f"endpoint {endpoint!r} must name an absolute socket path")
    return Path(path)


def prepare_socket(path: Path) -> None:
    """Removes a stale socket file (a crashed predecessor's), refusing to steal a live one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise RuntimeError(f"{path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect(str(path))
        except OSError:
            log.info("removing stale socket %s", path)
            path.unlink()
            return
    raise RuntimeError(f"{path} is served by another process")


class _StatusInterceptor(grpc.ServerInterceptor):
    """CsiError -> its status code; anything else -> INTERNAL with the error; timing metrics.

    Requests are never logged: they may carry secrets (fields marked csi_secret).
    """

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            def behavior(request, context):
                with _Outcome(method) as outcome:
                    return inner(request, context)
                context.abort(outcome.code, outcome.message)

            return grpc.unary_unary_rpc_method_handler(
                behavior,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:  # SnapshotMetadata: a stream of responses
            inner_stream = handler.unary_stream

            def streaming(request, context):
                # A failure before the first message or midway ends the stream with its
                # status; a cancelled client closes the generator (GeneratorExit passes).
                with _Outcome(method) as outcome:
                    yield from inner_stream(request, context)
                    return
                context.abort(outcome.code, outcome.message)

            return grpc.unary_stream_rpc_method_handler(
                streaming,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


class _Outcome:
    """Turns what an RPC raised into its status (suppressing it), then logs and times it."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.code = grpc.StatusCode.OK
        self.message = ""

    def __enter__(self) -> _Outcome:
        self.started = time.perf_counter()
        return self

    def __exit__(self, kind, exc, traceback) -> bool:
        method = self.method
        if exc is None or not isinstance(exc, Exception):
            suppress = False  # success, or GeneratorExit/KeyboardInterrupt: pass it on
        elif isinstance(exc, errors.CsiError):
            self.code, self.message, suppress = grpc.StatusCode[exc.code.name], exc.message, True
        elif isinstance(exc, NotImplementedError):  # the generated base class: not offered
            self.code = grpc.StatusCode.UNIMPLEMENTED
            self.message = f"{method} is not offered by this driver (see its capabilities)"
            suppress = True
        else:  # a bug or an unexpected system error: say what it was
            log.error("%s failed unexpectedly", method, exc_info=(kind, exc, traceback))
            self.code = grpc.StatusCode.INTERNAL
            self.message = f"{type(exc).__name__}: {exc}"
            suppress = True
        elapsed = time.perf_counter() - self.started
        RPC_SECONDS.labels(method, self.code.name).observe(elapsed)
        level = logging.DEBUG if self.code == grpc.StatusCode.OK else logging.INFO
        log.log(
            level,
            "rpc",
            extra={"method": method, "code": self.code.name, "ms": round(elapsed * 1000, 1)},
        )
        return suppress


def build(driver: driver_.Driver, endpoint: str, *, workers: int = 8) -> grpc.Server:
    """A started gRPC server with Identity, Controller, GroupController, SnapshotMetadata and
    Node on the endpoint's socket (csi-snapshotter and csi-sanity reach the group controller
    there; external-snapshot-metadata the snapshot metadata)."""
    path = socket_path(endpoint)
    prepare_socket(path)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="csi"),
        interceptors=[_StatusInterceptor()],
    )
    csi_pb2_grpc.add_IdentityServicer_to_server(identity.IdentityServicer(driver), server)
    csi_pb2_grpc.add_ControllerServicer_to_server(controller.ControllerServicer(driver), server)
    csi_pb2_grpc.add_GroupControllerServicer_to_server(
        groupcontroller.GroupControllerServicer(driver), server
    )
    csi_pb2_grpc.add_SnapshotMetadataServicer_to_server(
        snapshotmetadata.SnapshotMetadataServicer(driver), server
    )
    csi_pb2_grpc.add_NodeServicer_to_server(node.NodeServicer(driver), server)
    if server.add_insecure_port(f"unix://{path}") != 1:
        raise RuntimeError(f"cannot listen on {path}")
    server.start()
    os.chmod(path, 0o660)  # the CO's sidecars run as root or the socket's group
    log.info("serving CSI", extra={"endpoint": f"unix://{path}", "driver": driver.settings.name})
    return server
