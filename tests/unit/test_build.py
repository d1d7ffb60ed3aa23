"""Building responses, requests, ACK and CANCEL (RFC 3261 §8.1.1, §8.2.6, §9.1, §17.1.1.3)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from proxy.sip.address import CSeq
from proxy.sip.build import make_ack_for, make_cancel, make_request, make_response, reason_phrase
from proxy.sip.errors import BadExtension
from proxy.sip.message import Request, Response, parse

Lf2Crlf = Callable[[str | bytes], bytes]


def request_of(data: bytes) -> Request:
    message = parse(data)
    assert isinstance(message, Request)
    return message


def response_of(data: bytes) -> Response:
    message = parse(data)
    assert isinstance(message, Response)
    return message


def header_lines(message: Request | Response, key: str) -> list[bytes]:
    """The header lines of ``key`` as they go on the wire."""
    data = message.to_bytes()
    head = data[: data.index(b"\r\n\r\n")]
    names = {h.name.lower() for h in message.headers if h.key == key}
    return [
        line
        for line in head.split(b"\r\n")[1:]
        if line.split(b":", 1)[0].strip().lower().decode() in names
    ]


def test_response_copies_via_from_to_call_id_cseq(fixture_messages: dict[str, bytes]) -> None:
    invite = request_of(fixture_messages["invite"])
    response = make_response(invite, 180, to_tag="b2b-1")
    data = response.to_bytes()
    assert data.startswith(b"SIP/2.0 180 Ringing\r\n")
    for key in ("via", "from", "call-id", "cseq"):
        assert header_lines(response, key) == header_lines(invite, key)
    reparsed = parse(data)
    reparsed.validate()
    assert [v.branch for v in reparsed.vias] == [v.branch for v in invite.vias]
    assert reparsed.to.tag == "b2b-1"
    assert reparsed.to.uri.matches(invite.to.uri)
    assert reparsed.from_.tag == invite.from_.tag
    assert reparsed.cseq == CSeq(314159, "INVITE")
    assert reparsed.get("content-length") == "0"
    assert [h.key for h in reparsed.headers] == [
        "via",
        "via",
        "from",
        "to",
        "call-id",
        "cseq",
        "content-length",
    ]
    # Nothing else of the request leaks into the response (privacy: deny by default).
    assert b"P-Asserted-Identity" not in data and b"Contact" not in data


def test_response_keeps_an_existing_to_tag_and_100_gets_none(
    fixture_messages: dict[str, bytes],
) -> None:
    invite = request_of(fixture_messages["invite"])
    assert make_response(invite, 100, to_tag="x").to.tag is None
    assert make_response(invite, 486).to.tag is None  # no tag given: none added
    bye = request_of(fixture_messages["bye"])
    ok = make_response(bye, 200, to_tag="other")
    assert ok.to.tag == "1928301774"
    assert header_lines(ok, "to") == header_lines(bye, "to")


def test_100_copies_timestamp_and_others_do_not(lf2crlf: Lf2Crlf) -> None:
    data = lf2crlf(
        """\
INVITE sip:b@example.com SIP/2.0
v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1
f: <sip:a@example.com>;tag=1
t: <sip:b@example.com>
i: c1
CSeq: 1 INVITE
Max-Forwards: 70
Timestamp: 54.7 0.5
Content-Length: 0

"""
    )
    invite = request_of(data)
    trying = make_response(invite, 100)
    assert trying.get("timestamp") == "54.7 0.5"
    assert trying.to_bytes() == lf2crlf(
        """\
SIP/2.0 100 Trying
v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1
f: <sip:a@example.com>;tag=1
t: <sip:b@example.com>
i: c1
CSeq: 1 INVITE
Timestamp: 54.7 0.5
Content-Length: 0

"""
    )
    assert not make_response(invite, 180).has("timestamp")


def test_response_with_body_reason_and_extra_headers(fixture_messages: dict[str, bytes]) -> None:
    invite = request_of(fixture_messages["invite"])
    error = BadExtension(("foo",))
    response = make_response(
        invite,
        error.status,
        error.reason,
        to_tag="t",
        headers=error.headers,
    )
    assert (response.status, response.reason) == (420, "Bad Extension (foo)")
    assert response.get("unsupported") == "foo"
    ok = make_response(invite, 200, to_tag="t", body=b"v=0\r\n", content_type="application/sdp")
    reparsed = parse(ok.to_bytes())
    assert reparsed.body == b"v=0\r\n"
    assert reparsed.content_type == "application/sdp"
    assert [h.key for h in reparsed.headers][-2:] == ["content-type", "content-length"]
    assert reparsed.get("content-length") == "5"


def test_response_to_a_malformed_request_echoes_what_it_can(lf2crlf: Lf2Crlf) -> None:
    data = lf2crlf("OPTIONS sip:b@h SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nTo: <bad\n\n")
    request = request_of(data)
    response = make_response(request, 400, "Bad Request - missing From header", to_tag="t")
    assert response.to_bytes() == lf2crlf(
        """\
SIP/2.0 400 Bad Request - missing From header
Via: SIP/2.0/UDP h;branch=z9hG4bK1
To: <bad
Content-Length: 0

"""
    )


def test_reason_phrases() -> None:
    assert reason_phrase(487) == "Request Terminated"
    assert reason_phrase(499) == "Bad Request"
    assert reason_phrase(299) == "OK"
    with pytest.raises(ValueError):
        make_response(Request("OPTIONS", "sip:h"), 700)


def test_make_request_orders_headers() -> None:
    request = make_request(
        "INVITE",
        "sip:13900139000@trunk.example.net",
        via="SIP/2.0/UDP proxy.example.net:5060;branch=z9hG4bKb1;rport",
        from_="<sip:700100012345678@proxy.example.net>;tag=p1",
        to="<sip:13900139000@trunk.example.net>",
        call_id="leg-b-1@proxy.example.net",
        cseq=1,
        contact="<sip:proxy.example.net:5060>",
        headers=[("allow", "INVITE, ACK, BYE"), ("Supported", "timer")],
        body=b"v=0\r\n",
        content_type="application/sdp",
    )
    assert request.to_bytes() == (
        b"INVITE sip:13900139000@trunk.example.net SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP proxy.example.net:5060;branch=z9hG4bKb1;rport\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:700100012345678@proxy.example.net>;tag=p1\r\n"
        b"To: <sip:13900139000@trunk.example.net>\r\n"
        b"Call-ID: leg-b-1@proxy.example.net\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Contact: <sip:proxy.example.net:5060>\r\n"
        b"Allow: INVITE, ACK, BYE\r\n"
        b"Supported: timer\r\n"
        b"Content-Type: application/sdp\r\n"
        b"Content-Length: 5\r\n"
        b"\r\n"
        b"v=0\r\n"
    )
    parse(request.to_bytes()).validate()


def test_make_request_without_body_or_contact() -> None:
    request = make_request(
        "OPTIONS",
        "sip:h",
        via="SIP/2.0/TCP p;branch=z9hG4bK2",
        from_="<sip:p>;tag=1",
        to="<sip:h>",
        call_id="c",
        cseq=7,
        max_forwards=0,
    )
    assert [h.key for h in request.headers] == [
        "via",
        "max-forwards",
        "from",
        "to",
        "call-id",
        "cseq",
        "content-length",
    ]
    assert request.max_forwards == 0 and request.get("content-length") == "0"


@pytest.mark.parametrize(
    "change",
    [
        {"to": "<sip:h>\r\nX-Injected: 1"},
        {"call_id": "c\n"},
        {"uri": "sip:h x"},
        {"cseq": 2**32},
        {"max_forwards": 256},
        {"headers": [("Content-Length", "9")]},
        {"headers": [("X-Ok", "a\rb")]},
    ],
)
def test_make_request_refuses_injection_and_out_of_range_values(
    change: dict[str, object],
) -> None:
    arguments: dict[str, object] = {
        "uri": "sip:h",
        "via": "SIP/2.0/UDP p;branch=z9hG4bK3",
        "from_": "<sip:p>;tag=1",
        "to": "<sip:h>",
        "call_id": "c",
        "cseq": 1,
    }
    arguments.update(change)
    with pytest.raises(ValueError):
        make_request("OPTIONS", **arguments)  # type: ignore[arg-type]


def test_ack_for_non_2xx(fixture_messages: dict[str, bytes], lf2crlf: Lf2Crlf) -> None:
    invite = request_of(fixture_messages["invite"])
    invite.add("route", "<sip:edge1.example.net;lr>, <sip:edge2.example.net;lr>")
    busy = make_response(invite, 486, to_tag="callee-9")
    ack = make_ack_for(invite, busy)
    assert ack.method == "ACK" and ack.uri == invite.uri
    assert ack.to_bytes() == lf2crlf(
        """\
ACK sip:700100012345678@proxy.example.net;user=phone SIP/2.0
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport
Max-Forwards: 69
From: "Alice" <sip:13800138000@softswitch.example.com;user=phone>;tag=1928301774
To: <sip:700100012345678@proxy.example.net;user=phone>;tag=callee-9
Call-ID: a84b4c76e66710@pc33.softswitch.example.com
CSeq: 314159 ACK
Route: <sip:edge1.example.net;lr>, <sip:edge2.example.net;lr>
Content-Length: 0

"""
    )
    parse(ack.to_bytes()).validate()


def test_ack_uses_only_the_first_via_value_of_a_combined_line(lf2crlf: Lf2Crlf) -> None:
    invite = request_of(
        lf2crlf(
            """\
INVITE sip:b@h SIP/2.0
Via: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2
From: <sip:a@h>;tag=1
To: <sip:b@h>
Call-ID: c
CSeq: 5 INVITE

"""
        )
    )
    response = response_of(
        lf2crlf(
            """\
SIP/2.0 503 Service Unavailable
Via: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2
From: <sip:a@h>;tag=1
To: <sip:b@h>;tag=2
Call-ID: c
CSeq: 5 INVITE

"""
        )
    )
    ack = make_ack_for(invite, response)
    assert [v.branch for v in ack.vias] == ["z9hG4bK1"]
    assert ack.max_forwards == 70
    assert ack.to.tag == "2"
    assert ack.cseq == CSeq(5, "ACK")
    with pytest.raises(ValueError):
        make_ack_for(make_cancel(invite), response)


def test_cancel(fixture_messages: dict[str, bytes]) -> None:
    invite = request_of(fixture_messages["invite"])
    cancel = make_cancel(invite)
    assert cancel.to_bytes() == fixture_messages["cancel"].replace(
        b"Max-Forwards: 70", b"Max-Forwards: 69"
    )
    reparsed = request_of(cancel.to_bytes())
    reparsed.validate()
    assert reparsed.cseq == CSeq(314159, "CANCEL")
    assert reparsed.to.tag is None
    assert len(reparsed.vias) == 1
