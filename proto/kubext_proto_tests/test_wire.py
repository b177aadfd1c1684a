"""CSI Identity over a unix socket with grpcio, called through the generated client, including
with the HTTP/2 ``:authority`` header ``localhost`` that kubelet and csi-sanity send."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.protobuf import wrappers_pb2

from kubext_proto.csi.v1 import csi_pb2, csi_pb2_grpc


def _authority(context: grpc.ServicerContext) -> str:
    # grpcio keeps HTTP/2 pseudo-headers out of invocation_metadata(); the call's host (the
    # :authority it arrived with) is only reachable through the core call details.
    return context._rpc_event.call_details.host.decode()


class _Identity(csi_pb2_grpc.IdentityServicer):
    """Just enough Identity to prove the generated stubs talk to each other over the socket."""

    def __init__(self) -> None:
        self.authorities: list[str] = []

    def GetPluginInfo(self, request, context):  # - gRPC method name
        self.authorities.append(_authority(context))
        return csi_pb2.GetPluginInfoResponse(name="wire.test.kubext.io", vendor_version="0.1.0")

    def Probe(self, request, context):
        return csi_pb2.ProbeResponse(ready=wrappers_pb2.BoolValue(value=True))


@pytest.fixture
def served() -> Iterator[tuple[str, _Identity]]:
    # A short private directory: unix socket paths are limited to 107 bytes.
    with tempfile.TemporaryDirectory(prefix="kx-wire-") as tmp:
        socket = Path(tmp) / "csi.sock"
        identity = _Identity()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        csi_pb2_grpc.add_IdentityServicer_to_server(identity, server)
        assert server.add_insecure_port(f"unix://{socket}") == 1
        server.start()
        try:
            yield f"unix://{socket}", identity
        finally:
            server.stop(grace=None).wait(5)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param([], id="default-authority"),
        pytest.param([("grpc.default_authority", "localhost")], id="authority-localhost"),
    ],
)
def test_identity_over_unix_socket(served: tuple[str, _Identity], options: list) -> None:
    target, identity = served
    with grpc.insecure_channel(target, options=options) as channel:
        stub = csi_pb2_grpc.IdentityStub(channel)
        info = stub.GetPluginInfo(csi_pb2.GetPluginInfoRequest(), timeout=5)
        probe = stub.Probe(csi_pb2.ProbeRequest(), timeout=5)
    assert info.name == "wire.test.kubext.io"
    assert probe.ready.value is True
    if options:
        assert identity.authorities[-1] == "localhost"
    else:  # grpcio's default for a unix target is the escaped socket path
        assert identity.authorities[-1] != "localhost"


def test_unimplemented_method_is_a_grpc_status(served: tuple[str, _Identity]) -> None:
    target, _ = served
    with grpc.insecure_channel(target, options=[("grpc.default_authority", "localhost")]) as ch:
        stub = csi_pb2_grpc.IdentityStub(ch)
        with pytest.raises(grpc.RpcError) as err:
            stub.GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
