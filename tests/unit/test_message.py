"""SIP message parsing, typed views, editing and serialization (RFC 3261 §7, §20)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from proxy.sip.address import CSeq, NameAddress, Via
from proxy.sip.errors import (
    BadExtension,
    BadRequest,
    MessageTooLarge,
    MethodNotImplemented,
    SipError,
    TooManyHops,
    VersionNotSupported,
)
from proxy.sip.headers import COMPACT_FORMS, canonical_key, canonical_name, split_list
from proxy.sip.message import REASON_PHRASES, Header, Request, Response, parse
from proxy.sip.uri import SipUri
from tests.fixtures import lf2crlf

Lf2Crlf = Callable[[str | bytes], bytes]

FIXTURE_KINDS = {
    "invite": ("INVITE", None),
    "invite_compact": ("INVITE", None),
    "ringing180": (None, 180),
    "ok200": (None, 200),
    "bye": ("BYE", None),
    "ack": ("ACK", None),
    "cancel": ("CANCEL", None),
    "options": ("OPTIONS", None),
    "register": ("REGISTER", None),
}

BASE_HEADERS = """\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1
Max-Forwards: 70
From: <sip:a@example.com>;tag=1
To: <sip:b@example.com>
Call-ID: c1@192.0.2.1
CSeq: 1 OPTIONS
"""


def options_with(*, replace: dict[str, str | None] | None = None, extra: str = "") -> bytes:
    """A valid OPTIONS whose base headers can be replaced (value) or dropped (None)."""
    lines = []
    for line in BASE_HEADERS.splitlines():
        name = line.split(":", 1)[0]
        if replace and name in replace:
            value = replace[name]
            if value is not None:
                lines.append(f"{name}: {value}")
        else:
            lines.append(line)
    head = "OPTIONS sip:b@example.com SIP/2.0\n" + "\n".join(lines) + "\n" + extra
    return lf2crlf(head + "Content-Length: 0\n\n")


def rejected(data: bytes) -> SipError:
    with pytest.raises(SipError) as caught:
        message = parse(data)
        message.validate()
    return caught.value


# -- fixtures: every kind of message, byte-exact round trips ---------------------------


@pytest.mark.parametrize("name", sorted(FIXTURE_KINDS))
def test_fixture_parses_validates_and_round_trips_byte_exact(
    name: str, fixture_messages: dict[str, bytes]
) -> None:
    data = fixture_messages[name]
    message = parse(data)
    message.validate()
    method, status = FIXTURE_KINDS[name]
    if method is not None:
        assert isinstance(message, Request) and message.method == method
    else:
        assert isinstance(message, Response) and message.status == status
    assert message.to_bytes() == data


def test_round_trip_keeps_folding_spacing_and_case(lf2crlf: Lf2Crlf) -> None:
    data = lf2crlf(
        """\
OPTIONS sip:b@example.com SIP/2.0
VIA :   SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1
max-forwards:70
From: <sip:a@example.com>
 ;tag=1
To:<sip:b@example.com>
call-id: c1
CSEQ: 1 OPTIONS
l: 0

"""
    )
    message = parse(data)
    message.validate()
    assert message.to_bytes() == data


def test_invite_typed_views(fixture_messages: dict[str, bytes]) -> None:
    message = parse(fixture_messages["invite"])
    assert isinstance(message, Request)
    uri = message.request_uri
    assert isinstance(uri, SipUri)
    assert (uri.user, uri.host, uri.param("user")) == (
        "700100012345678",
        "proxy.example.net",
        "phone",
    )
    assert message.from_.display_name == '"Alice"'
    assert message.from_.tag == "1928301774"
    assert message.from_.uri.user == "13800138000"
    assert message.to.tag is None
    assert message.call_id == "a84b4c76e66710@pc33.softswitch.example.com"
    assert message.cseq == CSeq(314159, "INVITE")
    assert message.max_forwards == 69
    assert [via.branch for via in message.vias] == ["z9hG4bK776asdhds", "z9hG4bKnashds8"]
    top = message.top_via
    assert (top.transport, top.host, top.port, top.rport, top.received) == (
        "UDP",
        "192.0.2.10",
        5060,
        "",
        None,
    )
    assert message.vias[1].received == "198.51.100.7"
    assert [str(c.uri) for c in message.contacts] == [
        "sip:13800138000@192.0.2.10:5060;transport=udp"
    ]
    assert [str(r.uri) for r in message.record_routes] == ["sip:198.51.100.7;lr"]
    assert message.routes == []
    (pai,) = message.p_asserted_identities
    assert pai.uri.user == "+8613800138000"
    assert message.content_type == "application/sdp"
    assert message.content_length == len(message.body) == 201
    assert message.body.startswith(b"v=0\r\n")
    assert message.get_all("allow") == ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "UPDATE"]


def test_response_typed_views(fixture_messages: dict[str, bytes]) -> None:
    message = parse(fixture_messages["ok200"])
    assert isinstance(message, Response)
    assert (message.status, message.reason) == (200, "OK")
    assert message.to.tag == "a6c85cf"
    assert message.top_via.received == "192.0.2.10"
    assert message.top_via.rport == "5060"
    assert message.body == b""
    assert repr(message) == "<Response 200 OK>"


def test_register_contacts_split_on_commas_outside_quotes(
    fixture_messages: dict[str, bytes],
) -> None:
    message = parse(fixture_messages["register"])
    first, second = message.contacts
    assert first.uri.host == "[2001:db8::9]" and first.param("expires") == "3600"
    assert second.display_name == '"Bob mobile"' and second.param("q") == "0.5"
    assert message.top_via.host == "[2001:db8::9]" and message.top_via.port == 5062


# -- header names: compact forms, case ---------------------------------------------------


@pytest.mark.parametrize(("letter", "key"), sorted(COMPACT_FORMS.items()))
def test_every_compact_form_expands(letter: str, key: str) -> None:
    for name in (letter, letter.upper()):
        value = "0" if key == "content-length" else "x"
        message = parse(lf2crlf(f"OPTIONS sip:b@example.com SIP/2.0\n{name}: {value}\n\n"))
        (header,) = message.headers
        assert (header.key, header.name, header.value) == (key, name, value)
        assert message.get(key) == value


def test_compact_invite_expands_to_long_names(fixture_messages: dict[str, bytes]) -> None:
    message = parse(fixture_messages["invite_compact"])
    message.validate()
    assert message.top_via.transport == "TCP"
    assert message.from_.tag == "77aa"
    assert message.call_id == "compact-1@192.0.2.10"
    assert message.contacts[0].uri.param("transport") == "tcp"
    assert message.get("supported") == "timer"
    assert message.get("session-expires") == "1800"
    assert message.content_type == "application/sdp"
    assert message.body == b"v=0\r\ns=-\r\nc=IN IP4 192.0.2.10\r\n"


def test_header_names_are_case_insensitive() -> None:
    message = parse(options_with(extra="X-CUSTOM-Thing: 1\nx-custom-thing: 2\n"))
    assert message.get_all("x-custom-thing") == ["1", "2"]
    assert canonical_key("CALL-ID") == "call-id"
    assert canonical_key("I") == "call-id"
    assert canonical_name("www-authenticate") == "WWW-Authenticate"
    assert canonical_name("x-custom-thing") == "X-Custom-Thing"


def test_folded_values_are_unfolded_with_one_space(lf2crlf: Lf2Crlf) -> None:
    message = parse(options_with(extra="Subject: first\n  second\n\tthird\nAllow: INVITE,\n BYE\n"))
    assert message.get("subject") == "first second third"
    assert message.get_all("allow") == ["INVITE", "BYE"]


def test_folded_content_length_is_used_for_the_body(lf2crlf: Lf2Crlf) -> None:
    data = lf2crlf("OPTIONS sip:b@h SIP/2.0\nContent-Length:\n 4\n\nbody+junk")
    assert parse(data).body == b"body"


# -- multi-value splitting ------------------------------------------------------------


def test_split_list_respects_quotes_and_angle_brackets() -> None:
    assert split_list('"Doe, John" <sip:j@h>, <sip:x@h;p=a,b>') == [
        '"Doe, John" <sip:j@h>',
        "<sip:x@h;p=a,b>",
    ]
    assert split_list(r'"a \", b" <sip:q@h>, <sip:r@h>') == [r'"a \", b" <sip:q@h>', "<sip:r@h>"]
    assert split_list("a, b ,c") == ["a", "b", "c"]
    assert split_list("a,,b") == ["a", "", "b"]
    assert split_list("single") == ["single"]


def test_only_list_headers_split_on_commas() -> None:
    message = parse(options_with(extra="Subject: a, b\nDate: Sat, 13 Nov 2010 23:29:00 GMT\n"))
    assert message.get_all("subject") == ["a, b"]
    assert message.get_all("date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]


def test_contact_star_yields_no_addresses() -> None:
    message = parse(options_with(extra="Contact: *\n"))
    message.validate()
    assert message.contacts == []


def test_via_values_across_lines_and_commas_keep_order() -> None:
    data = options_with(
        replace={"Via": "SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP b.example.com"},
        extra="Via: SIP/2.0/TLS c.example.com:5061;branch=z9hG4bK3\n",
    )
    message = parse(data)
    assert [(v.transport, v.host, v.port) for v in message.vias] == [
        ("UDP", "a.example.com", None),
        ("TCP", "b.example.com", None),
        ("TLS", "c.example.com", 5061),
    ]


# -- editing --------------------------------------------------------------------------


def test_set_replaces_in_place_and_drops_duplicates(fixture_messages: dict[str, bytes]) -> None:
    message = parse(fixture_messages["invite"])
    assert message.max_forwards == 69
    message.set("max-forwards", "68")
    assert message.max_forwards == 68
    keys = [h.key for h in message.headers]
    assert keys.index("max-forwards") == 2
    message.set("via", "SIP/2.0/UDP proxy.example.net;branch=z9hG4bKnew")
    assert [v.host for v in message.vias] == ["proxy.example.net"]
    assert b"Max-Forwards: 68\r\n" in message.to_bytes()
    message.set("x-new", "1")
    assert message.headers[-1] == Header("x-new", "X-New", "1", None)


def test_add_first_and_last_and_cache_is_refreshed(fixture_messages: dict[str, bytes]) -> None:
    message = parse(fixture_messages["invite"])
    assert len(message.vias) == 2
    message.add("via", "SIP/2.0/UDP proxy.example.net;branch=z9hG4bKtop", first=True)
    assert message.top_via.branch == "z9hG4bKtop"
    assert len(message.vias) == 3
    message.add("route", "<sip:next.example.net;lr>")
    message.add("route", "<sip:last.example.net;lr>", first=False)
    assert [r.uri.host for r in message.routes] == ["next.example.net", "last.example.net"]
    message.add("record-route", "<sip:rr.example.net;lr>", first=True)
    assert [r.uri.host for r in message.record_routes] == ["rr.example.net", "198.51.100.7"]
    message.add("x-absent", "v", first=True)
    assert message.headers[-1].key == "x-absent"
    data = message.to_bytes()
    assert data.startswith(
        b"INVITE sip:700100012345678@proxy.example.net;user=phone SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP proxy.example.net;branch=z9hG4bKtop\r\n"
    )
    assert parse(data).to_bytes() == data


def test_remove_and_set_body(fixture_messages: dict[str, bytes]) -> None:
    message = parse(fixture_messages["invite"])
    message.remove("p-asserted-identity")
    assert message.p_asserted_identities == []
    assert not message.has("p-asserted-identity")
    message.set_body(b"")
    assert message.get("content-length") == "0"
    assert not message.has("content-type") and message.content_type is None
    message.set_body(b"hello", "text/plain")
    assert (message.get("content-length"), message.content_type) == ("5", "text/plain")
    reparsed = parse(message.to_bytes())
    assert reparsed.body == b"hello"
    assert reparsed.to_bytes() == message.to_bytes()


def test_message_built_from_parts_serializes() -> None:
    request = Request(
        "OPTIONS",
        "sip:b@example.com",
        [Header("via", "Via", "SIP/2.0/UDP h;branch=z9hG4bK1", None)],
    )
    assert request.to_bytes() == (
        b"OPTIONS sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n"
    )
    assert repr(request) == "<Request OPTIONS sip:b@example.com>"
    assert Response(486, REASON_PHRASES[486]).to_bytes() == b"SIP/2.0 486 Busy Here\r\n\r\n"


def test_non_utf8_bytes_survive_a_round_trip() -> None:
    data = options_with(extra="X-Latin1: caf\xe9\n".encode("latin-1").decode("latin-1"))
    data = data.replace("café".encode(), b"caf\xe9")
    message = parse(data)
    assert message.to_bytes() == data


# -- datagram and stream framing in parse() ------------------------------------------------


def test_leading_crlf_is_skipped_and_bytes_past_content_length_dropped(lf2crlf: Lf2Crlf) -> None:
    data = lf2crlf("\n\nOPTIONS sip:b@h SIP/2.0\nContent-Length: 2\n\nokTRAILING")
    message = parse(data)
    assert message.body == b"ok"
    assert message.to_bytes() == data[4:-8]


def test_missing_content_length_means_rest_of_datagram_or_nothing_on_a_stream(
    lf2crlf: Lf2Crlf,
) -> None:
    data = lf2crlf("OPTIONS sip:b@h SIP/2.0\nVia: x\n\nabc")
    assert parse(data).body == b"abc"
    assert parse(data, stream=True).body == b""


# -- every error names its status and its fault -----------------------------------------------


@pytest.mark.parametrize(
    ("data", "status", "fault"),
    [
        (b"OPTIONS sip:b@h SIP/2.0\r\nVia: x\r\n", 400, "no empty line"),
        (b"OPTIONS sip:b@h SIP/2.0\r\nX: a\nB: c\r\n\r\n", 400, "bare CR or LF"),
        (b"OPTIONS sip:b@h SIP/2.0\r\nX: a\rB: c\r\n\r\n", 400, "bare CR or LF"),
        (b"OPTIONS sip:b@h SIP/2.0\r\n folded\r\n\r\n", 400, "continuation line"),
        (b"OPTIONS sip:b@h SIP/2.0\r\nno colon here\r\n\r\n", 400, "without a name"),
        (b"OPTIONS sip:b@h SIP/2.0\r\n: value\r\n\r\n", 400, "without a name"),
        (b"OPTIONS sip:b@h SIP/2.0\r\nBad Name: v\r\n\r\n", 400, "invalid header name"),
        (b"OPTIONS sip:b@h SIP/2.0\r\nl: 0\r\nl: 0\r\n\r\n", 400, "more than one Content-Len"),
        (b"OPTIONS sip:b@h SIP/2.0\r\nl: -1\r\n\r\n", 400, "Content-Length is not"),
        (b"OPTIONS sip:b@h SIP/2.0\r\nl: \xc2\xb2\r\n\r\n", 400, "Content-Length is not"),
        (b"OPTIONS sip:b@h SIP/2.0\r\nl: 5\r\n\r\nabc", 400, "larger than the body"),
        (b"SIP/3.0 200 OK\r\n\r\n", 505, "SIP/3.0"),
        (b"SIP/2.0 2000 OK\r\n\r\n", 400, "status code"),
        (b"SIP/2.0 099 OK\r\n\r\n", 400, "status code"),
        (b"SIP/2.0 \xc2\xb2\xc2\xb2\xc2\xb2 OK\r\n\r\n", 400, "status code"),
        (b"SIP/2.0\r\n\r\n", 400, "status code"),
        (b"OPTIONS sip:b@h\r\n\r\n", 400, "Request-Line"),
        (b"OPTIONS  sip:b@h SIP/2.0\r\n\r\n", 400, "Request-Line"),
        (b"\r\n\r\n", 400, "no empty line"),
        (b" \r\n\r\n", 400, "Request-Line"),
        (b"OPT(IONS sip:b@h SIP/2.0\r\n\r\n", 400, "invalid method"),
        (b"OPTIONS sip:b@h SIP/3.0\r\n\r\n", 505, "SIP/3.0"),
        (b"OPTIONS sip:b@h HTTP/1.1\r\n\r\n", 400, "SIP-Version"),
    ],
)
def test_parse_errors(data: bytes, status: int, fault: str) -> None:
    with pytest.raises(SipError) as caught:
        parse(data)
    assert caught.value.status == status
    assert fault in caught.value.reason


def test_message_too_large_is_513() -> None:
    data = options_with(extra=f"X-Pad: {'a' * 200}\n")
    with pytest.raises(MessageTooLarge) as caught:
        parse(data, max_size=100)
    assert caught.value.status == 513
    assert "limit 100" in caught.value.reason
    assert parse(data, max_size=len(data)).to_bytes() == data


def test_empty_request_uri_is_400() -> None:
    with pytest.raises(BadRequest, match="empty Request-URI"):
        parse(b"OPTIONS  SIP/2.0\r\n\r\n")


@pytest.mark.parametrize(
    ("replace", "extra", "status", "fault"),
    [
        ({"Via": None}, "", 400, "missing Via"),
        ({"From": None}, "", 400, "missing From"),
        ({"To": None}, "", 400, "missing To"),
        ({"Call-ID": None}, "", 400, "missing Call-ID"),
        ({"CSeq": None}, "", 400, "missing CSeq"),
        ({}, "From: <sip:c@example.com>\n", 400, "more than one From"),
        ({}, "t: <sip:c@example.com>\n", 400, "more than one To"),
        ({}, "i: other\n", 400, "more than one Call-ID"),
        ({}, "CSeq: 2 OPTIONS\n", 400, "more than one CSeq"),
        ({}, "Max-Forwards: 1\n", 400, "more than one Max-Forwards"),
        ({}, "c: a/b\nContent-Type: a/b\n", 400, "more than one Content-Type"),
        ({"Via": "SIP/2.0/UDP h;branch=1,"}, "", 400, "empty Via"),
        ({"Via": "SIP/2.0 h"}, "", 400, "Via sent-protocol"),
        ({"Via": "SIP/3.0/UDP h"}, "", 400, "Via protocol"),
        ({"Via": "SIP/2.0/UDP"}, "", 400, "sent-by"),
        ({"Via": "SIP/2.0/U(P h"}, "", 400, "Via transport"),
        ({"Via": "SIP/2.0/UDP h:99999"}, "", 400, "port"),
        ({"Via": "SIP/2.0/UDP h;received=example.com"}, "", 400, "received"),
        ({"Via": "SIP/2.0/UDP h;branch"}, "", None, None),
        ({"Via": "SIP/2.0/UDP h;=x"}, "", 400, "parameter name"),
        ({"Via": "SIP/2.0/UDP h junk"}, "", 400, "host"),
        ({"Call-ID": "a b"}, "", 400, "Call-ID"),
        ({"Call-ID": ""}, "", 400, "Call-ID"),
        ({"CSeq": "1"}, "", 400, "malformed CSeq"),
        ({"CSeq": "x OPTIONS"}, "", 400, "CSeq number"),
        ({"CSeq": "4294967296 OPTIONS"}, "", 400, "CSeq number"),
        ({"CSeq": "1 OPT@ONS"}, "", 400, "CSeq method"),
        ({"CSeq": "1 INVITE"}, "", 400, "CSeq method does not match"),
        ({"Max-Forwards": "256"}, "", 400, "Max-Forwards"),
        ({"Max-Forwards": "-1"}, "", 400, "Max-Forwards"),
        ({"From": ""}, "", 400, "empty From"),
        ({"From": '"unterminated <sip:a@h>'}, "", 400, "unterminated quoted"),
        ({"From": '"Name" sip:a@h'}, "", 400, "not followed by <URI>"),
        ({"From": "Na@me <sip:a@h>"}, "", 400, "neither token nor quoted"),
        ({"From": "<sip:a@h"}, "", 400, "missing '>'"),
        ({"From": "sip:a@h?subject=x"}, "", 400, "must be in <>"),
        ({"From": "<sip:a@h> junk"}, "", 400, "junk before parameters"),
        ({"From": '<sip:a@h>;p="q"x'}, "", 400, "junk after quoted"),
        ({"From": "<sip:a@h>;tag="}, "", 400, "has no value"),
        ({"From": "<sip:a@h>;;tag=1"}, "", 400, "parameter name"),
        ({"From": "<a@h>"}, "", 400, "scheme"),
        ({"To": "<sip:b@[::1>"}, "", 400, "IPv6"),
        ({}, "Contact: <sip:c@h>,\n", 400, "empty"),
        ({}, "Contact: *, <sip:c@h>\n", 400, "scheme"),
    ],
)
def test_validate_errors(
    replace: dict[str, str | None], extra: str, status: int | None, fault: str | None
) -> None:
    data = options_with(replace=replace, extra=extra)
    if status is None:
        parse(data).validate()
        return
    error = rejected(data)
    assert error.status == status
    assert fault is not None and fault in error.reason, error.reason


def test_unknown_method_with_other_cseq_is_501() -> None:
    data = options_with(extra="").replace(b"OPTIONS sip", b"FOO sip", 1)
    error = rejected(data)
    assert isinstance(error, MethodNotImplemented)
    assert (error.status, error.reason) == (501, "Not Implemented (FOO (CSeq names OPTIONS))")


def test_unknown_method_with_matching_cseq_validates() -> None:
    data = options_with(replace={"CSeq": "1 FOO"}).replace(b"OPTIONS sip", b"FOO sip", 1)
    message = parse(data)
    message.validate()
    assert isinstance(message, Request) and message.method == "FOO"


def test_request_uri_errors_surface_in_validate() -> None:
    data = options_with().replace(b"sip:b@example.com SIP", b"sip:b@example.com?x=y SIP", 1)
    assert "headers are not allowed" in rejected(data).reason
    data = options_with().replace(b"sip:b@example.com SIP", b"sip:b@ SIP", 1)
    assert "missing host in Request-URI" in rejected(data).reason


def test_views_raise_before_validate_too() -> None:
    message = parse(options_with(replace={"CSeq": "x"}))
    with pytest.raises(BadRequest, match="malformed CSeq"):
        message.cseq  # noqa: B018


def test_response_validate_does_not_need_max_forwards_or_request_uri(
    fixture_messages: dict[str, bytes],
) -> None:
    message = parse(fixture_messages["ringing180"])
    message.validate()
    assert message.max_forwards is None


# -- the errors themselves --------------------------------------------------------------------


def test_error_reasons_and_statuses() -> None:
    assert BadRequest("missing To header").reason == "Bad Request - missing To header"
    assert BadRequest("").reason == "Bad Request"
    assert VersionNotSupported("SIP/3.0").status == 505
    assert TooManyHops("").reason == "Too Many Hops"
    assert TooManyHops("x").status == 483
    extension = BadExtension(("foo", "bar"))
    assert (extension.status, extension.headers) == (420, (("Unsupported", "foo, bar"),))
    assert extension.reason == "Bad Extension (foo, bar)"
    assert SipError("x", status=480).status == 480
    assert isinstance(BadRequest("x"), ValueError)


def test_address_and_via_serialize() -> None:
    address = NameAddress.parse('"Bob" <sip:bob@h>;tag=9;lr')
    assert str(address) == '"Bob" <sip:bob@h>;tag=9;lr'
    assert str(NameAddress.parse("sip:bob@h;tag=9")) == "<sip:bob@h>;tag=9"
    via = Via.parse("SIP/2.0/udp h:5070;branch=z9hG4bK1;rport;maddr=239.1.1.1")
    assert str(via) == "SIP/2.0/UDP h:5070;branch=z9hG4bK1;rport;maddr=239.1.1.1"
    assert (via.maddr, via.param("rport"), via.sent_by) == ("239.1.1.1", "", ("h", 5070))
    assert str(CSeq(7, "BYE")) == "7 BYE"


# -- fast paths and per-message caches ---------------------------------------------------


def test_fast_path_values_equal_constructed_ones(fixture_messages: dict[str, bytes]) -> None:
    """Values built on the fast path (slots set directly) are the same dataclass values
    as constructed ones: equal, same hash, same repr, still frozen."""
    message = parse(fixture_messages["invite"])
    expected_from = NameAddress(
        SipUri("sip", "13800138000", "softswitch.example.com", None, None, (("user", "phone"),)),
        '"Alice"',
        (("tag", "1928301774"),),
    )
    expected_via = Via(
        "UDP",
        "198.51.100.7",
        5060,
        (("branch", "z9hG4bKnashds8"), ("received", "198.51.100.7")),
    )
    for parsed, expected in (
        (message.from_, expected_from),
        (message.vias[1], expected_via),
        (message.cseq, CSeq(314159, "INVITE")),
    ):
        assert parsed == expected
        assert hash(parsed) == hash(expected)
        assert repr(parsed) == repr(expected)
    uri = message.from_.uri
    assert isinstance(uri, SipUri)
    with pytest.raises(AttributeError):
        uri.host = "elsewhere.example"  # type: ignore[misc]


def test_top_via_alone_parses_only_the_top_but_validate_checks_all() -> None:
    data = options_with(extra="Via: SIP/2.0/UDP 192.0.2.9;received=not-an-address\n")
    message = parse(data)
    assert message.top_via.branch == "z9hG4bK1"
    with pytest.raises(BadRequest, match="received"):
        message.vias  # noqa: B018
    with pytest.raises(BadRequest, match="received"):
        parse(data).validate()
    good = parse(options_with(extra="Via: SIP/2.0/TCP 192.0.2.9:5070;branch=z9hG4bK2\n"))
    top = good.top_via
    assert good.vias[0] is top
    assert [via.port for via in good.vias] == [5060, 5070]


def test_header_name_with_trailing_space_keeps_its_stripped_name() -> None:
    """Names with LWS before the colon are not remembered for the fast path, which keeps
    the name as written; every parse gives the stripped name."""
    data = options_with(extra="Subject : hello\n")
    for _ in range(2):
        (subject,) = [h for h in parse(data).headers if h.key == "subject"]
        assert (subject.name, subject.value) == ("Subject", "hello")


def test_edits_refresh_the_typed_views(fixture_messages: dict[str, bytes]) -> None:
    message = parse(fixture_messages["invite"])
    assert message.from_.tag == "1928301774" and message.cseq.number == 314159
    message.set("from", "<sip:x@example.org>;tag=new")
    message.set("cseq", "7 INVITE")
    assert (message.from_.tag, str(message.from_.uri)) == ("new", "sip:x@example.org")
    assert message.cseq == CSeq(7, "INVITE")
    message.remove("cseq")
    with pytest.raises(BadRequest, match="missing CSeq"):
        message.cseq  # noqa: B018
    message.add("to", "<sip:y@example.org>")
    with pytest.raises(BadRequest, match="more than one To"):
        message.to  # noqa: B018


def test_too_many_header_lines_are_refused() -> None:
    """RFC 3261 leaves the bound to the element; ours is MAX_HEADER_LINES (issue #6)."""
    from proxy.sip.message import MAX_HEADER_LINES

    head = b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X-Filler: 1\r\n" * (MAX_HEADER_LINES + 1)
    with pytest.raises(SipError) as raised:
        parse(head + b"\r\n")
    assert raised.value.status == 400 and "header lines" in raised.value.reason


def test_too_many_vias_are_too_many_hops() -> None:
    from proxy.sip.message import MAX_VIAS

    vias = b"".join(
        b"Via: SIP/2.0/UDP 192.0.2.%d;branch=z9hG4bK%d\r\n" % (n % 250, n)
        for n in range(MAX_VIAS + 1)
    )
    data = (
        b"OPTIONS sip:a@b SIP/2.0\r\n" + vias + b"From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\n"
        b"Call-ID: v@x\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    message = parse(data)
    with pytest.raises(SipError) as raised:
        message.validate()
    assert raised.value.status == 483


def test_crlfs_before_a_message_are_skipped_and_nothing_else() -> None:
    """RFC 3261 §7.5: CRLFs before the start line are ignored; a bare CR is not one."""
    response = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    for prefix in (b"", b"\r\n", b"\r\n\r\n\r\n"):
        message = parse(prefix + response)
        assert isinstance(message, Response)
        assert message.to_bytes() == response
    for prefix in (b"\r", b"\n", b"\r\r\n"):
        with pytest.raises(SipError):
            parse(prefix + response)
