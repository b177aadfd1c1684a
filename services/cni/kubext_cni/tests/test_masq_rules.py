"""Masquerade rule text (nft and iptables) and the parsing DEL/GC/CHECK rely on."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess

import pytest

from kubext_cni.core import iptables, nft

IPS = [ipaddress.ip_interface("10.1.0.5/24"), ipaddress.ip_interface("fd00::5/64")]


def test_add_script_is_one_transaction_with_commented_elements() -> None:
    script = nft.add_script("net1", "c1", "eth0", IPS)
    chain = nft.network_chain("net1", [ip.network for ip in IPS])
    assert chain.startswith(nft.network_chain_prefix("net1"))
    assert (
        f'add element inet kubext-cni masq4 {{ 10.1.0.5 comment "id=c1 if=eth0" : jump {chain} }}'
        in script
    )
    assert (
        f'add element inet kubext-cni masq6 {{ fd00::5 comment "id=c1 if=eth0" : jump {chain} }}'
        in script
    )
    body = [line for line in script.splitlines() if f"add rule inet kubext-cni {chain}" in line]
    assert [line.split(chain, 1)[1].strip() for line in body] == [
        "ip daddr 10.1.0.0/24 return",
        "ip6 daddr fd00::/64 return",
        "ip daddr 224.0.0.0/4 return",
        "ip6 daddr ff00::/8 return",
        "masquerade",
    ]
    # The shared skeleton is flushed and refilled, so concurrent ADDs converge.
    assert script.index("flush chain inet kubext-cni postrouting") < script.index(
        "ip saddr vmap @masq4"
    )


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("unshare"),
    reason="needs root, nft and unshare",
)
def test_add_script_is_valid_nft_syntax() -> None:
    """``nft -c`` in a throwaway netns: parsed and checked by the kernel, never committed."""
    script = nft.add_script("net1", "c1", "eth0", IPS)
    proc = subprocess.run(
        ["unshare", "--net", "nft", "-c", "-f", "-"],
        input=script.encode(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()


def test_long_container_ids_get_a_hashed_comment_within_nfts_limit() -> None:
    comment = nft.element_comment("x" * 200, "eth0")
    assert len(comment) <= 128 and comment.startswith("id-sha256=")
    assert comment == nft.element_comment("x" * 200, "eth0")


def _listing(*elements: tuple[str, str, str, str]) -> str:
    maps: dict[str, list] = {"masq4": [], "masq6": []}
    for name, address, comment, target in elements:
        key: object = {"elem": {"val": address, "comment": comment}} if comment else address
        maps[name].append([key, {"jump": {"target": target}}])
    objs: list[dict] = [{"metainfo": {"json_schema_version": 1}}]
    objs += [
        {"map": {"family": "inet", "table": "kubext-cni", "name": n, "elem": e}}
        for n, e in maps.items()
    ]
    objs.append({"chain": {"family": "inet", "table": "kubext-cni", "name": "postrouting"}})
    return json.dumps({"nftables": objs})


NET1 = nft.network_chain("net1", [ipaddress.ip_network("10.1.0.0/24")])
NET2 = nft.network_chain("net2", [ipaddress.ip_network("10.2.0.0/24")])
LISTING = _listing(
    ("masq4", "10.1.0.5", "id=c1 if=eth0", NET1),
    ("masq6", "fd00::5", "id=c1 if=eth0", NET1),
    ("masq4", "10.1.0.6", "id=c2 if=eth0", NET1),
    ("masq4", "10.2.0.5", "id=c1 if=eth0", NET2),  # same attachment name, other network
    ("masq4", "10.1.0.9", "", NET1),  # no comment: not ours to judge by name
)


def test_parse_elements_reads_both_maps_with_and_without_comments() -> None:
    elements = nft.parse_elements(LISTING)
    assert len(elements) == 5
    by_address = {e.address: e for e in elements}
    assert by_address["fd00::5"] == nft.Element(6, "fd00::5", "id=c1 if=eth0", NET1)
    assert by_address["10.1.0.9"].comment == ""
    assert nft.parse_chains(LISTING) == ["postrouting"]


def test_owned_elements_match_attachment_and_network() -> None:
    owned = nft.owned_elements(nft.parse_elements(LISTING), "net1", "c1", "eth0")
    assert [e.address for e in owned] == ["10.1.0.5", "fd00::5"]
    assert nft.delete_script(owned) == (
        "delete element inet kubext-cni masq4 { 10.1.0.5 }\n"
        "delete element inet kubext-cni masq6 { fd00::5 }\n"
    )


def test_stale_elements_are_this_networks_invalid_attachments() -> None:
    stale = nft.stale_elements(nft.parse_elements(LISTING), "net1", frozenset({("c1", "eth0")}))
    assert sorted(e.address for e in stale) == ["10.1.0.6", "10.1.0.9"]


def test_iptables_setup_follows_the_reference_layout() -> None:
    chain = iptables.chain_name("net1", "c1")
    assert chain.startswith("KUBEXT-") and len(chain) == 28
    text = iptables.restore_setup("net1", "c1", IPS[:1])
    note = '"kubext-cni net=net1 id=c1"'
    assert text.splitlines() == [
        "*nat",
        f":{chain} - [0:0]",
        f"-A {chain} -d 10.1.0.0/24 -m comment --comment {note} -j ACCEPT",
        f"-A {chain} ! -d 224.0.0.0/4 -m comment --comment {note} -j MASQUERADE",
        f"-A POSTROUTING -s 10.1.0.5/32 -m comment --comment {note} -j {chain}",
        "COMMIT",
    ]


def test_iptables_teardown_and_gc_parse_the_listing() -> None:
    mine, other = iptables.chain_name("net1", "c1"), iptables.chain_name("net1", "c2")
    listing = "\n".join(
        [
            "-P POSTROUTING ACCEPT",
            f"-N {mine}",
            f"-N {other}",
            f'-A POSTROUTING -s 10.1.0.5/32 -m comment --comment "kubext-cni net=net1 id=c1" -j {mine}',
            f'-A POSTROUTING -s 10.1.0.6/32 -m comment --comment "kubext-cni net=net1 id=c2" -j {other}',
            f'-A {mine} -d 10.1.0.0/24 -m comment --comment "kubext-cni net=net1 id=c1" -j ACCEPT',
            f'-A {other} -d 10.1.0.0/24 -m comment --comment "kubext-cni net=net1 id=c2" -j ACCEPT',
        ]
    )
    text = iptables.restore_teardown(listing, {mine})
    assert text.splitlines() == [
        "*nat",
        f'-D POSTROUTING -s 10.1.0.5/32 -m comment --comment "kubext-cni net=net1 id=c1" -j {mine}',
        f"-F {mine}",
        f"-X {mine}",
        "COMMIT",
    ]
    assert iptables.restore_teardown(listing, {"KUBEXT-gone"}) == ""
    assert iptables.chains_of_network(listing, "net1") == {mine: "c1", other: "c2"}
    assert iptables.chains_of_network(listing, "net2") == {}
