"""Timers of the transaction layer with a fake clock: exact firing times of A, B, D–M
(RFC 3261 §17, Table 4; RFC 6026 §8.11), doubling and capping, UDP against TCP, the 2xx
retransmission of §13.3.1.4, TU timers and the heap itself.

Timer C (§16.6 step 11) is a proxy timer and is not implemented: a B2BUA ends a ringing
INVITE with CANCEL, after which §9.1's 64*T1 wait applies (``test_cancel_wait``).
"""

from __future__ import annotations

import pytest

from proxy.sip.message import Request, Response, parse
from proxy.sip.timers import TimerHeap
from proxy.sip.transaction import (
    AckTimeout,
    Address,
    Output,
    RequestReceived,
    ResponseReceived,
    Send,
    ServerTransaction,
    TimerFired,
    TimerSettings,
    TransactionLayer,
    TransactionTimeout,
)
from tests.fixtures import lf2crlf

PEER_UDP = Address("udp", "192.0.2.20", 5060)
PEER_TCP = Address("tcp", "192.0.2.20", 40312)

# Retransmissions under the default T1 = 0.5 s, T2 = 4 s.
TIMER_A_FIRES = [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # doubling, never capped; B ends it at 32
CAPPED_FIRES = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]  # doubling up to T2


def make_request(method: str, branch: str = "z9hG4bKc1", transport: str = "UDP") -> Request:
    message = parse(
        lf2crlf(
            f"""{method} sip:70012345678901@198.51.100.1 SIP/2.0
Via: SIP/2.0/{transport} 192.0.2.20:5060;branch={branch}
Max-Forwards: 70
From: <sip:caller@192.0.2.20>;tag=f1
To: <sip:70012345678901@198.51.100.1>
Call-ID: timers-1
CSeq: 1 {method}
Contact: <sip:caller@192.0.2.20>
Content-Length: 0

"""
        )
    )
    assert isinstance(message, Request)
    return message


def make_response(request: Request, status: int) -> Response:
    reason = {100: "Trying", 180: "Ringing", 200: "OK", 486: "Busy Here"}[status]
    to_tag = "" if status == 100 else ";tag=t1"
    message = parse(
        lf2crlf(
            f"""SIP/2.0 {status} {reason}
Via: {request.get("via")}
From: {request.get("from")}
To: {request.get("to")}{to_tag}
Call-ID: {request.call_id}
CSeq: {request.cseq}
Content-Length: 0

"""
        )
    )
    assert isinstance(message, Response)
    return message


def make_ack(request: Request, branch: str | None = None) -> Request:
    via = request.get("via") or ""
    if branch is not None:
        via = via.replace(request.top_via.branch or "", branch)
    message = parse(
        lf2crlf(
            f"""ACK {request.uri} SIP/2.0
Via: {via}
Max-Forwards: 70
From: {request.get("from")}
To: {request.get("to")};tag=t1
Call-ID: {request.call_id}
CSeq: {request.cseq.number} ACK
Content-Length: 0

"""
        )
    )
    assert isinstance(message, Request)
    return message


def run_until(layer: TransactionLayer, end: float) -> list[tuple[float, Output]]:
    """Step the fake clock from deadline to deadline up to ``end``."""
    timeline: list[tuple[float, Output]] = []
    while (deadline := layer.next_deadline()) is not None and deadline <= end:
        timeline += [(deadline, output) for output in layer.advance(deadline)]
    return timeline


def send_times(timeline: list[tuple[float, Output]]) -> list[float]:
    return [when for when, output in timeline if isinstance(output, Send)]


def server(layer: TransactionLayer, method: str, source: Address, now: float) -> ServerTransaction:
    transport = source.transport.upper()
    outputs = layer.receive(make_request(method, "z9hG4bKs1", transport), source, now)
    assert isinstance(outputs[0], RequestReceived)
    assert outputs[0].transaction is not None
    return outputs[0].transaction


# -- client INVITE: A, B, D, M -----------------------------------------------------------


def test_timer_a_doubles_without_cap_and_timer_b_times_out_at_64_t1() -> None:
    layer = TransactionLayer()
    invite = make_request("INVITE")
    transaction, outputs = layer.send_request(invite, PEER_UDP, 0.0)
    assert [type(o) for o in outputs] == [Send]
    timeline = run_until(layer, 100.0)
    assert send_times(timeline) == TIMER_A_FIRES
    assert all(o == outputs[0] for _, o in timeline if isinstance(o, Send))
    assert timeline[-1] == (32.0, TransactionTimeout(transaction))
    assert transaction.state == "terminated"
    assert layer.client_count == 0
    assert layer.next_deadline() is None


def test_timer_a_follows_t1_and_is_not_capped_by_t2() -> None:
    layer = TransactionLayer(TimerSettings(t1=0.25, t2=1.0, t4=2.0))
    layer.send_request(make_request("INVITE"), PEER_UDP, 10.0)
    timeline = run_until(layer, 100.0)
    assert send_times(timeline) == [10.25, 10.75, 11.75, 13.75, 17.75, 25.75]
    assert timeline[-1][0] == 26.0  # Timer B = 64 * 0.25
    assert isinstance(timeline[-1][1], TransactionTimeout)


def test_invite_over_tcp_is_not_retransmitted_and_still_times_out() -> None:
    layer = TransactionLayer()
    transaction, outputs = layer.send_request(make_request("INVITE", transport="TCP"), PEER_TCP, 0)
    assert len(outputs) == 1
    assert layer.next_deadline() == 32.0
    assert run_until(layer, 100.0) == [(32.0, TransactionTimeout(transaction))]


def test_provisional_stops_timers_a_and_b() -> None:
    layer = TransactionLayer()
    invite = make_request("INVITE")
    transaction, _ = layer.send_request(invite, PEER_UDP, 0.0)
    layer.advance(0.5)
    layer.receive(make_response(invite, 180), PEER_UDP, 0.7)
    assert transaction.state == "proceeding"
    assert layer.next_deadline() is None
    assert run_until(layer, 1000.0) == []
    assert layer.client_count == 1


@pytest.mark.parametrize(("peer", "lifetime"), [(PEER_UDP, 32.0), (PEER_TCP, 0.0)])
def test_timer_d_is_32_s_on_udp_and_zero_on_tcp(peer: Address, lifetime: float) -> None:
    layer = TransactionLayer()
    invite = make_request("INVITE", transport=peer.transport.upper())
    transaction, _ = layer.send_request(invite, peer, 0.0)
    outputs = layer.receive(make_response(invite, 486), peer, 2.0)
    assert [type(o) for o in outputs] == [ResponseReceived, Send]
    if lifetime:
        assert transaction.state == "completed"
        assert layer.next_deadline() == 2.0 + lifetime
        assert run_until(layer, 2.0 + lifetime - 0.001) == []
        assert layer.client_count == 1
        assert run_until(layer, 100.0) == []
    assert transaction.state == "terminated"
    assert layer.client_count == 0


def test_timer_d_covers_64_t1_when_t1_is_large() -> None:
    layer = TransactionLayer(TimerSettings(t1=1.0, t2=4.0))
    invite = make_request("INVITE")
    layer.send_request(invite, PEER_UDP, 0.0)
    layer.receive(make_response(invite, 486), PEER_UDP, 1.0)
    assert layer.next_deadline() == 65.0


def test_timer_m_keeps_accepted_invite_client_for_64_t1() -> None:
    layer = TransactionLayer()
    invite = make_request("INVITE")
    transaction, _ = layer.send_request(invite, PEER_UDP, 0.0)
    layer.receive(make_response(invite, 200), PEER_UDP, 1.0)
    assert transaction.state == "accepted"
    assert layer.next_deadline() == 33.0
    retransmitted = layer.receive(make_response(invite, 200), PEER_UDP, 20.0)
    assert [type(o) for o in retransmitted] == [ResponseReceived]
    assert run_until(layer, 100.0) == []
    assert transaction.state == "terminated"
    assert layer.client_count == 0
    assert layer.receive(make_response(invite, 200), PEER_UDP, 40.0) == []


def test_cancel_wait() -> None:
    """RFC 3261 §9.1: no final response 64*T1 after the CANCEL ends the INVITE."""
    layer = TransactionLayer()
    invite = make_request("INVITE")
    invite_transaction, _ = layer.send_request(invite, PEER_UDP, 0.0)
    layer.receive(make_response(invite, 180), PEER_UDP, 0.2)
    cancel = make_request("CANCEL")
    cancel_transaction, outputs = layer.send_request(cancel, PEER_UDP, 10.0)
    assert [type(o) for o in outputs] == [Send]
    layer.receive(make_response(cancel, 200), PEER_UDP, 10.1)
    assert cancel_transaction.state == "completed"
    timeline = run_until(layer, 100.0)
    assert timeline == [(42.0, TransactionTimeout(invite_transaction))]
    assert layer.client_count == 0


def test_final_response_after_cancel_stops_the_cancel_wait() -> None:
    layer = TransactionLayer()
    invite = make_request("INVITE", transport="TCP")
    invite_transaction, _ = layer.send_request(invite, PEER_TCP, 0.0)
    layer.receive(make_response(invite, 180), PEER_TCP, 0.2)
    layer.send_request(make_request("CANCEL", transport="TCP"), PEER_TCP, 10.0)
    layer.receive(make_response(invite, 486), PEER_TCP, 10.2)
    assert invite_transaction.state == "terminated"
    assert layer.next_deadline() == 42.0  # only the CANCEL's own Timer F is left
    assert [type(o) for _, o in run_until(layer, 100.0)] == [TransactionTimeout]


# -- client non-INVITE: E, F, K -----------------------------------------------------------


def test_timer_e_doubles_up_to_t2_and_timer_f_times_out() -> None:
    layer = TransactionLayer()
    transaction, outputs = layer.send_request(make_request("OPTIONS"), PEER_UDP, 0.0)
    timeline = run_until(layer, 100.0)
    assert send_times(timeline) == CAPPED_FIRES
    assert all(o == outputs[0] for _, o in timeline if isinstance(o, Send))
    assert timeline[-1] == (32.0, TransactionTimeout(transaction))
    assert layer.client_count == 0


def test_timer_e_runs_at_t2_in_proceeding() -> None:
    layer = TransactionLayer()
    bye = make_request("BYE")
    transaction, _ = layer.send_request(bye, PEER_UDP, 0.0)
    assert send_times(run_until(layer, 0.5)) == [0.5]
    layer.receive(make_response(bye, 100), PEER_UDP, 0.7)
    assert transaction.state == "proceeding"
    timeline = run_until(layer, 100.0)
    # E keeps its pending 1.5 s firing, then runs every T2; F still ends it at 32 s.
    assert send_times(timeline) == [1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5]
    assert timeline[-1] == (32.0, TransactionTimeout(transaction))


def test_non_invite_over_tcp_has_no_timer_e() -> None:
    layer = TransactionLayer()
    transaction, _ = layer.send_request(make_request("BYE", transport="TCP"), PEER_TCP, 0.0)
    assert run_until(layer, 100.0) == [(32.0, TransactionTimeout(transaction))]


@pytest.mark.parametrize(("peer", "lifetime"), [(PEER_UDP, 5.0), (PEER_TCP, 0.0)])
def test_timer_k_is_t4_on_udp_and_zero_on_tcp(peer: Address, lifetime: float) -> None:
    layer = TransactionLayer()
    bye = make_request("BYE", transport=peer.transport.upper())
    transaction, _ = layer.send_request(bye, peer, 0.0)
    assert [type(o) for o in layer.receive(make_response(bye, 200), peer, 1.0)] == [
        ResponseReceived
    ]
    if lifetime:
        assert layer.next_deadline() == 1.0 + lifetime
        assert layer.receive(make_response(bye, 200), peer, 2.0) == []  # absorbed
        assert run_until(layer, 100.0) == []
    assert transaction.state == "terminated"
    assert layer.client_count == 0


def test_wait_timers_round_up_to_a_quarter_second_and_share_deadlines() -> None:
    """K (like D, I, J, L, M) only absorbs retransmissions: its deadline is rounded up to
    the next quarter second, never earlier than T4, so that machines finishing a few
    milliseconds apart expire together (one wake-up of the adapter, not one each)."""
    layer = TransactionLayer()
    first, second = make_request("BYE", "z9hG4bKk1"), make_request("BYE", "z9hG4bKk2")
    layer.send_request(first, PEER_UDP, 0.0)
    layer.send_request(second, PEER_UDP, 0.0)
    layer.receive(make_response(first, 200), PEER_UDP, 10.01)
    layer.receive(make_response(second, 200), PEER_UDP, 10.2)
    assert layer.next_deadline() == 15.25  # 10.01 + T4 rounded up, not 15.01
    assert layer.advance(15.2) == [] and layer.client_count == 2
    assert layer.advance(15.25) == [] and layer.client_count == 0


# -- server INVITE: G, H, I, L --------------------------------------------------------------


def test_timer_g_doubles_up_to_t2_and_timer_h_times_out() -> None:
    layer = TransactionLayer()
    transaction = server(layer, "INVITE", PEER_UDP, 0.0)
    busy = make_response(transaction.request, 486)
    [sent] = layer.send_response(transaction, busy, 0.0)
    assert isinstance(sent, Send)
    timeline = run_until(layer, 100.0)
    assert send_times(timeline) == CAPPED_FIRES
    assert all(o == sent for _, o in timeline if isinstance(o, Send))
    assert timeline[-1] == (32.0, TransactionTimeout(transaction))
    assert layer.server_count == 0


def test_invite_server_over_tcp_has_no_timer_g_but_timer_h() -> None:
    layer = TransactionLayer()
    transaction = server(layer, "INVITE", PEER_TCP, 0.0)
    layer.send_response(transaction, make_response(transaction.request, 486), 1.0)
    assert run_until(layer, 100.0) == [(33.0, TransactionTimeout(transaction))]


@pytest.mark.parametrize(("peer", "lifetime"), [(PEER_UDP, 5.0), (PEER_TCP, 0.0)])
def test_ack_stops_g_and_h_and_timer_i_is_t4_on_udp_zero_on_tcp(
    peer: Address, lifetime: float
) -> None:
    layer = TransactionLayer()
    transaction = server(layer, "INVITE", peer, 0.0)
    layer.send_response(transaction, make_response(transaction.request, 486), 0.0)
    run_until(layer, 1.0)
    assert layer.receive(make_ack(transaction.request), peer, 2.0) == []
    if lifetime:
        assert transaction.state == "confirmed"
        assert layer.next_deadline() == 2.0 + lifetime
        assert layer.receive(make_ack(transaction.request), peer, 3.0) == []  # absorbed
        assert run_until(layer, 100.0) == []
    assert transaction.state == "terminated"
    assert layer.server_count == 0


@pytest.mark.parametrize("peer", [PEER_UDP, PEER_TCP])
def test_timer_l_keeps_accepted_invite_server_for_64_t1(peer: Address) -> None:
    layer = TransactionLayer()
    transaction = server(layer, "INVITE", peer, 0.0)
    layer.send_response(transaction, make_response(transaction.request, 200), 1.0)
    assert transaction.state == "accepted"
    assert layer.next_deadline() == 33.0
    assert run_until(layer, 100.0) == []
    assert transaction.state == "terminated"
    assert layer.server_count == 0


# -- server non-INVITE: J -------------------------------------------------------------------


@pytest.mark.parametrize(("peer", "lifetime"), [(PEER_UDP, 32.0), (PEER_TCP, 0.0)])
def test_timer_j_is_64_t1_on_udp_and_zero_on_tcp(peer: Address, lifetime: float) -> None:
    layer = TransactionLayer()
    transaction = server(layer, "BYE", peer, 0.0)
    layer.send_response(transaction, make_response(transaction.request, 200), 0.5)
    if lifetime:
        assert transaction.state == "completed"
        assert layer.next_deadline() == 0.5 + lifetime
        assert run_until(layer, 100.0) == []
    assert transaction.state == "terminated"
    assert layer.server_count == 0


# -- 2xx retransmission (RFC 3261 §13.3.1.4) ------------------------------------------------


def test_2xx_retransmit_doubles_up_to_t2_then_ack_timeout() -> None:
    layer = TransactionLayer()
    ok = Send(b"SIP/2.0 200 OK\r\n\r\n", PEER_UDP, frozenset({"13800138000"}))
    layer.start_2xx_retransmit("call-7", ok, 0.0)
    timeline = run_until(layer, 100.0)
    assert send_times(timeline) == CAPPED_FIRES
    assert all(o == ok for _, o in timeline if isinstance(o, Send))
    assert timeline[-1] == (32.0, AckTimeout("call-7"))
    assert layer.next_deadline() is None


def test_2xx_retransmit_stops_on_ack() -> None:
    layer = TransactionLayer()
    ok = Send(b"SIP/2.0 200 OK\r\n\r\n", PEER_UDP)
    layer.start_2xx_retransmit(("leg", 1), ok, 0.0)
    assert send_times(run_until(layer, 2.0)) == [0.5, 1.5]
    layer.stop_2xx_retransmit(("leg", 1))
    layer.stop_2xx_retransmit(("leg", 1))  # twice, or for an unknown key: no effect
    assert layer.next_deadline() is None
    assert run_until(layer, 100.0) == []


def test_2xx_retransmit_restart_replaces_the_previous_one() -> None:
    layer = TransactionLayer()
    first = Send(b"first", PEER_UDP)
    second = Send(b"second", PEER_UDP)
    layer.start_2xx_retransmit("k", first, 0.0)
    layer.start_2xx_retransmit("k", second, 10.0)
    timeline = run_until(layer, 100.0)
    assert {o for _, o in timeline if isinstance(o, Send)} == {second}
    assert send_times(timeline)[0] == 10.5
    assert timeline[-1] == (42.0, AckTimeout("k"))


# -- TU timers, late advance and the heap ---------------------------------------------------


def test_tu_timer_fires_at_its_deadline_and_can_be_cancelled() -> None:
    layer = TransactionLayer()
    ring = layer.call_later(60.0, ("call-1", "ring"))
    cancelled = layer.call_later(30.0, "never")
    layer.cancel_timer(cancelled)
    assert layer.next_deadline() == 60.0
    assert layer.advance(59.999) == []
    assert layer.advance(60.0) == [TimerFired(("call-1", "ring"))]
    layer.cancel_timer(ring)  # already fired: ignored
    assert layer.next_deadline() is None
    with pytest.raises(TypeError):
        layer.cancel_timer("not a handle")


def test_next_deadline_is_the_earliest_of_every_kind() -> None:
    layer = TransactionLayer()
    layer.call_later(0.2, "tu")
    layer.send_request(make_request("INVITE"), PEER_UDP, 0.0)
    layer.start_2xx_retransmit("k", Send(b"x", PEER_UDP), 0.1)
    assert layer.next_deadline() == 0.2
    layer.advance(0.2)
    assert layer.next_deadline() == 0.5  # Timer A before the 2xx resend at 0.6
    layer.advance(0.5)
    assert layer.next_deadline() == 0.6


def test_late_advance_fires_everything_in_deadline_order() -> None:
    layer = TransactionLayer()
    transaction, _ = layer.send_request(make_request("INVITE"), PEER_UDP, 0.0)
    layer.call_later(2.0, "tu")
    outputs = layer.advance(1000.0)
    kinds = [type(o).__name__ for o in outputs]
    retransmits_then_tu_timer = ["Send", "Send", "TimerFired", "Send", "Send", "Send", "Send"]
    assert kinds == [*retransmits_then_tu_timer, "TransactionTimeout"]
    assert outputs[-1] == TransactionTimeout(transaction)


def test_heap_orders_by_deadline_then_scheduling_order() -> None:
    heap: TimerHeap[str] = TimerHeap()
    for when, name in [(3.0, "c"), (1.0, "a1"), (2.0, "b"), (1.0, "a2")]:
        heap.schedule(when, name)
    fired = []
    while (handle := heap.pop_due(10.0)) is not None:
        fired.append(handle.payload)
    assert fired == ["a1", "a2", "b", "c"]
    assert len(heap) == 0


def test_heap_skips_cancelled_and_compacts_without_losing_order() -> None:
    heap: TimerHeap[int] = TimerHeap()
    handles = [heap.schedule(float(i), i) for i in range(300)]
    for handle in handles:
        if handle.payload % 3:
            heap.cancel(handle)
    heap.cancel(handles[1])  # cancelling twice counts once
    assert len(heap) == 100
    assert heap.next_deadline() == 0.0
    fired = []
    while (due := heap.pop_due(1000.0)) is not None:
        fired.append(due.payload)
    assert fired == list(range(0, 300, 3))
    assert heap.next_deadline() is None


def test_heap_pop_due_leaves_future_timers() -> None:
    heap: TimerHeap[str] = TimerHeap()
    first = heap.schedule(1.0, "now")
    heap.schedule(5.0, "later")
    assert heap.pop_due(0.5) is None
    assert heap.pop_due(1.0) is first
    assert not first.pending
    heap.cancel(first)  # fired: no effect on the live count
    assert len(heap) == 1
    assert heap.pop_due(4.999) is None
    assert heap.next_deadline() == 5.0


def test_every_action_in_the_tables_exists() -> None:
    from proxy.sip import transaction as module

    layer = TransactionLayer()
    client, server = set(layer._client_actions), set(layer._server_actions)
    for table, actions in [
        (module.INVITE_CLIENT_TABLE, client),
        (module.NON_INVITE_CLIENT_TABLE, client),
        (module.INVITE_SERVER_TABLE, server),
        (module.NON_INVITE_SERVER_TABLE, server),
    ]:
        for (state, event), (_, names) in table.items():
            missing = [name for name in names if name not in actions]
            assert not missing, (state, event, missing)
