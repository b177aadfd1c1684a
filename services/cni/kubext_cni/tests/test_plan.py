"""The network plan: gateways, default routes, bridge addresses, result chaining."""

from __future__ import annotations

import ipaddress

import pytest

from kubext_cni.core import errors, netconf, plan, result
from kubext_cni.core.result import Interface, Result

ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c1",
    "CNI_NETNS": "/var/run/netns/p",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin",
}
REQUEST = netconf.parse_request(ENV)
IFACE = ipaddress.ip_interface


def _conf(**fields: object) -> netconf.NetConf:
    raw = {"cniVersion": "1.1.0", "name": "net1", "ipam": {"type": "host-local"}, **fields}
    return netconf.parse_netconf(raw, REQUEST)


def _ipam(ips: list[dict], routes: list[dict] | None = None) -> Result:
    return result.parse({"ips": ips, "routes": routes or []}, what="ipam")


DUAL = [{"address": "10.1.0.5/24"}, {"address": "fd00::5/64"}]


def test_host_veth_name_is_stable_short_and_per_attachment() -> None:
    name = plan.host_veth_name("net1", "c1", "eth0")
    assert name == plan.host_veth_name("net1", "c1", "eth0")
    assert name.startswith("veth") and len(name) == 15
    others = {
        plan.host_veth_name("net1", "c2", "eth0"),
        plan.host_veth_name("net1", "c1", "eth1"),
        plan.host_veth_name("net2", "c1", "eth0"),
    }
    assert name not in others and len(others) == 3


def test_gateway_mode_fills_gateways_bridge_addresses_and_forwarding() -> None:
    p = plan.plan_attachment(_conf(isGateway=True), REQUEST, _ipam(DUAL))
    assert [str(ip.gateway) for ip in p.ips] == ["10.1.0.1", "fd00::1"]
    assert p.bridge_addresses == [IFACE("10.1.0.1/24"), IFACE("fd00::1/64")]
    assert p.forward_families == [4, 6]
    assert p.routes == []  # isGateway alone adds no default route
    assert p.has_ipv6


def test_default_gateway_adds_one_default_route_per_family() -> None:
    p = plan.plan_attachment(_conf(isDefaultGateway=True), REQUEST, _ipam(DUAL))
    assert [(str(r.dst), str(r.gw)) for r in p.routes] == [
        ("0.0.0.0/0", "10.1.0.1"),
        ("::/0", "fd00::1"),
    ]


def test_an_ipam_default_route_is_not_duplicated_and_uses_the_gateway() -> None:
    ipam = _ipam([{"address": "10.1.0.5/24"}], [{"dst": "0.0.0.0/0"}])
    p = plan.plan_attachment(_conf(isDefaultGateway=True), REQUEST, ipam)
    assert len(p.routes) == 1
    assert str(p.route_gateway(p.routes[0])) == "10.1.0.1"


def test_without_gateway_mode_ipam_gateways_are_kept_and_nothing_is_added() -> None:
    ipam = _ipam([{"address": "10.1.0.5/24", "gateway": "10.1.0.254"}])
    p = plan.plan_attachment(_conf(), REQUEST, ipam)
    assert str(p.ips[0].gateway) == "10.1.0.254"
    assert (p.bridge_addresses, p.forward_families) == ([], [])


def test_two_ips_in_one_subnet_share_the_bridge_address() -> None:
    ipam = _ipam([{"address": "10.1.0.5/24"}, {"address": "10.1.0.6/24"}])
    p = plan.plan_attachment(_conf(isGateway=True), REQUEST, ipam)
    assert p.bridge_addresses == [IFACE("10.1.0.1/24")]


def test_ipam_without_ips_is_an_error() -> None:
    with pytest.raises(errors.CNIError) as exc:
        plan.plan_attachment(_conf(), REQUEST, _ipam([]))
    assert exc.value.code == errors.IPAM_FAILURE


def test_dns_from_the_config_wins() -> None:
    ipam = result.parse(
        {"ips": [{"address": "10.1.0.5/24"}], "dns": {"nameservers": ["1.1.1.1"]}}, what="x"
    )
    p = plan.plan_attachment(_conf(dns={"nameservers": ["10.0.0.10"]}), REQUEST, ipam)
    assert p.dns.nameservers == ["10.0.0.10"]
    assert plan.plan_attachment(_conf(), REQUEST, ipam).dns.nameservers == ["1.1.1.1"]


@pytest.mark.parametrize(
    ("current", "wanted", "force", "expect"),
    [
        pytest.param([], "10.1.0.1/24", False, ([], True), id="empty-bridge"),
        pytest.param(["10.1.0.1/24"], "10.1.0.1/24", False, ([], False), id="already-there"),
        pytest.param(
            ["172.16.0.1/24", "10.1.0.1/24"],
            "10.1.0.1/24",
            False,
            ([], False),
            id="there-among-others",
        ),
        pytest.param(
            ["172.16.0.1/24"],
            "10.1.0.1/24",
            True,
            (["172.16.0.1/24"], True),
            id="force-replaces-ipv4",
        ),
        pytest.param(
            ["fd01::1/64", "fe80::1/64"], "fd00::1/64", False, ([], True), id="ipv6-subnets-coexist"
        ),
        pytest.param(
            ["fd00::9/64"], "fd00::1/64", True, (["fd00::9/64"], True), id="ipv6-overlap-forced"
        ),
        pytest.param(["fd00::1/64"], "10.1.0.1/24", False, ([], True), id="other-family"),
    ],
)
def test_bridge_address_changes(
    current: list[str], wanted: str, force: bool, expect: tuple[list[str], bool]
) -> None:
    remove, add = plan.bridge_address_changes(
        [IFACE(a) for a in current], IFACE(wanted), bridge="cni0", force=force
    )
    assert ([str(a) for a in remove], add) == expect


@pytest.mark.parametrize("current", ["172.16.0.1/24", "fd00::9/64"])
def test_a_conflicting_bridge_address_without_force_is_refused(current: str) -> None:
    wanted = IFACE("fd00::1/64" if ":" in current else "10.1.0.1/24")
    with pytest.raises(errors.CNIError) as exc:
        plan.bridge_address_changes([IFACE(current)], wanted, bridge="cni0", force=False)
    assert exc.value.code == errors.INVALID_CONFIG
    assert "forceAddress" in exc.value.details


def test_result_appends_to_prev_result_and_shifts_the_interface_index() -> None:
    p = plan.plan_attachment(_conf(isDefaultGateway=True), REQUEST, _ipam(DUAL[:1]))
    prev = result.parse(
        {
            "interfaces": [{"name": "lo"}],
            "ips": [{"address": "127.0.0.2/8", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}],
        },
        what="prevResult",
    )
    out = plan.build_result(
        p,
        prev=prev,
        bridge=Interface("cni0"),
        host=Interface("vethx"),
        container=Interface("eth0", sandbox="/var/run/netns/p"),
    )
    assert [i.name for i in out.interfaces] == ["lo", "cni0", "vethx", "eth0"]
    assert [(str(ip.address), ip.interface) for ip in out.ips] == [
        ("127.0.0.2/8", 0),
        ("10.1.0.5/24", 3),
    ]
    assert len(out.routes) == 1  # the same default route is not listed twice


def test_masquerade_subnets_are_the_pods_own() -> None:
    ips = [IFACE("10.1.0.5/24"), IFACE("10.1.0.6/24"), IFACE("fd00::5/64")]
    assert [str(s) for s in plan.masquerade_subnets(ips)] == ["10.1.0.0/24", "fd00::/64"]
