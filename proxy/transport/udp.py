"""UDP transport (RFC 3261 §18): one socket per listener, datagrams in and out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from proxy.sip.transaction import Address

Deliver = Callable[[bytes, Address], None]


class UdpProtocol(asyncio.DatagramProtocol):
    """Hands each datagram to ``deliver``; sends with ``send``."""

    def __init__(self, deliver: Deliver) -> None:
        self.deliver = deliver
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDPTransport does not subclass asyncio.DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.deliver(data, Address("udp", str(addr[0]), int(addr[1])))

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
