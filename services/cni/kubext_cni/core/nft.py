"""ipMasq through nftables: the scripts ADD/DEL/GC run and the parsing of ``nft -j`` listings.

Layout (one table shared by every kubext-bridge network on the node)::

    table inet kubext-cni
      map masq4 { ipv4_addr : verdict }   # pod IPv4 -> jump to its network's chain
      map masq6 { ipv6_addr : verdict }
      chain postrouting  (nat hook)  ip saddr vmap @masq4; ip6 saddr vmap @masq6
      chain n-<net>-<subnets>        return for the pod's own subnets and multicast; masquerade

A pod's rule is its map element, commented with its container ID and interface: ADD is one
atomic ``nft -f`` transaction and DEL removes exactly the elements whose comment names the
attachment (never an element a newer pod got after IP reuse). Pure: builds text, parses JSON.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kubext_cni.core.plan import masquerade_subnets
from kubext_cni.core.result import IPInterface, IPNetwork

TABLE = "kubext-cni"
FAMILY = "inet"
MAPS = {4: "masq4", 6: "masq6"}
_MULTICAST = {4: "224.0.0.0/4", 6: "ff00::/8"}
_MAX_COMMENT = 128  # NFTNL_UDATA_COMMENT_MAXLEN


@dataclass(frozen=True)
class Element:
    """One pod address in a masquerade map."""

    family: int
    address: str
    comment: str
    target: str

    def delete_line(self) -> str:
        return f"delete element {FAMILY} {TABLE} {MAPS[self.family]} {{ {self.address} }}"


def _hash(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def network_chain_prefix(network: str) -> str:
    return f"n-{_hash(network, 12)}-"


def network_chain(network: str, subnets: Iterable[IPNetwork]) -> str:
    """One chain per (network, set of pod subnets); the name is all ``nft -j`` shows of it."""
    key = ",".join(sorted(str(s) for s in subnets))
    return network_chain_prefix(network) + _hash(key, 8)


def element_comment(container_id: str, ifname: str) -> str:
    comment = f"id={container_id} if={ifname}"
    if len(comment) <= _MAX_COMMENT:
        return comment
    return f"id-sha256={_hash(container_id, 40)} if={ifname}"


def _quote(text: str) -> str:
    # Comments only ever hold container IDs ([A-Za-z0-9_.-]) and interface names (no space,
    # '/' or ':'); strip the one character that could end the string anyway.
    return '"' + text.replace('"', "") + '"'


def add_script(network: str, container_id: str, ifname: str, ips: list[IPInterface]) -> str:
    """One transaction: ensure the table skeleton, (re)write the network chain, add elements."""
    subnets = masquerade_subnets(ips)
    chain = network_chain(network, subnets)
    lines = [
        f"add table {FAMILY} {TABLE}",
        f"add map {FAMILY} {TABLE} masq4 {{ type ipv4_addr : verdict; }}",
        f"add map {FAMILY} {TABLE} masq6 {{ type ipv6_addr : verdict; }}",
        f"add chain {FAMILY} {TABLE} postrouting "
        "{ type nat hook postrouting priority srcnat; policy accept; }",
        # Flush and refill in the same transaction: idempotent under concurrent ADDs.
        f"flush chain {FAMILY} {TABLE} postrouting",
        f"add rule {FAMILY} {TABLE} postrouting ip saddr vmap @masq4",
        f"add rule {FAMILY} {TABLE} postrouting ip6 saddr vmap @masq6",
        f"add chain {FAMILY} {TABLE} {chain}",
        f"flush chain {FAMILY} {TABLE} {chain}",
    ]
    for subnet in subnets:
        proto = "ip" if subnet.version == 4 else "ip6"
        lines.append(f"add rule {FAMILY} {TABLE} {chain} {proto} daddr {subnet} return")
    for family in sorted({s.version for s in subnets}):
        proto = "ip" if family == 4 else "ip6"
        lines.append(f"add rule {FAMILY} {TABLE} {chain} {proto} daddr {_MULTICAST[family]} return")
    lines.append(f"add rule {FAMILY} {TABLE} {chain} masquerade")
    comment = _quote(element_comment(container_id, ifname))
    for ip in ips:
        lines.append(
            f"add element {FAMILY} {TABLE} {MAPS[ip.version]} "
            f"{{ {ip.ip} comment {comment} : jump {chain} }}"
        )
    return "\n".join(lines) + "\n"


def list_command() -> list[str]:
    return ["-j", "list", "table", FAMILY, TABLE]


def parse_elements(listing: str) -> list[Element]:
    """Elements of both maps from ``nft -j list table inet kubext-cni``."""
    data: dict[str, Any] = json.loads(listing)
    out: list[Element] = []
    for obj in data.get("nftables", []):
        nft_map = obj.get("map")
        if not nft_map or nft_map.get("table") != TABLE:
            continue
        family = {v: k for k, v in MAPS.items()}.get(nft_map.get("name"))
        if family is None:
            continue
        for key, verdict in nft_map.get("elem", []):
            if isinstance(key, dict) and "elem" in key:
                address, comment = str(key["elem"].get("val")), key["elem"].get("comment", "")
            else:
                address, comment = str(key), ""
            target = (verdict.get("jump") or verdict.get("goto") or {}).get("target", "")
            out.append(Element(family, address, comment, target))
    return out


def parse_chains(listing: str) -> list[str]:
    data: dict[str, Any] = json.loads(listing)
    return [
        o["chain"]["name"]
        for o in data.get("nftables", [])
        if "chain" in o and o["chain"].get("table") == TABLE
    ]


def owned_elements(
    elements: list[Element], network: str, container_id: str, ifname: str
) -> list[Element]:
    """The elements an attachment created: its comment, pointing at its network's chain."""
    prefix = network_chain_prefix(network)
    comment = element_comment(container_id, ifname)
    return [e for e in elements if e.comment == comment and e.target.startswith(prefix)]


def stale_elements(
    elements: list[Element], network: str, valid: frozenset[tuple[str, str]]
) -> list[Element]:
    """GC: this network's elements whose attachment is not in the valid list."""
    prefix = network_chain_prefix(network)
    keep = {element_comment(cid, ifname) for cid, ifname in valid}
    return [e for e in elements if e.target.startswith(prefix) and e.comment not in keep]


def delete_script(elements: list[Element]) -> str:
    return "".join(e.delete_line() + "\n" for e in elements)
