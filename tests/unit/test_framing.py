"""Stream framing of SIP over TCP (RFC 3261 §18.3) and CRLF keep-alives (RFC 5626 §3.5.1)."""

from __future__ import annotations

import pytest

from proxy.sip.errors import BadRequest, MessageTooLarge
from proxy.sip.framing import PING, PONG, KeepAlive, Ping, Pong, StreamFramer
from proxy.sip.message import parse


def message(body: bytes = b"", *, length: str | None = None, name: str = "Content-Length") -> bytes:
    head = b"OPTIONS sip:b@h SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nCSeq: 1 OPTIONS\r\n"
    value = str(len(body)) if length is None else length
    return head + f"{name}: {value}\r\n\r\n".encode() + body


def test_one_message_per_read(fixture_messages: dict[str, bytes]) -> None:
    framer = StreamFramer()
    invite = fixture_messages["invite"]
    assert framer.feed(invite) == [invite]
    assert framer.buffered == 0
    assert parse(invite, stream=True).body == parse(invite).body


def test_several_messages_in_one_read(fixture_messages: dict[str, bytes]) -> None:
    names = ["invite", "ringing180", "ok200", "invite_compact", "bye"]
    stream = b"".join(fixture_messages[name] for name in names)
    assert StreamFramer().feed(stream) == [fixture_messages[name] for name in names]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 500])
def test_messages_split_across_reads_at_every_size(
    chunk: int, fixture_messages: dict[str, bytes]
) -> None:
    names = ["invite", "ok200", "invite_compact", "register"]
    stream = b"\r\n\r\n".join(fixture_messages[name] for name in names) + b"\r\n"
    framer = StreamFramer()
    out: list[bytes | KeepAlive] = []
    for start in range(0, len(stream), chunk):
        out += framer.feed(stream[start : start + chunk])
    messages = [item for item in out if isinstance(item, bytes)]
    assert messages == [fixture_messages[name] for name in names]
    assert framer.buffered == 0
    # Every keep-alive byte is accounted for; a CRLFCRLF split between reads reads as two
    # pongs (a lone CRLF at the end of a read is not held back waiting for a second one).
    keep_alive_bytes = sum(4 if item is PING else 2 for item in out if item in (PING, PONG))
    assert keep_alive_bytes == 3 * 4 + 2
    if chunk == 1:
        assert out.count(PONG) == 7


def test_body_waits_for_content_length() -> None:
    data = message(b"0123456789")
    framer = StreamFramer()
    assert framer.feed(data[:-4]) == []
    assert framer.buffered == len(data) - 4
    assert framer.feed(data[-4:] + data[:10]) == [data]
    assert framer.feed(data[10:]) == [data]


def test_missing_content_length_is_zero_on_a_stream() -> None:
    head = b"OPTIONS sip:b@h SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n"
    assert StreamFramer().feed(head + b"SIP/2.0 200 OK\r\n\r\n") == [
        head,
        b"SIP/2.0 200 OK\r\n\r\n",
    ]


@pytest.mark.parametrize(
    "name", ["l", "L", "content-length", "CONTENT-LENGTH ", "Content-Length\t"]
)
def test_content_length_name_forms(name: str) -> None:
    data = message(b"abc", name=name)
    assert StreamFramer().feed(data + data) == [data, data]


def test_folded_content_length() -> None:
    data = message(b"abcd", length="\r\n 4")
    assert StreamFramer().feed(data) == [data]
    assert parse(data, stream=True).body == b"abcd"


def test_header_names_that_only_start_like_content_length_are_ignored() -> None:
    data = message(b"ab").replace(b"CSeq", b"Content-Lengthy: 99\r\nLx: 7\r\nCSeq")
    assert StreamFramer().feed(data) == [data]


def test_ping_pong_and_leading_crlf() -> None:
    framer = StreamFramer()
    data = message()
    assert framer.feed(b"\r\n\r\n") == [PING]
    assert framer.feed(b"\r\n") == [PONG]
    assert framer.feed(b"\r\n\r\n\r\n" + data + b"\r\n\r\n") == [PING, PONG, data, PING]
    assert isinstance(PING, Ping) and isinstance(PING, KeepAlive)
    assert isinstance(PONG, Pong) and not isinstance(PONG, Ping)


def test_ping_split_after_three_bytes_waits_for_the_fourth() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n\r") == []
    assert framer.feed(b"\n") == [PING]
    assert framer.buffered == 0


def test_head_without_end_beyond_max_size_is_too_large() -> None:
    framer = StreamFramer(max_size=100)
    assert framer.feed(b"OPTIONS sip:b@h SIP/2.0\r\n") == []
    with pytest.raises(MessageTooLarge) as caught:
        framer.feed(b"X-Pad: " + b"a" * 100)
    assert caught.value.status == 513
    assert "no end of headers" in caught.value.reason


def test_content_length_beyond_max_size_is_too_large_before_the_body_arrives() -> None:
    framer = StreamFramer(max_size=1000)
    with pytest.raises(MessageTooLarge) as caught:
        framer.feed(message(length="5000"))
    assert "limit 1000" in caught.value.reason


@pytest.mark.parametrize(
    ("length", "fault"),
    [
        ("-1", "Content-Length is not"),
        ("five", "Content-Length is not"),
        ("", "Content-Length is not"),
        ("\xb2", "Content-Length is not"),
    ],
)
def test_bad_content_length(length: str, fault: str) -> None:
    with pytest.raises(BadRequest) as caught:
        StreamFramer().feed(message(length=length))
    assert caught.value.status == 400
    assert fault in caught.value.reason


def test_two_content_lengths_are_refused() -> None:
    data = message(b"ab").replace(b"CSeq", b"l: 2\r\nCSeq")
    with pytest.raises(BadRequest, match="more than one Content-Length"):
        StreamFramer().feed(data)


def test_header_end_search_resumes_where_it_left_off() -> None:
    """Byte-at-a-time feeding stays linear: the search never goes back over old bytes."""
    framer = StreamFramer()
    data = message(b"x" * 10).replace(b"CSeq", b"X-Pad: " + b"p" * 5000 + b"\r\nCSeq")
    seen: list[int] = []
    for index in range(len(data)):
        framer.feed(data[index : index + 1])
        seen.append(framer._scan_from)
    head_end = data.index(b"\r\n\r\n")
    assert seen[head_end - 10] == head_end - 9  # one past everything searched so far
    assert framer.buffered == 0
