"""The pure checks: IDs, names, paths, sizes, pages, capabilities, parameters."""

from __future__ import annotations

import grpc
import pytest

from kubext_proto.csi.v1 import csi_pb2

from .. import errors, validation
from .helpers import MiB, Mode, block_cap, mount_cap

GiB = 1 << 30


def code_of(call, *args, **kwargs) -> errors.Code:
    with pytest.raises(errors.CsiError) as err:
        call(*args, **kwargs)
    return err.value.code


@pytest.mark.parametrize("code", list(errors.Code), ids=lambda code: code.name)
def test_every_code_is_the_grpc_status_of_that_name(code: errors.Code) -> None:
    """The gRPC edge maps a code by name: the number must be gRPC's too."""
    assert grpc.StatusCode[code.name].value[0] == code.value


@pytest.mark.parametrize(
    "value",
    ["2f4c1c4e-5b8f-4d4e-9b8e-0c7f0d1e2a3b", "fake-vol-id-1234567890", "a", "A.b_c-d", "x" * 128],
)
def test_valid_ids(value: str) -> None:
    assert validation.check_id("volume_id", value) == value


@pytest.mark.parametrize(
    "value", ["", "..", ".", "../x", "a/b", "-lead", ".dot", "x" * 129, "a b", "é"]
)
def test_invalid_ids(value: str) -> None:
    assert code_of(validation.check_id, "volume_id", value) == errors.Code.INVALID_ARGUMENT


def test_id_message_is_short_for_huge_input() -> None:
    with pytest.raises(errors.CsiError) as err:
        validation.check_id("volume_id", "/" * 10_000)
    assert len(err.value.message) < 200


@pytest.mark.parametrize(
    ("path", "roots", "ok"),
    [
        pytest.param("/var/lib/kubelet/pods/x/mount", (), True, id="absolute"),
        pytest.param("/var/lib/kubelet/pods/x/", (), True, id="trailing-slash"),
        pytest.param("rel/path", (), False, id="relative"),
        pytest.param("/a/../b", (), False, id="dotdot"),
        pytest.param("/a/./b", (), False, id="dot"),
        pytest.param("/var/lib/kubelet/x", ("/var/lib/kubelet",), True, id="under-root"),
        pytest.param("/var/lib/kubelet2/x", ("/var/lib/kubelet",), False, id="sibling-of-root"),
        pytest.param("/etc", ("/var/lib/kubelet",), False, id="outside-root"),
    ],
)
def test_paths(path: str, roots: tuple[str, ...], ok: bool) -> None:
    if ok:
        assert validation.check_path("target_path", path, roots=roots).startswith("/")
    else:
        code = code_of(validation.check_path, "target_path", path, roots=roots)
        assert code == errors.Code.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("required", "limit", "expected"),
    [
        pytest.param(0, 0, GiB, id="default"),
        pytest.param(10 * GiB, 0, 10 * GiB, id="exact"),
        pytest.param(10 * GiB, 10 * GiB, 10 * GiB, id="required-equals-limit"),
        pytest.param(1, 0, validation.MIN_VOLUME_BYTES, id="tiny-rounds-to-minimum"),
        pytest.param(20 * MiB + 1, 0, 21 * MiB, id="rounds-up-to-MiB"),
        pytest.param(20 * MiB + 1, 20 * MiB + 100, 20 * MiB + 100, id="limit-caps-rounding"),
        pytest.param(0, 100 * MiB, 100 * MiB, id="limit-below-default"),
    ],
)
def test_volume_size(required: int, limit: int, expected: int) -> None:
    assert validation.volume_size(required, limit, default=GiB, maximum=64 * GiB) == expected


@pytest.mark.parametrize(
    ("required", "limit", "code"),
    [
        pytest.param(2 * GiB, GiB, errors.Code.INVALID_ARGUMENT, id="required-over-limit"),
        pytest.param(-1, 0, errors.Code.INVALID_ARGUMENT, id="negative"),
        pytest.param(0, MiB, errors.Code.OUT_OF_RANGE, id="limit-below-minimum"),
        pytest.param(65 * GiB, 0, errors.Code.OUT_OF_RANGE, id="over-maximum"),
    ],
)
def test_volume_size_errors(required: int, limit: int, code: errors.Code) -> None:
    call = validation.volume_size
    assert code_of(call, required, limit, default=GiB, maximum=64 * GiB) == code


def test_pages_cover_everything_once() -> None:
    items = list(range(7))
    seen, token = [], ""
    while True:
        chunk, token = validation.page(items, max_entries=3, starting_token=token)
        seen += chunk
        if not token:
            break
    assert seen == items
    assert validation.page(items, max_entries=0, starting_token="") == (items, "")


@pytest.mark.parametrize("token", ["invalid-token", "-1", "99", "1.5"])
def test_bad_tokens_abort(token: str) -> None:
    call = validation.page
    assert code_of(call, [1, 2], max_entries=1, starting_token=token) == errors.Code.ABORTED


def test_capabilities() -> None:
    cap = validation.parse_capability(mount_cap(fs_type="ext3", flags=("noatime",)), field="c")
    assert (cap.access_type, cap.fs_type, cap.mount_flags) == ("mount", "ext3", ("noatime",))
    assert validation.parse_capability(block_cap(Mode.SINGLE_NODE_READER_ONLY), field="c").read_only
    assert validation.capability_problem(mount_cap(fs_type="xfs")) is not None
    assert "MULTI_NODE_MULTI_WRITER" in validation.capability_problem(
        mount_cap(Mode.MULTI_NODE_MULTI_WRITER)
    )
    assert "access_type" in validation.capability_problem(
        csi_pb2.VolumeCapability(access_mode=csi_pb2.VolumeCapability.AccessMode(mode=1))
    )
    assert code_of(validation.parse_capabilities, []) == errors.Code.INVALID_ARGUMENT


def test_fs_type_of_a_new_volume() -> None:
    mount = validation.parse_capability(mount_cap(), field="c")
    block = validation.parse_capability(block_cap(), field="c")
    ext3 = validation.parse_capability(mount_cap(fs_type="ext3"), field="c")
    assert validation.volume_fs_type([mount]) == "ext4"
    assert validation.volume_fs_type([block]) == ""
    assert validation.volume_fs_type([block, ext3]) == "ext3"
    assert code_of(validation.volume_fs_type, [mount, ext3]) == errors.Code.INVALID_ARGUMENT


def test_parameters() -> None:
    validation.check_parameters({"type": "local"})
    assert code_of(validation.check_parameters, {"type": "nfs"}) == errors.Code.INVALID_ARGUMENT
    assert code_of(validation.check_parameters, {"x": "y"}) == errors.Code.INVALID_ARGUMENT
    big = {f"k{i}": "v" * 100 for i in range(50)}
    assert code_of(validation.check_map, "parameters", big) == errors.Code.INVALID_ARGUMENT


def test_accessibility() -> None:
    ours = {"topology.csi.kubext.io/node": "a"}
    req = csi_pb2.TopologyRequirement(requisite=[csi_pb2.Topology(segments=ours)])
    validation.check_accessibility(req, ours)
    validation.check_accessibility(csi_pb2.TopologyRequirement(), ours)
    other = csi_pb2.TopologyRequirement(
        requisite=[csi_pb2.Topology(segments={"topology.csi.kubext.io/node": "b"})]
    )
    assert code_of(validation.check_accessibility, other, ours) == errors.Code.RESOURCE_EXHAUSTED
