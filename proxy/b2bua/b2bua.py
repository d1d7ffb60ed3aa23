"""The B2BUA: bytes and time in, bytes, lookups and call records out (design.md §2).

``B2BUA.receive`` parses a datagram or framed stream message, runs it through the
transaction layer (RFC 3261 §17) and dispatches what reaches the transaction user:
initial INVITEs start calls, in-dialog requests go to their leg (RFC 3261 §12.2.2),
CANCEL to the INVITE it cancels (§9.2), responses to the leg that sent the request.
No sockets, no clock, no database: the adapter does the binding lookup asked for by
``LookupBinding`` and answers with ``route_call``.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Final

from proxy.b2bua.call import Call
from proxy.b2bua.context import B2buaSettings, Context, Ids
from proxy.b2bua.digest import Challenge, DigestAuthenticator, Mismatch
from proxy.b2bua.events import EMPTY, CallFinished, CallSummary, LookupBinding
from proxy.b2bua.legs import ALeg, BLeg, Leg, Outputs
from proxy.b2bua.policy import BLOCKED, UNTRUSTED, CallPolicy, Refusal
from proxy.b2bua.privacy import RELAYED_OPTION_TAGS
from proxy.b2bua.routing import BindingView, CallAttempt, Reject, Route, decide, identify
from proxy.sip.build import make_response
from proxy.sip.destination import stamp_received
from proxy.sip.errors import SipError
from proxy.sip.message import KNOWN_METHODS, Request, parse
from proxy.sip.transaction import (
    AckTimeout,
    Address,
    ClientTransaction,
    RequestReceived,
    ResponseReceived,
    Send,
    ServerTransaction,
    TimerFired,
    TimerSettings,
    TransactionLayer,
    TransactionTimeout,
    response_destination,
)

SUPPORTED_SCHEMES: Final = frozenset({"sip", "sips", "tel"})
#: Initial INVITE bodies we take: SDP, or SIP-I's multipart whose SDP part crosses alone.
RELAYED_INVITE_BODIES: Final = frozenset({"application/sdp", "multipart/mixed"})
#: Methods a softswitch may send us outside a dialog that we do not serve (RFC 3261 §8.2.1).
NOT_ALLOWED: Final = frozenset(KNOWN_METHODS - {"INVITE", "OPTIONS", "ACK", "CANCEL", "BYE"})
#: Call-IDs of silently dropped INVITEs kept, so that their retransmissions leave no
#: second record.
DROPPED_KEPT: Final = 4096


class B2BUA:
    """Every call of one process, over one transaction layer and one timer heap."""

    def __init__(
        self, settings: B2buaSettings, *, seed: str, timers: TimerSettings | None = None
    ) -> None:
        self.layer = TransactionLayer(timers or TimerSettings())
        self.ctx = Context(settings, self.layer, Ids(seed))
        self.settings = settings
        self.calls: dict[int, Call] = {}
        self.dialogs: dict[tuple[str, str], Leg] = {}
        self.by_call_id: dict[str, Call] = {}
        self.accepting = True
        self.unexpected_events = 0
        self.counters: Counter[str] = Counter()
        # A peer trusted to assert identities (RFC 3325) may certainly start calls.
        self.policy = CallPolicy(
            replace(settings.policy, peers=settings.policy.peers + settings.trusted)
        )
        self.digest = DigestAuthenticator(settings.digest) if settings.digest.peers else None
        #: binding id → calls routed on it and not yet ended (the per-binding cap)
        self.binding_calls: Counter[str] = Counter()
        self._dropped: OrderedDict[str, None] = OrderedDict()
        self._event_handlers: dict[type, Callable[[Any, float], Outputs]] = {
            RequestReceived: self._on_request,
            ResponseReceived: self._on_response,
            TransactionTimeout: self._on_timeout_event,
            AckTimeout: self._on_ack_timeout_event,
            TimerFired: self._on_timer_event,
        }
        self._out_of_dialog: dict[str, Callable[[ServerTransaction, Request, float], Outputs]] = {
            "INVITE": self._new_call,
            "OPTIONS": self._options,
            "BYE": self._no_dialog,
        }

    # -- input -------------------------------------------------------------------------

    def receive(self, data: bytes, source: Address, now: float) -> Outputs:
        """Handle one message. Raises ``SipError`` for a malformed one: the adapter answers
        it with ``error_reply`` (requests) or drops it (responses, RFC 3261 §18.1.2)."""
        message = parse(data, stream=source.transport != "udp")
        try:
            message.validate()
        except SipError as error:
            error.message = message  # type: ignore[attr-defined]
            raise
        if isinstance(message, Request) and message.to.tag is None:
            if message.method == "OPTIONS":
                return self._stateless_options(message, source)
            if message.method == "INVITE" and self._drops(source.host):
                return self._drop(message, now)
        return self._dispatch(self.layer.receive(message, source, now), now)

    def advance(self, now: float) -> Outputs:
        """Fire due timers (transaction and call timers share one heap)."""
        return self._dispatch(self.layer.advance(now), now)

    def next_deadline(self) -> float | None:
        return self.layer.next_deadline()

    def route_call(
        self, call_ref: int, binding: BindingView | None, now: float, *, blocked: bool = False
    ) -> Outputs:
        """The adapter's answer to ``LookupBinding``: the binding found (or None) and
        whether the blocklist holds the caller or a party of the binding."""
        call = self.calls.get(call_ref)
        if call is None or call.attempt is None:
            return []
        decision: Route | Reject = decide(binding, call.attempt, now)
        if blocked:
            decision = _reject(BLOCKED)
        elif isinstance(decision, Route):
            refusal = self.policy.admit_binding(self.binding_calls[decision.binding_id])
            if refusal is not None:
                call.route_ = decision  # the record names the binding that was full
                decision = _reject(refusal)
        if isinstance(decision, Reject) and decision.cause in ("blocked", "rate_limited"):
            self.counters[decision.cause] += 1
        out: Outputs = []
        call.fire("route", decision, now, out)
        return self._dispatch(out, now)

    def lookup_failed(self, call_ref: int, now: float) -> Outputs:
        """The adapter could not look the binding up (a database error): fail the call
        with 503 instead of leaving it routing."""
        call = self.calls.get(call_ref)
        out: Outputs = []
        if call is not None:
            call.fire("lookup_failed", None, now, out)
        return self._dispatch(out, now)

    def abort_call(self, call_id: str, now: float, *, reason: str) -> Outputs:
        """End the call a leg of which has this Call-ID (``reason`` "leak" or "shutdown")."""
        call = self.by_call_id.get(call_id)
        out: Outputs = []
        if call is not None:
            call.fire("abort", reason, now, out)
        return self._dispatch(out, now)

    def shutdown(self, now: float) -> Outputs:
        """Stop taking calls and end every call in progress (BYE answered ones, fail the
        others)."""
        self.accepting = False
        out: Outputs = []
        for call in list(self.calls.values()):
            call.fire("abort", "shutdown", now, out)
        return self._dispatch(out, now)

    # -- dispatch ----------------------------------------------------------------------

    def _dispatch(self, outputs: Sequence[object], now: float) -> Outputs:
        """Hand transaction-layer events to their handlers (a dict on the event type); pass
        everything else (Send, LookupBinding, CallFinished) out to the adapter."""
        result: Outputs = []
        handlers = self._event_handlers
        for item in outputs:
            handler = handlers.get(type(item))
            if handler is None:
                result.append(item)
            else:
                result += self._dispatch(handler(item, now), now)
        return result

    def _on_timeout_event(self, event: TransactionTimeout, now: float) -> Outputs:
        return self._on_timeout(event.transaction, now)

    def _on_ack_timeout_event(self, event: AckTimeout, now: float) -> Outputs:
        return self._on_ack_timeout(event.key, now)

    def _on_timer_event(self, event: TimerFired, now: float) -> Outputs:
        return self._on_timer(event.payload, now)

    def _on_request(self, event: RequestReceived, now: float) -> Outputs:
        request = event.request
        out: Outputs = []
        if request.method == "ACK":
            leg = self.dialogs.get((request.call_id, request.to.tag or ""))
            if leg is not None:
                leg.on_request(None, request, now, out)
            return out
        txn = event.transaction
        if txn is None:
            return out
        if request.request_uri.scheme not in SUPPORTED_SCHEMES:
            return self._refuse(txn, request, 416, now=now)
        if request.method == "CANCEL":
            return self._cancel(txn, request, now)
        unsupported = _unsupported_requirements(request)
        if unsupported:
            return self._refuse(
                txn, request, 420, headers=(("Unsupported", ", ".join(unsupported)),), now=now
            )
        to_tag = request.to.tag
        if to_tag is not None:
            leg = self.dialogs.get((request.call_id, to_tag))
            if leg is None:
                return self._reply(txn, 481, now=now)
            leg.on_request(txn, request, now, out)
            return out
        handler = self._out_of_dialog.get(request.method)
        if handler is not None:
            return handler(txn, request, now)
        if request.method in NOT_ALLOWED:
            return self._reply(txn, 405, headers=(("Allow", self.settings.allow),), now=now)
        return self._reply(txn, 501, headers=(("Allow", self.settings.allow),), now=now)

    def _on_response(self, event: ResponseReceived, now: float) -> Outputs:
        out: Outputs = []
        context = event.transaction.context
        if isinstance(context, tuple) and isinstance(context[0], Leg):
            leg, kind = context
            leg.on_response(kind, event.response, now, out)
        return out

    def _on_timeout(self, txn: ClientTransaction | ServerTransaction, now: float) -> Outputs:
        out: Outputs = []
        context = txn.context
        if isinstance(txn, ClientTransaction) and isinstance(context, tuple):
            leg, kind = context
            if kind == "invite" and isinstance(leg, BLeg):
                leg.finished = True
                leg.call.fire("b_timeout", None, now, out)
            elif isinstance(kind, tuple) and kind[0] == "relay":
                leg.call.relay_answered(leg, kind[1], 408, EMPTY, now, out)
        return out

    def _on_ack_timeout(self, key: object, now: float) -> Outputs:
        out: Outputs = []
        if isinstance(key, tuple):
            call = self.calls.get(key[0])
            if call is not None:
                call.fire("ack_timeout", None, now, out)
        return out

    def _on_timer(self, payload: object, now: float) -> Outputs:
        out: Outputs = []
        if isinstance(payload, tuple):
            ref, name = payload
            call = self.calls.get(ref)
            if call is not None:
                call.fire(name, None, now, out)
        return out

    # -- requests outside a dialog -----------------------------------------------------

    def _new_call(self, txn: ServerTransaction, request: Request, now: float) -> Outputs:
        """An initial INVITE to a privacy number (RFC 3261 §8.2, §13.3)."""
        if not self.accepting:
            return self._refuse(txn, request, 503, "Shutting Down", now=now)
        if request.max_forwards == 0:
            return self._refuse(txn, request, 483, now=now)
        if request.body and request.content_type not in RELAYED_INVITE_BODIES:
            return self._refuse(
                txn, request, 415, headers=(("Accept", "application/sdp"),), now=now
            )
        if self._is_merged(request):
            return self._reply(txn, 482, now=now)
        host = txn.source.host
        refusal = self.policy.admit_peer(host, now)
        if refusal is None and self.digest is not None:
            verdict = self.digest.check(
                "INVITE", request.uri, request.get("authorization"), host, self.ctx.ids.tag(), now
            )
            if isinstance(verdict, Challenge):
                # RFC 3261 §22.2: as a UAS we challenge with 401. Not a refused attempt but
                # a step of the handshake: the authenticated INVITE follows; no record.
                headers = (("WWW-Authenticate", verdict.header),)
                return self._reply(txn, 401, headers=headers, now=now)
            if isinstance(verdict, Mismatch):
                refusal = Refusal(400, verdict.reason, "untrusted_peer")
            elif not verdict:
                refusal = UNTRUSTED
        ref = self.ctx.ids.ref()
        call = Call(self, self.ctx, None, ref, now)
        call.a = ALeg(call, self.ctx, txn, self.ctx.ids.tag())
        txn.context = call
        self.calls[ref] = call
        self.index_leg(call.a)
        out: Outputs = []
        call.a.start(now, out)
        attempt = identify(request, self.settings.plan, trusted=self.settings.is_trusted(host))
        if isinstance(attempt, CallAttempt):
            call.attempt = attempt  # the record says who called what, refused or not
            if refusal is None:
                refusal = self.policy.admit_caller(attempt.caller, attempt.x, now)
        if refusal is not None:
            self.counters[refusal.cause] += 1
            call.fire("route", _reject(refusal), now, out)
            return out
        if isinstance(attempt, Reject):
            call.fire("route", attempt, now, out)
            return out
        out.append(LookupBinding(ref, attempt))
        return out

    def _drops(self, host: str) -> bool:
        """Whether an INVITE from ``host`` is dropped unanswered (``untrusted_calls``)."""
        policy = self.policy
        return policy.settings.untrusted_calls == "drop" and not policy.may_call(host)

    def _drop(self, request: Request, now: float) -> Outputs:
        """An initial INVITE from a peer that may not call, dropped without an answer
        (nor a transaction: nothing is kept but its Call-ID) and recorded once; its
        retransmissions are dropped unrecorded. The record's status is the 403 the
        peer would have had."""
        call_id = request.call_id
        if call_id in self._dropped:
            return []
        self._dropped[call_id] = None
        while len(self._dropped) > DROPPED_KEPT:
            self._dropped.popitem(last=False)
        self.counters["untrusted_peer"] += 1
        return [self._unrouted(request, 403, now, trusted=False, reject_reason="untrusted_peer")]

    def _refuse(
        self,
        txn: ServerTransaction,
        request: Request,
        status: int,
        reason: str | None = None,
        *,
        now: float,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> Outputs:
        """Refuse a request before any call exists (RFC 3261 §8.2); an initial INVITE so
        refused is a call attempt all the same, and gets its record (design.md §1)."""
        out = self._reply(txn, status, reason, now=now, headers=headers)
        if request.method == "INVITE" and request.to.tag is None:
            trusted = self.settings.is_trusted(txn.source.host)
            out.append(self._unrouted(request, status, now, trusted=trusted))
        return out

    def _unrouted(
        self,
        request: Request,
        status: int,
        now: float,
        *,
        trusted: bool,
        reject_reason: str | None = None,
    ) -> CallFinished:
        """The record of an initial INVITE refused before routing: X and the caller when
        they can be read (a malformed identity header costs them, not the answer);
        ``rejected`` with a policy reason, else ``failed``."""
        try:
            attempt = identify(request, self.settings.plan, trusted=trusted)
        except SipError:
            attempt = None
        known = attempt if isinstance(attempt, CallAttempt) else None
        summary = CallSummary(
            call_ref=self.ctx.ids.ref(),
            binding_id=None,
            tenant=None,
            x=known.x if known else None,
            caller=known.caller if known else None,
            callee=None,
            direction=None,
            a_call_id=request.call_id,
            b_call_id=None,
            invite_at=now,
            ring_at=None,
            answer_at=None,
            end_at=now,
            disposition="failed" if reject_reason is None else "rejected",
            reject_reason=reject_reason,
            sip_status=status,
            released_by="proxy",
        )
        return CallFinished(summary)

    def _is_merged(self, request: Request) -> bool:
        """RFC 3261 §8.2.2.2: the same INVITE (Call-ID, From tag, CSeq) arriving again on
        another branch, forked upstream, must not become a second call."""
        call = self.by_call_id.get(request.call_id)
        if call is None or call.a is None:
            return False
        first = call.a.invite
        return first.from_.tag == request.from_.tag and first.cseq == request.cseq

    def _options(self, txn: ServerTransaction, request: Request, now: float) -> Outputs:
        """OPTIONS to the proxy itself: the softswitch's keepalive (RFC 3261 §11.2)."""
        return self._reply(txn, 200, headers=self._capabilities(), now=now)

    def _capabilities(self) -> tuple[tuple[str, str], ...]:
        return (
            ("Allow", self.settings.allow),
            ("Accept", "application/sdp"),
            ("Supported", ", ".join(sorted(RELAYED_OPTION_TAGS))),
        )

    def _stateless_options(self, request: Request, source: Address) -> Outputs:
        """Out-of-dialog OPTIONS answered without a server transaction (RFC 3261 §8.2.7
        allows a stateless UAS): a scanner's OPTIONS flood then costs no Timer J state,
        and a retransmitted OPTIONS simply gets another answer. The checks are those
        ``_on_request`` makes: scheme (416, §8.2.2.1), Require (420, §8.2.2.3)."""
        stamp_received(request, source)
        headers: tuple[tuple[str, str], ...] = ()
        if request.request_uri.scheme not in SUPPORTED_SCHEMES:
            status = 416
        elif unsupported := _unsupported_requirements(request):
            status, headers = 420, (("Unsupported", ", ".join(unsupported)),)
        else:
            status, headers = 200, self._capabilities()
        response = make_response(request, status, to_tag=self.ctx.ids.tag(), headers=headers)
        self.counters["options_stateless"] += 1
        return [Send(response.to_bytes(), response_destination(request, source))]

    def _no_dialog(self, txn: ServerTransaction, request: Request, now: float) -> Outputs:
        return self._reply(txn, 481, now=now)

    def _cancel(self, txn: ServerTransaction, cancel: Request, now: float) -> Outputs:
        """CANCEL (RFC 3261 §9.2): 200 to the CANCEL, then the call handles it."""
        target = self.layer.cancel_target(cancel)
        call = target.context if target is not None else None
        if not isinstance(call, Call):
            return self._reply(txn, 481, now=now)
        out = self._reply(txn, 200, now=now, tag=call.a.local_tag)
        call.fire("a_cancel", None, now, out)
        return out

    def _reply(
        self,
        txn: ServerTransaction,
        status: int,
        reason: str | None = None,
        *,
        now: float,
        headers: tuple[tuple[str, str], ...] = (),
        tag: str | None = None,
    ) -> Outputs:
        response = make_response(
            txn.request, status, reason, to_tag=tag or self.ctx.ids.tag(), headers=headers
        )
        return [*self.layer.send_response(txn, response, now)]

    # -- indexes -----------------------------------------------------------------------

    def index_leg(self, leg: Leg) -> None:
        if isinstance(leg, ALeg):
            self.dialogs[(leg.invite.call_id, leg.local_tag)] = leg
            self.by_call_id[leg.invite.call_id] = leg.call
        elif leg.dialog is not None:
            self.dialogs[(leg.dialog.call_id, leg.dialog.local_tag)] = leg
            self.by_call_id[leg.dialog.call_id] = leg.call

    def forget(self, call: Call) -> None:
        self.calls.pop(call.ref, None)
        if call.b is not None and call.route_ is not None:
            binding_id = call.route_.binding_id
            self.binding_calls[binding_id] -= 1
            if self.binding_calls[binding_id] <= 0:
                del self.binding_calls[binding_id]
        for leg in (call.a, call.b):
            if leg is None:
                continue
            key = (
                (leg.invite.call_id, leg.local_tag)
                if isinstance(leg, ALeg)
                else (leg.dialog.call_id, leg.dialog.local_tag)
                if leg.dialog
                else None
            )
            if key is not None:
                self.dialogs.pop(key, None)
                self.by_call_id.pop(key[0], None)

    @property
    def active_calls(self) -> int:
        return len(self.calls)


def _reject(refusal: Refusal) -> Reject:
    return Reject(refusal.status, refusal.reason, refusal.cause, refusal.headers)


def _unsupported_requirements(request: Request) -> list[str]:
    """Require option tags we do not support (RFC 3261 §8.2.2.3); none for ACK/CANCEL."""
    if request.method in ("ACK", "CANCEL"):
        return []
    return [
        tag for tag in request.get_all("require") if tag and tag.lower() not in RELAYED_OPTION_TAGS
    ]


def error_reply(error: SipError, data: bytes, source: Address) -> Send | None:
    """The stateless answer to a message that failed parsing or validation (RFC 3261 §8.2,
    §21.4.1); None when there is nothing to answer (a response, an ACK, no usable head).

    When parsing failed outright (a bad Content-Length, say), the head alone is parsed
    again so that the reply can still carry Via, From, To, Call-ID and CSeq.
    """
    message = getattr(error, "message", None) or _salvage(data)
    if not isinstance(message, Request) or message.method == "ACK":
        return None
    try:
        response = make_response(message, error.status, error.reason, headers=error.headers)
        destination = response_destination(message, source)
    except ValueError:
        return None
    return Send(response.to_bytes(), destination)


def _salvage(data: bytes) -> Request | None:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = [
        line
        for line in data[:end].split(b"\r\n")
        if not line.lower().startswith((b"content-length", b"l:", b"l "))
    ]
    try:
        message = parse(b"\r\n".join(lines) + b"\r\n\r\n", stream=True)
        _ = message.vias, message.cseq, message.call_id
    except ValueError:
        return None
    return message if isinstance(message, Request) else None
