"""The two legs of a call: the A leg (we are its UAS) and the B leg (we are its UAC).

A leg turns SIP from its side into call-control events for the ``Call`` and turns the
events it is given into SIP for its side (RFC 3261 §12–§15). Whatever it passes on has
been through ``privacy.extract``: only a ``Payload`` crosses between legs.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Final

from proxy.b2bua.context import Context
from proxy.b2bua.dialog import Dialog, uas_dialog
from proxy.b2bua.events import EMPTY, Answer, Disconnect, Fail, Payload, Progress, Relay
from proxy.b2bua.privacy import RELAYED_OPTION_TAGS, allowed_headers, relayed_body
from proxy.sip.build import make_cancel, make_request, make_response
from proxy.sip.message import REASON_PHRASES, Message, Request, Response
from proxy.sip.transaction import NO_GUARD, Address, ClientTransaction, Send, ServerTransaction
from proxy.sip.uri import SipUri

if TYPE_CHECKING:
    from proxy.b2bua.call import Call

Outputs = list[object]
#: A hang-up carries nothing: one event serves every call.
DISCONNECT: Final = Disconnect()


def extract(message: Message) -> Payload:
    """The privacy boundary: the part of ``message`` allowed to reach the other leg."""
    body, content_type = relayed_body(message)
    headers = allowed_headers(message)
    if not headers and content_type is None:
        return EMPTY
    return Payload(headers, body, content_type)


def reason_phrase(status: int) -> str:
    """Our own phrase for a status; a relayed phrase could carry anything (design.md §4)."""
    return (
        REASON_PHRASES.get(status) or REASON_PHRASES[status // 100 * 100 if status >= 200 else 180]
    )


class Leg:
    """What both legs share: a dialog, the leak-guard numbers, pending relays."""

    name = ""

    def __init__(self, call: Call, ctx: Context, guard: frozenset[str]) -> None:
        self.call = call
        self.ctx = ctx
        self.guard = guard
        self.dialog: Dialog | None = None
        #: relayed requests this leg received and must answer: token → server transaction
        self.relays_in: dict[int, ServerTransaction] = {}
        #: 2xx to a relayed re-INVITE waiting for this side's ACK: the relay token
        self.awaiting_ack: int | None = None
        #: ACKs we sent for 2xx responses, by CSeq number: a retransmitted 2xx gets its
        #: own ACK again (RFC 3261 §13.2.2.4), not that of a later re-INVITE.
        self.acks: dict[int, Send] = {}
        self._own_contact: str | None = None

    @property
    def transport(self) -> str:
        return self.dialog.fallback.transport if self.dialog else "udp"

    @property
    def response_tag(self) -> str | None:
        """Our To tag in responses on this leg (RFC 3261 §8.2.6.2)."""
        return self.dialog.local_tag if self.dialog else None

    # -- sending -----------------------------------------------------------------------

    def _send_request(
        self, request: Request, branch: str, kind: object, now: float, out: Outputs
    ) -> None:
        assert self.dialog is not None
        _, outputs = self.ctx.layer.send_request(
            request,
            self.dialog.destination(),
            now,
            guard=self.guard,
            context=(self, kind),
            branch=branch,
        )
        out += outputs

    def _in_dialog(
        self, method: str, payload: Payload = EMPTY, *, cseq: int | None = None
    ) -> tuple[Request, str]:
        """A request in this leg's dialog and the branch of its Via."""
        dialog = self.dialog
        assert dialog is not None
        contact = self._contact() if method in ("INVITE", "UPDATE") else None
        branch = self.ctx.ids.branch()
        request = dialog.request(
            method,
            via=self.ctx.via(dialog.destination().transport, branch),
            cseq=cseq,
            contact=contact,
            headers=payload.headers,
            body=payload.body,
            content_type=payload.content_type,
        )
        return request, branch

    def _contact(self) -> str:
        """Our Contact on this leg (RFC 3261 §8.1.1.8): X at our address, once X is known."""
        contact = self._own_contact
        if contact is None:
            x = self.call.x
            contact = self.ctx.contact(x or "privproxy", self.transport)
            if x is not None:
                self._own_contact = contact
        return contact

    def stop_ack_wait(self) -> None:
        """Stop retransmitting a 2xx that is still waiting for its ACK."""
        if self.awaiting_ack is not None:
            self.ctx.layer.stop_2xx_retransmit(self._ack_key(self.awaiting_ack))
            self.awaiting_ack = None

    def close(self, now: float, out: Outputs) -> None:
        """The call ended: answer what is pending here with 487 (RFC 3261 §15.1.2) and stop
        retransmitting 2xx responses, so that no server transaction or timer outlives it."""
        self.stop_ack_wait()
        for token in list(self.relays_in):
            self.answer_relay(token, 487, EMPTY, now, out)

    def hang_up(self, now: float, out: Outputs) -> None:
        """Send BYE on a confirmed dialog (RFC 3261 §15.1.1)."""
        if self.dialog is not None and self.dialog.remote_tag is not None:
            request, branch = self._in_dialog("BYE")
            self._send_request(request, branch, "bye", now, out)

    def relay(self, event: Relay, now: float, out: Outputs) -> None:
        """Send a request relayed from the other leg in this dialog."""
        request, branch = self._in_dialog(event.method, event.payload)
        self._send_request(request, branch, ("relay", event.token), now, out)
        if event.method == "INVITE":
            self.call.relay_invites[event.token] = request

    def answer_relay(
        self, token: int, status: int, payload: Payload, now: float, out: Outputs
    ) -> None:
        """Answer, on this leg, a request that was relayed to the other one."""
        txn = self.relays_in.pop(token, None)
        if txn is None:
            return
        response = self._response(txn.request, status, payload)
        sent = self.ctx.layer.send_response(txn, response, now, guard=self.guard)
        out += sent
        if txn.request.method == "INVITE" and 200 <= status < 300:
            self.awaiting_ack = token
            send = self._written(sent, response, txn)
            self.ctx.layer.start_2xx_retransmit(self._ack_key(token), send, now)

    def _written(self, sent: Sequence[object], response: Response, txn: ServerTransaction) -> Send:
        """The ``Send`` of a 2xx just sent, whose bytes its retransmissions repeat (RFC 3261
        §13.3.1.4): serialized once. Should the transaction have refused it, the 2xx is
        serialized for the retransmissions alone."""
        for item in sent:
            if isinstance(item, Send):
                return item
        return self.ctx.layer.send_stateless(response, txn.response_destination, guard=self.guard)

    def _ack_key(self, token: int) -> Hashable:
        """Key of a 2xx retransmission; ``AckTimeout`` brings it back to the call."""
        return (self.call.ref, self.name, token)

    def _response(
        self, request: Request, status: int, payload: Payload = EMPTY, reason: str | None = None
    ) -> Response:
        headers = payload.headers
        if 100 < status < 300 and request.method in ("INVITE", "UPDATE"):
            headers = (("Contact", self._contact()), *headers)
        return make_response(
            request,
            status,
            reason or reason_phrase(status),
            to_tag=self.response_tag,
            headers=headers,
            body=payload.body,
            content_type=payload.content_type,
        )

    # -- receiving in-dialog requests --------------------------------------------------

    def on_request(
        self, txn: ServerTransaction | None, request: Request, now: float, out: Outputs
    ) -> None:
        """An in-dialog request from this leg's party (RFC 3261 §12.2.2)."""
        if request.method == "ACK":
            self.on_ack(request, now, out)
            return
        assert txn is not None
        handler = _IN_DIALOG.get(request.method, Leg._refuse)
        handler(self, txn, request, now, out)

    def _answer(
        self,
        txn: ServerTransaction,
        status: int,
        now: float,
        out: Outputs,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        response = self._response(txn.request, status, Payload(headers) if headers else EMPTY)
        out += self.ctx.layer.send_response(txn, response, now, guard=self.guard)

    def _on_bye(self, txn: ServerTransaction, request: Request, now: float, out: Outputs) -> None:
        """RFC 3261 §15.1.2: 200 to the BYE, then the call hangs up the other side."""
        self._answer(txn, 200, now, out)
        self.call.handle(self, DISCONNECT, now, out)

    def _on_relayed(
        self, txn: ServerTransaction, request: Request, now: float, out: Outputs
    ) -> None:
        """re-INVITE, UPDATE, INFO: answered once the other side has answered. A re-INVITE
        gets 100 Trying at once so that its sender stops retransmitting (RFC 3261 §8.2.6.1);
        the far side may take its time over a new offer."""
        if request.method == "INVITE":
            out += self.ctx.layer.send_response(txn, make_response(request, 100), now)
        token = self.ctx.ids.ref()
        self.relays_in[token] = txn
        self.call.handle(self, Relay(request.method, extract(request), token), now, out)

    def _on_options(
        self, txn: ServerTransaction, request: Request, now: float, out: Outputs
    ) -> None:
        """In-dialog OPTIONS is a keepalive or session audit: the B2BUA answers it itself
        (RFC 3261 §11.2); relaying it would tell nothing about this leg."""
        self._answer(txn, 200, now, out, self._capabilities())

    def _refuse(self, txn: ServerTransaction, request: Request, now: float, out: Outputs) -> None:
        """RFC 3261 §21.4.6: a 405 lists the methods we do take."""
        self._answer(txn, 405, now, out, (("Allow", self.ctx.settings.allow),))

    def _capabilities(self) -> tuple[tuple[str, str], ...]:
        return (
            ("Allow", self.ctx.settings.allow),
            ("Accept", "application/sdp"),
            ("Supported", ", ".join(sorted(RELAYED_OPTION_TAGS))),
        )

    def on_response(self, kind: object, response: Response, now: float, out: Outputs) -> None:
        """A final response to a request we relayed onto this leg."""
        if not (isinstance(kind, tuple) and kind[0] == "relay") or response.status < 200:
            return
        token = kind[1]
        if token not in self.call.relay_origin and 200 <= response.status < 300:
            ack = self.acks.get(response.cseq.number)
            if ack is not None:  # a retransmitted 2xx to a relayed re-INVITE
                out.append(ack)
            return
        self.call.relay_answered(self, token, response.status, extract(response), now, out)

    def on_ack(self, request: Request, now: float, out: Outputs) -> None:
        """ACK for a 2xx we sent on a relayed re-INVITE: confirm it on the other leg."""
        token = self.awaiting_ack
        if token is None:
            return
        self.awaiting_ack = None
        self.ctx.layer.stop_2xx_retransmit(self._ack_key(token))
        self.call.relay_acked(self, token, extract(request), now, out)

    def send_ack(self, invite: Request, payload: Payload, now: float, out: Outputs) -> None:
        """ACK a 2xx we received (RFC 3261 §13.2.2.4): built from the dialog, same CSeq."""
        assert self.dialog is not None
        ack, _ = self._in_dialog("ACK", payload, cseq=invite.cseq.number)
        send = self.ctx.layer.send_stateless(ack, self.dialog.destination(), guard=self.guard)
        self.acks[invite.cseq.number] = send
        out.append(send)


class ALeg(Leg):
    """The caller's side: we are the UAS of its INVITE."""

    name = "a"

    def __init__(self, call: Call, ctx: Context, txn: ServerTransaction, local_tag: str) -> None:
        super().__init__(call, ctx, NO_GUARD)
        self.invite_txn = txn
        self.invite = txn.request
        self.local_tag = local_tag
        self.answered = False
        self.final_sent = False
        #: the INVITE's Record-Route values, which our 18x and 2xx copy (read once)
        self._record_routes: tuple[tuple[str, str], ...] | None = None

    def _response(
        self, request: Request, status: int, payload: Payload = EMPTY, reason: str | None = None
    ) -> Response:
        """RFC 3261 §12.1.1: a response that creates the dialog copies the Record-Route of
        the INVITE, so that A's route set keeps the proxies of its own side."""
        if request is self.invite and 100 < status < 300:
            routes = self._record_routes
            if routes is None:
                routes = self._record_routes = tuple(
                    ("Record-Route", rr) for rr in request.get_all("record-route")
                )
            if routes:
                payload = Payload(routes + payload.headers, payload.body, payload.content_type)
        return super()._response(request, status, payload, reason)

    @property
    def response_tag(self) -> str:
        """Every response above 100 carries our tag, a dialog or not (RFC 3261 §8.2.6.2):
        a final error without one leaves the caller's ACK and CANCEL matching nothing."""
        return self.local_tag

    def start(self, now: float, out: Outputs) -> None:
        """100 Trying at once (RFC 3261 §8.2.6.1) so the softswitch stops retransmitting."""
        out += self.ctx.layer.send_response(self.invite_txn, make_response(self.invite, 100), now)

    def route(self, callee: str) -> None:
        """The other party is known: nothing of theirs may reach this side from now on."""
        self.guard = frozenset({callee})

    def _ensure_dialog(self) -> Dialog:
        if self.dialog is None:
            self.dialog = uas_dialog(
                self.invite, local_tag=self.local_tag, fallback=self.invite_txn.source
            )
        return self.dialog

    def progress(self, event: Progress, now: float, out: Outputs) -> None:
        if self.final_sent:
            return
        self._ensure_dialog()
        out += self.ctx.layer.send_response(
            self.invite_txn,
            self._response(self.invite, event.status, event.payload),
            now,
            guard=self.guard,
        )

    def answer(self, event: Answer, now: float, out: Outputs) -> None:
        """200 to the INVITE, retransmitted until A's ACK (RFC 3261 §13.3.1.4)."""
        if self.final_sent:
            return
        self._ensure_dialog()
        self.final_sent = self.answered = True
        response = self._response(self.invite, 200, event.payload)
        sent = self.ctx.layer.send_response(self.invite_txn, response, now, guard=self.guard)
        out += sent
        send = self._written(sent, response, self.invite_txn)
        self.ctx.layer.start_2xx_retransmit(self._ack_key(0), send, now)
        self.awaiting_ack = 0

    def fail(
        self,
        status: int,
        reason: str | None,
        now: float,
        out: Outputs,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """A final error on the INVITE (3xx are never relayed: their Contact can carry a
        number); ``headers`` are our own (Retry-After), never relayed ones."""
        if self.final_sent:
            return
        self.final_sent = True
        response = self._response(self.invite, status, Payload(headers), reason=reason)
        out += self.ctx.layer.send_response(self.invite_txn, response, now, guard=self.guard)

    def on_ack(self, request: Request, now: float, out: Outputs) -> None:
        if self.awaiting_ack == 0:
            self.awaiting_ack = None
            self.ctx.layer.stop_2xx_retransmit(self._ack_key(0))
            self.call.confirmed(extract(request), now, out)
            return
        super().on_ack(request, now, out)


class BLeg(Leg):
    """The callee's side: we are the UAC of a new INVITE, built from scratch."""

    name = "b"

    def __init__(self, call: Call, ctx: Context, callee: str, caller: str) -> None:
        super().__init__(call, ctx, frozenset({caller}))
        self.callee = callee
        self.invite: Request | None = None
        self.invite_txn: ClientTransaction | None = None
        #: the branch of our INVITE's Via, which its CANCEL repeats
        self.branch = ""
        self.provisional_seen = False
        self.cancel_pending = False
        self.cancelled = False
        self.answered = False
        self.finished = False

    def start(self, x: str, max_forwards: int, payload: Payload, now: float, out: Outputs) -> None:
        """Send the B-leg INVITE (design.md §4: Request-URI, From, To, PAI written anew)."""
        s = self.ctx.settings
        trunk = s.trunk
        dial = s.plan.dial_normalised(self.callee)
        port = f":{s.trunk_port}" if s.trunk_port else ""
        params = "" if trunk.transport == "udp" else f";transport={trunk.transport}"
        target = f"sip:{dial}@{s.trunk_host}{port}{params}"
        call_id = self.ctx.ids.call_id()
        local_tag = self.ctx.ids.tag()
        self.branch = self.ctx.ids.branch()
        self.dialog = Dialog(
            call_id=call_id,
            local_tag=local_tag,
            remote_tag=None,
            local_uri=self.ctx.identity(x),
            remote_uri=f"<sip:{dial}@{s.trunk_host}>",
            remote_target=SipUri("sip", dial, s.trunk_host, s.trunk_port, params=_params(trunk)),
            fallback=trunk,
        )
        self.invite = make_request(
            "INVITE",
            target,
            via=self.ctx.via(trunk.transport, self.branch),
            from_=self.dialog.from_value(),
            to=self.dialog.to_value(),
            call_id=call_id,
            cseq=self.dialog.next_cseq(),
            max_forwards=max_forwards,
            contact=self.ctx.contact(x, trunk.transport),
            headers=(("P-Asserted-Identity", self.ctx.identity(x)), *payload.headers),
            body=payload.body,
            content_type=payload.content_type,
        )
        self.invite_txn, outputs = self.ctx.layer.send_request(
            self.invite, trunk, now, guard=self.guard, context=(self, "invite"), branch=self.branch
        )
        out += outputs

    @property
    def call_id(self) -> str | None:
        return self.dialog.call_id if self.dialog else None

    @property
    def acked(self) -> bool:
        """Whether B's 2xx to our INVITE has had its ACK."""
        return self.invite is not None and self.invite.cseq.number in self.acks

    def on_response(self, kind: object, response: Response, now: float, out: Outputs) -> None:
        """A response from B to one of our requests (RFC 3261 §13.2.2, §12.1.2)."""
        if kind == "invite":
            self._on_invite_response(response, now, out)
        else:
            super().on_response(kind, response, now, out)

    def _on_invite_response(self, response: Response, now: float, out: Outputs) -> None:
        status = response.status
        assert self.dialog is not None and self.invite is not None
        if status == 100:
            return
        if status < 200:
            self.provisional_seen = True
            if response.to.tag and self.dialog.remote_tag is None:
                self.dialog.update_from_uas_response(response)
            if self.cancel_pending:
                self._send_cancel(now, out)
                return
            self.call.handle(self, Progress(status, extract(response)), now, out)
            return
        if status < 300:
            if self.answered:
                ack = self.acks.get(self.invite.cseq.number)
                if ack is not None:
                    out.append(ack)
                return
            self.answered = True
            self.dialog.update_from_uas_response(response)
            if self.cancelled or self.finished:
                self.send_ack(self.invite, EMPTY, now, out)
                self.hang_up(now, out)
                return
            self.call.handle(self, Answer(extract(response)), now, out)
            return
        self.finished = True
        if self.cancelled:
            return
        self.call.handle(self, Fail(480 if status < 400 else status), now, out)

    def confirm(self, payload: Payload, now: float, out: Outputs) -> None:
        """A acknowledged our 200: ACK B's 2xx, with A's answer if it was a late offer."""
        assert self.invite is not None
        self.send_ack(self.invite, payload, now, out)

    def cancel(self, now: float, out: Outputs) -> None:
        """Stop ringing B (RFC 3261 §9.1: no CANCEL before a provisional response)."""
        if self.answered or self.cancelled or self.finished:
            if self.answered and not self.finished:
                assert self.invite is not None
                if not self.acked:
                    self.send_ack(self.invite, EMPTY, now, out)
                self.hang_up(now, out)
                self.finished = True
            return
        if self.provisional_seen:
            self._send_cancel(now, out)
        else:
            self.cancel_pending = True
        self.cancelled = True

    def _send_cancel(self, now: float, out: Outputs) -> None:
        assert self.invite is not None
        self.cancel_pending = False
        cancel = make_cancel(self.invite)  # its Via is the INVITE's (RFC 3261 §9.1)
        _, outputs = self.ctx.layer.send_request(
            cancel,
            self.ctx.settings.trunk,
            now,
            guard=self.guard,
            context=(self, "cancel"),
            branch=self.branch,
        )
        out += outputs


InDialogHandler = Callable[[Leg, ServerTransaction, Request, float, Outputs], None]

#: Method of an in-dialog request → how a leg handles it; the rest get 405.
_IN_DIALOG: Final[dict[str, InDialogHandler]] = {
    "BYE": Leg._on_bye,
    "INVITE": Leg._on_relayed,
    "UPDATE": Leg._on_relayed,
    "INFO": Leg._on_relayed,
    "OPTIONS": Leg._on_options,
}


def _params(trunk: Address) -> tuple[tuple[str, str | None], ...]:
    return () if trunk.transport == "udp" else (("transport", trunk.transport),)
