"""The ipMasq edge: runs ``nft`` (or ``iptables-restore`` as the fallback) on the host.

Rules are tied to the attachment (network, container ID, interface), so DEL and GC remove
exactly what that attachment added. Children run in the caller's netns: call only from
the host side, never inside ``netns.entered``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from kubext_cni import libnft
from kubext_cni.core import errors, iptables, nft
from kubext_cni.core.netconf import NetConf
from kubext_cni.core.result import IPInterface

# Runtimes often exec plugins with a minimal PATH; the sbin directories hold nft/iptables.
_EXTRA_PATH = "/usr/local/sbin:/usr/sbin:/sbin"
TIMEOUT_S = 60


def _which(name: str) -> str | None:
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:{_EXTRA_PATH}")


def backend(conf: NetConf) -> str:
    """The configured backend, else nftables when ``nft`` exists, else iptables."""
    if conf.ip_masq_backend:
        return conf.ip_masq_backend
    if _which("nft"):
        return "nftables"
    if _which("iptables-restore"):
        return "iptables"
    raise errors.CNIError(
        errors.MASQUERADE_FAILURE,
        "ipMasq needs nft or iptables-restore, and neither is installed",
        f"searched PATH and {_EXTRA_PATH}",
    )


def available(conf: NetConf) -> str | None:
    """Why masquerade cannot work here, or None (for STATUS)."""
    try:
        tool = "nft" if backend(conf) == "nftables" else "iptables-restore"
    except errors.CNIError as exc:
        return exc.msg
    return None if _which(tool) else f"ipMasqBackend {conf.ip_masq_backend} needs {tool}"


@dataclass
class _Run:
    ok: bool
    stdout: str
    stderr: str


def _nft_in_process(args: list[str], stdin: str) -> _Run | None:
    """``nft [-j] <command>`` or ``nft -f -`` through libnftables; None: exec it."""
    json_output = args[:1] == ["-j"]
    rest = args[1:] if json_output else args
    result = libnft.run(stdin if rest == ["-f", "-"] else " ".join(rest), json_output=json_output)
    return None if result is None else _Run(result.ok, result.stdout, result.stderr)


def _run(tool: str, args: list[str], stdin: str = "") -> _Run:
    binary = _which(tool)
    if binary is None:
        raise errors.CNIError(errors.MASQUERADE_FAILURE, f"{tool} is not installed")
    if tool == "nft":
        done = _nft_in_process(args, stdin)
        if done is not None:
            return done
    try:
        proc = subprocess.run(
            [binary, *args],
            input=stdin.encode(),
            capture_output=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise errors.CNIError(
            errors.MASQUERADE_FAILURE, f"{tool} did not finish in {TIMEOUT_S}s"
        ) from None
    return _Run(proc.returncode == 0, proc.stdout.decode(), proc.stderr.decode().strip())


def setup(conf: NetConf, container_id: str, ifname: str, ips: list[IPInterface]) -> None:
    if not ips:
        return
    if backend(conf) == "nftables":
        run = _run("nft", ["-f", "-"], nft.add_script(conf.name, container_id, ifname, ips))
        if not run.ok:
            raise errors.CNIError(
                errors.MASQUERADE_FAILURE, "nft rejected the masquerade rules", run.stderr
            )
        return
    for family in (4, 6):
        family_ips = [ip for ip in ips if ip.version == family]
        if not family_ips:
            continue
        script = iptables.restore_setup(conf.name, container_id, family_ips)
        run = _run(f"{iptables.binary(family)}-restore", ["-w", "--noflush"], script)
        if not run.ok:
            raise errors.CNIError(
                errors.MASQUERADE_FAILURE,
                f"{iptables.binary(family)}-restore rejected the masquerade rules",
                run.stderr,
            )


def _nft_listing() -> str | None:
    run = _run("nft", nft.list_command())
    if run.ok:
        return run.stdout
    if "No such file or directory" in run.stderr:
        return None  # no table: nothing was ever added on this node
    raise errors.CNIError(errors.MASQUERADE_FAILURE, "nft could not list kubext-cni", run.stderr)


def teardown(conf: NetConf, container_id: str, ifname: str) -> None:
    """Remove this attachment's rules; nothing to remove is success."""
    if backend(conf) == "nftables":
        listing = _nft_listing()
        if listing is None:
            return
        owned = nft.owned_elements(nft.parse_elements(listing), conf.name, container_id, ifname)
        if owned:
            run = _run("nft", ["-f", "-"], nft.delete_script(owned))
            if not run.ok:
                raise errors.CNIError(
                    errors.MASQUERADE_FAILURE, "nft failed to remove masquerade rules", run.stderr
                )
        return
    _iptables_remove(conf, {iptables.chain_name(conf.name, container_id)})


def _iptables_remove(conf: NetConf, chains: set[str]) -> None:
    for family in (4, 6):
        tool = iptables.binary(family)
        if _which(tool) is None:
            continue
        listing = _run(tool, ["-w", "-t", "nat", "-S"])
        if not listing.ok:
            raise errors.CNIError(
                errors.MASQUERADE_FAILURE, f"{tool} could not list nat rules", listing.stderr
            )
        script = iptables.restore_teardown(listing.stdout, chains)
        if script:
            run = _run(f"{tool}-restore", ["-w", "--noflush"], script)
            if not run.ok:
                raise errors.CNIError(
                    errors.MASQUERADE_FAILURE,
                    f"{tool}-restore failed to remove masquerade rules",
                    run.stderr,
                )


def missing(conf: NetConf, container_id: str, ifname: str, ips: list[IPInterface]) -> list[str]:
    """CHECK: the pod addresses that have no masquerade rule of this attachment."""
    if backend(conf) == "nftables":
        listing = _nft_listing()
        owned = (
            nft.owned_elements(nft.parse_elements(listing), conf.name, container_id, ifname)
            if listing
            else []
        )
        present = {e.address for e in owned}
        return [str(ip.ip) for ip in ips if str(ip.ip) not in present]
    chain = iptables.chain_name(conf.name, container_id)
    absent = []
    for ip in ips:
        listing = _run(iptables.binary(ip.version), ["-w", "-t", "nat", "-S", "POSTROUTING"])
        if f"-j {chain}" not in listing.stdout or str(ip.ip) not in listing.stdout:
            absent.append(str(ip.ip))
    return absent


def gc(conf: NetConf, valid: frozenset[tuple[str, str]]) -> int:
    """Remove this network's rules of attachments not in ``valid``; how many went."""
    if backend(conf) == "nftables":
        listing = _nft_listing()
        if listing is None:
            return 0
        stale = nft.stale_elements(nft.parse_elements(listing), conf.name, valid)
        if stale:
            run = _run("nft", ["-f", "-"], nft.delete_script(stale))
            if not run.ok:
                raise errors.CNIError(
                    errors.MASQUERADE_FAILURE, "nft failed to remove stale rules", run.stderr
                )
        return len(stale)
    valid_ids = {cid for cid, _ in valid}
    stale_chains: set[str] = set()
    for family in (4, 6):
        tool = iptables.binary(family)
        if _which(tool) is None:
            continue
        listing = _run(tool, ["-w", "-t", "nat", "-S"])
        for chain, cid in iptables.chains_of_network(listing.stdout, conf.name).items():
            if cid not in valid_ids:
                stale_chains.add(chain)
    if stale_chains:
        _iptables_remove(conf, stale_chains)
    return len(stale_chains)
