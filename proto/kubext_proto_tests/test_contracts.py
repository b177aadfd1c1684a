"""The .proto files are wire-identical to upstream: checked by descriptor digest and by shape."""

from __future__ import annotations

import hashlib

import pytest
from google.protobuf import descriptor, descriptor_pb2

from kubext_proto.csi.v1 import csi_pb2
from kubext_proto.deviceplugin.v1beta1 import api_pb2
from kubext_proto.pluginregistration.v1 import api_pb2 as registration_pb2

# sha256 of upstream's FileDescriptorProto (csi.proto at spec v1.12.0; deviceplugin and
# pluginregistration api.proto at kubelet v0.35.4) compiled by protoc 3.21.12, with what does not
# reach the wire cleared: the file name, go_package and json_name (the Python generator drops
# json_name). Any change to a name, number, type, label, oneof, custom option or order of
# declarations changes the digest.
UPSTREAM_DIGESTS = {
    "csi": "d7d1f2271aefff1e31ab8869f712302c30aebc08dd7d3826b7c3800dd2c0b6fb",
    "deviceplugin": "26abeeab2cfc5a4c20c3dfbf856512c222d73aacc55b3eb994ad3d3ec312dbf4",
    "pluginregistration": "e16786ea4d01274a36e9c513f7981d499c2b83d9c878f5167b180798a8608744",
}


def _clear_json_names(messages) -> None:
    for message in messages:
        for field in message.field:
            field.ClearField("json_name")
        _clear_json_names(message.nested_type)


def _normalized_digest(file: descriptor.FileDescriptor) -> str:
    proto = descriptor_pb2.FileDescriptorProto.FromString(file.serialized_pb)
    proto.ClearField("name")
    proto.options.ClearField("go_package")
    if not proto.options.ListFields():
        proto.ClearField("options")
    _clear_json_names(proto.message_type)
    for extension in proto.extension:
        extension.ClearField("json_name")
    return hashlib.sha256(proto.SerializeToString(deterministic=True)).hexdigest()


@pytest.mark.parametrize(
    ("module", "key"),
    [
        pytest.param(csi_pb2, "csi", id="csi"),
        pytest.param(api_pb2, "deviceplugin", id="dp"),
        pytest.param(registration_pb2, "pluginregistration", id="registration"),
    ],
)
def test_descriptor_matches_upstream(module: object, key: str) -> None:
    assert _normalized_digest(module.DESCRIPTOR) == UPSTREAM_DIGESTS[key]


def test_csi_services_and_method_counts() -> None:
    services = {name: len(svc.methods) for name, svc in csi_pb2.DESCRIPTOR.services_by_name.items()}
    assert services == {
        "Identity": 3,
        "Controller": 15,
        "GroupController": 4,
        "SnapshotMetadata": 2,
        "Node": 8,
    }
    assert csi_pb2.DESCRIPTOR.package == "csi.v1"
    probe = csi_pb2.DESCRIPTOR.services_by_name["Identity"].methods_by_name["Probe"]
    assert probe.full_name == "csi.v1.Identity.Probe"


def test_csi_secret_option_marks_secrets() -> None:
    field = csi_pb2.CreateVolumeRequest.DESCRIPTOR.fields_by_name["secrets"]
    assert field.number == 5
    assert field.GetOptions().Extensions[csi_pb2.csi_secret] is True
    assert csi_pb2.csi_secret.number == 1059
    assert csi_pb2.alpha_field.number == 1060


def test_csi_oneofs_and_field_numbers() -> None:
    cap = csi_pb2.VolumeCapability.DESCRIPTOR
    assert [f.name for f in cap.oneofs_by_name["access_type"].fields] == ["block", "mount"]
    assert cap.fields_by_name["access_mode"].number == 3
    mode = csi_pb2.VolumeCapability.AccessMode.Mode
    assert mode.Value("SINGLE_NODE_MULTI_WRITER") == 7
    rpc_type = csi_pb2.ControllerServiceCapability.RPC.Type
    assert rpc_type.Value("GET_SNAPSHOT") == 15


def test_deviceplugin_shape() -> None:
    assert api_pb2.DESCRIPTOR.package == "v1beta1"
    by_name = api_pb2.DESCRIPTOR.services_by_name
    services = {name: sorted(svc.methods_by_name) for name, svc in by_name.items()}
    assert services == {
        "Registration": ["Register"],
        "DevicePlugin": [
            "Allocate",
            "GetDevicePluginOptions",
            "GetPreferredAllocation",
            "ListAndWatch",
            "PreStartContainer",
        ],
    }
    list_and_watch = by_name["DevicePlugin"].methods_by_name["ListAndWatch"]
    assert list_and_watch.server_streaming
    assert api_pb2.NUMANode.DESCRIPTOR.fields_by_name["ID"].number == 1
    assert api_pb2.ContainerAllocateResponse.DESCRIPTOR.fields_by_name["cdi_devices"].number == 5


def test_pluginregistration_shape() -> None:
    # Upstream's package has no version suffix: the kubelet calls /pluginregistration.Registration/.
    assert registration_pb2.DESCRIPTOR.package == "pluginregistration"
    registration = registration_pb2.DESCRIPTOR.services_by_name["Registration"]
    assert registration.full_name == "pluginregistration.Registration"
    assert sorted(registration.methods_by_name) == ["GetInfo", "NotifyRegistrationStatus"]
    info = registration_pb2.PluginInfo.DESCRIPTOR
    assert [(f.name, f.number) for f in info.fields] == [
        ("type", 1),
        ("name", 2),
        ("endpoint", 3),
        ("supported_versions", 4),
    ]
