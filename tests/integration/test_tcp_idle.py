"""A TCP connection that carries nothing is closed after the idle limit (proxy/transport)."""

from __future__ import annotations

import asyncio

from proxy.sip.transaction import Address
from proxy.transport.tcp import TcpPool


async def test_idle_connections_are_closed_and_busy_ones_kept() -> None:
    received: list[bytes] = []

    def deliver(data: bytes, source: Address) -> None:
        received.append(data)

    pool = TcpPool(deliver)
    await pool.listen("127.0.0.1", 0)
    port = pool.servers[0].sockets[0].getsockname()[1]
    reaper = asyncio.create_task(pool.close_idle(0.3, 0.05))
    try:
        idle_reader, _idle_writer = await asyncio.open_connection("127.0.0.1", port)
        busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(8):  # keep-alives every 0.1 s keep this one open
            busy_writer.write(b"\r\n\r\n")
            await busy_writer.drain()
            await asyncio.sleep(0.1)
        assert await asyncio.wait_for(idle_reader.read(), 2) == b""  # closed: EOF
        assert (await asyncio.wait_for(busy_reader.read(2), 1)) == b"\r\n"  # pong, still open
        assert len(pool.connections) == 1
    finally:
        reaper.cancel()
        pool.close()
