"""Privacy through the B2BUA (design.md §4): nothing of A's number reaches B, nothing of
B's reaches A, in any spelling, in any message of a whole call.

Two independent judges look at every datagram: the leak guard the adapter runs, and a
plain regex over digits (``digits_leak``) that knows nothing of the guard.
"""

from __future__ import annotations

import ipaddress

import pytest

from proxy.b2bua import privacy
from proxy.b2bua.leak_guard import guard_for
from proxy.b2bua.privacy import allowed_headers, relayed_body
from proxy.sip.message import Request, Response, parse
from tests.unit.b2bua_harness import (
    A_NUMBER,
    B_NUMBER,
    X_NUMBER,
    Network,
    bound_network,
    digits_leak,
)

A_FORMS = ("13800138000", "+8613800138000", "008613800138000", "138-0013-8000", "138 0013 8000")

A_SDP_PRIVATE = (
    b"v=0\r\n"
    b"o=13800138000 2890844526 2890844526 IN IP4 127.0.0.1\r\n"
    b"s=call from +86 138 0013 8000\r\n"
    b"i=caller 0086-138-0013-8000\r\n"
    b"u=http://example.com/13800138000\r\n"
    b"e=13800138000@example.com\r\n"
    b"p=+86 (138) 0013-8000\r\n"
    b"c=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\n"
    b"a=tool:13800138000\r\n"
    b"m=audio 49170 RTP/AVP 8 101\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=sendrecv\r\n"
)

B_SDP_PRIVATE = (
    b"v=0\r\n"
    b"o=13900139000 77 1 IN IP4 127.0.0.1\r\n"
    b"s=+8613900139000\r\n"
    b"i=139 0013 9000\r\n"
    b"e=13900139000@example.com\r\n"
    b"p=0086 139 0013 9000\r\n"
    b"c=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 30000 RTP/AVP 8 101\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
)


def a_invite(*, branch: str = "z9hG4bKpriv1", body: bytes = A_SDP_PRIVATE) -> Request:
    head = (
        f"INVITE sip:{X_NUMBER}@127.0.0.1:5060;user=phone SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport\r\n"
        "Max-Forwards: 69\r\n"
        'From: "Zhang 138 0013 8000" <sip:13800138000@127.0.0.1:5070;user=phone>;tag=f1380\r\n'
        f"To: <sip:{X_NUMBER}@127.0.0.1:5060>\r\n"
        "Call-ID: 13800138000-1@127.0.0.1\r\n"
        "CSeq: 1 INVITE\r\n"
        'Contact: "+86 138 0013 8000" <sip:+8613800138000@127.0.0.1:5070>\r\n'
        'P-Asserted-Identity: "Zhang" <sip:+8613800138000@127.0.0.1;user=phone>\r\n'
        "P-Asserted-Identity: <tel:+86-138-0013-8000>\r\n"
        "P-Preferred-Identity: <sip:008613800138000@127.0.0.1>\r\n"
        'Remote-Party-ID: "138 0013 8000" <sip:13800138000@127.0.0.1>;party=calling\r\n'
        "Diversion: <sip:13800138000@127.0.0.1>;reason=unconditional\r\n"
        "History-Info: <sip:13800138000@127.0.0.1?Reason=SIP%3Bcause%3D302>;index=1\r\n"
        "X-Caller: 138.0013.8000\r\n"
        "Subject: call back 0086 138 0013 8000\r\n"
        "User-Agent: softswitch 13800138000\r\n"
        "Privacy: none\r\n"
        "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REFER, 13800138000\r\n"
        "Supported: timer, 100rel, histinfo, replaces\r\n"
        "Session-Expires: 1800;refresher=uac;x=13800138000\r\n"
        "Min-SE: 90\r\n"
        "Accept: application/sdp, application/13800138000\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    request = parse(head.encode() + body)
    assert isinstance(request, Request)
    return request


B_HEADERS = (
    ("Contact", "<sip:13900139000@127.0.0.1:5080>"),
    ("P-Asserted-Identity", '"Li 139 0013 9000" <sip:+8613900139000@127.0.0.1>'),
    ("Remote-Party-ID", "<sip:13900139000@127.0.0.1>;party=called;screen=yes"),
    ("Server", "trunk for 0086-139-0013-9000"),
    ("X-Called", "(139) 0013 9000"),
    ("History-Info", "<sip:13900139000@127.0.0.1>;index=1"),
    ("Reply-To", "<sip:+8613900139000@127.0.0.1>"),
    ("Call-Info", "<http://example.com/13900139000.png>;purpose=icon"),
    ("Warning", '399 127.0.0.1 "139 0013 9000 answered"'),
    ("Organization", "13900139000 Ltd"),
    ("Supported", "timer, 100rel"),
    ("Session-Expires", "13900139000;refresher=uac"),
    ("Allow", "INVITE, ACK, BYE, CANCEL"),
)

#: What the proxy writes on a request it builds, plus design.md §4's allow-list.
B_INVITE_HEADERS = {
    "via",
    "max-forwards",
    "from",
    "to",
    "call-id",
    "cseq",
    "contact",
    "p-asserted-identity",
    "allow",
    "supported",
    "session-expires",
    "min-se",
    "accept",
    "content-type",
    "content-length",
}
RESPONSE_HEADERS = {
    "via",
    "from",
    "to",
    "call-id",
    "cseq",
    "contact",
    "allow",
    "supported",
    "session-expires",
    "min-se",
    "accept",
    "content-type",
    "content-length",
}


def assert_private(network: Network) -> None:
    """Judge every datagram the proxy wrote, with both judges."""
    a_guard, b_guard = guard_for(frozenset({A_NUMBER})), guard_for(frozenset({B_NUMBER}))
    to_b = network.sent("proxy", "callee")
    to_a = network.sent("proxy", "caller")
    assert to_b and to_a
    for datagram in to_b:
        assert a_guard.find(datagram.data) is None, datagram.data
        assert not digits_leak(datagram.data, A_NUMBER), datagram.data
    for datagram in to_a:
        assert b_guard.find(datagram.data) is None, datagram.data
        assert not digits_leak(datagram.data, B_NUMBER), datagram.data
    assert network.leaks == []
    assert all(d.blocked is None for d in network.log)


def private_call(*, trusted: bool = False) -> Network:
    settings: dict[str, object] = {}
    if trusted:
        settings["trusted"] = (ipaddress.ip_network("127.0.0.0/8"),)
    network, _ = bound_network(**settings)
    network.call(a_invite())
    network.advance(1)
    network.callee_responds(180, body=B_SDP_PRIVATE, headers=B_HEADERS, with_contact=False)
    network.advance(1)
    network.callee_responds(200, body=B_SDP_PRIVATE, headers=B_HEADERS, with_contact=False)
    return network


@pytest.mark.parametrize("trusted", [False, True])
def test_a_whole_call_leaks_nothing_either_way(trusted: bool) -> None:
    network = private_call(trusted=trusted)
    caller, callee = network.caller, network.callee
    assert caller.statuses() == [100, 180, 200]
    x_headers = (("X-Number", "13800138000"), ("Subject", "+86 138 0013 8000"))
    network.inject(
        "caller", caller.in_dialog("INVITE", network.now, body=A_SDP_PRIVATE, headers=x_headers)
    )
    network.inject(
        "callee",
        callee.in_dialog(
            "INFO",
            network.now,
            body=b"Signal=1\r\nDuration=100\r\n",
            content_type="application/dtmf-relay",
            headers=B_HEADERS[3:],
        ),
    )
    network.inject(
        "callee", callee.in_dialog("UPDATE", network.now, body=B_SDP_PRIVATE, headers=B_HEADERS[1:])
    )
    network.inject("caller", caller.in_dialog("BYE", network.now, headers=x_headers))
    network.settle()
    assert caller.statuses("INVITE")[-1] == 200 and caller.statuses("BYE") == [200]
    assert callee.statuses("INFO") == [200] and callee.statuses("UPDATE") == [200]
    assert_private(network)
    assert network.summary().caller == A_NUMBER
    network.assert_clean()


def test_b_leg_invite_is_built_not_copied() -> None:
    network = private_call()
    invite = network.callee.requests[0]
    assert invite.uri == "sip:13900139000@127.0.0.1:5080"
    assert invite.get("from").startswith(f"<sip:{X_NUMBER}@127.0.0.1>;tag=")  # type: ignore[union-attr]
    assert invite.from_.display_name is None
    assert invite.get("p-asserted-identity") == f"<sip:{X_NUMBER}@127.0.0.1>"
    assert invite.get("to") == "<sip:13900139000@127.0.0.1>"
    assert invite.call_id != "13800138000-1@127.0.0.1" and "138" not in invite.call_id
    assert invite.max_forwards == 68
    assert str(invite.contacts[0].uri) == f"sip:{X_NUMBER}@127.0.0.1:5060"
    assert {header.key for header in invite.headers} <= B_INVITE_HEADERS
    assert invite.get("supported") == "timer"
    assert invite.get("allow") == "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO"
    assert invite.get("session-expires") == "1800;refresher=uac"
    assert invite.get("accept") == "application/sdp"
    assert invite.get("min-se") == "90"
    assert invite.body.split(b"\r\n") == [
        b"v=0",
        b"o=- 2890844526 2890844526 IN IP4 127.0.0.1",
        b"s=-",
        b"c=IN IP4 127.0.0.1",
        b"t=0 0",
        b"m=audio 49170 RTP/AVP 8 101",
        b"a=rtpmap:8 PCMA/8000",
        b"a=rtpmap:101 telephone-event/8000",
        b"a=sendrecv",
        b"",
    ]
    assert invite.content_length == len(invite.body)


def test_responses_to_a_are_built_not_copied() -> None:
    network = private_call()
    for response in network.caller.responses[1:]:
        assert {header.key for header in response.headers} <= RESPONSE_HEADERS
        assert response.reason in ("Ringing", "OK")
        assert str(response.contacts[0].uri) == f"sip:{X_NUMBER}@127.0.0.1:5060"
        assert response.get("supported") == "timer"
        assert not response.has("session-expires")  # 13900139000 is no delta-seconds
        assert response.get("allow") == "INVITE, ACK, CANCEL, BYE"
        assert b"o=- 77 1 IN IP4 127.0.0.1" in response.body
    assert_private(network)


def test_every_number_form_is_caught_by_both_judges() -> None:
    """The judges themselves: each form of A's number is seen by both (no vacuous pass)."""
    guard = guard_for(frozenset({A_NUMBER}))
    for form in A_FORMS:
        data = f"X-Any: {form}\r\n".encode()
        assert guard.find(data) is not None, form
        assert digits_leak(data, A_NUMBER), form
    assert digits_leak(b"X: 138%2D0013%2D8000", A_NUMBER)
    assert not digits_leak(f"sip:{X_NUMBER}@127.0.0.1".encode(), A_NUMBER)


def test_a_leak_is_blocked_and_the_call_aborted(monkeypatch: pytest.MonkeyPatch) -> None:
    """If a rewrite ever let a number through, the guard stops it and ends the call."""
    monkeypatch.setitem(privacy.ALLOWED_HEADERS, "subject", lambda value: value)
    network, _ = bound_network()
    network.call(a_invite())
    assert [leak.first_line.split()[0] for leak in network.leaks] == ["INVITE"]
    assert network.callee.requests == []
    assert network.caller.statuses() == [100, 500]
    network.settle()
    summary = network.summary()
    assert (summary.disposition, summary.reject_reason) == ("failed", "leak_blocked")
    network.leaks.clear()
    network.assert_clean()


# -- unit: allowed_headers, relayed_body ---------------------------------------------


def _message(headers: str, body: bytes = b"") -> Response:
    text = (
        "SIP/2.0 200 OK\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n"
        "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>;tag=2\r\n"
        "Call-ID: c\r\nCSeq: 1 INVITE\r\n"
        f"{headers}Content-Length: {len(body)}\r\n\r\n"
    )
    response = parse(text.encode() + body)
    assert isinstance(response, Response)
    return response


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Allow: invite, bye, REFER, PRACK, 13800138000", ("Allow", "INVITE, BYE")),
        ("Allow: REFER", None),
        ("Supported: 100rel, Timer, histinfo", ("Supported", "timer")),
        ("Supported: 100rel", None),
        ("Accept: application/sdp;q=1, text/plain", ("Accept", "application/sdp")),
        ("Session-Expires: 1800", ("Session-Expires", "1800")),
        ("Session-Expires: 1800 ; Refresher=UAS", ("Session-Expires", "1800;refresher=uas")),
        ("Session-Expires: 1800;refresher=13800138000", ("Session-Expires", "1800")),
        ("Session-Expires: 13800138000", None),
        ("x: 90", ("Session-Expires", "90")),  # the compact form (RFC 4028 §4)
        ("Min-SE: 90;foo=13800138000", ("Min-SE", "90")),
        ("Min-SE: 1380013", None),
        ("Require: timer", None),
        ("P-Asserted-Identity: <sip:13800138000@h>", None),
        ("Subject: 13800138000", None),
        ("X-Anything: 1", None),
    ],
)
def test_allowed_headers(header: str, expected: tuple[str, str] | None) -> None:
    result = allowed_headers(_message(header + "\r\n"))
    assert result == (() if expected is None else (expected,))


def test_allowed_headers_keep_order_and_drop_identity() -> None:
    request = a_invite()
    names = [name for name, _ in allowed_headers(request)]
    assert names == ["Allow", "Supported", "Session-Expires", "Min-SE", "Accept"]


def test_relayed_body_sdp_rewritten() -> None:
    body, content_type = relayed_body(
        _message("Content-Type: application/SDP; x=1\r\n", A_SDP_PRIVATE)
    )
    assert content_type == "application/sdp"
    assert not digits_leak(body, A_NUMBER)
    assert body.startswith(b"v=0\r\no=- 2890844526")


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("text/plain", b"13800138000", (b"", None)),
        ("application/isup", b"\x01\x02", (b"", None)),
        (
            "application/dtmf-relay",
            b"Signal=#\r\nDuration=250\r\n",
            (b"Signal=#\r\nDuration=250\r\n", "application/dtmf-relay"),
        ),
        (
            "application/dtmf-relay",
            b"Signal=5\r\nCaller=13800138000\r\n",
            (b"Signal=5\r\n", "application/dtmf-relay"),
        ),
        ("application/dtmf-relay", b"Signal=13800138000\r\n", (b"", None)),
        ("application/dtmf", b"7", (b"7", "application/dtmf")),
        ("application/dtmf", b"13800138000", (b"", None)),
    ],
)
def test_relayed_body_types(
    content_type: str, body: bytes, expected: tuple[bytes, str | None]
) -> None:
    assert relayed_body(_message(f"Content-Type: {content_type}\r\n", body)) == expected


def test_relayed_body_without_body_or_type() -> None:
    assert relayed_body(_message("")) == (b"", None)
    assert relayed_body(_message("", b"v=0\r\n")) == (b"", None)


def test_sip_i_multipart_crosses_as_its_sdp_alone() -> None:
    isup = b"\x01\x00\x49\x00\x00\x03\x02\x00\x07\x04\x10\x00\x83\x10\x83\x08\x00"
    body = (
        b"--unique-boundary-1\r\n"
        b"Content-Type: application/sdp\r\n\r\n" + A_SDP_PRIVATE + b"\r\n--unique-boundary-1\r\n"
        b"Content-Type: application/ISUP;version=itu-t92+\r\n"
        b"Content-Disposition: signal;handling=optional\r\n\r\n"
        + isup
        + b"13800138000\r\n--unique-boundary-1--\r\n"
    )
    content_type = 'Content-Type: multipart/mixed;boundary="unique-boundary-1"\r\n'
    relayed, relayed_type = relayed_body(_message(content_type, body))
    assert relayed_type == "application/sdp"
    assert relayed.startswith(b"v=0\r\no=- ") and b"m=audio 49170" in relayed
    assert not digits_leak(relayed, A_NUMBER)
    no_sdp = body.replace(b"application/sdp", b"text/plain")
    assert relayed_body(_message(content_type, no_sdp)) == (b"", None)
