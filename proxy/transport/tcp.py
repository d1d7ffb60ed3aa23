"""TCP transport (RFC 3261 §18.3, RFC 5626 §3.5.1): framed streams both ways.

Inbound connections are kept by peer address so that responses go back over the
connection the request came on (§18.2.2); requests to an address with no connection
open one and queue what is sent until it is up.

Inbound connections are capped per source host and in all, so that one peer (or many)
holding sockets open cannot use up the process's file descriptors: a connection over a
cap is closed as soon as it is accepted, and counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from proxy.sip.errors import SipError
from proxy.sip.framing import Ping, StreamFramer
from proxy.sip.transaction import Address

log = logging.getLogger("privproxy.tcp")
Deliver = Callable[[bytes, Address], None]


class TcpConnection(asyncio.Protocol):
    """One stream; complete messages go to ``deliver``. An ``inbound`` one counts against
    the pool's caps while it is open."""

    def __init__(self, pool: TcpPool, *, inbound: bool) -> None:
        self.pool = pool
        self.inbound = inbound
        self.counted = False
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Address | None = None
        self.last_active = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)
        host, port = stream.get_extra_info("peername")[:2]
        peer = Address("tcp", str(host), int(port))
        if self.inbound:
            if not self.pool.admit(peer):
                stream.abort()
                return
            self.counted = True
        self.transport = stream
        self.peer = peer
        self.pool.connections[peer] = self
        self.last_active = asyncio.get_running_loop().time()

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None and self.transport is not None
        self.last_active = asyncio.get_running_loop().time()
        try:
            items = self.framer.feed(data)
        except SipError as error:
            log.warning("closing TCP connection from %s: %s", self.peer.host, error.reason)
            self.transport.close()
            return
        for item in items:
            if isinstance(item, Ping):
                self.transport.write(b"\r\n")  # RFC 5626 §3.5.1 pong
            elif isinstance(item, bytes):
                self.pool.deliver(item, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is None:
            return
        if self.pool.connections.get(self.peer) is self:
            del self.pool.connections[self.peer]
        if self.counted:
            self.counted = False
            self.pool.release(self.peer)


class TcpPool:
    """Every TCP connection of the process, inbound and outbound; at most ``max_per_host``
    inbound from one host and ``max_inbound`` in all."""

    def __init__(
        self, deliver: Deliver, *, max_per_host: int = 32, max_inbound: int = 2048
    ) -> None:
        self.deliver = deliver
        self.max_per_host = max_per_host
        self.max_inbound = max_inbound
        self.connections: dict[Address, TcpConnection] = {}
        self.pending: dict[Address, list[bytes]] = {}
        self.servers: list[asyncio.Server] = []
        #: open inbound connections by source host
        self.inbound: dict[str, int] = {}
        self.inbound_total = 0
        #: connections closed at once for going over a cap
        self.refused = 0

    def admit(self, peer: Address) -> bool:
        """Count a connection just accepted from ``peer``; False when it goes over a cap."""
        host = peer.host
        count = self.inbound.get(host, 0)
        if count >= self.max_per_host or self.inbound_total >= self.max_inbound:
            self.refused += 1
            if self.refused & (self.refused - 1) == 0:  # 1st, 2nd, 4th, 8th…: no log flood
                log.warning(
                    "refused a TCP connection from %s: %d open from it, %d in all (cap %d, %d);"
                    " %d refused so far",
                    host, count, self.inbound_total, self.max_per_host, self.max_inbound,
                    self.refused,
                )  # fmt: skip
            return False
        self.inbound[host] = count + 1
        self.inbound_total += 1
        return True

    def release(self, peer: Address) -> None:
        """An inbound connection from ``peer`` closed."""
        count = self.inbound.get(peer.host, 0)
        if count <= 1:
            self.inbound.pop(peer.host, None)
        else:
            self.inbound[peer.host] = count - 1
        self.inbound_total -= 1

    async def listen(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.servers.append(
            await loop.create_server(lambda: TcpConnection(self, inbound=True), host, port)
        )

    def send(self, data: bytes, destination: Address) -> None:
        connection = self.connections.get(destination)
        if connection is not None and connection.transport is not None:
            connection.transport.write(data)
            return
        queued = self.pending.get(destination)
        if queued is not None:
            queued.append(data)
            return
        self.pending[destination] = [data]
        asyncio.get_running_loop().create_task(self._connect(destination))

    async def _connect(self, destination: Address) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                lambda: TcpConnection(self, inbound=False), destination.host, destination.port
            )
        except OSError as error:
            log.warning(
                "TCP connect to %s:%s failed: %s", destination.host, destination.port, error
            )
            self.pending.pop(destination, None)
            return
        # The peer address of an outbound connection is the destination itself.
        self.connections[destination] = connection
        for data in self.pending.pop(destination, []):
            assert connection.transport is not None
            connection.transport.write(data)

    async def close_idle(self, idle_s: float, every_s: float) -> None:
        """Close connections that carried nothing for ``idle_s`` (a peer holding sockets
        open must not use up file descriptors); RFC 5626 keep-alives count as traffic."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(every_s)
            limit = loop.time() - idle_s
            for connection in list(self.connections.values()):
                if connection.last_active < limit and connection.transport is not None:
                    connection.transport.close()

    def close(self) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.connections.values()):
            if connection.transport is not None:
                connection.transport.close()
