"""Bad input through the installed launcher (daemon and standalone): spec error JSON on
stdout, exit 1, and nothing created on the node."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import pytest

from kubext_cni.tests.e2e.harness import Netns, Network, Plugin, masqueraded


@pytest.fixture(params=["daemon", "standalone"])
def entry(request: pytest.FixtureRequest) -> Plugin:
    return request.getfixturevalue("ours" if request.param == "daemon" else "standalone")


def _node_state(plugin: Plugin, network: Network) -> tuple:
    links = sorted(link["ifname"] for link in plugin.node.ip_json("link", "show"))
    return links, network.reservations(plugin), sorted(masqueraded(plugin.node))


def _assert_error(call, code: int, *needles: str) -> dict:  # - harness.Call
    assert call.rc == 1, call
    body = json.loads(call.stdout)
    assert set(body) <= {"cniVersion", "code", "msg", "details"}
    assert body["code"] == code, body
    text = body["msg"] + " " + body.get("details", "")
    for needle in needles:
        assert needle in text, body
    return body


CASES = [
    pytest.param(b"{not json", {}, 6, ["unmarshalling"], id="invalid-json"),
    pytest.param(b'{"cniVersion": "1.1.0"}', {}, 7, ["missing network name"], id="no-name"),
    pytest.param(b'{"name": "n"}', {}, 7, ["cniVersion"], id="no-version"),
    pytest.param(b'{"cniVersion": "0.2.0", "name": "n"}', {}, 1, ['"0.2.0"'], id="old-version"),
    pytest.param(
        b'{"cniVersion": "1.1.0", "name": "n", "mtu": "9000"}',
        {},
        7,
        ["mtu"],
        id="mtu-not-a-number",
    ),
    pytest.param(
        b'{"cniVersion": "1.1.0", "name": "n", "vlan": 12}',
        {},
        2,
        ["vlan=12"],
        id="unsupported-vlan",
    ),
    pytest.param(None, {"CNI_NETNS": None}, 4, ["CNI_NETNS"], id="no-netns-env"),
    pytest.param(
        None,
        {"CNI_CONTAINERID": None, "CNI_IFNAME": None},
        4,
        ["CNI_CONTAINERID,CNI_IFNAME"],
        id="two-missing-env",
    ),
    pytest.param(
        None, {"CNI_IFNAME": "much-too-long-name"}, 4, ["CNI_IFNAME", "too long"], id="long-ifname"
    ),
    pytest.param(
        None,
        {"CNI_NETNS": "/var/run/netns/kx-does-not-exist"},
        3,
        ["does not exist", "/var/run/netns/kx-does-not-exist"],
        id="netns-missing",
    ),
    pytest.param(
        None, {"CNI_NETNS": "/etc/hostname"}, 4, ["not a network namespace"], id="netns-not-a-netns"
    ),
    pytest.param(
        None, {"CNI_PATH": "/nonexistent"}, 104, ["host-local", "/nonexistent"], id="ipam-not-found"
    ),
]


@pytest.mark.parametrize(("stdin", "env", "code", "needles"), CASES)
def test_add_with_bad_input_fails_cleanly(
    entry: Plugin,
    network: Network,
    pods: Callable[[], Netns],
    stdin: bytes | None,
    env: dict,
    code: int,
    needles: list[str],
) -> None:
    pod = pods()
    conf = stdin if stdin is not None else network.conf(entry, isGateway=True, ipMasq=True)
    before = _node_state(entry, network)
    call = entry("ADD", conf, container_id="bad-pod", netns=pod.path, env=env)
    _assert_error(call, code, *needles)
    assert _node_state(entry, network) == before
    assert pod.ip_json("link", "show", "dev", "eth0") == []


def test_version_answers_without_a_daemon(standalone: Plugin) -> None:
    call = standalone("VERSION", b'{"cniVersion": "1.0.0"}')
    assert call.rc == 0
    assert json.loads(call.stdout) == {
        "cniVersion": "1.0.0",
        "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    }


def test_no_command_prints_about_and_the_error(entry: Plugin) -> None:
    call = entry("ADD", b"{}", env={"CNI_COMMAND": None})
    _assert_error(call, 4, "CNI_COMMAND")
    assert "kubext-bridge" in call.stderr


def test_check_and_gc_need_recent_versions(entry: Plugin, network: Network) -> None:
    old = network.conf(entry, version="0.3.1")
    _assert_error(entry("CHECK", old, container_id="c", netns="/proc/self/ns/net"), 1, "CHECK")
    _assert_error(entry("GC", dict(old, cniVersion="1.0.0")), 1, "GC")
    _assert_error(entry("STATUS", dict(old, cniVersion="1.0.0")), 1, "STATUS")


def test_status_reports_a_missing_ipam_plugin(entry: Plugin, network: Network) -> None:
    conf = network.conf(entry)
    assert entry("STATUS", conf).rc == 0
    _assert_error(entry("STATUS", conf, env={"CNI_PATH": "/nonexistent"}), 104, "host-local")


def test_daemon_gone_means_try_again_later(ours: Plugin, tmp_path: object) -> None:
    """The deployed launcher has no in-process fallback: the runtime is told to retry."""
    call = ours(
        "ADD",
        b"{}",
        container_id="c",
        netns="/x",
        env={"KUBEXT_CNI_SOCKET": os.path.join(str(tmp_path), "none.sock")},
    )
    _assert_error(call, 11, "not reachable")
