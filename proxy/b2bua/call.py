"""One call: the controller between its A and B legs, as an explicit state table.

States (RFC 3261 §13 as a B2BUA sees it):
``routing`` (INVITE received, binding lookup pending) → ``calling`` (B-leg INVITE sent)
→ ``early`` (B sent a provisional) → ``answered`` (B answered, our 200 awaits A's ACK)
→ ``confirmed`` → ``ended``. A (state, event) pair not in ``TRANSITIONS`` is ignored and
counted: late or crossing messages are normal on a network and never an error worth a
crash.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from proxy.b2bua.context import Context
from proxy.b2bua.events import (
    EMPTY,
    Answer,
    CallFinished,
    CallSummary,
    Disconnect,
    Fail,
    Payload,
    Progress,
    Relay,
)
from proxy.b2bua.legs import ALeg, BLeg, Leg, Outputs, extract
from proxy.b2bua.routing import CallAttempt, Reject, Route
from proxy.cdr.record import disposition_for_status
from proxy.sip.message import Request

if TYPE_CHECKING:
    from proxy.b2bua.b2bua import B2BUA

Handler = Callable[["Call", object, float, Outputs], None]


class Call:
    """Ties an A leg to a B leg; the only place where call state changes."""

    def __init__(self, b2bua: B2BUA, ctx: Context, a: ALeg | None, ref: int, now: float) -> None:
        self.b2bua = b2bua
        self.ctx = ctx
        self.ref = ref
        self.state = "routing"
        self.invite_at = now
        self.ring_at: float | None = None
        self.answer_at: float | None = None
        self.attempt: CallAttempt | None = None
        self.route_: Route | None = None
        self.a: ALeg = a  # type: ignore[assignment]  # set right after construction
        self.b: BLeg | None = None
        self.timers: dict[str, object] = {}
        self.relay_invites: dict[int, Request] = {}
        self.relay_origin: dict[int, Leg] = {}

    @property
    def x(self) -> str | None:
        return self.attempt.x if self.attempt else None

    # -- the state table ---------------------------------------------------------------

    def fire(self, event: str, arg: object, now: float, out: Outputs) -> None:
        handler = TRANSITIONS.get((self.state, event))
        if handler is None:
            self.b2bua.unexpected_events += 1
            return
        handler(self, arg, now, out)

    def handle(self, leg: Leg, event: object, now: float, out: Outputs) -> None:
        """An event from a leg, named by its type and the side it came from."""
        name = _EVENT_NAMES[leg.name, type(event)]
        if isinstance(event, Relay):
            if (self.state, name) not in TRANSITIONS:
                # RFC 3261 §14.2: a request while another offer is pending gets 491.
                leg.answer_relay(event.token, 491, EMPTY, now, out)
                return
            self.relay_origin[event.token] = leg
        self.fire(name, event, now, out)

    # -- routing -----------------------------------------------------------------------

    def _on_route(self, decision: object, now: float, out: Outputs) -> None:
        if isinstance(decision, Reject):
            self.a.fail(decision.status, decision.reason, now, out, decision.headers)
            self._finish("rejected", decision.status, None, now, out, reject_reason=decision.cause)
            return
        assert isinstance(decision, Route)
        self.route_ = decision
        self.b2bua.binding_calls[decision.binding_id] += 1
        self.a.route(decision.callee)
        self.b = BLeg(self, self.ctx, decision.callee, decision.caller)
        self.state = "calling"
        max_forwards = self.a.invite.max_forwards
        payload = extract(self.a.invite)
        self.b.start(
            decision.x, 69 if max_forwards is None else max_forwards - 1, payload, now, out
        )
        self.b2bua.index_leg(self.b)
        self._start_timer("ring", now + self.ctx.settings.ring_timeout)

    def _on_lookup_failed(self, _: object, now: float, out: Outputs) -> None:
        """The binding store failed: 503 (RFC 3261 §21.5.4, a temporary failure of ours)
        rather than a call left routing for ever."""
        self.a.fail(503, None, now, out)
        self._finish("failed", 503, "proxy", now, out)

    def _cancel_before_route(self, _: object, now: float, out: Outputs) -> None:
        self.a.fail(487, None, now, out)
        self._finish("cancelled", 487, "caller", now, out)

    # -- B's progress and answer -------------------------------------------------------

    def _on_progress(self, event: object, now: float, out: Outputs) -> None:
        assert isinstance(event, Progress)
        if self.ring_at is None:
            self.ring_at = now
        self.state = "early"
        self.a.progress(event, now, out)

    def _on_answer(self, event: object, now: float, out: Outputs) -> None:
        assert isinstance(event, Answer)
        self.answer_at = now
        self._stop_timer("ring")
        if self.route_ is not None and self.route_.max_call_s:
            self._start_timer("max_duration", now + self.route_.max_call_s)
        self.state = "answered"
        self.a.answer(event, now, out)

    def _on_fail(self, event: object, now: float, out: Outputs) -> None:
        assert isinstance(event, Fail)
        self.a.fail(event.status, event.reason, now, out)
        self._finish(disposition_for_status(event.status), event.status, "callee", now, out)

    def _on_b_timeout(self, _: object, now: float, out: Outputs) -> None:
        """Timer B fired on the B leg: the trunk never answered (RFC 3261 §17.1.1.2)."""
        self.a.fail(408, None, now, out)
        self._finish("failed", 408, "proxy", now, out)

    def _on_a_cancel(self, _: object, now: float, out: Outputs) -> None:
        """A gave up: 487 to A (its CANCEL got 200 already), CANCEL to B (RFC 3261 §9.2)."""
        self.a.fail(487, None, now, out)
        assert self.b is not None
        self.b.cancel(now, out)
        self._finish("cancelled", 487, "caller", now, out)

    def _on_ring_timeout(self, _: object, now: float, out: Outputs) -> None:
        assert self.b is not None
        self.b.cancel(now, out)
        self.a.fail(480, "No Answer", now, out)
        self._finish("no_answer", 480, "proxy", now, out)

    def _on_confirmed(self, payload: object, now: float, out: Outputs) -> None:
        assert isinstance(payload, Payload) and self.b is not None
        self.state = "confirmed"
        self.b.confirm(payload, now, out)

    def confirmed(self, payload: Payload, now: float, out: Outputs) -> None:
        self.fire("a_ack", payload, now, out)

    # -- hanging up --------------------------------------------------------------------

    def _on_a_bye(self, _: object, now: float, out: Outputs) -> None:
        assert self.b is not None
        self.a.stop_ack_wait()
        if self.state == "answered":
            self.b.confirm(EMPTY, now, out)
        self.b.hang_up(now, out)
        self._finish("answered", 200, "caller", now, out)

    def _on_b_bye(self, _: object, now: float, out: Outputs) -> None:
        """B hung up; if A had not yet ACKed, B's 2xx still needs its ACK (RFC 3261
        §13.2.2.4) or B retransmits it for 64*T1."""
        assert self.b is not None
        if self.state == "answered" and not self.b.acked:
            self.b.confirm(EMPTY, now, out)
        self.a.stop_ack_wait()
        self.a.hang_up(now, out)
        self._finish("answered", 200, "callee", now, out)

    def _on_a_bye_early(self, _: object, now: float, out: Outputs) -> None:
        """A BYE on the early dialog ends the attempt like a CANCEL (RFC 3261 §15)."""
        self._on_a_cancel(None, now, out)

    def _on_abort_answered(self, reason: object, now: float, out: Outputs) -> None:
        """The proxy ends an answered call: max duration, ACK timeout, leak, shutdown."""
        assert self.b is not None
        self.a.stop_ack_wait()
        if self.state == "answered" and not self.b.acked:
            self.b.confirm(EMPTY, now, out)
        self.a.hang_up(now, out)
        self.b.hang_up(now, out)
        self._finish("answered", 200, "proxy", now, out, reject_reason=_leak(reason))

    def _on_abort_unanswered(self, reason: object, now: float, out: Outputs) -> None:
        status, phrase = (500, "Privacy Protection") if reason == "leak" else (503, "Shutting Down")
        self.a.fail(status, phrase, now, out)
        if self.b is not None:
            self.b.cancel(now, out)
        disposition = "failed"
        self._finish(disposition, status, "proxy", now, out, reject_reason=_leak(reason))

    # -- relays inside the dialog (re-INVITE, UPDATE, INFO) ----------------------------

    def _on_relay(self, event: object, now: float, out: Outputs) -> None:
        assert isinstance(event, Relay) and self.b is not None
        origin = self.relay_origin[event.token]
        target: Leg = self.b if origin is self.a else self.a
        target.relay(event, now, out)

    def relay_answered(
        self, leg: Leg, token: int, status: int, payload: Payload, now: float, out: Outputs
    ) -> None:
        """The far side answered a relayed request: answer the side it came from."""
        origin = self.relay_origin.get(token)
        if origin is None or origin is leg:
            return  # a retransmitted 2xx: the origin has its answer, the ACK is pending
        del self.relay_origin[token]
        if 200 <= status < 300 and token in self.relay_invites:
            self.relay_origin[token] = leg  # the leg that must ACK once the origin ACKs
        else:
            self.relay_invites.pop(token, None)
        origin.answer_relay(token, status, payload, now, out)

    def relay_acked(self, leg: Leg, token: int, payload: Payload, now: float, out: Outputs) -> None:
        far = self.relay_origin.pop(token, None)
        invite = self.relay_invites.pop(token, None)
        if far is not None and invite is not None:
            far.send_ack(invite, payload, now, out)

    # -- timers and the end ------------------------------------------------------------

    def _start_timer(self, name: str, when: float) -> None:
        self.timers[name] = self.ctx.layer.call_later(when, (self.ref, name))

    def _stop_timer(self, name: str) -> None:
        handle = self.timers.pop(name, None)
        if handle is not None:
            self.ctx.layer.cancel_timer(handle)

    def _finish(
        self,
        disposition: str,
        status: int,
        released_by: str | None,
        now: float,
        out: Outputs,
        *,
        reject_reason: str | None = None,
    ) -> None:
        self.state = "ended"
        for name in list(self.timers):
            self._stop_timer(name)
        for leg in (self.a, self.b):
            if leg is not None:
                leg.close(now, out)
        route = self.route_
        summary = CallSummary(
            call_ref=self.ref,
            binding_id=route.binding_id if route else None,
            tenant=route.tenant if route else None,
            x=self.x,
            caller=self.attempt.caller if self.attempt else None,
            callee=route.callee if route else None,
            direction=route.direction if route else None,
            a_call_id=self.a.invite.call_id,
            b_call_id=self.b.call_id if self.b else None,
            invite_at=self.invite_at,
            ring_at=self.ring_at,
            answer_at=self.answer_at,
            end_at=now,
            disposition=disposition,
            reject_reason=reject_reason,
            sip_status=status,
            released_by=released_by,
        )
        out.append(CallFinished(summary))
        self.b2bua.forget(self)


def _leak(reason: object) -> str | None:
    return "leak_blocked" if reason == "leak" else None


#: (side, event type) → the event's name in ``TRANSITIONS``.
_EVENT_NAMES: Final[dict[tuple[str, type], str]] = {
    (side, event): f"{side}_{name}"
    for side in ("a", "b")
    for event, name in (
        (Progress, "progress"),
        (Answer, "answer"),
        (Fail, "fail"),
        (Disconnect, "bye"),
        (Relay, "relay"),
    )
}

_UNANSWERED: Final = ("calling", "early")
_ANSWERED: Final = ("answered", "confirmed")

TRANSITIONS: Final[dict[tuple[str, str], Handler]] = {
    ("routing", "route"): Call._on_route,
    ("routing", "lookup_failed"): Call._on_lookup_failed,
    ("routing", "a_cancel"): Call._cancel_before_route,
    ("routing", "abort"): Call._on_abort_unanswered,
    **{(state, "b_progress"): Call._on_progress for state in _UNANSWERED},
    **{(state, "b_answer"): Call._on_answer for state in _UNANSWERED},
    **{(state, "b_fail"): Call._on_fail for state in _UNANSWERED},
    **{(state, "b_timeout"): Call._on_b_timeout for state in _UNANSWERED},
    **{(state, "a_cancel"): Call._on_a_cancel for state in _UNANSWERED},
    **{(state, "a_bye"): Call._on_a_bye_early for state in _UNANSWERED},
    **{(state, "ring"): Call._on_ring_timeout for state in _UNANSWERED},
    **{(state, "abort"): Call._on_abort_unanswered for state in _UNANSWERED},
    ("answered", "a_ack"): Call._on_confirmed,
    **{(state, "ack_timeout"): Call._on_abort_answered for state in _ANSWERED},
    **{(state, "a_bye"): Call._on_a_bye for state in _ANSWERED},
    **{(state, "b_bye"): Call._on_b_bye for state in _ANSWERED},
    **{(state, "abort"): Call._on_abort_answered for state in _ANSWERED},
    **{(state, "max_duration"): Call._on_abort_answered for state in _ANSWERED},
    ("confirmed", "a_relay"): Call._on_relay,
    ("confirmed", "b_relay"): Call._on_relay,
}
