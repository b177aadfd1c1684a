"""The rtnetlink client's framing and decoding, against replies built as the kernel sends them.

The kernel side is a fake socket replaying datagrams; the e2e tests run the same client
against the real kernel (bridge, veth, addresses, routes compared with the reference).
"""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from kubext_cni import rtnl


def _msg(kind: int, seq: int, payload: bytes, flags: int = 0) -> bytes:
    size = 16 + len(payload)
    return struct.pack("=IHHII", size, kind, flags, seq, 0) + payload + b"\0" * (-size & 3)


def _link(index: int, name: str, *, operstate: int = 6, kind: str = "veth") -> bytes:
    return rtnl.ifinfo(index, flags=rtnl.IFF_UP) + (
        rtnl.text(rtnl.IFLA_IFNAME, name)
        + rtnl.attr(rtnl.IFLA_ADDRESS, bytes.fromhex("0a0b0c0d0e0f"))
        + rtnl.u32(rtnl.IFLA_MTU, 1400)
        + rtnl.attr(rtnl.IFLA_OPERSTATE, bytes([operstate]))
        + rtnl.attr(rtnl.IFLA_LINKINFO, rtnl.text(rtnl.IFLA_INFO_KIND, kind))
        + rtnl.attr(99, b"ignored attribute")
    )


def _addr(index: int, ip: str, prefixlen: int) -> bytes:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    packed = socket.inet_pton(family, ip)
    return struct.pack("=BBBBi", family, prefixlen, 0, 0, index) + rtnl.attr(
        rtnl.IFA_ADDRESS, packed
    )


def _error(seq: int, code: int) -> bytes:
    return _msg(rtnl.NLMSG_ERROR, seq, struct.pack("=i", -code) + b"\0" * 16)


class FakeKernel:
    """Records what is sent; answers each recv with the next datagram of ``replies(seq)``."""

    def __init__(self, replies: list[list[bytes]]) -> None:
        self.sent: list[bytes] = []
        self._replies = replies
        self._pending: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        self._pending = list(self._replies.pop(0))
        return len(data)

    def recv(self, size: int) -> bytes:
        return self._pending.pop(0)

    def close(self) -> None:
        pass


def _socket(replies: list[list[bytes]]) -> tuple[rtnl.Socket, FakeKernel]:
    sock = rtnl.Socket.__new__(rtnl.Socket)
    kernel = FakeKernel(replies)
    sock._sock = kernel  # type: ignore[assignment]
    sock._seq = 0
    return sock, kernel


def test_a_get_returns_the_link_with_the_attributes_read():
    sock, kernel = _socket([[_msg(rtnl.RTM_NEWLINK, 1, _link(7, "veth0"))]])
    link = sock.get(rtnl.RTM_GETLINK, rtnl.ifinfo() + rtnl.text(rtnl.IFLA_IFNAME, "veth0"))
    assert (link["index"], link["flags"] & rtnl.IFF_UP) == (7, rtnl.IFF_UP)
    assert link.get_attr("IFLA_IFNAME") == "veth0"
    assert link.get_attr("IFLA_ADDRESS") == "0a:0b:0c:0d:0e:0f"
    assert link.get_attr("IFLA_MTU") == 1400
    assert link.get_attr("IFLA_OPERSTATE") == "UP"
    assert link.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_KIND") == "veth"
    assert link.get_attr("IFLA_MASTER") is None
    # The request: a GETLINK, sequence 1, the name as a NUL-terminated attribute.
    size, kind, flags, seq, _ = struct.unpack_from("=IHHII", kernel.sent[0])
    assert (size, kind, flags, seq) == (len(kernel.sent[0]), rtnl.RTM_GETLINK, 1, 1)
    assert kernel.sent[0].endswith(b"veth0\0\0\0")


def test_a_refusal_is_a_netlink_error_with_the_errno():
    sock, _ = _socket([[_error(1, errno.ENODEV)]])
    with pytest.raises(rtnl.NetlinkError) as raised:
        sock.request(rtnl.RTM_DELLINK, rtnl.ifinfo(3))
    assert raised.value.code == errno.ENODEV
    assert "No such device" in str(raised.value)


def test_a_change_waits_for_its_ack():
    sock, _ = _socket([[_error(1, 0)]])
    assert sock.request(rtnl.RTM_SETLINK, rtnl.ifinfo(3, flags=1, change=1)) == []


def test_replies_to_an_earlier_request_are_skipped():
    """A reply left unread by a call that gave up must not answer the next request."""
    stale = _msg(rtnl.RTM_NEWLINK, 1, _link(1, "old"))
    sock, _ = _socket([[_error(1, 0)], [stale + _msg(rtnl.RTM_NEWLINK, 2, _link(2, "new"))]])
    sock.request(rtnl.RTM_SETLINK, rtnl.ifinfo(1))
    assert sock.get(rtnl.RTM_GETLINK, rtnl.ifinfo(2)).get_attr("IFLA_IFNAME") == "new"


def test_a_dump_collects_every_datagram_until_done():
    multi = rtnl.NLM_F_MULTI
    first = _msg(rtnl.RTM_NEWADDR, 1, _addr(2, "10.0.0.1", 24), multi) + _msg(
        rtnl.RTM_NEWADDR, 1, _addr(3, "fd00::1", 64), multi
    )
    second = _msg(rtnl.RTM_NEWADDR, 1, _addr(2, "10.0.0.2", 16), multi)
    done = _msg(rtnl.NLMSG_DONE, 1, struct.pack("=i", 0), multi)
    sock, kernel = _socket([[first, second + done]])
    found = sock.dump(rtnl.RTM_GETADDR, struct.pack("=BBBBi", 0, 0, 0, 0, 0))
    assert [(m["index"], m.get_attr("IFA_ADDRESS"), m["prefixlen"]) for m in found] == [
        (2, "10.0.0.1", 24),
        (3, "fd00::1", 64),
        (2, "10.0.0.2", 16),
    ]
    assert struct.unpack_from("=H", kernel.sent[0], 6)[0] == rtnl.NLM_F_REQUEST | rtnl.NLM_F_DUMP


def test_nested_attributes_are_encoded_padded():
    inner = rtnl.attr(rtnl.IFLA_BRPORT_MODE, b"\x01")
    assert inner == struct.pack("=HH", 5, rtnl.IFLA_BRPORT_MODE) + b"\x01\0\0\0"
    outer = rtnl.attr(rtnl.IFLA_PROTINFO | rtnl.NLA_F_NESTED, inner)
    assert outer[:4] == struct.pack("=HH", 12, rtnl.IFLA_PROTINFO | rtnl.NLA_F_NESTED)
    assert rtnl.mac_bytes("0A:0b:0c:0d:0e:0f") == bytes.fromhex("0a0b0c0d0e0f")
