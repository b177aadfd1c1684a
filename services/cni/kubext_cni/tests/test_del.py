"""DEL cleans up everything it can, whatever fails first: IPAM released, our rules removed.

The netns, netlink and masquerade edges are replaced by recorders; IPAM is a real delegate
process (a script in CNI_PATH) that logs the commands it was run with.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from kubext_cni import masq, netlink, netns, plugin
from kubext_cni.core import errors, plan
from kubext_cni.core.netconf import NetConf

CONF = {
    "cniVersion": "1.1.0",
    "name": "net1",
    "type": "kubext-bridge",
    "ipMasq": True,
    "ipam": {"type": "fake-ipam"},
}


class FakeLinks:
    """Netlink on the host: records deletions instead of sending them."""

    def __init__(self, deleted: list[str]) -> None:
        self.deleted = deleted

    def __enter__(self) -> FakeLinks:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def delete(self, name: str) -> bool:
        self.deleted.append(name)
        return True


class Edges:
    """What DEL did to the host: IPAM commands run, veths deleted, rules removed."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ipam_log = tmp_path / "ipam.log"
        fake = tmp_path / "fake-ipam"
        fake.write_text(f'#!/bin/sh\necho "$CNI_COMMAND" >> {self.ipam_log}\n')
        fake.chmod(0o755)
        self.env = {
            "CNI_COMMAND": "DEL",
            "CNI_CONTAINERID": "c1",
            "CNI_NETNS": str(tmp_path / "netns"),
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(tmp_path),
        }
        self.deleted: list[str] = []
        self.teardowns: list[tuple[str, str, str]] = []
        monkeypatch.setattr(masq, "teardown", self._teardown)
        monkeypatch.setattr(netlink.Links, "host", classmethod(lambda cls: FakeLinks(self.deleted)))

    def _teardown(self, conf: NetConf, container_id: str, ifname: str) -> None:
        self.teardowns.append((conf.name, container_id, ifname))

    def ipam_commands(self) -> list[str]:
        return self.ipam_log.read_text().split() if self.ipam_log.exists() else []


@pytest.fixture
def edges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Edges:
    return Edges(tmp_path, monkeypatch)


def _entering_the_netns_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """CNI_NETNS opens fine (any fd will do), then setns(2) refuses it."""

    def refuse(fd: int) -> None:
        raise OSError(errno.EPERM, "setns: Operation not permitted")

    monkeypatch.setattr(
        netns, "open_netns", lambda path: netns.NetNS(path, os.open(os.devnull, os.O_RDONLY))
    )
    monkeypatch.setattr(netns, "_setns", refuse)


def _del(edges: Edges) -> tuple[int, dict | None, str]:
    out = plugin.run(edges.env, json.dumps(CONF).encode())
    body = json.loads(out.stdout) if out.stdout else None
    return out.exit_code, body, out.stderr.decode()


def test_a_failing_setns_still_releases_ipam_and_removes_the_rules(
    edges: Edges, monkeypatch: pytest.MonkeyPatch
) -> None:
    _entering_the_netns_fails(monkeypatch)
    code, body, stderr = _del(edges)
    assert edges.ipam_commands() == ["DEL"]
    assert edges.teardowns == [("net1", "c1", "eth0")]
    assert edges.deleted == [plan.host_veth_name("net1", "c1", "eth0")]
    # Cleanup was attempted in full; the failure is still reported, after it.
    assert code == 1
    assert body is not None
    assert body["code"] == plugin.INTERNAL_ERROR
    assert "delete container interface" in body["msg"]
    assert "setns: Operation not permitted" in body["msg"]
    assert "setns: Operation not permitted" in stderr


def test_a_failing_host_netlink_still_releases_ipam_and_removes_the_rules(
    edges: Edges, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_socket(cls: type) -> FakeLinks:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(netlink.Links, "host", classmethod(no_socket))
    code, body, _ = _del(edges)
    assert edges.ipam_commands() == ["DEL"]
    assert edges.teardowns == [("net1", "c1", "eth0")]
    assert code == 1
    assert body is not None
    assert (body["code"], "delete host veth" in body["msg"]) == (plugin.INTERNAL_ERROR, True)


def test_a_missing_netns_is_not_an_error(edges: Edges) -> None:
    code, body, stderr = _del(edges)
    assert (code, body) == (0, None)
    assert edges.ipam_commands() == ["DEL"]
    assert edges.teardowns == [("net1", "c1", "eth0")]
    assert edges.deleted == [plan.host_veth_name("net1", "c1", "eth0")]
    assert "cleaning up the host side only" in stderr


def test_the_first_reported_error_is_the_first_that_happened(
    edges: Edges, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(conf: NetConf, container_id: str, ifname: str) -> None:
        raise errors.CNIError(errors.MASQUERADE_FAILURE, "nft rejected the rules")

    _entering_the_netns_fails(monkeypatch)
    monkeypatch.setattr(masq, "teardown", refuse)
    code, body, _ = _del(edges)
    assert edges.ipam_commands() == ["DEL"]
    assert code == 1
    assert body is not None
    assert (body["code"], "setns" in body["msg"]) == (plugin.INTERNAL_ERROR, True)
    assert "nft rejected the rules" in body["details"]
