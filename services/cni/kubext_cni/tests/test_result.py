"""Result JSON per spec version: what each version carries and omits."""

from __future__ import annotations

import ipaddress

import pytest

from kubext_cni.core import errors, result
from kubext_cni.core.result import DNS, Interface, IPConfig, Result, Route

# What host-local prints for a 0.4.0 config (note "version" in ips).
HOST_LOCAL_040 = {
    "cniVersion": "0.4.0",
    "ips": [
        {"version": "4", "address": "10.1.0.5/24", "gateway": "10.1.0.1"},
        {"version": "6", "address": "fd00::5/64"},
    ],
    "routes": [{"dst": "0.0.0.0/0"}],
    "dns": {},
}


def _full() -> Result:
    return Result(
        interfaces=[
            Interface("cni0", "aa:bb:cc:dd:ee:01", 1500),
            Interface("eth0", "aa:bb:cc:dd:ee:02", 1400, "/var/run/netns/p"),
        ],
        ips=[IPConfig(ipaddress.ip_interface("10.1.0.5/24"), ipaddress.ip_address("10.1.0.1"), 1)],
        routes=[
            Route(
                ipaddress.ip_network("0.0.0.0/0"),
                ipaddress.ip_address("10.1.0.1"),
                mtu=1400,
                priority=5,
                table=100,
                scope=0,
            )
        ],
    )


def test_parse_accepts_an_ipam_result_of_an_older_version() -> None:
    parsed = result.parse(HOST_LOCAL_040, what="IPAM result")
    assert [str(ip.address) for ip in parsed.ips] == ["10.1.0.5/24", "fd00::5/64"]
    assert parsed.ips[1].gateway is None
    assert parsed.routes == [Route(ipaddress.ip_network("0.0.0.0/0"))]
    assert parsed.dns.is_empty()


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0"])
def test_pre_1_0_results_carry_ip_version_and_always_dns(version: str) -> None:
    out = result.encode(_full(), version)
    assert out["ips"] == [
        {"version": "4", "interface": 1, "address": "10.1.0.5/24", "gateway": "10.1.0.1"}
    ]
    assert out["dns"] == {}
    assert "mtu" not in out["interfaces"][0]
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}]


def test_1_0_0_drops_ip_version_and_has_no_1_1_fields() -> None:
    out = result.encode(_full(), "1.0.0")
    assert out["ips"] == [{"interface": 1, "address": "10.1.0.5/24", "gateway": "10.1.0.1"}]
    assert "dns" not in out
    assert out["interfaces"][1] == {
        "name": "eth0",
        "mac": "aa:bb:cc:dd:ee:02",
        "sandbox": "/var/run/netns/p",
    }
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}]


def test_1_1_0_adds_interface_mtu_and_route_attributes() -> None:
    out = result.encode(_full(), "1.1.0")
    assert list(out) == ["cniVersion", "interfaces", "ips", "routes"]
    assert out["interfaces"][1]["mtu"] == 1400
    assert out["routes"] == [
        {"dst": "0.0.0.0/0", "gw": "10.1.0.1", "mtu": 1400, "priority": 5, "table": 100, "scope": 0}
    ]


def test_round_trip_keeps_everything() -> None:
    full = _full()
    full.dns = DNS(nameservers=["10.0.0.10"], search=["svc.local"])
    assert result.parse(result.encode(full, "1.1.0"), what="x") == full


@pytest.mark.parametrize(
    "bad",
    [
        {"ips": [{"address": "10.0.0.5"}]},  # not CIDR
        {"ips": [{"address": "999.0.0.1/24"}]},
        {"ips": [{"gateway": "10.0.0.1"}]},
        {"interfaces": [{"mac": "x"}]},
        {"routes": [{"dst": "0.0.0.0/0", "mtu": -1}]},
        {"ips": [{"address": "10.0.0.5/24", "interface": "1"}]},
        ["not", "an", "object"],
    ],
)
def test_malformed_results_are_decode_errors_naming_the_source(bad: object) -> None:
    with pytest.raises(errors.CNIError) as exc:
        result.parse(bad, what="host-local result")  # type: ignore[arg-type]
    assert exc.value.code == errors.DECODE_FAILURE
    assert "host-local result" in exc.value.msg
