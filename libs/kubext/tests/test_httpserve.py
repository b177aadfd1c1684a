"""CoalescedWrites: what one turn of the event loop writes leaves as one write."""

from __future__ import annotations

from typing import Any

from kubext import httpserve


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"extra {name}"


class _Loop:
    def __init__(self) -> None:
        self.soon: list[Any] = []

    def call_soon(self, callback: Any) -> None:
        self.soon.append(callback)

    def turn(self) -> None:
        soon, self.soon = self.soon, []
        for callback in soon:
            callback()


def test_what_one_turn_of_the_loop_writes_is_sent_at_once() -> None:
    transport, loop = _Transport(), _Loop()
    coalesced = httpserve.CoalescedWrites(transport, loop)
    coalesced.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    coalesced.write(b"{}")
    assert transport.writes == []
    loop.turn()
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    assert coalesced.get_extra_info("peername") == "extra peername"
    coalesced.write(b"last")
    coalesced.close()  # what is pending goes before the close
    assert transport.writes[1:] == [b"last"] and transport.closed
    loop.turn()
    assert len(transport.writes) == 2
    transport.closed = False
    coalesced.write(b"late")
    transport.closed = True  # the peer went meanwhile: nothing is written
    loop.turn()
    assert len(transport.writes) == 2
