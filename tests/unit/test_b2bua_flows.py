"""Multi-party call flows through the B2BUA core, in memory, on a fake clock.

Every flow asserts what each side saw, the call record summary, and that the proxy is left
with no call, dialog, transaction, retransmission or timer once 64*T1 has passed.
"""

from __future__ import annotations

import ipaddress

import pytest

from proxy.b2bua.events import CallSummary
from proxy.sip.message import Response, parse
from tests.unit.b2bua_harness import (
    A_NUMBER,
    A_SDP,
    B_NUMBER,
    B_SDP,
    CALLER,
    START,
    T1,
    X_NUMBER,
    Datagram,
    Network,
    bound_network,
    caller_invite,
    default_settings,
    sdp_lines,
)


def answered(network: Network, *, ring_after: float = 1.0, answer_after: float = 2.0) -> None:
    """A calls X; B rings after ``ring_after`` s and answers ``answer_after`` s later."""
    network.call()
    network.advance(ring_after)
    network.callee_responds(180)
    network.advance(answer_after)
    network.callee_responds(200, body=B_SDP)


def settle_and_check(network: Network, *, callee_idle: bool = True) -> CallSummary:
    network.settle()
    network.assert_clean()
    assert network.caller.is_idle
    assert network.callee.is_idle or not callee_idle
    return network.summary()


def acks_to_callee(network: Network) -> list[Datagram]:
    """ACKs the callee got, including those its transactions absorbed (non-2xx)."""
    return [d for d in network.delivered("proxy", "callee") if d.is_request("ACK")]


def check_summary(
    summary: CallSummary,
    *,
    disposition: str,
    status: int,
    released_by: str | None,
    reject_reason: str | None = None,
    invite_at: float = START,
) -> None:
    assert (summary.disposition, summary.sip_status) == (disposition, status)
    assert summary.released_by == released_by
    assert summary.reject_reason == reject_reason
    assert summary.invite_at == invite_at
    assert summary.end_at >= summary.invite_at


def to_caller(network: Network) -> list[str]:
    return [d.first_line for d in network.delivered("proxy", "caller")]


# -- answered calls ------------------------------------------------------------------


def test_answered_call_caller_hangs_up() -> None:
    network, binding = bound_network()
    answered(network)
    network.advance(10)
    network.inject("caller", network.caller.in_dialog("BYE", network.now))

    assert network.caller.statuses() == [100, 180, 200]
    assert network.caller.statuses("BYE") == [200]
    assert [r.method for r in network.callee.requests] == ["INVITE", "ACK", "BYE"]
    assert network.callee.received("ACK")[0].cseq.number == 1
    summary = settle_and_check(network)
    check_summary(summary, disposition="answered", status=200, released_by="caller")
    assert (summary.ring_at, summary.answer_at, summary.end_at) == (
        START + 1,
        START + 3,
        START + 13,
    )
    assert summary.binding_id == binding.id
    assert (summary.caller, summary.callee, summary.x) == (A_NUMBER, B_NUMBER, X_NUMBER)
    assert summary.direction == "a_to_b"
    assert summary.a_call_id == "a-call-1@127.0.0.1"
    assert summary.b_call_id == network.callee.requests[0].call_id != summary.a_call_id


def test_answered_call_callee_hangs_up() -> None:
    network, _ = bound_network()
    answered(network)
    network.advance(5)
    network.inject("callee", network.callee.in_dialog("BYE", network.now))

    assert network.callee.statuses("BYE") == [200]
    byes = network.caller.received("BYE")
    assert len(byes) == 1
    bye = byes[0]
    # RFC 3261 §12.2.1.1: the BYE to A is in A's dialog, with A's tags swapped.
    assert bye.call_id == "a-call-1@127.0.0.1"
    assert bye.to.tag == "ftag-a"
    assert bye.from_.tag == network.caller.dialog.remote_tag  # type: ignore[union-attr]
    assert bye.uri == "sip:13800138000@127.0.0.1:5070"
    summary = settle_and_check(network)
    check_summary(summary, disposition="answered", status=200, released_by="callee")
    assert summary.end_at == START + 8


def test_reverse_call_b_reaches_a() -> None:
    network, binding = bound_network()
    network.call(caller_invite(caller="13900139000"))
    invite = network.callee.requests[0]
    assert invite.uri == "sip:13800138000@127.0.0.1:5080"
    assert str(invite.to.uri) == "sip:13800138000@127.0.0.1"
    assert str(invite.from_.uri) == f"sip:{X_NUMBER}@127.0.0.1"
    network.callee_responds(200, body=B_SDP)
    network.inject("caller", network.caller.in_dialog("BYE", network.now))
    summary = settle_and_check(network)
    check_summary(summary, disposition="answered", status=200, released_by="caller")
    assert (summary.caller, summary.callee, summary.direction) == (B_NUMBER, A_NUMBER, "b_to_a")
    assert summary.binding_id == binding.id


def test_100_trying_at_once_even_while_the_lookup_is_pending() -> None:
    network, _ = bound_network()
    network.proxy.hold_lookups = True
    network.call()
    assert to_caller(network) == ["SIP/2.0 100 Trying"]
    assert network.callee.requests == []
    # No retransmission of the INVITE: the 100 stopped Timer A (RFC 3261 §17.1.1.2).
    network.advance(5 * T1)
    assert len(network.sent("caller", "proxy")) == 1
    network.release_lookups()
    assert len(network.callee.requests) == 1


def test_183_relayed_with_rewritten_sdp() -> None:
    network, _ = bound_network()
    network.call()
    network.callee_responds(183, body=B_SDP)
    progress = network.caller.responses[-1]
    assert progress.status == 183
    assert progress.to.tag is not None
    assert progress.get("content-type") == "application/sdp"
    lines = sdp_lines(progress.body)
    assert b"o=- 1234 1 IN IP4 127.0.0.1" in lines
    assert b"s=-" in lines
    assert b"m=audio 30000 RTP/AVP 8 101" in lines
    assert str(progress.contacts[0].uri) == f"sip:{X_NUMBER}@127.0.0.1:5060"
    network.callee_responds(486)
    summary = settle_and_check(network)
    check_summary(summary, disposition="busy", status=486, released_by="callee")
    assert summary.ring_at == START


def test_late_offer_answer_in_ack_reaches_b() -> None:
    network, _ = bound_network()
    network.caller.ack_body = A_SDP
    network.call(caller_invite(body=b""))
    assert network.callee.requests[0].body == b""
    network.callee_responds(200, body=B_SDP)
    offer = network.caller.responses[-1]
    assert offer.status == 200 and b"m=audio 30000" in offer.body
    acks = network.callee.received("ACK")
    assert len(acks) == 1
    assert acks[0].get("content-type") == "application/sdp"
    assert b"m=audio 49170 RTP/AVP 8 101" in acks[0].body
    assert b"o=- 2890844526 2890844526 IN IP4 127.0.0.1" in sdp_lines(acks[0].body)
    network.inject("callee", network.callee.in_dialog("BYE", network.now))
    check_summary(
        settle_and_check(network), disposition="answered", status=200, released_by="callee"
    )


def test_2xx_retransmitted_until_ack_and_ack_forwarded_once() -> None:
    network, _ = bound_network()
    network.drop_all(lambda d: d.source == "caller" and d.is_request("ACK") and d.at < START + 1.9)
    answered(network, ring_after=0, answer_after=0)
    assert network.callee.received("ACK") == []
    network.advance(4)
    oks = [d for d in network.sent("proxy", "caller") if d.is_response(200, "INVITE")]
    # Sent at 0, then retransmitted at T1, 2*T1, 4*T1 (RFC 3261 §13.3.1.4); ACKed at 3.5.
    assert [round(d.at - START, 3) for d in oks] == [0, 0.5, 1.5, 3.5]
    assert len(network.callee.received("ACK")) == 1
    network.advance(10)
    assert len(network.sent("proxy", "caller")) == 6  # 100, 180 and the four 200s
    network.inject("caller", network.caller.in_dialog("BYE", network.now))
    check_summary(
        settle_and_check(network), disposition="answered", status=200, released_by="caller"
    )


def test_a_never_acks_the_2xx_call_ended_with_bye_both_ways() -> None:
    network, _ = bound_network()
    network.drop_all(lambda d: d.source == "caller" and d.is_request("ACK"))
    answered(network)
    network.advance(64 * T1 + 1)
    assert len(network.caller.received("BYE")) == 1
    assert len(network.callee.received("ACK")) == 1
    assert len(network.callee.received("BYE")) == 1
    summary = settle_and_check(network)
    check_summary(summary, disposition="answered", status=200, released_by="proxy")


# -- cancelling ------------------------------------------------------------------------


def test_cancel_from_a_while_b_rings() -> None:
    network, _ = bound_network()
    network.call()
    network.callee_responds(180)
    network.advance(2)
    network.inject("caller", network.caller.cancel(network.now))

    assert network.caller.statuses("CANCEL") == [200]
    assert network.caller.statuses() == [100, 180, 487]
    assert [r.method for r in network.callee.requests] == ["INVITE", "CANCEL"]
    (ack,) = [d.message for d in acks_to_callee(network)]
    assert ack.cseq.number == 1 and ack.to.tag == network.callee.dialog.local_tag  # type: ignore[union-attr]
    summary = settle_and_check(network)
    check_summary(summary, disposition="cancelled", status=487, released_by="caller")
    assert summary.ring_at == START


def test_cancel_before_any_provisional_waits_for_one() -> None:
    network, _ = bound_network()
    network.call()
    network.advance(1)
    network.inject("caller", network.caller.cancel(network.now))
    assert network.caller.statuses() == [100, 487]
    assert network.callee.received("CANCEL") == []  # RFC 3261 §9.1
    network.advance(1)
    network.callee_responds(180)
    assert len(network.callee.received("CANCEL")) == 1
    assert network.callee.statuses("INVITE") == []
    assert [d.message.cseq.number for d in acks_to_callee(network)] == [1]
    assert network.caller.statuses() == [100, 487]  # the late 180 is not relayed
    summary = settle_and_check(network)
    check_summary(summary, disposition="cancelled", status=487, released_by="caller")


def test_cancel_before_any_provisional_and_b_stays_silent() -> None:
    network, _ = bound_network()
    network.callee.auto_reply["CANCEL"] = None
    network.call()
    network.inject("caller", network.caller.cancel(network.now))
    network.settle()
    assert network.callee.received("CANCEL") == []
    check_summary(network.summary(), disposition="cancelled", status=487, released_by="caller")
    network.assert_clean()


def test_cancel_before_the_binding_lookup_answered() -> None:
    network, _ = bound_network()
    network.proxy.hold_lookups = True
    network.call()
    network.inject("caller", network.caller.cancel(network.now))
    network.release_lookups()
    assert network.caller.statuses() == [100, 487]
    assert network.callee.requests == []
    summary = settle_and_check(network)
    check_summary(summary, disposition="cancelled", status=487, released_by="caller")


def test_cancel_racing_b_200() -> None:
    network, _ = bound_network()
    network.call()
    network.callee_responds(180)
    network.advance(1)
    # A's CANCEL reaches the proxy just before B's 200 does.
    cancel = network.caller.cancel(network.now)
    ok = network.callee.respond(None, 200, now=network.now, body=B_SDP)
    network._queue += [("caller", s) for s in cancel] + [("callee", s) for s in ok]
    network.run()

    assert network.caller.statuses() == [100, 180, 487]
    methods = [r.method for r in network.callee.requests]
    assert methods == ["INVITE", "CANCEL", "ACK", "BYE"]
    assert network.callee.statuses("INVITE") == []
    summary = settle_and_check(network)
    check_summary(summary, disposition="cancelled", status=487, released_by="caller")
    assert summary.answer_at is None


def test_bye_from_a_on_the_early_dialog_cancels_b() -> None:
    network, _ = bound_network()
    network.call()
    network.callee_responds(180)
    # The caller learns the early dialog from the 180 (RFC 3261 §12.1.2) and hangs up on it.
    ringing = network.caller.responses[-1]
    network.caller._learn_dialog(network.caller.invite, ringing)  # type: ignore[arg-type]
    network.inject("caller", network.caller.in_dialog("BYE", network.now))
    assert network.caller.statuses("BYE") == [200]
    assert network.caller.statuses() == [100, 180, 487]
    assert len(network.callee.received("CANCEL")) == 1
    summary = settle_and_check(network)
    check_summary(summary, disposition="cancelled", status=487, released_by="caller")


# -- B refuses or never answers ----------------------------------------------------------


def test_busy_486_relayed_and_acked() -> None:
    network, _ = bound_network()
    network.call()
    network.callee_responds(486)
    assert network.caller.statuses() == [100, 486]
    busy = network.caller.responses[-1]
    assert busy.reason == "Busy Here" and busy.to.tag is not None
    assert [r.method for r in network.callee.requests] == ["INVITE"]
    assert len(acks_to_callee(network)) == 1
    check_summary(settle_and_check(network), disposition="busy", status=486, released_by="callee")


def test_3xx_becomes_480_without_its_contact() -> None:
    network, _ = bound_network()
    network.call()
    network.callee_responds(302, headers=(("Contact", "<sip:13900139001@127.0.0.1>"),))
    assert network.caller.statuses() == [100, 480]
    final = network.caller.responses[-1]
    assert not final.has("contact")
    summary = settle_and_check(network)
    check_summary(summary, disposition="no_answer", status=480, released_by="callee")


def test_b_leg_timeout_gives_408() -> None:
    network, _ = bound_network()
    network.call()
    network.advance(64 * T1 + 0.1)
    invites = [d for d in network.sent("proxy", "callee") if d.is_request("INVITE")]
    assert len(invites) == 7  # Timer A: 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s
    assert network.caller.statuses() == [100, 408]
    summary = settle_and_check(network, callee_idle=False)
    check_summary(summary, disposition="failed", status=408, released_by="proxy")
    assert summary.end_at == START + 64 * T1


def test_ring_timeout_cancels_b_and_gives_480() -> None:
    network, _ = bound_network()
    network.call()
    network.callee_responds(180)
    network.advance(59.9)
    assert network.callee.received("CANCEL") == []
    network.advance(0.2)
    assert len(network.callee.received("CANCEL")) == 1
    assert network.caller.statuses() == [100, 180, 480]
    summary = settle_and_check(network)
    check_summary(summary, disposition="no_answer", status=480, released_by="proxy")
    assert summary.end_at == START + 60


@pytest.mark.parametrize(
    ("binding_args", "caller", "status", "reason"),
    [
        ({}, "13700137000", 404, "no_binding"),
        ({"expires_at": START - 1}, "13800138000", 404, "expired"),
        ({"direction": "a_to_b"}, "13900139000", 403, "direction"),
    ],
)
def test_rejections(binding_args: dict[str, object], caller: str, status: int, reason: str) -> None:
    if "expires_at" in binding_args:
        network, _ = bound_network(expires_at=START - 50)
    else:
        network, _ = bound_network(**binding_args)  # type: ignore[arg-type]
    network.call(caller_invite(caller=caller))
    assert network.caller.statuses() == [100, status]
    final = network.caller.responses[-1]
    assert final.to.tag is not None  # RFC 3261 §8.2.6.2
    assert network.callee.requests == []
    summary = settle_and_check(network)
    check_summary(
        summary, disposition="rejected", status=status, released_by=None, reject_reason=reason
    )
    # The caller's ACK for the error was absorbed by the proxy's transaction.
    assert any(d.is_request("ACK") for d in network.sent("caller", "proxy"))


def test_no_binding_at_all_for_x() -> None:
    network = Network()
    network.call()
    assert network.caller.statuses() == [100, 404]
    summary = settle_and_check(network)
    assert (summary.reject_reason, summary.binding_id, summary.x) == ("no_binding", None, X_NUMBER)


# -- requests inside the dialog ----------------------------------------------------------


def test_reinvite_update_info_relayed_both_ways() -> None:
    network, _ = bound_network()
    answered(network)
    caller, callee = network.caller, network.callee

    network.inject("caller", caller.in_dialog("INVITE", network.now, body=A_SDP))
    assert caller.statuses()[-1] == 200
    assert b"m=audio 30000" in caller.responses[-1].body
    reinvites = callee.received("INVITE")
    assert len(reinvites) == 2 and reinvites[1].to.tag == callee.dialog.local_tag  # type: ignore[union-attr]
    assert b"m=audio 49170" in reinvites[1].body
    acks = callee.received("ACK")
    assert [ack.cseq.number for ack in acks] == [1, reinvites[1].cseq.number]

    network.inject("callee", callee.in_dialog("INVITE", network.now, body=B_SDP))
    assert callee.statuses()[-1] == 200
    assert len(caller.received("INVITE")) == 1
    assert len(caller.received("ACK")) == 1
    # A answered B's offer: the harness answers a re-INVITE with B_SDP, rewritten on the way.
    assert callee.responses[-1].body.startswith(b"v=0\r\no=- 1234 1 ")

    dtmf = b"Signal=5\r\nDuration=160\r\n"
    network.inject(
        "caller",
        caller.in_dialog("INFO", network.now, body=dtmf, content_type="application/dtmf-relay"),
    )
    assert caller.statuses("INFO") == [200]
    assert callee.received("INFO")[0].body == dtmf
    network.inject(
        "callee",
        callee.in_dialog("INFO", network.now, body=dtmf, content_type="application/dtmf-relay"),
    )
    assert callee.statuses("INFO") == [200]
    assert caller.received("INFO")[0].body == dtmf

    network.inject("caller", caller.in_dialog("UPDATE", network.now, body=A_SDP))
    assert caller.statuses("UPDATE") == [200]
    network.inject("callee", callee.in_dialog("UPDATE", network.now, body=B_SDP))
    assert callee.statuses("UPDATE") == [200]
    assert len(caller.received("UPDATE")) == len(callee.received("UPDATE")) == 1

    network.inject("callee", callee.in_dialog("BYE", network.now))
    check_summary(
        settle_and_check(network), disposition="answered", status=200, released_by="callee"
    )


def test_relayed_error_and_timeout() -> None:
    network, _ = bound_network()
    answered(network)
    network.callee.auto_reply["UPDATE"] = 488
    network.inject("caller", network.caller.in_dialog("UPDATE", network.now, body=A_SDP))
    assert network.caller.statuses("UPDATE") == [488]
    # B never answers an INFO: Timer F on the B leg gives A a 408.
    network.callee.auto_reply["INFO"] = None
    network.drop_all(lambda d: d.source == "proxy" and d.is_request("INFO"))
    network.inject("caller", network.caller.in_dialog("INFO", network.now))
    network.advance(64 * T1 + 1)
    # Timer F runs out on both sides at once; the proxy still answers its side.
    assert network.caller.timeouts == ["INFO"]
    answers = [d for d in network.sent("proxy", "caller") if d.message.cseq.method == "INFO"]
    assert [d.first_line for d in answers] == ["SIP/2.0 408 Request Timeout"]
    network.inject("caller", network.caller.in_dialog("BYE", network.now))
    check_summary(
        settle_and_check(network), disposition="answered", status=200, released_by="caller"
    )


# -- requests the proxy answers itself ---------------------------------------------------


def _request(
    method: str, *, to_tag: str | None = None, extra: str = "", uri: str | None = None
) -> bytes:
    tag = f";tag={to_tag}" if to_tag else ""
    text = (
        f"{method} {uri or 'sip:' + X_NUMBER + '@127.0.0.1:5060'} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKq1;rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:13800138000@127.0.0.1:5070>;tag=f1\r\n"
        f"To: <sip:{X_NUMBER}@127.0.0.1:5060>{tag}\r\n"
        "Call-ID: q1@127.0.0.1\r\n"
        f"CSeq: 7 {method}\r\n"
        "Contact: <sip:13800138000@127.0.0.1:5070>\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    )
    return text.encode()


def _ask(network: Network, data: bytes) -> Response:
    outputs = network.core.receive(data, CALLER, network.now)
    sends = network.proxy.process(outputs, network.now)
    assert len(sends) == 1 and sends[0].destination == CALLER
    response = parse(sends[0].data)
    assert isinstance(response, Response)
    return response


def test_unknown_dialog_gets_481() -> None:
    network = Network()
    assert _ask(network, _request("BYE", to_tag="nope")).status == 481
    assert _ask(network, _request("INFO", to_tag="nope").replace(b"q1@", b"q2@")).status == 481
    network.settle()
    network.assert_clean()


def test_options_to_the_proxy() -> None:
    network = Network()
    response = _ask(network, _request("OPTIONS"))
    assert response.status == 200
    assert "INVITE" in response.get("allow")  # type: ignore[operator]
    assert response.to.tag is not None
    network.settle()
    network.assert_clean()


ALLOWED = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO"
_PLAIN_BODY = (
    b"Content-Length: 0\r\n\r\n",
    b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
)


@pytest.mark.parametrize(
    ("data", "status", "header", "x"),
    [
        (_request("REGISTER"), 405, ("allow", ALLOWED), None),
        (_request("FOO"), 501, None, None),
        (
            _request("INVITE", extra="Require: foo, timer\r\n"), 420, ("unsupported", "foo"),
            X_NUMBER,
        ),
        (_request("INVITE").replace(b"Max-Forwards: 70", b"Max-Forwards: 0"), 483, None, X_NUMBER),
        (_request("INVITE", uri="urn:service:sos"), 416, None, ""),
        (_request("INVITE").replace(*_PLAIN_BODY), 415, ("accept", "application/sdp"), X_NUMBER),
    ],
)  # fmt: skip
def test_requests_refused_by_the_proxy(
    data: bytes, status: int, header: tuple[str, str] | None, x: str | None
) -> None:
    """``x`` None: not a call attempt, no record; else the record of the refused INVITE,
    with X and the caller when the Request-URI names a privacy number ("" when not)."""
    network = Network()
    response = _ask(network, data)
    assert response.status == status
    assert response.to.tag is not None
    if header is not None:
        assert response.get(header[0]) == header[1]
    assert _ask(network, data).status == status  # a retransmission: answered again
    network.settle()
    network.assert_clean()
    if x is None:
        assert network.finished == []
        return
    summary = network.summary()  # one record, the retransmission made none
    check_summary(summary, disposition="failed", status=status, released_by="proxy")
    assert (summary.x, summary.caller) == ((x, A_NUMBER) if x else (None, None))
    assert summary.a_call_id == "q1@127.0.0.1" and summary.binding_id is None


def test_a_refused_invite_with_an_unreadable_identity_is_answered_and_recorded() -> None:
    """From a trusted peer the caller is read from P-Asserted-Identity (RFC 3325); one that
    does not parse leaves the record without a caller, not the INVITE without its 483."""
    trusted = (ipaddress.ip_network("127.0.0.0/8"),)
    network = Network(settings=default_settings(trusted=trusted))
    data = _request("INVITE", extra="P-Asserted-Identity: <sip:1380013\r\n").replace(
        b"Max-Forwards: 70", b"Max-Forwards: 0"
    )
    assert _ask(network, data).status == 483
    network.settle()
    summary = network.summary()
    check_summary(summary, disposition="failed", status=483, released_by="proxy")
    assert (summary.x, summary.caller) == (None, None)


def test_an_invite_after_shutdown_gets_503_and_a_record() -> None:
    network = Network()
    network.inject("proxy", network.proxy.process(network.core.shutdown(network.now), network.now))
    response = _ask(network, _request("INVITE"))
    assert (response.status, response.reason) == (503, "Shutting Down")
    network.settle()
    network.assert_clean()
    summary = network.summary()
    check_summary(summary, disposition="failed", status=503, released_by="proxy")
    assert (summary.x, summary.caller) == (X_NUMBER, A_NUMBER)


def test_malformed_request_gets_400_from_error_reply() -> None:
    network = Network()
    data = _request("INVITE").replace(b"CSeq: 7 INVITE", b"CSeq: seven INVITE")
    sends = network.proxy.receive(data, CALLER, network.now)
    assert len(sends) == 1
    response = parse(sends[0].data)
    assert isinstance(response, Response) and response.status == 400


# -- the proxy ends calls --------------------------------------------------------------


def test_shutdown_byes_an_answered_call() -> None:
    network, _ = bound_network()
    answered(network)
    network.inject("proxy", network.proxy.process(network.core.shutdown(network.now), network.now))
    assert not network.core.accepting
    assert len(network.caller.received("BYE")) == 1
    assert len(network.callee.received("BYE")) == 1
    check_summary(
        settle_and_check(network), disposition="answered", status=200, released_by="proxy"
    )


def test_shutdown_fails_an_unanswered_call_and_refuses_new_ones() -> None:
    network, _ = bound_network()
    network.call()
    network.callee_responds(180)
    network.inject("proxy", network.proxy.process(network.core.shutdown(network.now), network.now))
    assert network.caller.statuses() == [100, 180, 503]
    assert len(network.callee.received("CANCEL")) == 1
    summary = settle_and_check(network)
    check_summary(summary, disposition="failed", status=503, released_by="proxy")
    network.finished.clear()
    network.call(caller_invite(call_id="a-call-2", branch="z9hG4bKa2"))
    assert network.caller.statuses()[-1] == 503
    network.settle()
    network.assert_clean()


def test_abort_call_for_a_leak() -> None:
    network, _ = bound_network()
    answered(network)
    outputs = network.core.abort_call("a-call-1@127.0.0.1", network.now, reason="leak")
    network.inject("proxy", network.proxy.process(outputs, network.now))
    assert len(network.caller.received("BYE")) == 1
    assert len(network.callee.received("BYE")) == 1
    summary = settle_and_check(network)
    check_summary(
        summary,
        disposition="answered",
        status=200,
        released_by="proxy",
        reject_reason="leak_blocked",
    )


def test_abort_call_by_b_leg_call_id_while_ringing() -> None:
    network, _ = bound_network()
    network.call()
    network.callee_responds(180)
    b_call_id = network.callee.requests[0].call_id
    outputs = network.core.abort_call(b_call_id, network.now, reason="leak")
    network.inject("proxy", network.proxy.process(outputs, network.now))
    assert network.caller.statuses()[-1] == 500
    assert len(network.callee.received("CANCEL")) == 1
    summary = settle_and_check(network)
    check_summary(
        summary, disposition="failed", status=500, released_by="proxy", reject_reason="leak_blocked"
    )


# -- lost messages recovered by the timers -----------------------------------------------


def _is(source: str, first: str, method: str | None = None) -> object:
    def match(datagram: Datagram) -> bool:
        if datagram.source != source:
            return False
        if first.isdigit():
            return datagram.is_response(int(first), method)
        return datagram.is_request(first)

    return match


LOSSES = {
    "INVITE A->proxy": ("caller", "INVITE"),
    "100 proxy->A": ("proxy", "100"),
    "INVITE proxy->B": ("proxy", "INVITE"),
    "180 B->proxy": ("callee", "180"),
    "180 proxy->A": ("proxy", "180"),
    "200 B->proxy": ("callee", "200"),
    "200 proxy->A": ("proxy", "200"),
    "ACK A->proxy": ("caller", "ACK"),
    "ACK proxy->B": ("proxy", "ACK"),
    "BYE A->proxy": ("caller", "BYE"),
    "BYE proxy->B": ("proxy", "BYE"),
    "200 BYE B->proxy": ("callee", "200/BYE"),
    "200 BYE proxy->A": ("proxy", "200/BYE"),
}


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_one_lost_message_is_recovered(loss: str) -> None:
    source, what = LOSSES[loss]
    first, _, method = what.partition("/")
    method = method or ("INVITE" if first.isdigit() else "")
    predicate = _is(source, first, method or None)
    network, _ = bound_network()
    network.drop_once(predicate)  # type: ignore[arg-type]
    network.call()
    network.advance(2)
    network.callee_responds(180)
    network.advance(2)
    network.callee_responds(200, body=B_SDP)
    network.advance(5)
    network.inject("caller", network.caller.in_dialog("BYE", network.now))
    network.advance(5)

    assert sum(d.dropped for d in network.log) == 1
    assert network.caller.statuses()[-1] == 200
    assert 200 in network.caller.statuses()
    assert network.caller.statuses("BYE") == [200]
    callee_methods = [r.method for r in network.callee.requests]
    assert callee_methods.count("INVITE") == 1
    assert callee_methods.count("BYE") == 1
    assert 1 <= callee_methods.count("ACK") <= 2
    summary = settle_and_check(network)
    check_summary(
        summary,
        disposition="answered",
        status=200,
        released_by="caller",
        invite_at=START + (T1 if loss == "INVITE A->proxy" else 0),
    )
    assert summary.answer_at == START + 4 + (T1 if loss == "200 B->proxy" else 0)


# -- more edges ------------------------------------------------------------------------


def test_max_call_duration_ends_the_call() -> None:
    network, _ = bound_network(max_call_s=30)
    answered(network)
    network.advance(29.9)
    assert network.caller.received("BYE") == []
    network.advance(0.2)
    assert len(network.caller.received("BYE")) == 1
    assert len(network.callee.received("BYE")) == 1
    summary = settle_and_check(network)
    check_summary(summary, disposition="answered", status=200, released_by="proxy")
    assert summary.end_at - summary.answer_at == 30  # type: ignore[operator]


def test_record_route_of_a_copied_into_dialog_creating_responses() -> None:
    """RFC 3261 §12.1.1: A's proxies stay in A's route set; requests to A carry them."""
    network, _ = bound_network()
    record_route = "Record-Route: <sip:127.0.0.1:5070;lr>\n"
    network.call(caller_invite(extra=record_route))
    network.callee_responds(180)
    network.callee_responds(200, body=B_SDP)
    for response in network.caller.responses[1:]:
        assert response.get_all("record-route") == ["<sip:127.0.0.1:5070;lr>"]
    assert not any(r.has("record-route") for r in network.callee.requests)
    network.inject("callee", network.callee.in_dialog("BYE", network.now))
    bye = network.caller.received("BYE")[0]
    assert bye.get("route") == "<sip:127.0.0.1:5070;lr>"
    settle_and_check(network)


def test_call_ends_while_a_relay_is_pending_487_to_its_origin() -> None:
    network, _ = bound_network()
    answered(network)
    network.callee.auto_reply["INVITE"] = None
    network.inject("caller", network.caller.in_dialog("INVITE", network.now, body=A_SDP))
    assert len(network.callee.received("INVITE")) == 2
    network.inject("callee", network.callee.in_dialog("BYE", network.now))
    # RFC 3261 §15.1.2: the pending re-INVITE is answered 487 once the dialog ends.
    assert network.caller.statuses()[-1] == 487
    summary = settle_and_check(network, callee_idle=False)
    check_summary(summary, disposition="answered", status=200, released_by="callee")


def test_reinvite_ack_lost_2xx_retransmitted_and_b_acked_once() -> None:
    network, _ = bound_network()
    answered(network)
    network.drop_once(lambda d: d.source == "caller" and d.is_request("ACK"))
    network.inject("caller", network.caller.in_dialog("INVITE", network.now, body=A_SDP))
    reinvite_cseq = network.callee.received("INVITE")[1].cseq.number
    network.advance(10)
    acks = [d.message for d in network.delivered("proxy", "callee") if d.is_request("ACK")]
    assert [ack.cseq.number for ack in acks] == [1, reinvite_cseq]
    # B retransmitted its 2xx while A's ACK was lost; it was neither answered twice...
    assert network.caller.statuses().count(200) == 3  # initial 200, re-INVITE 200 + retransmit
    reinvite_oks = [d for d in network.sent("callee", "proxy") if d.is_response(200, "INVITE")]
    assert len(reinvite_oks) > 2
    network.inject("caller", network.caller.in_dialog("BYE", network.now))
    settle_and_check(network)


def test_b_hangs_up_before_a_acks() -> None:
    network, _ = bound_network()
    network.drop_all(lambda d: d.source == "caller" and d.is_request("ACK"))
    answered(network)
    network.inject("callee", network.callee.in_dialog("BYE", network.now))
    assert network.callee.statuses("BYE") == [200]
    assert len(network.caller.received("BYE")) == 1
    assert len(network.callee.received("ACK")) == 1  # B's 2xx is ACKed all the same
    # The 2xx to A is no longer retransmitted once the call is over.
    network.advance(5)
    oks = [d for d in network.sent("proxy", "caller") if d.is_response(200, "INVITE")]
    assert len(oks) == 1
    summary = settle_and_check(network)
    check_summary(summary, disposition="answered", status=200, released_by="callee")


def test_in_dialog_options_answered_by_the_proxy() -> None:
    network, _ = bound_network()
    answered(network)
    network.inject("caller", network.caller.in_dialog("OPTIONS", network.now))
    assert network.caller.statuses("OPTIONS") == [200]
    assert "INFO" in (network.caller.responses[-1].get("allow") or "")
    network.inject("callee", network.callee.in_dialog("MESSAGE", network.now))
    assert network.callee.statuses("MESSAGE") == [405]
    assert network.callee.responses[-1].get("allow") == network.core.settings.allow
    assert network.callee.received("OPTIONS") == []
    network.inject("caller", network.caller.in_dialog("BYE", network.now))
    settle_and_check(network)


CANCEL_LOSSES = {
    "CANCEL A->proxy": lambda d: d.source == "caller" and d.is_request("CANCEL"),
    "200 CANCEL proxy->A": lambda d: d.source == "proxy" and d.is_response(200, "CANCEL"),
    "487 proxy->A": lambda d: d.source == "proxy" and d.is_response(487),
    "ACK A->proxy": lambda d: d.source == "caller" and d.is_request("ACK"),
    "CANCEL proxy->B": lambda d: d.source == "proxy" and d.is_request("CANCEL"),
    "200 CANCEL B->proxy": lambda d: d.source == "callee" and d.is_response(200, "CANCEL"),
    "487 B->proxy": lambda d: d.source == "callee" and d.is_response(487),
    "ACK proxy->B": lambda d: d.source == "proxy" and d.is_request("ACK"),
}


@pytest.mark.parametrize("loss", sorted(CANCEL_LOSSES))
def test_cancel_flow_survives_one_loss(loss: str) -> None:
    network, _ = bound_network()
    network.drop_once(CANCEL_LOSSES[loss])
    network.call()
    network.callee_responds(180)
    network.advance(1)
    network.inject("caller", network.caller.cancel(network.now))
    network.advance(10)
    assert sum(d.dropped for d in network.log) == 1
    assert network.caller.statuses("CANCEL") == [200]
    assert network.caller.statuses()[-1] == 487
    assert len(network.callee.received("CANCEL")) == 1
    summary = settle_and_check(network)
    check_summary(summary, disposition="cancelled", status=487, released_by="caller")


@pytest.mark.parametrize("lost", ["404 proxy->A", "ACK A->proxy"])
def test_rejection_survives_one_loss(lost: str) -> None:
    network = Network()
    if lost.startswith("404"):
        network.drop_once(lambda d: d.is_response(404))
    else:
        network.drop_once(lambda d: d.is_request("ACK"))
    network.call()
    network.advance(5)
    assert network.caller.statuses() == [100, 404]
    summary = settle_and_check(network)
    assert (summary.disposition, summary.reject_reason) == ("rejected", "no_binding")


def test_reinvite_gets_100_trying_at_once() -> None:
    network, _ = bound_network()
    answered(network)
    network.callee.auto_reply["INVITE"] = None
    network.inject("caller", network.caller.in_dialog("INVITE", network.now, body=A_SDP))
    assert network.caller.statuses()[-1] == 100
    network.advance(3)
    reinvites = [d for d in network.sent("caller", "proxy") if d.is_request("INVITE")]
    assert len(reinvites) == 2  # the initial INVITE and the re-INVITE, no retransmission
    pending = network.callee.pending_server["INVITE"]
    network.inject("callee", network.callee.respond(pending, 200, now=network.now, body=B_SDP))
    assert network.caller.statuses()[-1] == 200
    network.inject("caller", network.caller.in_dialog("BYE", network.now))
    settle_and_check(network)


def test_merged_invite_forked_upstream_gets_482() -> None:
    """RFC 3261 §8.2.2.2: same Call-ID, From tag and CSeq on another branch."""
    network, _ = bound_network()
    network.call()
    network.call(caller_invite(branch="z9hG4bKother"))
    assert network.caller.statuses()[-1] == 482
    assert network.core.active_calls == 1
    assert len(network.callee.received("INVITE")) == 1
    network.callee_responds(486)
    settle_and_check(network)


def test_sip_i_invite_reaches_b_with_its_sdp_only() -> None:
    network, _ = bound_network()
    isup = b"\x01\x00\x49\x00\x00\x03\x02\x00\x07\x04\x10\x00\x83\x10\x83\x08\x00"
    body = (
        b"--b1\r\nContent-Type: application/sdp\r\n\r\n"
        + A_SDP
        + b"\r\n--b1\r\nContent-Type: application/isup;version=itu-t92+\r\n\r\n"
        + isup
        + b"\r\n--b1--\r\n"
    )
    request = caller_invite(body=body)
    request.set("content-type", "multipart/mixed;boundary=b1")
    network.call(request)
    invite = network.callee.requests[0]
    assert invite.get("content-type") == "application/sdp"
    assert b"m=audio 49170 RTP/AVP 8 101" in invite.body and isup not in invite.body
    network.callee_responds(486)
    settle_and_check(network)
