"""The UDP adapter's source addresses (proxy/transport/udp.py) and the call record id
(proxy/server.py ``record_id``)."""

from __future__ import annotations

import uuid

from proxy.server import record_id
from proxy.sip.transaction import Address
from proxy.transport.udp import MAX_SOURCES, UdpProtocol


def test_a_datagram_is_delivered_with_its_source_address_and_one_object_per_source() -> None:
    delivered: list[tuple[bytes, Address]] = []
    protocol = UdpProtocol(lambda data, source: delivered.append((data, source)))
    protocol.datagram_received(b"one", ("127.0.0.1", 5070))
    protocol.datagram_received(b"two", ("127.0.0.1", 5070))
    protocol.datagram_received(b"three", ("::1", 5080, 0, 0))
    assert delivered == [
        (b"one", Address("udp", "127.0.0.1", 5070)),
        (b"two", Address("udp", "127.0.0.1", 5070)),
        (b"three", Address("udp", "::1", 5080)),
    ]
    assert delivered[0][1] is delivered[1][1]


def test_the_remembered_sources_stay_bounded() -> None:
    delivered: list[Address] = []
    protocol = UdpProtocol(lambda data, source: delivered.append(source))
    for port in range(1, 3 * MAX_SOURCES):
        protocol.datagram_received(b"x", ("192.0.2.1", port))
    assert len(protocol._sources) <= MAX_SOURCES
    assert delivered[-1] == Address("udp", "192.0.2.1", 3 * MAX_SOURCES - 1)


def test_record_ids_are_random_version_4_uuids_in_hex() -> None:
    ids = {record_id() for _ in range(1000)}
    assert len(ids) == 1000
    for text in ids:
        assert len(text) == 32 and text == text.lower()
        parsed = uuid.UUID(hex=text)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert parsed.hex == text
