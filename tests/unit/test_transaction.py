"""The transaction state machines and matching (RFC 3261 §17, §9.2, §18.2.2; RFC 3581;
RFC 6026), driven with literal messages and a fake clock. Timer schedules are in
test_timers.py.
"""

from __future__ import annotations

import pytest

from proxy.sip.message import Request, Response, parse
from proxy.sip.transaction import (
    Address,
    RequestReceived,
    ResponseReceived,
    Send,
    ServerTransaction,
    TransactionLayer,
    TransactionTimeout,
    make_branch,
    response_destination,
)
from tests.fixtures import lf2crlf

CALLER = Address("udp", "192.0.2.10", 5060)
CALLEE = Address("udp", "198.51.100.20", 5060)
CALLER_TCP = Address("tcp", "192.0.2.10", 51544)
GUARD = frozenset({"13800138000", "13900139000"})

REASONS = {100: "Trying", 180: "Ringing", 200: "OK", 404: "Not Found", 486: "Busy Here"}


def make_request(
    method: str = "INVITE",
    branch: str | None = "z9hG4bKa1",
    *,
    via: str = "SIP/2.0/UDP 192.0.2.10:5060",
    uri: str = "sip:70012345678901@198.51.100.1",
    call_id: str = "call-1@192.0.2.10",
    cseq: int = 1,
    to_tag: str | None = None,
    extra: str = "",
) -> Request:
    branch_param = f";branch={branch}" if branch is not None else ""
    to = "<sip:70012345678901@198.51.100.1>" + (f";tag={to_tag}" if to_tag else "")
    message = parse(
        lf2crlf(
            f"""{method} {uri} SIP/2.0
Via: {via}{branch_param}
{extra}Max-Forwards: 70
From: "Caller" <sip:caller@192.0.2.10>;tag=f1
To: {to}
Call-ID: {call_id}
CSeq: {cseq} {method}
Contact: <sip:caller@192.0.2.10>
Content-Length: 0

"""
        )
    )
    assert isinstance(message, Request)
    return message


def make_response(request: Request, status: int, *, to_tag: str | None = "t1") -> Response:
    vias = "".join(f"Via: {value}\n" for value in request.get_all("via"))
    to = request.get("to") or ""
    if to_tag and request.to.tag is None:
        to += f";tag={to_tag}"
    message = parse(
        lf2crlf(
            f"""SIP/2.0 {status} {REASONS[status]}
{vias}From: {request.get("from")}
To: {to}
Call-ID: {request.call_id}
CSeq: {request.cseq}
Content-Length: 0

"""
        )
    )
    assert isinstance(message, Response)
    return message


def make_ack(
    invite: Request, *, branch: str | None = None, to_tag: str = "t1", via: str | None = None
) -> Request:
    """An ACK as a UAC writes it: same branch for a non-2xx (§17.1.1.3), a new one for a
    2xx (§13.2.2.4)."""
    top_via = via or (invite.get_all("via")[0])
    if branch is not None:
        top_via = top_via.replace(invite.top_via.branch or "", branch)
    message = parse(
        lf2crlf(
            f"""ACK {invite.uri} SIP/2.0
Via: {top_via}
Max-Forwards: 70
From: {invite.get("from")}
To: {invite.get("to")};tag={to_tag}
Call-ID: {invite.call_id}
CSeq: {invite.cseq.number} ACK
Content-Length: 0

"""
        )
    )
    assert isinstance(message, Request)
    return message


def receive_new(
    layer: TransactionLayer, request: Request, source: Address = CALLER, now: float = 0.0
) -> ServerTransaction:
    outputs = layer.receive(request, source, now)
    assert len(outputs) == 1
    event = outputs[0]
    assert isinstance(event, RequestReceived)
    assert event.request is request
    assert event.source == source
    assert event.transaction is not None
    return event.transaction


# -- INVITE server ----------------------------------------------------------------------


def test_invite_server_passes_the_invite_and_sends_no_100_by_itself() -> None:
    layer = TransactionLayer()
    invite = make_request()
    transaction = receive_new(layer, invite)
    assert transaction.is_invite
    assert transaction.state == "proceeding"
    assert transaction.request is invite
    assert transaction.last_response is None
    assert layer.next_deadline() is None
    # Retransmitted before the TU answered: nothing to resend, nothing for the TU.
    assert layer.receive(make_request(), CALLER, 0.1) == []
    assert layer.server_count == 1


def test_invite_retransmission_resends_the_last_provisional() -> None:
    layer = TransactionLayer()
    invite = make_request()
    transaction = receive_new(layer, invite)
    trying = layer.send_response(transaction, make_response(invite, 100, to_tag=None), 0.0)
    ringing = make_response(invite, 180)
    [sent] = layer.send_response(transaction, ringing, 0.1, guard=GUARD)
    assert sent == Send(ringing.to_bytes(), CALLER, GUARD)
    assert trying[0] != sent
    assert transaction.last_response is ringing
    assert layer.receive(make_request(), CALLER, 0.5) == [sent]


def test_invite_server_non_2xx_resends_on_retransmission_and_absorbs_acks() -> None:
    layer = TransactionLayer()
    invite = make_request()
    transaction = receive_new(layer, invite)
    [busy] = layer.send_response(transaction, make_response(invite, 486), 0.0, guard=GUARD)
    assert transaction.state == "completed"
    assert layer.receive(make_request(), CALLER, 0.2) == [busy]
    assert layer.receive(make_ack(invite), CALLER, 0.3) == []
    assert transaction.state == "confirmed"
    assert layer.receive(make_request(), CALLER, 0.4) == []
    assert layer.receive(make_ack(invite), CALLER, 0.4) == []
    assert layer.advance(10.0) == []
    assert layer.server_count == 0


def test_timer_g_retransmissions_carry_the_guard() -> None:
    layer = TransactionLayer()
    transaction = receive_new(layer, make_request())
    layer.send_response(transaction, make_response(transaction.request, 486), 0.0, guard=GUARD)
    resent = layer.advance(0.5)
    assert [type(o) for o in resent] == [Send]
    assert isinstance(resent[0], Send)
    assert resent[0].guard == GUARD


def test_invite_server_accepted_absorbs_invites_and_passes_acks_to_the_tu() -> None:
    layer = TransactionLayer()
    invite = make_request()
    transaction = receive_new(layer, invite)
    ok = make_response(invite, 200)
    [sent] = layer.send_response(transaction, ok, 0.0)
    assert transaction.state == "accepted"
    assert layer.receive(make_request(), CALLER, 0.5) == []
    # The TU retransmits the 2xx itself, through the transaction (RFC 6026 §8.7).
    assert layer.send_response(transaction, ok, 0.5) == [sent]
    ack_for_2xx = make_ack(invite, branch="z9hG4bKack2xx")
    assert layer.receive(ack_for_2xx, CALLER, 1.0) == [RequestReceived(ack_for_2xx, CALLER, None)]
    same_branch_ack = make_ack(invite)
    assert layer.receive(same_branch_ack, CALLER, 1.1) == [
        RequestReceived(same_branch_ack, CALLER, transaction)
    ]
    assert transaction.state == "accepted"


def test_unexpected_pairs_are_counted_and_dropped() -> None:
    layer = TransactionLayer()
    invite = make_request()
    transaction = receive_new(layer, invite)
    assert layer.receive(make_ack(invite), CALLER, 0.1) == []  # ACK before any final
    assert layer.anomalies == 1
    layer.send_response(transaction, make_response(invite, 486), 0.2)
    assert layer.send_response(transaction, make_response(invite, 200), 0.3) == []
    assert layer.anomalies == 2
    assert transaction.last_response is not None
    assert transaction.last_response.status == 486
    layer.advance(100.0)
    assert transaction.state == "terminated"
    assert layer.send_response(transaction, make_response(invite, 486), 101.0) == []
    assert layer.anomalies == 3


def test_timer_h_reports_the_server_transaction() -> None:
    layer = TransactionLayer()
    transaction = receive_new(layer, make_request())
    layer.send_response(transaction, make_response(transaction.request, 486), 0.0)
    outputs = layer.advance(32.0)
    assert outputs[-1] == TransactionTimeout(transaction)
    assert layer.server_count == 0


# -- non-INVITE server ------------------------------------------------------------------


def test_non_invite_server_absorbs_and_resends() -> None:
    layer = TransactionLayer()
    bye = make_request("BYE", to_tag="t1", cseq=2)
    transaction = receive_new(layer, bye)
    assert not transaction.is_invite
    assert transaction.state == "trying"
    assert layer.receive(make_request("BYE", to_tag="t1", cseq=2), CALLER, 0.1) == []
    [provisional] = layer.send_response(transaction, make_response(bye, 100), 0.2)
    assert transaction.state == "proceeding"
    assert layer.receive(make_request("BYE", to_tag="t1", cseq=2), CALLER, 0.3) == [provisional]
    [ok] = layer.send_response(transaction, make_response(bye, 200), 0.4, guard=GUARD)
    assert transaction.state == "completed"
    assert isinstance(ok, Send)
    assert ok.guard == GUARD
    assert layer.receive(make_request("BYE", to_tag="t1", cseq=2), CALLER, 1.0) == [ok]
    # Timer J (64*T1) is due at 32.4; like every wait timer it is rounded up to the next
    # quarter second so that the expiries of many calls share one wake-up.
    assert layer.advance(32.4) == []
    assert layer.server_count == 1
    assert layer.advance(32.5) == []
    assert layer.server_count == 0
    # After Timer J the same request is a new transaction again.
    assert len(layer.receive(make_request("BYE", to_tag="t1", cseq=2), CALLER, 33.0)) == 1


def test_same_branch_different_sent_by_or_method_are_different_transactions() -> None:
    layer = TransactionLayer()
    receive_new(layer, make_request())
    receive_new(layer, make_request(via="SIP/2.0/UDP 192.0.2.11:5060"))
    receive_new(layer, make_request(via="SIP/2.0/UDP 192.0.2.10:5070"))
    receive_new(layer, make_request("OPTIONS"))
    assert layer.server_count == 4
    assert layer.receive(make_request(via="SIP/2.0/UDP 192.0.2.10:5060"), CALLER, 1) == []
    # The sent-by host compares case-insensitively.
    receive_new(layer, make_request(branch="z9hG4bKh", via="SIP/2.0/UDP Client.Example:5060"))
    again = make_request(branch="z9hG4bKh", via="SIP/2.0/UDP client.example:5060")
    assert layer.receive(again, CALLER, 1) == []
    assert layer.server_count == 5


# -- CANCEL (RFC 3261 §9.2) ---------------------------------------------------------------


def test_cancel_is_its_own_transaction_and_finds_its_invite() -> None:
    layer = TransactionLayer()
    invite_transaction = receive_new(layer, make_request())
    cancel = make_request("CANCEL")
    cancel_transaction = receive_new(layer, cancel)
    assert cancel_transaction is not invite_transaction
    assert cancel_transaction.state == "trying"
    assert layer.cancel_target(cancel) is invite_transaction
    assert layer.server_count == 2
    layer.send_response(cancel_transaction, make_response(cancel, 200), 0.1)
    layer.send_response(invite_transaction, make_response(invite_transaction.request, 486), 0.1)
    assert layer.receive(make_ack(invite_transaction.request), CALLER, 0.2) == []


def test_cancel_without_its_invite_matches_nothing() -> None:
    layer = TransactionLayer()
    receive_new(layer, make_request())
    assert layer.cancel_target(make_request("CANCEL", branch="z9hG4bKother")) is None
    other_host = make_request("CANCEL", via="SIP/2.0/UDP 192.0.2.99:5060")
    assert layer.cancel_target(other_host) is None
    receive_new(layer, make_request("OPTIONS", branch="z9hG4bKopt"))
    assert layer.cancel_target(make_request("CANCEL", branch="z9hG4bKopt")) is None


def test_rfc2543_cancel_matches_by_dialog_fields_and_cseq_number() -> None:
    layer = TransactionLayer()
    invite_transaction = receive_new(layer, make_request(branch=None, cseq=7))
    assert layer.cancel_target(make_request("CANCEL", branch=None, cseq=7)) is invite_transaction
    assert layer.cancel_target(make_request("CANCEL", branch=None, cseq=8)) is None
    assert layer.cancel_target(make_request("CANCEL", branch=None, cseq=7, call_id="x")) is None


# -- RFC 2543 fallback (RFC 3261 §17.2.3, last paragraph) ---------------------------------


@pytest.mark.parametrize("branch", [None, "1a2b3c"])
def test_rfc2543_invite_retransmission_and_ack_are_matched(branch: str | None) -> None:
    layer = TransactionLayer()
    invite = make_request(branch=branch)
    transaction = receive_new(layer, invite)
    [busy] = layer.send_response(transaction, make_response(invite, 486, to_tag="u9"), 0.0)
    assert layer.receive(make_request(branch=branch), CALLER, 0.5) == [busy]
    # The ACK carries the To tag of the response; any other tag is not this transaction.
    wrong_tag = make_ack(invite, to_tag="zz")
    assert layer.receive(wrong_tag, CALLER, 0.6) == [RequestReceived(wrong_tag, CALLER, None)]
    assert layer.receive(make_ack(invite, to_tag="u9"), CALLER, 0.7) == []
    assert transaction.state == "confirmed"
    layer.advance(10.0)
    assert layer.server_count == 0


def test_rfc2543_requests_differing_in_any_field_are_new_transactions() -> None:
    layer = TransactionLayer()
    receive_new(layer, make_request(branch=None))
    receive_new(layer, make_request(branch=None, call_id="call-2@192.0.2.10"))
    receive_new(layer, make_request(branch=None, cseq=2))
    receive_new(layer, make_request(branch=None, uri="sip:70012345678902@198.51.100.1"))
    receive_new(layer, make_request(branch=None, to_tag="x"))
    receive_new(layer, make_request("OPTIONS", branch=None))
    assert layer.server_count == 6
    assert layer.receive(make_request(branch=None, cseq=2), CALLER, 1.0) == []


# -- INVITE client ----------------------------------------------------------------------


def test_invite_client_acks_non_2xx_itself_and_resends_the_ack() -> None:
    layer = TransactionLayer()
    invite = make_request(extra="Route: <sip:198.51.100.1;lr>\n", via="SIP/2.0/UDP 203.0.113.5")
    transaction, [sent] = layer.send_request(invite, CALLEE, 0.0, guard=GUARD, context="leg-b")
    assert sent == Send(invite.to_bytes(), CALLEE, GUARD)
    assert transaction.context == "leg-b"
    assert transaction.destination == CALLEE
    assert transaction.state == "calling"
    ringing = make_response(invite, 180)
    assert layer.receive(ringing, CALLEE, 0.1) == [ResponseReceived(ringing, transaction)]
    busy = make_response(invite, 486)
    outputs = layer.receive(busy, CALLEE, 1.0)
    assert outputs[0] == ResponseReceived(busy, transaction)
    ack = outputs[1]
    assert isinstance(ack, Send)
    assert ack.destination == CALLEE
    assert ack.guard == GUARD
    assert ack.data == lf2crlf(
        """ACK sip:70012345678901@198.51.100.1 SIP/2.0
Via: SIP/2.0/UDP 203.0.113.5;branch=z9hG4bKa1
Route: <sip:198.51.100.1;lr>
Max-Forwards: 70
From: "Caller" <sip:caller@192.0.2.10>;tag=f1
To: <sip:70012345678901@198.51.100.1>;tag=t1
Call-ID: call-1@192.0.2.10
CSeq: 1 ACK
Content-Length: 0

"""
    )
    assert layer.receive(make_response(invite, 486), CALLEE, 2.0) == [ack]
    assert layer.receive(make_response(invite, 180), CALLEE, 2.1) == []


def test_invite_client_passes_every_2xx_and_never_acks_it() -> None:
    layer = TransactionLayer()
    invite = make_request()
    transaction, _ = layer.send_request(invite, CALLEE, 0.0)
    ok = make_response(invite, 200)
    assert layer.receive(ok, CALLEE, 0.3) == [ResponseReceived(ok, transaction)]
    assert transaction.state == "accepted"
    other_fork = make_response(invite, 200, to_tag="t2")
    assert layer.receive(other_fork, CALLEE, 0.4) == [ResponseReceived(other_fork, transaction)]
    assert layer.receive(make_response(invite, 486), CALLEE, 0.5) == []
    assert layer.advance(0.5) == []  # Timer A stopped


def test_stray_malformed_and_mismatched_responses_are_dropped() -> None:
    layer = TransactionLayer()
    invite = make_request()
    transaction, _ = layer.send_request(invite, CALLEE, 0.0)
    other = make_response(make_request(branch="z9hG4bKnope"), 200)
    assert layer.receive(other, CALLEE, 0.1) == []
    wrong_method = make_response(make_request("OPTIONS"), 200)
    assert layer.receive(wrong_method, CALLEE, 0.1) == []
    broken = parse(lf2crlf("SIP/2.0 200 OK\nVia: SIP/2.0/UDP h;branch=z9hG4bKa1\nCSeq: x\n\n"))
    assert layer.receive(broken, CALLEE, 0.1) == []
    assert layer.anomalies == 1
    assert transaction.state == "calling"


def test_send_request_refuses_acks_bad_branches_and_duplicates() -> None:
    layer = TransactionLayer()
    with pytest.raises(ValueError, match="send_stateless"):
        layer.send_request(make_ack(make_request()), CALLEE, 0.0)
    with pytest.raises(ValueError, match="z9hG4bK"):
        layer.send_request(make_request(branch="1234"), CALLEE, 0.0)
    with pytest.raises(ValueError, match="z9hG4bK"):
        layer.send_request(make_request(branch=None), CALLEE, 0.0)
    layer.send_request(make_request(), CALLEE, 0.0)
    with pytest.raises(ValueError, match="already exists"):
        layer.send_request(make_request(), CALLEE, 0.0)
    assert layer.client_count == 1


def test_retransmissions_are_the_bytes_serialized_at_send() -> None:
    layer = TransactionLayer()
    invite = make_request()
    _, [first] = layer.send_request(invite, CALLEE, 0.0, guard=GUARD)
    invite.set("subject", "changed after sending")
    assert layer.advance(0.5) == [first]


def test_timeout_reports_the_client_transaction() -> None:
    layer = TransactionLayer()
    transaction, _ = layer.send_request(make_request("OPTIONS"), CALLEE, 0.0)
    assert layer.advance(32.0)[-1] == TransactionTimeout(transaction)
    assert layer.receive(make_response(transaction.request, 200), CALLEE, 33.0) == []


# -- a whole call: counts go back to zero ---------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_counts_return_to_zero_after_calls(transport: str) -> None:
    layer = TransactionLayer()
    source = Address(transport, "192.0.2.10", 5060)
    callee = Address(transport, "198.51.100.20", 5060)
    via = f"SIP/2.0/{transport.upper()} 192.0.2.10:5060"
    now = 0.0
    for call in range(20):
        call_id = f"call-{call}"
        a_invite = make_request(branch=f"z9hG4bKa{call}", via=via, call_id=call_id)
        a_txn = receive_new(layer, a_invite, source, now)
        layer.send_response(a_txn, make_response(a_invite, 100, to_tag=None), now)
        b_invite = make_request(branch=make_branch(f"b-{call}"), via=via, call_id=f"b-{call}")
        b_txn, _ = layer.send_request(b_invite, callee, now)
        if call % 2:
            layer.receive(make_response(b_invite, 486), callee, now + 0.1)
            layer.send_response(a_txn, make_response(a_invite, 486), now + 0.1)
            layer.receive(make_ack(a_invite), source, now + 0.2)
        else:
            layer.receive(make_response(b_invite, 200), callee, now + 0.1)
            layer.send_response(a_txn, make_response(a_invite, 200), now + 0.1)
            ack = make_ack(a_invite, branch=f"z9hG4bKack{call}")
            assert layer.receive(ack, source, now + 0.2)[0] == RequestReceived(ack, source, None)
            bye = make_request("BYE", f"z9hG4bKbye{call}", via=via, call_id=call_id, cseq=2)
            bye_txn = receive_new(layer, bye, source, now + 5)
            layer.send_response(bye_txn, make_response(bye, 200), now + 5)
        assert b_txn.state in {"accepted", "completed", "terminated"}
        now += 1.0
    # Accepted transactions wait out Timers L and M on every transport.
    assert layer.client_count > 0
    assert layer.server_count > 0
    layer.advance(now + 1000.0)
    assert layer.client_count == 0
    assert layer.server_count == 0
    assert layer.next_deadline() is None
    assert layer.anomalies == 0


# -- response destination (RFC 3261 §18.2.2, RFC 3581 §4) ----------------------------------


@pytest.mark.parametrize(
    ("via", "source"),
    [
        (
            "SIP/2.0/TCP client.example.com:5070;received=192.0.2.99;rport=1",
            Address("tcp", "192.0.2.10", 51544),
        ),
        (
            "SIP/2.0/UDP 192.0.2.10:5070;maddr=239.255.255.1;received=192.0.2.10;rport",
            Address("udp", "192.0.2.10", 40000),
        ),
        ("SIP/2.0/UDP 192.0.2.10;maddr=239.255.255.1", Address("udp", "192.0.2.10", 40000)),
        ("SIP/2.0/UDP 10.1.1.1:5060;rport", Address("udp", "203.0.113.7", 40000)),
        (
            "SIP/2.0/UDP 10.1.1.1:5060;received=203.0.113.8;rport",
            Address("udp", "203.0.113.7", 40000),
        ),
        (
            "SIP/2.0/UDP 10.1.1.1:5060;received=203.0.113.8;rport=41000",
            Address("udp", "203.0.113.7", 40000),
        ),
        ("SIP/2.0/UDP 10.1.1.1:5070;received=203.0.113.8", Address("udp", "203.0.113.7", 40000)),
        ("SIP/2.0/UDP client.example.com", Address("udp", "203.0.113.7", 40000)),
        (
            "SIP/2.0/UDP [2001:db8::1]:5062;received=[2001:db8::9]",
            Address("udp", "2001:db8::1", 40000),
        ),
    ],
)
def test_responses_go_back_to_the_source_whatever_the_via_says(via: str, source: Address) -> None:
    """Symmetric response routing for every request (proxy/sip/destination.py): a
    client-written received, rport, maddr or sent-by port never redirects a response
    (reflection), a deliberate departure from RFC 3261 §18.2.2."""
    request = make_request(via=via, branch="z9hG4bKrd")
    assert response_destination(request, source) == source


def test_server_transaction_sends_to_its_response_destination() -> None:
    layer = TransactionLayer()
    source = Address("udp", "203.0.113.7", 40000)
    transaction = receive_new(layer, make_request(via="SIP/2.0/UDP 10.1.1.1:5060;rport"), source)
    assert transaction.source == source
    assert transaction.response_destination == source
    [sent] = layer.send_response(transaction, make_response(transaction.request, 100), 0.0)
    assert isinstance(sent, Send)
    assert sent.destination == source


# -- helpers ------------------------------------------------------------------------------


def test_make_branch_is_deterministic_and_unique_per_seed() -> None:
    first = make_branch("node-1:1")
    assert first == make_branch("node-1:1")
    assert first.startswith("z9hG4bK")
    assert first != make_branch("node-1:2")
    assert first[7:].isalnum()
    assert "node" not in first
    assert len({make_branch(f"node-1:{n}") for n in range(10_000)}) == 10_000


def test_send_stateless_serializes_without_state() -> None:
    layer = TransactionLayer()
    ack = make_ack(make_request(), branch="z9hG4bKack")
    sent = layer.send_stateless(ack, CALLEE, guard=GUARD)
    assert sent == Send(ack.to_bytes(), CALLEE, GUARD)
    assert layer.client_count == 0
    assert layer.next_deadline() is None


def test_tcp_server_transaction_answers_on_the_connection() -> None:
    layer = TransactionLayer()
    transaction = receive_new(layer, make_request(via="SIP/2.0/TCP 192.0.2.10:5060"), CALLER_TCP)
    [sent] = layer.send_response(transaction, make_response(transaction.request, 486), 0.0)
    assert isinstance(sent, Send)
    assert sent.destination == CALLER_TCP
    assert layer.advance(31.9) == []  # no Timer G on TCP


def test_server_transport_stamps_received_and_rport_into_the_top_via() -> None:
    """RFC 3261 §18.2.1 and RFC 3581 §4: the response's Via tells the client where its
    request came from; only the top Via is touched."""
    from proxy.sip.build import make_response
    from proxy.sip.destination import stamp_received
    from proxy.sip.message import parse as parse_message

    data = (
        b"OPTIONS sip:proxy@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP softswitch.example.net:5070;branch=z9hG4bKa1;rport, "
        b"SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKa0\r\n"
        b"From: <sip:a@example.net>;tag=1\r\nTo: <sip:proxy@127.0.0.1>\r\n"
        b"Call-ID: stamp@x\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    request = parse_message(data)
    assert isinstance(request, Request)
    stamp_received(request, Address("udp", "198.51.100.7", 40000))
    top, second = request.vias
    assert (top.rport, top.received, top.branch) == ("40000", "198.51.100.7", "z9hG4bKa1")
    assert second.received is None
    response = make_response(request, 200)
    assert b"branch=z9hG4bKa1;rport=40000;received=198.51.100.7" in response.to_bytes()


def test_no_stamp_when_sent_by_is_the_source_and_no_rport() -> None:
    from proxy.sip.destination import stamp_received
    from proxy.sip.message import parse as parse_message

    data = (
        b"OPTIONS sip:proxy@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKb\r\n"
        b"From: <sip:a@example.net>;tag=1\r\nTo: <sip:proxy@127.0.0.1>\r\n"
        b"Call-ID: nostamp@x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    request = parse_message(data)
    assert isinstance(request, Request)
    stamp_received(request, Address("udp", "127.0.0.1", 5070))
    assert request.to_bytes() == data
