"""Property tests: whatever bytes arrive, the parser answers with a SipError or a message
that serializes and re-parses to itself (design.md §6 "bad input")."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial
from unittest.mock import patch

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import proxy.sip.message as message_module
from proxy.sip.address import _CSEQ, _NAME_ADDR, _VIA, CSeq, NameAddress, Via
from proxy.sip.errors import SipError
from proxy.sip.framing import StreamFramer
from proxy.sip.message import Request, parse
from proxy.sip.uri import _SIP_URI, parse_uri, parse_uri_general
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


# -- fast paths against the general parsers ---------------------------------------------
#
# NameAddress/Via/CSeq.parse, parse_uri and parse() first try a regex for the common form
# and fall back to the general parser. The accepted language and every parsed value must
# be the same either way: for any text, the fast entry point and the general one return
# equal values (same hash, same repr) or raise the same error.


def outcome(function: Callable[[str], object], text: str) -> tuple[object, ...]:
    try:
        value = function(text)
    except SipError as error:
        return ("error", type(error), error.status, str(error))
    return ("value", value, hash(value), repr(value))


#: Pieces of the common forms: (pieces the fast patterns take, pieces they must leave
#: to the general parser: wrong, or right but unusual).
PIECES = {
    "display": (
        ['"Alice" ', "Bob ", "Bob Smith ", '"" ', ""],
        ['"A \\"q\\"" ', "Bob  Smith ", "é "],
    ),
    "scheme": (["sip:", "sips:"], ["SIP:", "tel:", "http:", "sip"]),
    "user": (
        ["", "alice@", "13800138000@", "a%40b@", "u:pw@", "u:@", "+86-1$&=,@"],
        [":pw@", "a;b=c@", "@"],
    ),
    "host": (["example.com", "192.0.2.10", "h_x", "a..b"], ["[2001:db8::1]", "bad host", "", "é"]),
    "port": (["", ":5060", ":0", ":65535", ":65536", ":99999"], [":123456", ":", ":5a"]),
    "uri_params": (
        ["", ";user=phone", ";lr", ";Transport=UDP;LR", ";LR", ";User=Phone", ";a=", ";x=[1]"],
        [";=x", ";a b"],
    ),
    "uri_headers": ([""], ["?subject=x", "?"]),
    "params": (
        ["", ";tag=1928301774", ";tag", ";TAG=Ab;x=1", ";TAG=Ab", ";t=a,b"],
        [';x="q v"', "; tag = 1", ";;"],
    ),
    "via_head": (
        ["SIP/2.0/UDP ", "SIP/2.0/udp ", "SIP/2.0/T-L.S "],
        ["sip / 2.0 / TCP ", "SIP/2.1/UDP "],
    ),
    "via_params": (
        [
            "",
            ";branch=z9hG4bK776;rport",
            ";received=192.0.2.1",
            ";RECEIVED=192.0.2.300",
            ";Received=999.1.1.1",
            ";received",
            ";rport=5060;maddr=x",
            ";received=::1",
        ],
        [";received=[2001:db8::1]", "; branch=x"],
    ),
}


@st.composite
def near_common(draw: st.DrawFn, parts: list[str]) -> str:
    """Text assembled from pieces of the common forms, mostly ones the fast patterns
    take, then perhaps mutated a little."""
    text = ""
    for part in parts:
        usual, unusual = PIECES[part]
        text += draw(st.sampled_from(unusual if draw(st.integers(0, 9)) == 0 else usual))
    if draw(st.integers(0, 3)) == 0:
        for _ in range(draw(st.integers(1, 2))):
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(st.text(alphabet=SIP_ALPHABET, max_size=2)) + text[at:]
    return text


def name_addresses() -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(
            near_common(["display"]),
            near_common(["scheme", "user", "host", "port", "uri_params"]),
            near_common(["uri_headers"]),
            near_common(["params"]),
        ).map(lambda parts: f"{parts[0]}<{parts[1]}{parts[2]}>{parts[3]}"),
        near_common(["scheme", "user", "host", "port", "uri_params", "params"]),
        st.text(alphabet=SIP_ALPHABET, max_size=60),
    )


@FUZZ
@given(name_addresses())
def test_name_address_fast_path_agrees_with_the_general_parser(text: str) -> None:
    assert outcome(NameAddress.parse, text) == outcome(NameAddress.parse_general, text)


@FUZZ
@given(
    st.one_of(
        near_common(["via_head", "host", "port", "via_params"]),
        st.text(alphabet=SIP_ALPHABET + "SIP/2.0UDP", max_size=60),
    )
)
def test_via_fast_path_agrees_with_the_general_parser(text: str) -> None:
    assert outcome(Via.parse, text) == outcome(Via.parse_general, text)


@FUZZ
@given(
    st.one_of(
        st.tuples(
            st.sampled_from(["0", "1", "314159", "4294967295", "4294967296", "99999999999", "٣"]),
            st.sampled_from([" ", "  ", "\t", ""]),
            st.sampled_from(["INVITE", "invite", "X-Y.z", "IN VITE", "", "INV;TE"]),
        ).map("".join),
        st.text(alphabet="0123456789 \tINVITE;", max_size=20),
    )
)
def test_cseq_fast_path_agrees_with_the_general_parser(text: str) -> None:
    assert outcome(CSeq.parse, text) == outcome(CSeq.parse_general, text)


@FUZZ
@given(
    st.one_of(
        near_common(["scheme", "user", "host", "port", "uri_params", "uri_headers"]),
        st.text(alphabet=SIP_ALPHABET, max_size=60),
    ),
    st.booleans(),
)
def test_uri_fast_path_agrees_with_the_general_parser(text: str, allow_headers: bool) -> None:
    assert outcome(partial(parse_uri, allow_headers=allow_headers), text) == outcome(
        partial(parse_uri_general, allow_headers=allow_headers), text
    )


def test_common_forms_take_the_fast_path() -> None:
    """The agreement tests above mean something only if the fast patterns do match the
    forms real traffic carries (the fixtures but IPv6, which the general parser takes);
    a pattern that never matched would pass them."""
    for data in load_fixture_messages().values():
        message = parse(data)
        for key, pattern in (("via", _VIA), ("from", _NAME_ADDR), ("to", _NAME_ADDR)):
            for value in message.get_all(key):
                assert pattern.fullmatch(value) or "[" in value, (key, value)
        assert _CSEQ.fullmatch(message.get("cseq") or "")
        if isinstance(message, Request):
            assert _SIP_URI.fullmatch(message.uri), message.uri


class _ForgetfulNames(dict[str, str]):
    """A header-name cache that never remembers: every parse takes the general loop."""

    def __setitem__(self, key: str, value: str) -> None:
        return None


def _parsed(data: bytes) -> tuple[object, ...]:
    try:
        message = parse(data)
    except SipError as error:
        return ("error", type(error), error.status, str(error))
    start = (message.method, message.uri) if isinstance(message, Request) else message.reason
    return ("message", start, message.headers, message.body, message.to_bytes())


@FUZZ
@given(st.one_of(mutated(), st.sampled_from(SEED_BYTES)))
def test_header_fast_path_agrees_with_the_general_loop(data: bytes) -> None:
    _parsed(data)  # the first parse of a new header name fills the name cache
    fast = _parsed(data)
    with patch.object(message_module, "_NAME_KEYS", _ForgetfulNames()):
        general = _parsed(data)
    assert fast == general
