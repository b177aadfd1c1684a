"""DEL's container link delete returns once the link is gone, not when the kernel has freed it.

The kernel is a fake rtnetlink socket: its RTM_DELLINK unlists the link at once and then
blocks (as netdev_run_todo's rcu_barrier does) until the test lets it answer. The e2e
tests run the same code against the real kernel (DEL twice, DEL then ADD, no leaks).
"""

from __future__ import annotations

import contextlib
import errno
import struct
import threading
from collections.abc import Iterator

import pytest

from kubext_cni import netlink, netns, rtnl
from kubext_cni.core import errors


class Kernel:
    """One namespace holding ``links``; DELLINK blocks until ``finish`` is set."""

    def __init__(self, links: set[str], refuse: int = 0) -> None:
        self.links = links
        self.refuse = refuse
        self.finish = threading.Event()
        self.answered = threading.Event()
        self.sockets_closed = 0

    def socket(self) -> FakeSocket:
        return FakeSocket(self)


class FakeSocket:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    def close(self) -> None:
        self.kernel.sockets_closed += 1

    def request(self, kind: int, body: bytes, flags: int = rtnl.NLM_F_ACK) -> list[rtnl.Msg]:
        name = body[16 + 4 :].split(b"\0", 1)[0].decode()
        if kind == rtnl.RTM_GETLINK:
            if name not in self.kernel.links:
                raise rtnl.NetlinkError(errno.ENODEV)
            return [rtnl.Msg({"index": 2}, {"IFLA_IFNAME": name})]
        assert kind == rtnl.RTM_DELLINK
        if self.kernel.refuse:
            raise rtnl.NetlinkError(self.kernel.refuse)
        if name not in self.kernel.links:
            raise rtnl.NetlinkError(errno.ENODEV)
        self.kernel.links.discard(name)  # unlisted first ...
        assert self.kernel.finish.wait(10)  # ... the answer after the RCU barrier
        self.kernel.answered.set()
        return []

    def get(self, kind: int, body: bytes) -> rtnl.Msg:
        return self.request(kind, body, 0)[0]


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Kernel]:
    fake = Kernel({"eth0"})

    @contextlib.contextmanager
    def entered(ns: netns.NetNS) -> Iterator[None]:
        yield

    monkeypatch.setattr(netns, "entered", entered)
    monkeypatch.setattr(rtnl, "Socket", fake.socket)
    yield fake
    fake.finish.set()


NS = netns.NetNS("/var/run/netns/pod", -1)


def test_returns_once_the_link_is_gone_while_the_kernel_still_works(kernel: Kernel) -> None:
    assert netlink.delete_inside(NS, "eth0") is True
    assert "eth0" not in kernel.links
    assert not kernel.answered.is_set()  # the request is still in the kernel
    kernel.finish.set()
    assert kernel.answered.wait(5)


def test_the_deleting_thread_closes_its_socket_when_the_kernel_answers(kernel: Kernel) -> None:
    netlink.delete_inside(NS, "eth0")
    closed_on_return = kernel.sockets_closed  # the observer's
    kernel.finish.set()
    assert kernel.answered.wait(5)
    for _ in range(100):
        if kernel.sockets_closed == closed_on_return + 1:
            break
        threading.Event().wait(0.01)
    assert (closed_on_return, kernel.sockets_closed) == (1, 2)


def test_a_missing_link_is_false(kernel: Kernel) -> None:
    kernel.links.clear()
    assert netlink.delete_inside(NS, "eth0") is False


def test_a_refusal_is_raised_as_delete_raises_it(kernel: Kernel) -> None:
    kernel.refuse = errno.EOPNOTSUPP
    with pytest.raises(errors.CNIError) as raised:
        netlink.delete_inside(NS, "eth0")
    assert raised.value.code == errors.NETLINK_FAILURE
    assert "delete 'eth0'" in raised.value.msg
    assert "eth0" in kernel.links


def test_the_request_names_the_link(kernel: Kernel) -> None:
    sent: list[bytes] = []
    original = FakeSocket.request

    def recording(self: FakeSocket, kind: int, body: bytes, flags: int = rtnl.NLM_F_ACK):
        if kind == rtnl.RTM_DELLINK:
            sent.append(body)
        return original(self, kind, body, flags)

    FakeSocket.request = recording  # type: ignore[method-assign]
    try:
        netlink.delete_inside(NS, "eth0")
    finally:
        FakeSocket.request = original  # type: ignore[method-assign]
    assert struct.unpack_from("=HH", sent[0], 16) == (4 + 5, rtnl.IFLA_IFNAME)
