"""CNI error codes and the one exception type every layer raises.

Codes 1-11 and 50/51 are the spec's (SPEC.md, "Error"); 100+ are this plugin's own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# Spec codes.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
LIMITED_CONNECTIVITY = 51

# Plugin-specific codes (100+).
NETLINK_FAILURE = 100  # a netlink request failed (message names the object)
INTERFACE_EXISTS = 101  # CNI_IFNAME already exists in the container, or the host veth name is taken
MASQUERADE_FAILURE = 102  # nft/iptables missing or rejected the rules
CHECK_FAILED = 103  # CHECK found drift between prevResult and the live state
IPAM_FAILURE = 104  # the IPAM plugin could not be run, or returned no usable IPs
GC_FAILURE = 105  # GC removed what it could; the message lists what it could not
DAEMON_UNUSABLE = 106  # the launcher reached a daemon running in another network namespace


@dataclass
class CNIError(Exception):
    """An error that becomes the spec's error JSON on stdout (and a non-zero exit)."""

    code: int
    msg: str
    details: str = ""

    def __str__(self) -> str:
        return f"{self.msg}; {self.details}" if self.details else self.msg

    def to_json(self, cni_version: str) -> bytes:
        body: dict[str, object] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            body["details"] = self.details
        return json.dumps(body, indent=4).encode() + b"\n"
