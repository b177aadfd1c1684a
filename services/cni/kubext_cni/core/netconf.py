"""The plugin's inputs: CNI_* environment and the network configuration on stdin.

Pure: parsing and validation only, with the spec's error codes. The rules for the
environment follow libcni's skel (which variables each verb needs, how container IDs
and interface names are validated) so runtimes see the same errors as from the reference.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubext_cni.core import errors, versions

COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")
DEFAULT_BRIDGE = "cni0"
MASQ_BACKENDS = ("nftables", "iptables")

# Which CNI_* variables each verb requires (skel's table; CNI_NETNS is optional for DEL).
_REQUIRED_ENV: dict[str, tuple[str, ...]] = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "GC": ("CNI_PATH",),
    "STATUS": ("CNI_PATH",),
    "VERSION": (),
}
_VALID_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
MAX_IFNAME = 15

# Reference bridge options we do not implement: rejected (code 2) unless left at their default.
_UNSUPPORTED_DEFAULTS: dict[str, Any] = {
    "vlan": 0,
    "vlanTrunk": None,
    "preserveDefaultVlan": False,
    "macspoofchk": False,
    "enabledad": False,
    "disableContainerInterface": False,
    "portIsolation": False,
}


@dataclass(frozen=True)
class Request:
    """One invocation: the verb and its CNI_* parameters (validated)."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: tuple[tuple[str, str], ...] = ()
    path: tuple[str, ...] = ()

    def arg(self, key: str) -> str | None:
        for k, v in self.args:
            if k == key:
                return v
        return None


@dataclass(frozen=True)
class NetConf:
    """The bridge plugin's configuration, with the reference plugin's defaults applied."""

    cni_version: str
    name: str
    bridge: str = DEFAULT_BRIDGE
    is_gateway: bool = False
    is_default_gateway: bool = False
    force_address: bool = False
    ip_masq: bool = False
    ip_masq_backend: str | None = None
    mtu: int = 0
    hairpin_mode: bool = False
    promisc_mode: bool = False
    ipam: Mapping[str, Any] | None = None
    dns: Mapping[str, Any] | None = None
    mac: str | None = None
    prev_result: Mapping[str, Any] | None = None
    valid_attachments: frozenset[tuple[str, str]] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ipam_type(self) -> str | None:
        return self.ipam["type"] if self.ipam else None


def parse_request(env: Mapping[str, str]) -> Request:
    """Validate the CNI_* variables for the verb in CNI_COMMAND (code 4 on any problem)."""
    command = env.get("CNI_COMMAND", "")
    required = _REQUIRED_ENV.get(command, ())
    missing = [] if command else ["CNI_COMMAND"]
    missing += [name for name in required if not env.get(name)]
    if missing:
        raise errors.CNIError(
            errors.INVALID_ENV, f"required env variables [{','.join(missing)}] missing"
        )
    if command not in COMMANDS:
        raise errors.CNIError(errors.INVALID_ENV, f"unknown CNI_COMMAND: {command}")
    container_id = env.get("CNI_CONTAINERID", "")
    ifname = env.get("CNI_IFNAME", "")
    if "CNI_CONTAINERID" in required and not _VALID_NAME.match(container_id):
        raise errors.CNIError(
            errors.INVALID_ENV, "invalid characters in containerID (CNI_CONTAINERID)", container_id
        )
    if "CNI_IFNAME" in required:
        validate_ifname(ifname, what="CNI_IFNAME")
    return Request(
        command=command,
        container_id=container_id,
        netns=env.get("CNI_NETNS", ""),
        ifname=ifname,
        args=parse_cni_args(env.get("CNI_ARGS", "")),
        path=tuple(p for p in env.get("CNI_PATH", "").split(":") if p),
    )


def validate_ifname(name: str, *, what: str) -> None:
    """Linux's rules for interface names (dev_valid_name), as skel applies them."""
    code = errors.INVALID_ENV if what.startswith("CNI_") else errors.INVALID_CONFIG
    if not name:
        raise errors.CNIError(code, f"{what}: interface name is empty")
    if len(name) > MAX_IFNAME:
        raise errors.CNIError(
            code,
            f"{what}: interface name {name!r} is too long",
            f"interface name should be less than {MAX_IFNAME + 1} characters",
        )
    if name in (".", ".."):
        raise errors.CNIError(code, f"{what}: interface name is . or ..")
    if any(c in "/:" or c.isspace() for c in name):
        raise errors.CNIError(
            code, f"{what}: interface name {name!r} contains / or : or whitespace characters"
        )


def parse_cni_args(text: str) -> tuple[tuple[str, str], ...]:
    """``"A=1;B=2"`` -> pairs; a malformed pair is code 4 naming CNI_ARGS."""
    pairs = []
    for item in text.split(";") if text else ():
        key, sep, value = item.partition("=")
        if not sep or not key or "=" in value:
            raise errors.CNIError(errors.INVALID_ENV, f"CNI_ARGS: invalid pair {item!r}")
        pairs.append((key, value))
    return tuple(pairs)


def decode(stdin: bytes) -> dict[str, Any]:
    """Stdin -> JSON object with a valid network name (skel's validateConfig)."""
    try:
        raw = json.loads(stdin)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.CNIError(
            errors.DECODE_FAILURE, f"error unmarshalling network config: {exc}"
        ) from None
    if not isinstance(raw, dict):
        raise errors.CNIError(
            errors.DECODE_FAILURE,
            f"error unmarshalling network config: expected a JSON object, got {_kind(raw)}",
        )
    name = raw.get("name")
    if not name:
        raise errors.CNIError(errors.INVALID_CONFIG, "missing network name")
    if not isinstance(name, str) or not _VALID_NAME.match(name):
        raise errors.CNIError(
            errors.INVALID_CONFIG, "invalid characters found in network name", str(name)
        )
    return raw


def config_version(raw: Mapping[str, Any]) -> str:
    version = raw.get("cniVersion")
    if version is None or version == "":
        raise errors.CNIError(errors.INVALID_CONFIG, "missing required field cniVersion")
    if not isinstance(version, str):
        raise errors.CNIError(
            errors.DECODE_FAILURE, f"cniVersion must be a string, got {_kind(version)}"
        )
    return version


def parse_netconf(raw: Mapping[str, Any], request: Request) -> NetConf:
    """Validate the bridge options (code 7 for bad values, 2 for unsupported features)."""
    version = config_version(raw)
    versions.check(version, request.command)
    for key, default in _UNSUPPORTED_DEFAULTS.items():
        value = raw.get(key, default)
        if value not in (default, None, [], 0, False):
            raise errors.CNIError(
                errors.UNSUPPORTED_FIELD,
                f"unsupported field {key}={json.dumps(value)}",
                "kubext-bridge does not implement this reference bridge option",
            )
    bridge = _typed(raw, "bridge", str, DEFAULT_BRIDGE) or DEFAULT_BRIDGE
    validate_ifname(bridge, what="bridge")
    is_default_gateway = _typed(raw, "isDefaultGateway", bool, False)
    hairpin = _typed(raw, "hairpinMode", bool, False)
    promisc = _typed(raw, "promiscMode", bool, False)
    if hairpin and promisc:
        raise errors.CNIError(
            errors.INVALID_CONFIG, "cannot set hairpinMode and promiscMode at the same time"
        )
    mtu = _typed(raw, "mtu", int, 0)
    if mtu and not 68 <= mtu <= 65535:
        raise errors.CNIError(errors.INVALID_CONFIG, f"mtu {mtu} is outside 68..65535")
    backend = _typed(raw, "ipMasqBackend", str, None)
    if backend is not None and backend not in MASQ_BACKENDS:
        raise errors.CNIError(
            errors.INVALID_CONFIG,
            f"unknown ipMasqBackend {backend!r}",
            f"expected one of {list(MASQ_BACKENDS)}",
        )
    return NetConf(
        cni_version=version,
        name=raw["name"],
        bridge=bridge,
        # isDefaultGateway implies isGateway, as in the reference plugin.
        is_gateway=_typed(raw, "isGateway", bool, False) or is_default_gateway,
        is_default_gateway=is_default_gateway,
        force_address=_typed(raw, "forceAddress", bool, False),
        ip_masq=_typed(raw, "ipMasq", bool, False),
        ip_masq_backend=backend,
        mtu=mtu,
        hairpin_mode=hairpin,
        promisc_mode=promisc,
        ipam=_ipam(raw),
        dns=_dns(raw),
        mac=_mac(raw, request),
        prev_result=_object(raw, "prevResult"),
        valid_attachments=_valid_attachments(raw),
        raw=raw,
    )


def _ipam(raw: Mapping[str, Any]) -> Mapping[str, Any] | None:
    ipam = _object(raw, "ipam")
    if not ipam:
        return None  # no IPAM: a layer-2 attachment, as in the reference plugin
    ipam_type = ipam.get("type")
    if not isinstance(ipam_type, str) or not ipam_type:
        raise errors.CNIError(errors.INVALID_CONFIG, "ipam.type must be a non-empty string")
    if "/" in ipam_type or ipam_type in (".", ".."):
        raise errors.CNIError(errors.INVALID_CONFIG, f"ipam.type {ipam_type!r} is not a name")
    return ipam


def _dns(raw: Mapping[str, Any]) -> Mapping[str, Any] | None:
    dns = _object(raw, "dns")
    if not dns:
        return None
    if any(dns.get(k) for k in ("nameservers", "domain", "search", "options")):
        return dns
    return None


def _mac(raw: Mapping[str, Any], request: Request) -> str | None:
    """The container MAC: CNI_ARGS MAC, then args.cni.mac, then runtimeConfig.mac (last wins)."""
    mac = request.arg("MAC")
    args_cni = (_object(raw, "args") or {}).get("cni")
    if isinstance(args_cni, dict) and args_cni.get("mac"):
        mac = args_cni["mac"]
    runtime = _object(raw, "runtimeConfig") or {}
    if runtime.get("mac"):
        mac = runtime["mac"]
    if mac is None:
        return None
    if not isinstance(mac, str) or not _MAC.match(mac):
        raise errors.CNIError(errors.INVALID_CONFIG, f"invalid MAC address {mac!r}")
    return mac.lower()


def _valid_attachments(raw: Mapping[str, Any]) -> frozenset[tuple[str, str]] | None:
    """GC's still-valid attachments: the spec's key and libcni's older spelling, merged."""
    found: set[tuple[str, str]] = set()
    present = False
    for key in ("cni.dev/valid-attachments", "cni.dev/attachments"):
        if key not in raw or raw[key] is None:
            continue
        present = True
        items = raw[key]
        if not isinstance(items, list):
            raise errors.CNIError(errors.INVALID_CONFIG, f"{key} must be a list")
        for item in items:
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("containerID"), str)
                or not isinstance(item.get("ifname"), str)
            ):
                raise errors.CNIError(
                    errors.INVALID_CONFIG,
                    f"{key}: each entry needs string containerID and ifname",
                    json.dumps(item),
                )
            found.add((item["containerID"], item["ifname"]))
    return frozenset(found) if present else None


def _object(raw: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.CNIError(errors.INVALID_CONFIG, f"{key} must be an object, got {_kind(value)}")
    return value


def _typed(raw: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    value = raw.get(key)
    if value is None:
        return default
    # bool is an int in Python; JSON true is not a valid mtu.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise errors.CNIError(
            errors.INVALID_CONFIG,
            f"{key} must be {_KIND_NAMES[kind]}, got {json.dumps(value)}",
        )
    return value


_KIND_NAMES = {bool: "a boolean", int: "an integer", str: "a string"}


def _kind(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "number" if isinstance(value, int | float) else "null"
    )
