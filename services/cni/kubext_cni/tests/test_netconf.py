"""Environment and network-config validation: skel's rules and the spec's codes."""

from __future__ import annotations

import pytest

from kubext_cni.core import errors, netconf, versions
from kubext_cni.core.netconf import NetConf, Request

ADD_ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "abc-123",
    "CNI_NETNS": "/var/run/netns/x",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
}


def _code(fn, *args) -> tuple[int, str]:
    with pytest.raises(errors.CNIError) as exc:
        fn(*args)
    return exc.value.code, str(exc.value)


def test_a_complete_add_environment() -> None:
    req = netconf.parse_request(dict(ADD_ENV, CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=web"))
    assert req == Request(
        command="ADD",
        container_id="abc-123",
        netns="/var/run/netns/x",
        ifname="eth0",
        args=(("IgnoreUnknown", "1"), ("K8S_POD_NAME", "web")),
        path=("/opt/cni/bin", "/usr/lib/cni"),
    )
    assert req.arg("K8S_POD_NAME") == "web"
    assert req.arg("MAC") is None


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        pytest.param({}, "[CNI_COMMAND]", id="nothing"),
        pytest.param(
            {"CNI_COMMAND": "ADD"},
            "[CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH]",
            id="add-lists-all-missing",
        ),
        pytest.param(dict(ADD_ENV, CNI_NETNS=""), "[CNI_NETNS]", id="empty-counts-as-missing"),
        pytest.param(
            {"CNI_COMMAND": "DEL", "CNI_PATH": "/p"},
            "[CNI_CONTAINERID,CNI_IFNAME]",
            id="del-needs-no-netns",
        ),
        pytest.param({"CNI_COMMAND": "GC"}, "[CNI_PATH]", id="gc-needs-path"),
        pytest.param(
            {"CNI_COMMAND": "FROB", "CNI_PATH": "/p"},
            "unknown CNI_COMMAND: FROB",
            id="unknown-verb",
        ),
        pytest.param(dict(ADD_ENV, CNI_CONTAINERID="-bad"), "containerID", id="bad-id"),
        pytest.param(dict(ADD_ENV, CNI_IFNAME="a" * 16), "too long", id="ifname-16"),
        pytest.param(dict(ADD_ENV, CNI_IFNAME="a/b"), "contains /", id="ifname-slash"),
        pytest.param(dict(ADD_ENV, CNI_IFNAME=".."), ". or ..", id="ifname-dots"),
        pytest.param(dict(ADD_ENV, CNI_IFNAME="a b"), "whitespace", id="ifname-space"),
        pytest.param(
            dict(ADD_ENV, CNI_ARGS="A=1;B"), "CNI_ARGS: invalid pair 'B'", id="args-no-equals"
        ),
        pytest.param(dict(ADD_ENV, CNI_ARGS="A=1=2"), "CNI_ARGS", id="args-two-equals"),
    ],
)
def test_bad_environment_is_code_4_naming_the_variable(env: dict, needle: str) -> None:
    code, text = _code(netconf.parse_request, env)
    assert code == errors.INVALID_ENV
    assert needle in text


def test_version_and_del_need_less() -> None:
    assert netconf.parse_request({"CNI_COMMAND": "VERSION"}).command == "VERSION"
    del_req = netconf.parse_request(
        {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0", "CNI_PATH": "/p"}
    )
    assert del_req.netns == ""
    assert netconf.parse_request({"CNI_COMMAND": "STATUS", "CNI_PATH": "/p"}).path == ("/p",)


@pytest.mark.parametrize(
    ("stdin", "code", "needle"),
    [
        (b"{", errors.DECODE_FAILURE, "error unmarshalling network config"),
        (b"[]", errors.DECODE_FAILURE, "expected a JSON object, got array"),
        (b"\xff\xfe", errors.DECODE_FAILURE, "unmarshalling"),
        (b"{}", errors.INVALID_CONFIG, "missing network name"),
        (b'{"name": "bad name"}', errors.INVALID_CONFIG, "invalid characters"),
        (b'{"name": 5}', errors.INVALID_CONFIG, "invalid characters"),
    ],
)
def test_decode_errors(stdin: bytes, code: int, needle: str) -> None:
    got, text = _code(netconf.decode, stdin)
    assert (got, needle in text) == (code, True)


def _conf(command: str = "ADD", **fields: object) -> NetConf:
    raw = {"cniVersion": "1.1.0", "name": "net1", **fields}
    env = dict(ADD_ENV, CNI_COMMAND=command)
    return netconf.parse_netconf(raw, netconf.parse_request(env))


def test_defaults_match_the_reference_bridge() -> None:
    conf = _conf()
    assert (conf.bridge, conf.is_gateway, conf.ip_masq, conf.mtu, conf.ipam) == (
        "cni0",
        False,
        False,
        0,
        None,
    )


def test_default_gateway_implies_gateway() -> None:
    conf = _conf(isDefaultGateway=True)
    assert conf.is_gateway and conf.is_default_gateway


@pytest.mark.parametrize(
    ("fields", "code", "needle"),
    [
        ({"mtu": "1500"}, errors.INVALID_CONFIG, 'mtu must be an integer, got "1500"'),
        ({"mtu": True}, errors.INVALID_CONFIG, "mtu must be an integer"),
        ({"mtu": 40}, errors.INVALID_CONFIG, "outside 68..65535"),
        ({"isGateway": "yes"}, errors.INVALID_CONFIG, "isGateway must be a boolean"),
        ({"bridge": "a-very-long-bridge-name"}, errors.INVALID_CONFIG, "bridge"),
        ({"ipMasqBackend": "pf"}, errors.INVALID_CONFIG, "unknown ipMasqBackend 'pf'"),
        ({"hairpinMode": True, "promiscMode": True}, errors.INVALID_CONFIG, "hairpinMode"),
        ({"ipam": []}, errors.INVALID_CONFIG, "ipam must be an object"),
        ({"ipam": {"subnet": "10.0.0.0/8"}}, errors.INVALID_CONFIG, "ipam.type"),
        ({"ipam": {"type": "../x"}}, errors.INVALID_CONFIG, "is not a name"),
        ({"vlan": 100}, errors.UNSUPPORTED_FIELD, "vlan=100"),
        ({"macspoofchk": True}, errors.UNSUPPORTED_FIELD, "macspoofchk=true"),
        ({"vlanTrunk": [{"id": 5}]}, errors.UNSUPPORTED_FIELD, 'vlanTrunk=[{"id": 5}]'),
        ({"runtimeConfig": {"mac": "nope"}}, errors.INVALID_CONFIG, "invalid MAC"),
        ({"cni.dev/valid-attachments": {}}, errors.INVALID_CONFIG, "must be a list"),
        (
            {"cni.dev/valid-attachments": [{"containerID": 1}]},
            errors.INVALID_CONFIG,
            "string containerID and ifname",
        ),
    ],
)
def test_invalid_options(fields: dict, code: int, needle: str) -> None:
    got, text = _code(lambda: _conf(**fields))
    assert got == code, text
    assert needle in text


def test_unsupported_options_at_their_defaults_are_accepted() -> None:
    conf = _conf(vlan=0, macspoofchk=False, disableContainerInterface=False, vlanTrunk=None)
    assert conf.name == "net1"


def test_empty_ipam_is_a_layer2_attachment() -> None:
    assert _conf(ipam={}).ipam_type is None
    assert _conf(ipam={"type": "host-local"}).ipam_type == "host-local"


def test_mac_runtime_config_wins_over_args_and_cni_args() -> None:
    env = dict(ADD_ENV, CNI_ARGS="MAC=02:00:00:00:00:01")
    req = netconf.parse_request(env)
    raw = {"cniVersion": "1.1.0", "name": "n"}
    assert netconf.parse_netconf(raw, req).mac == "02:00:00:00:00:01"
    raw["args"] = {"cni": {"mac": "02:00:00:00:00:02"}}
    assert netconf.parse_netconf(raw, req).mac == "02:00:00:00:00:02"
    raw["runtimeConfig"] = {"mac": "02:00:00:00:00:AA"}
    assert netconf.parse_netconf(raw, req).mac == "02:00:00:00:00:aa"


def test_valid_attachments_accept_both_spellings_and_merge() -> None:
    conf = _conf(
        "GC",
        **{
            "cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}],
            "cni.dev/attachments": [{"containerID": "b", "ifname": "net1"}],
        },
    )
    assert conf.valid_attachments == {("a", "eth0"), ("b", "net1")}
    assert _conf("GC").valid_attachments is None


def test_dns_is_kept_only_when_it_says_something() -> None:
    assert _conf(dns={}).dns is None
    assert _conf(dns={"nameservers": ["10.0.0.10"]}).dns == {"nameservers": ["10.0.0.10"]}


@pytest.mark.parametrize(
    ("version", "command", "code"),
    [
        ("0.2.0", "ADD", errors.INCOMPATIBLE_VERSION),
        ("2.0.0", "ADD", errors.INCOMPATIBLE_VERSION),
        ("1.1", "ADD", errors.DECODE_FAILURE),
        ("0.3.1", "CHECK", errors.INCOMPATIBLE_VERSION),
        ("1.0.0", "GC", errors.INCOMPATIBLE_VERSION),
        ("1.0.0", "STATUS", errors.INCOMPATIBLE_VERSION),
    ],
)
def test_version_floors(version: str, command: str, code: int) -> None:
    got, _ = _code(versions.check, version, command)
    assert got == code


@pytest.mark.parametrize("version", versions.SUPPORTED)
def test_every_supported_version_allows_add_and_del(version: str) -> None:
    versions.check(version, "ADD")
    versions.check(version, "DEL")


def test_missing_or_mistyped_cni_version() -> None:
    assert _code(netconf.config_version, {})[0] == errors.INVALID_CONFIG
    assert _code(netconf.config_version, {"cniVersion": 1})[0] == errors.DECODE_FAILURE
