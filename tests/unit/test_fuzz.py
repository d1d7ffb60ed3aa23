"""Property tests: whatever bytes arrive, the parser answers with a SipError or a message
that serializes and re-parses to itself (design.md §6 "bad input")."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.sip.errors import SipError
from proxy.sip.framing import StreamFramer
from proxy.sip.message import Request, parse
from tests.fixtures import load_fixture_messages, load_torture_messages

SEEDS = sorted({**load_fixture_messages(), **load_torture_messages()}.items())
SEED_BYTES = [data for _, data in SEEDS]

FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

#: Characters that matter to the grammar, so that random text reaches deep branches.
SIP_ALPHABET = ' \t:;,<>"@[]=%/.\\?&*+-_!~()abcdefsipASIPZ0123456789\x00\x7f\u00e9\u00b2'


def exercise(data: bytes) -> None:
    """Parse, validate, read every view and serialize; only SipError may escape."""
    try:
        message = parse(data)
        message.validate()
        serialized = message.to_bytes()
    except SipError:
        return
    reparsed = parse(serialized)
    reparsed.validate()
    assert reparsed.to_bytes() == serialized
    for view in (
        "routes",
        "record_routes",
        "p_asserted_identities",
        "content_type",
        "max_forwards",
        "top_via",
    ):
        with contextlib.suppress(SipError):
            getattr(message, view)
    if isinstance(message, Request):
        uri = message.request_uri
        assert uri.matches(uri) or uri.scheme not in ("sip", "sips", "tel")


@FUZZ
@given(st.binary(max_size=1500))
def test_random_bytes(data: bytes) -> None:
    exercise(data)


@FUZZ
@given(
    st.sampled_from(["INVITE sip:a@h SIP/2.0", "SIP/2.0 200 OK", "REGISTER sip:h SIP/2.0"]),
    st.lists(st.text(alphabet=SIP_ALPHABET, max_size=80), max_size=12),
    st.binary(max_size=40),
)
def test_random_header_lines_after_a_valid_start_line(
    start: str, lines: list[str], body: bytes
) -> None:
    head = "\r\n".join([start, *lines]).encode("utf-8")
    exercise(head + b"\r\n\r\n" + body)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEED_BYTES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dup", "swap"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.sampled_from([b"\r\n", b" ", b",", b";", b":", b"%", b"\x00"]))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[at:]
        else:
            lines = bytes(data).split(b"\r\n")
            index = draw(st.integers(0, len(lines) - 1))
            if kind == "dup":
                lines.insert(index, lines[index])
            else:
                other = draw(st.integers(0, len(lines) - 1))
                lines[index], lines[other] = lines[other], lines[index]
            data = bytearray(b"\r\n".join(lines))
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_real_messages(data: bytes) -> None:
    exercise(data)


@FUZZ
@given(st.lists(mutated(), min_size=1, max_size=4), st.integers(1, 600))
def test_stream_framer_with_mutated_messages(messages: list[bytes], chunk: int) -> None:
    """Framed or refused: every framed message is exactly what parse(stream=True) reads."""
    stream = b"\r\n\r\n".join(messages)
    framer = StreamFramer()
    try:
        for start in range(0, len(stream), chunk):
            for item in framer.feed(stream[start : start + chunk]):
                if isinstance(item, bytes):
                    assert item.endswith(b"\r\n\r\n") or b"\r\n\r\n" in item
                    exercise(item)
                    try:
                        framed = parse(item, stream=True)
                    except SipError:
                        continue
                    assert framed.to_bytes() == item.lstrip(b"\r\n")
    except SipError:
        pass
