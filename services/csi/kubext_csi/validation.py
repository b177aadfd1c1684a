"""Pure checks and arithmetic on CSI requests: IDs, names, paths, capabilities, sizes, pages.

Nothing here touches the system; every failure is a ``CsiError`` with the spec's status code and
a message that names the field, so servicers can return it unchanged.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, TypeVar

from kubext import quantity
from kubext_proto.csi.v1 import csi_pb2

from . import errors

MAX_NAME_BYTES = 128  # the spec's limit for names and IDs
MAX_NODE_ID_BYTES = 256  # the spec's limit for node_id
MAX_PATH_BYTES = 4096  # PATH_MAX
MAX_MAP_BYTES = 4096  # the spec's limit for a whole map (parameters, context ...)
MiB = 1 << 20
ALIGN_BYTES = MiB  # volumes are whole MiB unless limit_bytes asks for less
MIN_VOLUME_BYTES = 16 * MiB  # room for an ext4 journal; smaller requests are rounded up

# IDs become file names under the state directory: only a safe alphabet, never "." or "..".
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Mode = csi_pb2.VolumeCapability.AccessMode.Mode
SUPPORTED_MODES = frozenset(
    {
        Mode.SINGLE_NODE_WRITER,
        Mode.SINGLE_NODE_READER_ONLY,
        Mode.MULTI_NODE_READER_ONLY,
        Mode.SINGLE_NODE_SINGLE_WRITER,
        Mode.SINGLE_NODE_MULTI_WRITER,
    }
)
READ_ONLY_MODES = frozenset({Mode.SINGLE_NODE_READER_ONLY, Mode.MULTI_NODE_READER_ONLY})
MULTI_NODE_MODES = frozenset({Mode.MULTI_NODE_READER_ONLY})  # the multi-node modes offered
FS_TYPES = ("ext4", "ext3", "ext2")  # what e2fsprogs formats and resize2fs grows
DEFAULT_FS = "ext4"
PARAMETERS = {"type": {"local"}}  # StorageClass parameters this driver understands
# Mutable parameters (CreateVolume's and ControllerModifyVolume's, from a VolumeAttributesClass):
# iopsClass is simulated (recorded and reported, it throttles nothing); label is the filesystem
# label, written to the volume's ext superblock.
IOPS_CLASSES = ("standard", "fast", "max")
MUTABLE_PARAMETERS = ("iopsClass", "label")
MAX_LABEL_BYTES = 16  # ext2/3/4 s_volume_name
_LABEL_RE = re.compile(r"[A-Za-z0-9._-]*")
# CSI ephemeral inline volumes: the kubelet marks them in the volume context; keys under its
# prefix (pod info, service account tokens) are the CO's, the rest are the pod's attributes.
EPHEMERAL_KEY = "csi.storage.k8s.io/ephemeral"
CO_PREFIX = "csi.storage.k8s.io/"
EPHEMERAL_ATTRIBUTES = ("size",)  # a Kubernetes quantity; the default volume size without it

AccessType = Literal["mount", "block"]


@dataclasses.dataclass(frozen=True)
class Capability:
    """A validated VolumeCapability."""

    access_type: AccessType
    mode: int
    fs_type: str = ""  # "" for block; for mount "" means the driver's default
    mount_flags: tuple[str, ...] = ()

    @property
    def read_only(self) -> bool:
        return self.mode in READ_ONLY_MODES

    @property
    def mode_name(self) -> str:
        name: str = Mode.Name(self.mode)  # generated protobuf code is untyped
        return name


def _shown(value: str, limit: int = 64) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def check_id(field: str, value: str) -> str:
    """A volume/snapshot ID: present, at most 128 bytes, letters, digits, '.', '_', '-'."""
    if not value:
        raise errors.invalid(f"{field} missing in request")
    if len(value.encode()) > MAX_NAME_BYTES:
        raise errors.invalid(f"{field} is longer than {MAX_NAME_BYTES} bytes")
    if not _ID_RE.fullmatch(value):
        raise errors.invalid(
            f"{field} {_shown(value)} is not valid: only letters, digits, '.', '_' and '-' are "
            "allowed, starting with a letter or digit"
        )
    return value


def check_name(field: str, value: str) -> str:
    """A CO-chosen name: present, at most 128 bytes, printable, no path separators."""
    if not value:
        raise errors.invalid(f"{field} missing in request")
    if len(value.encode()) > MAX_NAME_BYTES:
        raise errors.invalid(f"{field} is longer than {MAX_NAME_BYTES} bytes")
    if _CONTROL.search(value) or "/" in value or "\\" in value:
        raise errors.invalid(
            f"{field} {_shown(value)} is not valid: no control characters or path separators"
        )
    return value


def check_node_id(field: str, value: str) -> str:
    """A node ID (NodeGetInfo's, often a host name): present, at most 256 bytes, printable."""
    if not value:
        raise errors.invalid(f"{field} missing in request")
    if len(value.encode()) > MAX_NODE_ID_BYTES:
        raise errors.invalid(f"{field} is longer than {MAX_NODE_ID_BYTES} bytes")
    if _CONTROL.search(value):
        raise errors.invalid(f"{field} {_shown(value)} is not valid: no control characters")
    return value


def check_path(field: str, value: str, *, roots: Sequence[str] = ()) -> str:
    """A node path from the CO: absolute, normalized (no '..'), and under ``roots`` if given."""
    if not value:
        raise errors.invalid(f"{field} missing in request")
    if len(value.encode()) > MAX_PATH_BYTES or "\x00" in value:
        raise errors.invalid(f"{field} is not a usable path")
    if not value.startswith("/"):
        raise errors.invalid(f"{field} {_shown(value)} must be an absolute path")
    parts = value.split("/")
    if ".." in parts or "." in parts:
        raise errors.invalid(f"{field} {_shown(value)} must not contain '.' or '..' components")
    path = os.path.normpath(value)
    if roots and not any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots):
        raise errors.invalid(f"{field} {_shown(value)} is outside the allowed roots {list(roots)}")
    return path


def check_map(field: str, values: Mapping[str, str]) -> None:
    size = sum(len(k.encode()) + len(v.encode()) for k, v in values.items())
    if size > MAX_MAP_BYTES:
        raise errors.invalid(f"{field} is larger than {MAX_MAP_BYTES} bytes")


def check_parameters(parameters: Mapping[str, str]) -> None:
    """StorageClass parameters: only the known keys with known values."""
    check_map("parameters", parameters)
    for key, value in sorted(parameters.items()):
        if key not in PARAMETERS:
            raise errors.invalid(f"unknown parameter {key!r} (known: {', '.join(PARAMETERS)})")
        if value not in PARAMETERS[key]:
            allowed = ", ".join(sorted(PARAMETERS[key]))
            raise errors.invalid(f"parameter {key}={value!r} is not supported (allowed: {allowed})")


def check_mutable_parameters(parameters: Mapping[str, str]) -> dict[str, str]:
    """Mutable parameters: only the known keys, each with a valid value."""
    check_map("mutable_parameters", parameters)
    for key, value in sorted(parameters.items()):
        if key not in MUTABLE_PARAMETERS:
            raise errors.invalid(
                f"unknown mutable parameter {_shown(key)} (known: {', '.join(MUTABLE_PARAMETERS)})"
            )
        if key == "iopsClass" and value not in IOPS_CLASSES:
            raise errors.invalid(
                f"mutable parameter iopsClass={_shown(value)} is not supported "
                f"(allowed: {', '.join(IOPS_CLASSES)})"
            )
        if key == "label" and (
            len(value.encode()) > MAX_LABEL_BYTES or not _LABEL_RE.fullmatch(value)
        ):
            raise errors.invalid(
                f"mutable parameter label={_shown(value)} is not valid: at most "
                f"{MAX_LABEL_BYTES} letters, digits, '.', '_' or '-' (empty clears it)"
            )
    return dict(parameters)


def is_ephemeral(volume_context: Mapping[str, str]) -> bool:
    return volume_context.get(EPHEMERAL_KEY) == "true"


def ephemeral_size(volume_context: Mapping[str, str], *, default: int, maximum: int) -> int:
    """The size of an ephemeral inline volume from its attributes; unknown keys are refused."""
    check_map("volume_context", volume_context)
    unknown = sorted(
        k for k in volume_context if k not in EPHEMERAL_ATTRIBUTES and not k.startswith(CO_PREFIX)
    )
    if unknown:
        raise errors.invalid(
            f"unknown volume attributes {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(EPHEMERAL_ATTRIBUTES)})"
        )
    if "size" not in volume_context:
        return volume_size(0, 0, default=default, maximum=maximum)
    text = volume_context["size"]
    try:
        wanted = quantity.to_bytes(text)
    except quantity.QuantityError:
        raise errors.invalid(f"volume attribute size {_shown(text)} is not a quantity") from None
    if wanted <= 0:
        raise errors.invalid(f"volume attribute size {_shown(text)} must be positive")
    if wanted > maximum:
        raise errors.out_of_range(
            f"volume attribute size {text} is more than the largest volume ({maximum} bytes)"
        )
    return volume_size(wanted, 0, default=default, maximum=maximum)


def capability_problem(cap: csi_pb2.VolumeCapability) -> str | None:
    """Why this driver cannot serve ``cap``, or None if it can."""
    which = cap.WhichOneof("access_type")
    if which is None:
        return "access_type (mount or block) missing in volume capability"
    if not cap.HasField("access_mode"):
        return "access_mode missing in volume capability"
    mode = cap.access_mode.mode
    if mode not in SUPPORTED_MODES:
        name = Mode.Name(mode) if mode in Mode.values() else str(mode)
        allowed = ", ".join(Mode.Name(m) for m in sorted(SUPPORTED_MODES))
        return f"access mode {name} is not supported (supported: {allowed})"
    if which == "mount":
        fs_type = cap.mount.fs_type
        if fs_type and fs_type not in FS_TYPES:
            return f"fs_type {fs_type!r} is not supported (supported: {', '.join(FS_TYPES)})"
        for flag in cap.mount.mount_flags:
            if not flag or _CONTROL.search(flag):
                return f"mount flag {_shown(flag)} is not valid"
    return None


def parse_capability(cap: csi_pb2.VolumeCapability, *, field: str) -> Capability:
    problem = capability_problem(cap)
    if problem:
        raise errors.invalid(f"{field}: {problem}")
    if cap.WhichOneof("access_type") == "block":
        return Capability("block", cap.access_mode.mode)
    return Capability(
        "mount", cap.access_mode.mode, cap.mount.fs_type, tuple(cap.mount.mount_flags)
    )


def parse_capabilities(caps: Iterable[csi_pb2.VolumeCapability]) -> list[Capability]:
    parsed = [parse_capability(c, field="volume_capabilities") for c in caps]
    if not parsed:
        raise errors.invalid("volume_capabilities missing in request")
    return parsed


def volume_fs_type(caps: Iterable[Capability]) -> str:
    """The filesystem a new volume gets: "" if only block access is asked for."""
    wanted = {c.fs_type or DEFAULT_FS for c in caps if c.access_type == "mount"}
    if len(wanted) > 1:
        raise errors.invalid(f"volume_capabilities ask for different fs_types: {sorted(wanted)}")
    return wanted.pop() if wanted else ""


def volume_size(
    required: int, limit: int, *, default: int, maximum: int, minimum: int = MIN_VOLUME_BYTES
) -> int:
    """The size to provision for a capacity range (0 = unset), as the spec asks.

    Rounds up to whole MiB and at least ``minimum``, but never above ``limit_bytes``.
    """
    if required < 0 or limit < 0:
        raise errors.invalid("capacity_range: required_bytes and limit_bytes must not be negative")
    if limit and required > limit:
        raise errors.invalid(
            f"capacity_range: required_bytes {required} is larger than limit_bytes {limit}"
        )
    want = required or (min(default, limit) if limit else default)
    size = -(-max(want, minimum) // ALIGN_BYTES) * ALIGN_BYTES
    if limit and size > limit:
        if limit < minimum:
            raise errors.out_of_range(
                f"capacity_range: limit_bytes {limit} is below the smallest volume ({minimum} bytes)"
            )
        size = limit
    if size > maximum:
        raise errors.out_of_range(
            f"capacity_range: {size} bytes is more than the largest volume ({maximum} bytes)"
        )
    return size


def may_attach_beside(mode: int, modes_elsewhere: Iterable[int]) -> bool:
    """Whether a volume may be ControllerPublished with ``mode`` while attached to other nodes
    with ``modes_elsewhere``: only when every one of them is a multi-node mode."""
    return all(m in MULTI_NODE_MODES for m in (mode, *modes_elsewhere))


def topology_matches(wanted: Mapping[str, str], ours: Mapping[str, str]) -> bool:
    return dict(wanted) == dict(ours)


def check_accessibility(requirement: csi_pb2.TopologyRequirement, ours: Mapping[str, str]) -> None:
    """A volume here is only reachable from this node: a requisite list must include it."""
    requisite = [dict(t.segments) for t in requirement.requisite]
    if requisite and not any(topology_matches(t, ours) for t in requisite):
        raise errors.exhausted(
            f"accessibility_requirements: no requisite topology matches this node's {dict(ours)}"
        )


T = TypeVar("T")


def page(items: Sequence[T], *, max_entries: int, starting_token: str) -> tuple[list[T], str]:
    """One page of ``items`` and the token for the next (an offset; "" when done)."""
    if max_entries < 0:
        raise errors.invalid("max_entries must not be negative")
    start = 0
    if starting_token:
        if not starting_token.isdigit() or int(starting_token) > len(items):
            raise errors.aborted(f"starting_token {_shown(starting_token)} is not valid")
        start = int(starting_token)
    end = len(items) if max_entries == 0 else min(len(items), start + max_entries)
    return list(items[start:end]), (str(end) if end < len(items) else "")
