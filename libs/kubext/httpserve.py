"""What the services' uvicorn servers share: one send per response.

uvicorn's httptools protocol writes a response's head and its body apart: two syscalls and two
loopback segments per request, and over TLS two records as well (py-spy of the scheduler
extender under its HTTP bench: 30% of the process in those writes). ``httptools_protocol()``
is that protocol over a transport that sends what one turn of the event loop wrote as one
write.
"""

from __future__ import annotations

import asyncio
from typing import Any


class CoalescedWrites:
    """A transport that sends what one turn of the event loop writes as one write(): the
    flush is queued on the loop by the first write of a turn. Everything else is the wrapped
    transport's."""

    def __init__(self, transport: Any, loop: Any) -> None:
        self._transport, self._loop = transport, loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def httptools_protocol() -> type:
    """uvicorn's httptools protocol over CoalescedWrites: pass it as ``uvicorn.Config(http=)``."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class CoalescedHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            coalesced = CoalescedWrites(transport, asyncio.get_running_loop())
            super().connection_made(coalesced)  # type: ignore[arg-type]

    return CoalescedHttpToolsProtocol
