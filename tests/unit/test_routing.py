"""Routing (design.md §1 AXB): who calls which X, and where the call goes."""

from __future__ import annotations

import pytest

from bindings.models import Binding
from proxy.b2bua.routing import (
    DIRECTION,
    EXPIRED,
    NO_BINDING,
    NOT_A_PRIVACY_NUMBER,
    CallAttempt,
    Route,
    decide,
    identify,
)
from proxy.numbers import NumberPlan
from proxy.sip.message import Request, parse

PLAN = NumberPlan()
X = "700100012345678"
A = "+8613800138000"
B = "+8613900139000"


def invite(uri: str, from_user: str, *pai: str) -> Request:
    lines = [
        f"INVITE {uri} SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1",
        "Max-Forwards: 70",
        f"From: <sip:{from_user}@127.0.0.1>;tag=1",
        f"To: <{uri}>",
        "Call-ID: r1",
        "CSeq: 1 INVITE",
        "Contact: <sip:127.0.0.1:5070>",
        *(f"P-Asserted-Identity: {value}" for value in pai),
        "Content-Length: 0",
        "",
        "",
    ]
    request = parse("\r\n".join(lines).encode())
    assert isinstance(request, Request)
    return request


@pytest.mark.parametrize(
    "uri",
    [
        f"sip:{X}@127.0.0.1",
        f"sip:+86{X}@127.0.0.1;user=phone",
        f"sip:0086{X}@127.0.0.1",
        "sip:700-1000-1234-5678@127.0.0.1",
        f"tel:+86{X}",
        f"sips:{X}@127.0.0.1",
    ],
)
def test_identify_reads_x_from_the_request_uri(uri: str) -> None:
    assert identify(invite(uri, "13800138000"), PLAN, trusted=False) == CallAttempt(X, A)


@pytest.mark.parametrize(
    "uri", ["sip:13900139000@127.0.0.1", "sip:127.0.0.1", "sip:7001@127.0.0.1", "urn:service:sos"]
)
def test_identify_rejects_what_is_not_a_privacy_number(uri: str) -> None:
    assert identify(invite(uri, "13800138000"), PLAN, trusted=False) is NOT_A_PRIVACY_NUMBER


def test_pai_is_believed_only_from_a_trusted_peer() -> None:
    """RFC 3325 §9.1: an untrusted peer's assertion is ignored; From decides."""
    request = invite(f"sip:{X}@127.0.0.1", "13800138000", "<sip:+8613900139000@127.0.0.1>")
    assert identify(request, PLAN, trusted=False) == CallAttempt(X, A)
    assert identify(request, PLAN, trusted=True) == CallAttempt(X, B)


def test_trusted_pai_tel_uri_and_fallback_to_from() -> None:
    tel = invite(f"sip:{X}@127.0.0.1", "anonymous", "<tel:+86-139-0013-9000>")
    assert identify(tel, PLAN, trusted=True) == CallAttempt(X, B)
    # A PAI without a user part gives nothing: the From user is used.
    no_user = invite(f"sip:{X}@127.0.0.1", "13800138000", "<sip:127.0.0.1>")
    assert identify(no_user, PLAN, trusted=True) == CallAttempt(X, A)


@pytest.mark.parametrize("from_user", ["anonymous", "12", X])
def test_identify_without_a_usable_caller(from_user: str) -> None:
    assert identify(invite(f"sip:{X}@127.0.0.1", from_user), PLAN, trusted=False) is NO_BINDING


def binding(**overrides: object) -> Binding:
    values: dict[str, object] = {"id": "b1", "a": A, "b": B, "x": X, "created_at": 0.0}
    values.update(overrides)
    return Binding(**values)  # type: ignore[arg-type]


def test_decide_routes_both_ways() -> None:
    forward = decide(binding(max_call_s=600, tenant="t1"), CallAttempt(X, A), 10.0)
    assert forward == Route("b1", "t1", X, A, B, "a_to_b", 600)
    reverse = decide(binding(), CallAttempt(X, B), 10.0)
    assert isinstance(reverse, Route)
    assert (reverse.callee, reverse.direction) == (A, "b_to_a")


def test_decide_refusals() -> None:
    assert decide(None, CallAttempt(X, A), 10.0) is NO_BINDING
    assert decide(binding(expires_at=10.0), CallAttempt(X, A), 10.0) is EXPIRED
    assert decide(binding(status="released"), CallAttempt(X, A), 10.0) is EXPIRED
    assert decide(binding(direction="a_to_b"), CallAttempt(X, B), 10.0) is DIRECTION
    assert decide(binding(direction="b_to_a"), CallAttempt(X, A), 10.0) is DIRECTION
    assert decide(binding(), CallAttempt(X, "+8613700137000"), 10.0) is DIRECTION
    assert (NO_BINDING.status, EXPIRED.status, DIRECTION.status) == (404, 404, 403)
    assert (NO_BINDING.cause, EXPIRED.cause, DIRECTION.cause) == (
        "no_binding",
        "expired",
        "direction",
    )
