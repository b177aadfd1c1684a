"""The kubelet's plugin registration (pluginregistration.v1), served by the driver itself.

The kubelet's plugin watcher finds the socket under ``<kubelet root>/plugins_registry/``, calls
GetInfo (type, name, the CSI socket, versions), registers the driver (NodeGetInfo, then the
CSINode entry) and reports the outcome with NotifyRegistrationStatus. This is what the upstream
node-driver-registrar sidecar does; it is an option for nodes without that image (the chart keeps
the sidecar). Removing the socket deregisters the driver.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from concurrent import futures
from pathlib import Path

import grpc

from kubext_proto.pluginregistration.v1 import api_pb2, api_pb2_grpc

from . import server, system

log = logging.getLogger(__name__)
PLUGIN_TYPE = "CSIPlugin"  # the kubelet's pluginwatcher name for CSI drivers
# The CSI versions the kubelet may speak to the driver; it accepts any 1.x.
SUPPORTED_VERSIONS = ("1.0.0",)


def socket_path(kubelet_dir: Path, driver_name: str) -> Path:
    """Where node-driver-registrar puts it too: one socket per driver, named after it."""
    return kubelet_dir / "plugins_registry" / f"{driver_name}-reg.sock"


class RegistrationServicer(api_pb2_grpc.RegistrationServicer):
    def __init__(self, *, driver_name: str, csi_socket: Path):
        self._info = api_pb2.PluginInfo(
            type=PLUGIN_TYPE,
            name=driver_name,
            endpoint=str(csi_socket),  # the kubelet dials this path for every CSI call
            supported_versions=SUPPORTED_VERSIONS,
        )

    def GetInfo(self, request, context):
        return self._info

    def NotifyRegistrationStatus(self, request, context):
        if request.plugin_registered:
            log.info("registered with the kubelet", extra={"driver": self._info.name})
        else:
            # The kubelet refused (a version, a name): it will not call the driver; say why.
            log.error("the kubelet refused the registration: %s", request.error)
        return api_pb2.RegistrationStatusResponse()


@dataclasses.dataclass
class Served:
    server: grpc.Server
    socket: Path

    def stop(self) -> None:
        """Stop serving and remove the socket, which tells the kubelet the driver is gone."""
        self.server.stop(grace=1).wait(5)
        system.remove(self.socket)


def serve(*, driver_name: str, csi_socket: Path, socket: Path) -> Served:
    """A started Registration server on ``socket`` (a stale socket is replaced)."""
    server.prepare_socket(socket)
    grpc_server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="registration")
    )
    api_pb2_grpc.add_RegistrationServicer_to_server(
        RegistrationServicer(driver_name=driver_name, csi_socket=csi_socket), grpc_server
    )
    if grpc_server.add_insecure_port(f"unix://{socket}") != 1:
        raise RuntimeError(f"cannot listen on {socket}")
    grpc_server.start()
    os.chmod(socket, 0o660)  # only the kubelet (root) needs it
    log.info("serving plugin registration", extra={"socket": str(socket)})
    return Served(grpc_server, socket)
