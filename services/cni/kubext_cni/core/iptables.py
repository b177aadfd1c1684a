"""ipMasq through iptables, the fallback when ``nft`` is not installed.

The reference plugin's layout: one nat chain per container (``-d <subnet> ACCEPT``,
``! -d <multicast> MASQUERADE``) and a POSTROUTING jump per pod address, all commented with
the network and container. Pure: builds ``iptables-restore`` input and parses ``-S`` output.
"""

from __future__ import annotations

import hashlib
import shlex

from kubext_cni.core.plan import masquerade_subnets
from kubext_cni.core.result import IPInterface

CHAIN_PREFIX = "KUBEXT-"
_MAX_CHAIN = 28  # iptables' chain name limit
_MULTICAST = {4: "224.0.0.0/4", 6: "ff00::/8"}


def chain_name(network: str, container_id: str) -> str:
    digest = hashlib.sha512(f"{network}{container_id}".encode()).hexdigest()
    return (CHAIN_PREFIX + digest)[:_MAX_CHAIN]


def comment(network: str, container_id: str) -> str:
    # Names and IDs are [A-Za-z0-9_.-] (validated), so this needs no escaping inside "...".
    return f"kubext-cni net={network} id={container_id}"


def binary(family: int) -> str:
    return "iptables" if family == 4 else "ip6tables"


def restore_setup(network: str, container_id: str, ips: list[IPInterface]) -> str:
    """``iptables-restore --noflush`` input for one family's addresses of one container."""
    chain = chain_name(network, container_id)
    note = f'"{comment(network, container_id)}"'
    family = ips[0].version
    lines = ["*nat", f":{chain} - [0:0]"]  # declaring an existing chain flushes it
    for subnet in masquerade_subnets(ips):
        lines.append(f"-A {chain} -d {subnet} -m comment --comment {note} -j ACCEPT")
    lines.append(f"-A {chain} ! -d {_MULTICAST[family]} -m comment --comment {note} -j MASQUERADE")
    for ip in ips:
        prefix = 32 if family == 4 else 128
        lines.append(f"-A POSTROUTING -s {ip.ip}/{prefix} -m comment --comment {note} -j {chain}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def restore_teardown(listing: str, chains: set[str]) -> str:
    """Input removing ``chains`` and every POSTROUTING jump to them, from ``iptables -S``."""
    present = set()
    deletes = []
    for line in listing.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "-N" and words[1] in chains:
            present.add(words[1])
        elif words[:2] == ["-A", "POSTROUTING"] and _jump(words) in chains:
            deletes.append("-D " + " ".join(_restore_quote(w) for w in words[1:]))
    if not present and not deletes:
        return ""
    lines = ["*nat", *deletes]
    lines += [f"-F {c}" for c in sorted(present)] + [f"-X {c}" for c in sorted(present)]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def chains_of_network(listing: str, network: str) -> dict[str, str]:
    """{chain: container ID} for this network's chains, read from their rule comments."""
    found: dict[str, str] = {}
    marker = f"kubext-cni net={network} id="
    for line in listing.splitlines():
        words = shlex.split(line)
        if len(words) < 2 or words[0] != "-A" or not words[1].startswith(CHAIN_PREFIX):
            continue
        if "--comment" in words:
            note = words[words.index("--comment") + 1]
            if note.startswith(marker):
                found[words[1]] = note[len(marker) :]
    return found


def _restore_quote(word: str) -> str:
    """iptables-restore understands double quotes only (not shell single quotes)."""
    return f'"{word}"' if not word or any(c.isspace() for c in word) else word


def _jump(words: list[str]) -> str | None:
    return words[words.index("-j") + 1] if "-j" in words[:-1] else None
