"""Delegated plugins (IPAM): found through CNI_PATH, run with our environment and stdin.

SPEC section 4: the delegate gets the same environment and the complete configuration,
its stderr goes to ours, and its error result is passed up unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from typing import Any

from kubext_cni.core import errors

TIMEOUT_S = 300  # a DHCP IPAM may wait on the network; bounded all the same


def find(plugin: str, path: tuple[str, ...]) -> str:
    for directory in path:
        candidate = os.path.join(directory, plugin)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise errors.CNIError(
        errors.IPAM_FAILURE, f"failed to find plugin {plugin!r} in path {list(path)}"
    )


def run(
    plugin: str,
    command: str,
    *,
    path: tuple[str, ...],
    env: Mapping[str, str],
    stdin: bytes,
    stderr: list[str],
) -> dict[str, Any] | None:
    """Run ``plugin`` with CNI_COMMAND=command; its parsed stdout (None when empty)."""
    binary = find(plugin, path)
    child_env = dict(env)
    child_env["CNI_COMMAND"] = command
    try:
        proc = subprocess.run(
            [binary],
            input=stdin,
            env=child_env,
            capture_output=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise errors.CNIError(
            errors.IPAM_FAILURE, f"{plugin} {command} did not finish in {TIMEOUT_S}s"
        ) from None
    except OSError as exc:
        raise errors.CNIError(
            errors.IPAM_FAILURE, f"failed to run {binary}: {exc.strerror}"
        ) from None
    if proc.stderr:
        stderr.append(proc.stderr.decode(errors="replace").rstrip("\n"))
    out = proc.stdout.strip()
    if proc.returncode != 0:
        raise _error_from(plugin, command, proc.returncode, out)
    if not out:
        return None
    try:
        parsed = json.loads(out)
    except ValueError as exc:
        raise errors.CNIError(
            errors.DECODE_FAILURE, f"failed to decode {plugin} {command} result: {exc}"
        ) from None
    if not isinstance(parsed, dict):
        raise errors.CNIError(
            errors.DECODE_FAILURE, f"{plugin} {command} result is not a JSON object"
        )
    return parsed


def _error_from(plugin: str, command: str, code: int, out: bytes) -> errors.CNIError:
    """The delegate's own error JSON, passed up as-is; anything else wrapped."""
    try:
        body = json.loads(out)
        if isinstance(body, dict) and isinstance(body.get("code"), int) and "msg" in body:
            return errors.CNIError(body["code"], str(body["msg"]), str(body.get("details", "")))
    except ValueError:
        pass
    return errors.CNIError(
        errors.IPAM_FAILURE,
        f"{plugin} {command} failed with exit status {code}",
        out.decode(errors="replace")[:1000],
    )
