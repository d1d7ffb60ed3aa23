"""Access control, rate limits, anti-fraud and the hostile-input fixes in the B2BUA core
(issue #6), on the in-memory harness with a fake clock."""

from __future__ import annotations

import hashlib
import ipaddress

from proxy.b2bua.digest import DigestPeer, DigestSettings, parse_credentials
from proxy.b2bua.events import CallFinished, LookupBinding
from proxy.b2bua.policy import PolicySettings
from proxy.sip.destination import response_destination
from proxy.sip.message import Request, Response, parse
from proxy.sip.transaction import Address, Send
from tests.unit.b2bua_harness import (
    A_NUMBER,
    B_SDP,
    CALLEE,
    CALLER,
    PROXY,
    START,
    X_NUMBER,
    Network,
    bound_network,
    caller_invite,
)

ELSEWHERE = "10.0.0.0/8"


def policy(**values: object) -> PolicySettings:
    return PolicySettings(**values)  # type: ignore[arg-type]


def responses_to_caller(network: Network) -> list[Response]:
    return [
        message
        for datagram in network.delivered("proxy", "caller")
        if isinstance(message := datagram.message, Response)
    ]


def call_number(network: Network, n: int, *, x: str = X_NUMBER) -> None:
    """Another initial INVITE from A (its own Call-ID and branch)."""
    network.call(caller_invite(x=x, call_id=f"a-call-{n}@127.0.0.1", branch=f"z9hG4bKn{n}"))


def settle_clean(network: Network) -> None:
    network.settle()
    network.assert_clean()


# -- access control ---------------------------------------------------------------------


def test_untrusted_peer_gets_403_and_a_record() -> None:
    network, _ = bound_network(policy=policy(peers=(ipaddress.ip_network(ELSEWHERE),)))
    network.call()
    assert network.caller.statuses()[-1] == 403
    assert network.delivered("proxy", "callee") == []
    summary = network.summary()
    assert (summary.reject_reason, summary.sip_status) == ("untrusted_peer", 403)
    assert (summary.x, summary.caller) == (X_NUMBER, A_NUMBER)
    assert network.core.counters["untrusted_peer"] == 1
    settle_clean(network)


def test_untrusted_peer_is_dropped_silently_once_recorded() -> None:
    settings = policy(peers=(ipaddress.ip_network(ELSEWHERE),), untrusted_calls="drop")
    network, _ = bound_network(policy=settings)
    network.call()
    network.settle()  # the caller retransmits its INVITE until Timer B
    assert network.sent("proxy", "caller") == []
    assert len(network.sent("caller", "proxy")) > 1
    [summary] = network.finished
    assert (summary.reject_reason, summary.released_by) == ("untrusted_peer", "proxy")
    assert network.core.counters["untrusted_peer"] == 1
    network.assert_clean()


def test_identity_trust_is_apart_from_call_permission() -> None:
    """A peer may start calls (loopback by default) without its P-Asserted-Identity being
    believed (RFC 3325 §9.1; ``trusted`` is empty by default)."""
    network, _ = bound_network()
    stranger_pai = "P-Asserted-Identity: <sip:13800138000@127.0.0.1>\n"
    network.call(caller_invite(caller="13700137000", extra=stranger_pai))
    assert network.caller.statuses()[-1] == 404
    assert network.summary().reject_reason == "no_binding"


# -- rate limits and anti-fraud ---------------------------------------------------------


def test_source_rate_limit_503_with_retry_after() -> None:
    network, _ = bound_network(policy=policy(source_rate=0.5, source_burst=1.0))
    call_number(network, 1)
    network.callee_responds(486)
    call_number(network, 2)
    last = responses_to_caller(network)[-1]
    assert (last.status, last.get("retry-after")) == (503, "2")
    assert network.finished[-1].reject_reason == "rate_limited"
    assert len(network.callee.received("INVITE")) == 1
    network.advance(2.0)
    call_number(network, 3)
    assert len(network.callee.received("INVITE")) == 2


def test_caller_rate_limit_503() -> None:
    network, _ = bound_network(policy=policy(caller_rate=0.1, caller_burst=1.0))
    call_number(network, 1)
    network.callee_responds(486)
    call_number(network, 2)
    last = responses_to_caller(network)[-1]
    assert (last.status, last.get("retry-after")) == (503, "10")
    assert network.finished[-1].reject_reason == "rate_limited"


def test_marketing_sweep_blocks_the_caller_without_lookups() -> None:
    network, _ = bound_network(policy=policy(fraud_distinct_x=3, fraud_window_s=60.0))
    network.proxy.hold_lookups = True
    for n in range(4):
        call_number(network, n, x=f"70010001234560{n}")
    assert len(network.proxy.held) == 2
    statuses = [r.status for r in responses_to_caller(network) if r.status >= 200]
    assert statuses == [403, 403]
    assert [s.reject_reason for s in network.finished] == ["blocked", "blocked"]
    # X itself, dialled afterwards, is blocked too: the caller is, for an hour.
    network.advance(600)
    call_number(network, 9)
    assert [s.reject_reason for s in network.finished][-1] == "blocked"


def test_blocklisted_number_is_refused_403() -> None:
    network, _ = bound_network()
    network.proxy.hold_lookups = True
    network.call()
    [lookup] = network.proxy.held
    assert isinstance(lookup, LookupBinding)
    binding = network.store.find_for_call(X_NUMBER, A_NUMBER, network.now)
    outputs = network.core.route_call(lookup.call_ref, binding, network.now, blocked=True)
    network.inject("proxy", network.proxy.process(outputs, network.now))
    assert network.caller.statuses()[-1] == 403
    assert network.summary().reject_reason == "blocked"
    assert network.delivered("proxy", "callee") == []
    settle_clean(network)


def test_concurrent_calls_per_binding_capped_486() -> None:
    network, _ = bound_network(policy=policy(max_calls_per_binding=1))
    call_number(network, 1)
    network.callee_responds(200, body=B_SDP)
    assert network.core.active_calls == 1
    call_number(network, 2)
    last = responses_to_caller(network)[-1]
    assert last.status == 486
    assert network.finished[-1].reject_reason == "rate_limited"
    assert network.finished[-1].binding_id is not None
    assert len(network.callee.received("INVITE")) == 1


def test_binding_cap_frees_when_a_call_ends() -> None:
    network, binding = bound_network(policy=policy(max_calls_per_binding=1))
    call_number(network, 1)
    assert network.core.binding_calls == {binding.id: 1}
    network.callee_responds(486)
    assert network.core.binding_calls == {}
    call_number(network, 2)
    assert len(network.callee.received("INVITE")) == 2
    assert network.core.binding_calls == {binding.id: 1}


def test_lookup_error_fails_the_call_503() -> None:
    network, _ = bound_network()
    network.proxy.hold_lookups = True
    network.call()
    [lookup] = network.proxy.held
    network.inject(
        "proxy",
        network.proxy.process(
            network.core.lookup_failed(lookup.call_ref, network.now), network.now
        ),
    )
    assert network.caller.statuses()[-1] == 503
    summary = network.summary()
    assert (summary.disposition, summary.reject_reason, summary.released_by) == (
        "failed",
        None,
        "proxy",
    )
    settle_clean(network)


# -- digest authentication --------------------------------------------------------------


def challenged_network() -> tuple[Network, str]:
    """A network whose proxy wants digest credentials from 127.0.0.0/8, after a first call
    that drew the challenge; and the challenge's nonce."""
    peer = DigestPeer(ipaddress.ip_network("127.0.0.0/8"), "switch", "pw")
    digest = DigestSettings(secret=b"0123456789abcdef", peers=(peer,))
    network, _ = bound_network(digest=digest)
    network.call()
    [challenge] = [r for r in responses_to_caller(network) if r.status == 401]
    params = parse_credentials(challenge.get("www-authenticate") or "")
    assert params is not None
    return network, params["nonce"]


def authorization_line(nonce: str, uri: str, password: str = "pw") -> str:
    """An Authorization header line without qop (RFC 2617 §3.2.2.1), computed here."""

    def h(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    response = h(f"{h(f'switch:privproxy:{password}')}:{nonce}:{h(f'INVITE:{uri}')}")
    return (
        f'Authorization: Digest username="switch", realm="privproxy", '
        f'nonce="{nonce}", uri="{uri}", response="{response}"\n'
    )


def test_digest_challenge_then_authenticated_call() -> None:
    network, nonce = challenged_network()
    assert network.finished == []  # a challenge is a step of the handshake, not a refusal
    authorization = authorization_line(nonce, f"sip:{X_NUMBER}@127.0.0.1:5060")
    network.call(caller_invite(call_id="a-call-2@x", branch="z9hG4bKauth", extra=authorization))
    assert len(network.callee.received("INVITE")) == 1
    wrong = authorization_line(nonce, f"sip:{X_NUMBER}@127.0.0.1:5060", password="guess")
    network.call(caller_invite(call_id="a-call-3@x", branch="z9hG4bKwrong", extra=wrong))
    assert network.finished[-1].reject_reason == "untrusted_peer"
    assert network.finished[-1].sip_status == 403
    # The same right credentials again: without qop a nonce is good for one use.
    network.call(caller_invite(call_id="a-call-4@x", branch="z9hG4bKagain", extra=authorization))
    assert [r.status for r in responses_to_caller(network)][-1] == 401
    assert len(network.callee.received("INVITE")) == 1


def test_digest_credentials_for_another_privacy_number_get_400() -> None:
    """RFC 7616 §3.4.6: credentials computed for one privacy number do not call another."""
    network, nonce = challenged_network()
    authorization = authorization_line(nonce, "sip:700999999999999@127.0.0.1:5060")
    network.call(caller_invite(call_id="a-call-2@x", branch="z9hG4bKother", extra=authorization))
    final = responses_to_caller(network)[-1]
    assert (final.status, final.reason) == (400, "Digest uri does not match the Request-URI")
    assert network.callee.received("INVITE") == []
    assert network.finished[-1].reject_reason == "untrusted_peer"
    assert network.finished[-1].sip_status == 400


# -- the hostile-input fixes ------------------------------------------------------------


def raw(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def options(uri: str = "sip:127.0.0.1:5060", via: str = "SIP/2.0/UDP 127.0.0.1:5070") -> bytes:
    return raw(
        f"OPTIONS {uri} SIP/2.0\n"
        f"Via: {via};branch=z9hG4bKopt1\n"
        "Max-Forwards: 70\n"
        "From: <sip:scanner@127.0.0.1>;tag=s1\n"
        "To: <sip:127.0.0.1>\n"
        "Call-ID: options-1@127.0.0.1\n"
        "CSeq: 1 OPTIONS\n"
        "Content-Length: 0\n\n"
    )


def test_out_of_dialog_options_is_answered_statelessly() -> None:
    network, _ = bound_network()
    core = network.core
    first = core.receive(options(), CALLER, START)
    again = core.receive(options(), CALLER, START + 0.5)
    for outputs in (first, again):
        [send] = outputs
        assert isinstance(send, Send) and send.destination == CALLER
        assert send.data.startswith(b"SIP/2.0 200 OK\r\n")
    assert core.layer.server_count == 0
    assert core.next_deadline() is None


def test_unknown_request_uri_scheme_gets_416_for_every_method() -> None:
    network, _ = bound_network()
    [send] = network.core.receive(options(uri="unknown:foo@bar"), CALLER, START)
    assert isinstance(send, Send) and send.data.startswith(b"SIP/2.0 416 ")
    info = options(uri="unknown:foo@bar").replace(b"OPTIONS", b"INFO")
    [send] = network.core.receive(info, CALLER, START)
    assert send.data.startswith(b"SIP/2.0 416 ")


def test_responses_go_to_the_source_whatever_the_via_says() -> None:
    network, _ = bound_network()
    source = Address("udp", "127.0.0.1", 5070)
    for via in (
        "SIP/2.0/UDP 127.0.0.1:6000",
        "SIP/2.0/UDP 127.0.0.1:5070;rport=6001",
        "SIP/2.0/UDP 127.0.0.1:5070;received=192.0.2.9",
        "SIP/2.0/UDP 127.0.0.1:5070;maddr=192.0.2.10",
        "SIP/2.0/UDP 192.0.2.11:5060;received=192.0.2.12;rport=9",
    ):
        data = options(via=via)
        request = parse(data)
        assert isinstance(request, Request)
        assert response_destination(request, source) == source, via
        [send] = network.core.receive(data, source, START)
        assert isinstance(send, Send) and send.destination == source, via


def test_invite_answers_go_to_the_source_not_to_a_decoy_via() -> None:
    network, _ = bound_network(policy=policy(peers=(ipaddress.ip_network(ELSEWHERE),)))
    invite = caller_invite()
    invite.replace_top_via("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKa1;maddr=192.0.2.10")
    outputs = network.core.receive(invite.to_bytes(), CALLER, START)
    sends = [item for item in outputs if isinstance(item, Send)]
    assert sends and all(send.destination == CALLER for send in sends)
    assert any(isinstance(item, CallFinished) for item in outputs)
    assert all(send.destination != CALLEE and send.destination != PROXY for send in sends)
