"""UDP transport (RFC 3261 §18): one socket per listener, datagrams in and out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, cast

from proxy.sip.transaction import Address

Deliver = Callable[[bytes, Address], None]

#: Source addresses remembered (``UdpProtocol._sources``).
MAX_SOURCES: Final = 1024


class UdpProtocol(asyncio.DatagramProtocol):
    """Hands each datagram to ``deliver``; sends with ``send``."""

    def __init__(self, deliver: Deliver) -> None:
        self.deliver = deliver
        self.transport: asyncio.DatagramTransport | None = None
        #: source (host, port) → its Address: a proxy hears from a few softswitches, and
        #: every datagram would otherwise build an equal Address again
        self._sources: dict[tuple[str | int, ...], Address] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDPTransport does not subclass asyncio.DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        source = self._sources.get(addr)
        if source is None:
            if len(self._sources) >= MAX_SOURCES:
                self._sources.clear()  # a scan of many ports: start over, stay bounded
            source = self._sources[addr] = Address("udp", str(addr[0]), int(addr[1]))
        self.deliver(data, source)

    def error_received(self, exc: Exception) -> None:
        """ICMP errors (port unreachable) surface here; retransmission timers cover them."""

    def send(self, data: bytes, destination: Address) -> None:
        if self.transport is not None:
            self.transport.sendto(data, (destination.host, destination.port))


async def listen_udp(host: str, port: int, deliver: Deliver) -> UdpProtocol:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: UdpProtocol(deliver), local_addr=(host, port)
    )
    return protocol
