"""Call-control events between the legs of a call, and the B2BUA's outputs.

The A leg (UAS) and the B leg (UAC) never see each other's SIP messages: they talk only
through these events, and what an event carries has already been through the privacy
rewrite (``Payload``). That is the privacy boundary of design.md §4 made structural.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.b2bua.routing import CallAttempt

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Payload:
    """What may cross from one leg to the other: allow-listed headers and a rewritten body."""

    headers: Headers = ()
    body: bytes = b""
    content_type: str | None = None


EMPTY = Payload()


@dataclass(frozen=True, slots=True)
class Progress:
    """B is ringing or has early media (18x): relay to A."""

    status: int
    payload: Payload


@dataclass(frozen=True, slots=True)
class Answer:
    """B answered (2xx): answer A."""

    payload: Payload


@dataclass(frozen=True, slots=True)
class Fail:
    """B refused or could not be reached: fail A with ``status``."""

    status: int
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Disconnect:
    """One side hung up (BYE): hang up the other."""


@dataclass(frozen=True, slots=True)
class Relay:
    """An in-dialog request (re-INVITE, UPDATE, INFO) to pass to the other leg."""

    method: str
    payload: Payload
    token: int


@dataclass(frozen=True, slots=True)
class RelayAnswer:
    """The final answer to a relayed request."""

    token: int
    status: int
    payload: Payload


# -- outputs of the B2BUA to its adapter ----------------------------------------------


@dataclass(frozen=True, slots=True)
class LookupBinding:
    """Ask the adapter for the binding of (X, caller); it answers with ``route_call``."""

    call_ref: int
    attempt: CallAttempt


@dataclass(frozen=True, slots=True)
class CallSummary:
    """Facts of one call attempt for its call record (design.md §1 "Records").

    Times are the ``now`` values the adapter passed in (epoch seconds).
    """

    call_ref: int
    binding_id: str | None
    tenant: str | None
    x: str | None
    caller: str | None
    callee: str | None
    direction: str | None
    a_call_id: str
    b_call_id: str | None
    invite_at: float
    ring_at: float | None
    answer_at: float | None
    end_at: float
    disposition: str
    reject_reason: str | None
    sip_status: int
    released_by: str | None


@dataclass(frozen=True, slots=True)
class CallFinished:
    """A call attempt ended; write its record and its log line."""

    summary: CallSummary
