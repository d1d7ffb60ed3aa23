"""Inbound TCP connections are capped per source host and in all (proxy/transport/tcp.py):
one over a cap is closed on accept and counted; closing one makes room again; outbound
connections (to the trunk) are not counted."""

from __future__ import annotations

import asyncio

from proxy.sip.transaction import Address
from proxy.transport.tcp import TcpPool

PING = b"\r\n\r\n"  # RFC 5626 §3.5.1: answered with a CRLF pong by an admitted connection


async def pong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """What the pool answers a keep-alive ping with: the pong, or b"" once closed."""
    writer.write(PING)
    try:
        await writer.drain()
        return await asyncio.wait_for(reader.read(2), 2)
    except (ConnectionResetError, BrokenPipeError):
        return b""


async def open_from(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0))


async def settled(pool: TcpPool, inbound: int) -> None:
    """Wait (bounded) for the pool to have seen the connections accepted or closed."""
    for _ in range(100):
        if pool.inbound_total == inbound:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{pool.inbound_total} inbound connections, expected {inbound}")


async def test_a_host_over_its_cap_is_refused_until_one_closes() -> None:
    pool = TcpPool(lambda data, source: None, max_per_host=2, max_inbound=10)
    await pool.listen("127.0.0.1", 0)
    port = pool.servers[0].sockets[0].getsockname()[1]
    try:
        first = await open_from("127.0.0.1", port)
        second = await open_from("127.0.0.1", port)
        third = await open_from("127.0.0.1", port)
        assert await pong(*first) == b"\r\n"
        assert await pong(*second) == b"\r\n"
        assert await pong(*third) == b""  # closed on accept
        assert (pool.inbound, pool.refused) == ({"127.0.0.1": 2}, 1)
        # Another host has its own allowance.
        other = await open_from("127.0.0.2", port)
        assert await pong(*other) == b"\r\n"
        assert pool.inbound == {"127.0.0.1": 2, "127.0.0.2": 1}
        # Closing one makes room for the next.
        first[1].close()
        await first[1].wait_closed()
        await settled(pool, 2)
        fourth = await open_from("127.0.0.1", port)
        assert await pong(*fourth) == b"\r\n"
        assert pool.inbound == {"127.0.0.1": 2, "127.0.0.2": 1}
        for _, writer in (second, third, other, fourth):
            writer.close()
        await settled(pool, 0)
        assert pool.inbound == {}
    finally:
        pool.close()


async def test_the_cap_on_all_inbound_connections() -> None:
    pool = TcpPool(lambda data, source: None, max_per_host=5, max_inbound=2)
    await pool.listen("127.0.0.1", 0)
    port = pool.servers[0].sockets[0].getsockname()[1]
    try:
        kept = [await open_from(host, port) for host in ("127.0.0.2", "127.0.0.3")]
        for connection in kept:
            assert await pong(*connection) == b"\r\n"
        assert await pong(*await open_from("127.0.0.4", port)) == b""
        assert (pool.inbound_total, pool.refused) == (2, 1)
    finally:
        pool.close()


async def test_outbound_connections_do_not_count() -> None:
    received: list[bytes] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.readexactly(3 * len(PING)))

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = TcpPool(lambda data, source: None, max_per_host=1, max_inbound=1)
    try:
        for _ in range(3):  # one connection, reused
            pool.send(PING, Address("tcp", "127.0.0.1", port))
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.01)
        assert received == [3 * PING]  # one connection carried all three
        assert (pool.inbound_total, pool.refused) == (0, 0)
    finally:
        pool.close()
        server.close()
