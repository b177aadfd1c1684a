"""CSI Identity: who the plugin is, what it offers, whether it is ready."""

from __future__ import annotations

from google.protobuf import wrappers_pb2

from kubext_proto.csi.v1 import csi_pb2, csi_pb2_grpc

from . import driver as driver_
from . import errors, system

Service = csi_pb2.PluginCapability.Service
Expansion = csi_pb2.PluginCapability.VolumeExpansion


class IdentityServicer(csi_pb2_grpc.IdentityServicer):
    def __init__(self, driver: driver_.Driver) -> None:
        self.driver = driver
        # Growing a mounted ext4 needs CAP_SYS_RESOURCE; without it, say expansion is offline.
        self.expansion = Expansion.ONLINE if system.can_resize_online() else Expansion.OFFLINE

    def GetPluginInfo(self, request, context):  # - gRPC method names
        settings = self.driver.settings
        return csi_pb2.GetPluginInfoResponse(name=settings.name, vendor_version=settings.version)

    def GetPluginCapabilities(self, request, context):
        return csi_pb2.GetPluginCapabilitiesResponse(
            capabilities=[
                csi_pb2.PluginCapability(service=Service(type=Service.CONTROLLER_SERVICE)),
                csi_pb2.PluginCapability(
                    service=Service(type=Service.VOLUME_ACCESSIBILITY_CONSTRAINTS)
                ),
                csi_pb2.PluginCapability(service=Service(type=Service.GROUP_CONTROLLER_SERVICE)),
                csi_pb2.PluginCapability(service=Service(type=Service.SNAPSHOT_METADATA_SERVICE)),
                csi_pb2.PluginCapability(volume_expansion=Expansion(type=self.expansion)),
            ]
        )

    def Probe(self, request, context):
        missing = system.missing_tools()
        if missing:
            raise errors.precondition(f"tools missing on this node: {', '.join(missing)}")
        self.driver.store.used_bytes()  # the state database answers
        return csi_pb2.ProbeResponse(ready=wrappers_pb2.BoolValue(value=True))
