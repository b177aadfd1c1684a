"""CNI spec versions: which we speak, and which verbs each version allows."""

from __future__ import annotations

import re

from kubext_cni.core import errors

SUPPORTED: tuple[str, ...] = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"

# The first spec version that defines each verb (skel enforces the same floors).
MINIMUM_FOR_COMMAND = {"CHECK": "0.4.0", "STATUS": "1.1.0", "GC": "1.1.0"}

_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def parse(version: str) -> tuple[int, int, int]:
    """``"1.0.0"`` -> ``(1, 0, 0)``; anything else is a decode error (code 6)."""
    match = _SEMVER.match(version)
    if not match:
        raise errors.CNIError(errors.DECODE_FAILURE, f"invalid cniVersion {version!r}")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch)


def at_least(version: str, minimum: str) -> bool:
    return parse(version) >= parse(minimum)


def has_ip_version_field(version: str) -> bool:
    """Results before 1.0.0 carry ``"version": "4"|"6"`` in each ``ips`` entry."""
    return parse(version) < (1, 0, 0)


def check(version: str, command: str) -> None:
    """Raise the spec's code 1 when ``version`` cannot carry ``command``."""
    parse(version)
    if version not in SUPPORTED:
        raise errors.CNIError(
            errors.INCOMPATIBLE_VERSION,
            "incompatible CNI versions",
            # libcni's wording (Go %q formatting), so runtimes log the familiar text.
            f'config is "{version}", plugin supports [{" ".join(f"{v!r}" for v in SUPPORTED)}]'.replace(
                "'", '"'
            ),
        )
    minimum = MINIMUM_FOR_COMMAND.get(command)
    if minimum and not at_least(version, minimum):
        raise errors.CNIError(
            errors.INCOMPATIBLE_VERSION,
            f"config version does not allow {command}",
            f'config is "{version}", {command} needs cniVersion >= {minimum}',
        )
