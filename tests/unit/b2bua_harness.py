"""In-memory multi-party harness for the B2BUA core (design.md §6 "Multi-party").

Three parties on a fake clock: a scripted caller UA (the softswitch's A side, at
127.0.0.1:5070), the proxy core (``B2BUA``, at 127.0.0.1:5060) and a scripted callee UA
(the trunk, B side, at 127.0.0.1:5080). ``Network`` moves bytes between them in memory,
logs every datagram, can lose some, and runs the leak guard on every ``Send`` of the proxy
exactly as ``proxy.server.Server.send`` does (block, count, abort the call).

The UAs are deliberately small and independent of the code under test: they are built on
``proxy.sip.transaction.TransactionLayer`` and ``proxy.sip.build`` only, keep one dialog
each, and answer what a well-behaved softswitch answers automatically (ACK for 2xx, 200 to
BYE/INFO/UPDATE/re-INVITE, 200 + 487 to CANCEL). Everything else is scripted by the test.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import unquote_to_bytes

from bindings.memory_store import MemoryBindingStore
from bindings.models import Binding
from proxy.b2bua.b2bua import B2BUA, error_reply
from proxy.b2bua.context import B2buaSettings
from proxy.b2bua.events import CallFinished, CallSummary, LookupBinding
from proxy.b2bua.leak_guard import guard_for
from proxy.numbers import NumberPlan
from proxy.sip.build import make_cancel, make_request, make_response
from proxy.sip.errors import SipError
from proxy.sip.message import Request, Response, parse
from proxy.sip.transaction import (
    AckTimeout,
    Address,
    ClientTransaction,
    RequestReceived,
    ResponseReceived,
    Send,
    ServerTransaction,
    TimerSettings,
    TransactionLayer,
    TransactionTimeout,
)
from proxy.sip.uri import SipUri, parse_uri

PROXY = Address("udp", "127.0.0.1", 5060)
CALLER = Address("udp", "127.0.0.1", 5070)
CALLEE = Address("udp", "127.0.0.1", 5080)

A_NUMBER = "+8613800138000"
B_NUMBER = "+8613900139000"
X_NUMBER = "700100012345678"
STRANGER = "+8613700137000"

T1 = 0.5
#: Long enough for every transaction, 2xx retransmission and wait timer to run out.
SETTLE = 64 * T1 + 10

START = 1_000_000.0

A_SDP = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 127.0.0.1\r\n"
    b"s=call\r\n"
    b"c=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 8 101\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
)
B_SDP = (
    b"v=0\r\n"
    b"o=bob 1234 1 IN IP4 127.0.0.1\r\n"
    b"s=answer\r\n"
    b"c=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 30000 RTP/AVP 8 101\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
)


def sdp_lines(body: bytes) -> list[bytes]:
    return [line for line in body.split(b"\r\n") if line]


# -- scripted user agents ------------------------------------------------------------


@dataclass
class UADialog:
    """The one dialog a scripted UA keeps (RFC 3261 §12), seen from the UA."""

    call_id: str
    local_tag: str
    remote_tag: str | None
    local_uri: str
    remote_uri: str
    remote_target: str
    route_set: list[str] = field(default_factory=list)
    local_cseq: int = 1


def _address_of(uri_text: str) -> Address:
    """Where a UA sends a request for ``uri_text``: IP literal hosts only, UDP."""
    uri = parse(f"OPTIONS {uri_text} SIP/2.0\r\nContent-Length: 0\r\n\r\n".encode(), stream=True)
    assert isinstance(uri, Request)
    target = uri.request_uri
    assert isinstance(target, SipUri)
    return Address("udp", target.host, target.port or 5060)


class ScriptedUA:
    """A softswitch side: sends what the test says, answers the routine itself."""

    def __init__(self, name: str, address: Address, number: str) -> None:
        self.name = name
        self.address = address
        self.number = number
        self.layer = TransactionLayer(TimerSettings(t1=T1))
        self._ids = 0
        #: Every request (ACKs included) and response the TU was handed, in order.
        self.requests: list[Request] = []
        self.responses: list[Response] = []
        self.timeouts: list[str] = []
        self.ack_timeouts: list[Hashable] = []
        self.dialog: UADialog | None = None
        #: Our initial INVITE (caller side) and its client transaction.
        self.invite: Request | None = None
        self.invite_client: ClientTransaction | None = None
        #: The INVITE we received (callee side) and its server transaction.
        self.invite_server: ServerTransaction | None = None
        self.reinvite_server: ServerTransaction | None = None
        #: Body of the ACK we send for a 2xx (late offer: the answer goes here).
        self.ack_body: bytes = b""
        self.acks_sent: dict[int, Send] = {}
        #: Status for in-dialog requests and CANCEL, None to leave them to the test.
        self.auto_reply: dict[str, int | None] = {
            "BYE": 200,
            "INFO": 200,
            "UPDATE": 200,
            "INVITE": 200,
            "CANCEL": 200,
            "OPTIONS": 200,
        }
        self.pending_server: dict[str, ServerTransaction] = {}

    def _next(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}{self.name}{self._ids}"

    def via(self) -> str:
        return (
            f"SIP/2.0/UDP {self.address.host}:{self.address.port};"
            f"branch=z9hG4bK{self._next('b')};rport"
        )

    def contact(self) -> str:
        """Our Contact: the user is who we are in the dialog (the callee's number for B)."""
        user = self.number.removeprefix("+86")
        if self.dialog is not None:
            uri = parse_uri(self.dialog.local_uri)
            if isinstance(uri, SipUri) and uri.user:
                user = uri.user
        return f"<sip:{user}@{self.address.host}:{self.address.port}>"

    # -- network side --------------------------------------------------------------

    def receive(self, data: bytes, source: Address, now: float) -> list[Send]:
        message = parse(data)
        return self._handle(self.layer.receive(message, source, now), now)

    def advance(self, now: float) -> list[Send]:
        return self._handle(self.layer.advance(now), now)

    def next_deadline(self) -> float | None:
        return self.layer.next_deadline()

    def _handle(self, outputs: Iterable[object], now: float) -> list[Send]:
        sends: list[Send] = []
        for item in outputs:
            if isinstance(item, Send):
                sends.append(item)
            elif isinstance(item, RequestReceived):
                sends += self._on_request(item, now)
            elif isinstance(item, ResponseReceived):
                sends += self._on_response(item.response, item.transaction, now)
            elif isinstance(item, TransactionTimeout):
                self.timeouts.append(item.transaction.request.method)
            elif isinstance(item, AckTimeout):
                self.ack_timeouts.append(item.key)
        return sends

    def _on_request(self, event: RequestReceived, now: float) -> list[Send]:
        request = event.request
        self.requests.append(request)
        if request.method == "ACK":
            self.layer.stop_2xx_retransmit(("2xx", request.call_id, request.cseq.number))
            return []
        txn = event.transaction
        assert txn is not None
        if request.method == "INVITE" and request.to.tag is None:
            self.invite_server = txn
            self.dialog = UADialog(
                call_id=request.call_id,
                local_tag=self._next("t"),
                remote_tag=request.from_.tag,
                local_uri=str(request.to.uri),
                remote_uri=str(request.from_.uri),
                remote_target=str(request.contacts[0].uri),
                route_set=[str(rr) for rr in request.record_routes],
            )
            return []
        if request.method == "CANCEL":
            return self._on_cancel(txn, request, now)
        if request.method == "INVITE":
            self.reinvite_server = txn
        status = self.auto_reply.get(request.method)
        if status is None:
            self.pending_server[request.method] = txn
            return []
        body = B_SDP if request.method == "INVITE" and status < 300 else b""
        return self.respond(txn, status, body=body, now=now)

    def _on_cancel(self, txn: ServerTransaction, cancel: Request, now: float) -> list[Send]:
        status = self.auto_reply["CANCEL"]
        if status is None:
            self.pending_server["CANCEL"] = txn
            return []
        sends = self.respond(txn, status, now=now)
        invite = self.invite_server
        if invite is not None and invite.state == "proceeding":
            sends += self.respond(invite, 487, now=now)
        return sends

    def _on_response(self, response: Response, txn: ClientTransaction, now: float) -> list[Send]:
        self.responses.append(response)
        if txn.request.method != "INVITE" or not 200 <= response.status < 300:
            return []
        cseq = response.cseq.number
        if self.dialog is None or self.dialog.remote_tag is None:
            self._learn_dialog(txn.request, response)
        ack = self.acks_sent.get(cseq)
        if ack is None:
            ack = self._ack(response, txn.request)
            self.acks_sent[cseq] = ack
        return [ack]

    def _learn_dialog(self, invite: Request, response: Response) -> None:
        """RFC 3261 §12.1.2: the UAC's dialog from its INVITE and the 2xx."""
        self.dialog = UADialog(
            call_id=invite.call_id,
            local_tag=invite.from_.tag or "",
            remote_tag=response.to.tag,
            local_uri=str(invite.from_.uri),
            remote_uri=str(invite.to.uri),
            remote_target=str(response.contacts[0].uri),
            route_set=[str(rr) for rr in reversed(response.record_routes)],
            local_cseq=invite.cseq.number,
        )

    def _ack(self, response: Response, invite: Request) -> Send:
        dialog = self.dialog
        assert dialog is not None
        body = self.ack_body if invite is self.invite else b""
        ack = make_request(
            "ACK",
            dialog.remote_target,
            via=self.via(),
            from_=f"<{dialog.local_uri}>;tag={dialog.local_tag}",
            to=f"<{dialog.remote_uri}>;tag={dialog.remote_tag}",
            call_id=dialog.call_id,
            cseq=response.cseq.number,
            headers=tuple(("Route", route) for route in dialog.route_set),
            body=body,
            content_type="application/sdp" if body else None,
        )
        return Send(ack.to_bytes(), _address_of(dialog.remote_target))

    # -- what a test makes the UA do ----------------------------------------------------

    def send_invite(self, request: Request, now: float) -> list[Send]:
        """Send an initial INVITE (caller side) to the proxy."""
        self.invite = request
        self.dialog = None
        self.invite_client, sends = self.layer.send_request(request, PROXY, now)
        return [item for item in sends if isinstance(item, Send)]

    def cancel(self, now: float) -> list[Send]:
        assert self.invite is not None
        _, sends = self.layer.send_request(make_cancel(self.invite), PROXY, now)
        return [item for item in sends if isinstance(item, Send)]

    def respond(
        self,
        txn: ServerTransaction | None,
        status: int,
        *,
        now: float,
        body: bytes = b"",
        headers: tuple[tuple[str, str], ...] = (),
        with_contact: bool = True,
    ) -> list[Send]:
        """Answer a request we received; a 2xx to an INVITE is retransmitted until ACKed."""
        txn = txn or self.invite_server
        assert txn is not None
        request = txn.request
        extra = headers
        if with_contact and request.method in ("INVITE", "UPDATE") and 100 < status < 300:
            extra = (("Contact", self.contact()), *headers)
        tag = self.dialog.local_tag if self.dialog is not None else self._next("t")
        response = make_response(
            request,
            status,
            to_tag=tag,
            headers=extra,
            body=body,
            content_type="application/sdp" if body else None,
        )
        sends = [
            item for item in self.layer.send_response(txn, response, now) if isinstance(item, Send)
        ]
        if request.method == "INVITE" and 200 <= status < 300:
            send = self.layer.send_stateless(response, txn.response_destination)
            self.layer.start_2xx_retransmit(
                ("2xx", request.call_id, request.cseq.number), send, now
            )
        return sends

    def respond_raw(self, txn: ServerTransaction | None, data: bytes, now: float) -> list[Send]:
        """Answer with literal response bytes (privacy tests); 2xx retransmitted."""
        txn = txn or self.invite_server
        assert txn is not None
        response = parse(data)
        assert isinstance(response, Response)
        sends = [
            item for item in self.layer.send_response(txn, response, now) if isinstance(item, Send)
        ]
        if txn.request.method == "INVITE" and 200 <= response.status < 300:
            send = self.layer.send_stateless(response, txn.response_destination)
            key = ("2xx", txn.request.call_id, txn.request.cseq.number)
            self.layer.start_2xx_retransmit(key, send, now)
        return sends

    def in_dialog(
        self,
        method: str,
        now: float,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> list[Send]:
        """Send BYE, INFO, UPDATE or a re-INVITE in our dialog (RFC 3261 §12.2.1.1)."""
        dialog = self.dialog
        assert dialog is not None and dialog.remote_tag is not None
        dialog.local_cseq += 1
        contact = (("Contact", self.contact()),) if method in ("INVITE", "UPDATE") else ()
        request = make_request(
            method,
            dialog.remote_target,
            via=self.via(),
            from_=f"<{dialog.local_uri}>;tag={dialog.local_tag}",
            to=f"<{dialog.remote_uri}>;tag={dialog.remote_tag}",
            call_id=dialog.call_id,
            cseq=dialog.local_cseq,
            headers=(*(("Route", route) for route in dialog.route_set), *contact, *headers),
            body=body,
            content_type=content_type or ("application/sdp" if body else None),
        )
        if method == "INVITE":
            self.invite = request
            self.ack_body = b""
        _, sends = self.layer.send_request(request, _address_of(dialog.remote_target), now)
        return [item for item in sends if isinstance(item, Send)]

    # -- what a test asserts -------------------------------------------------------

    def statuses(self, method: str = "INVITE") -> list[int]:
        return [r.status for r in self.responses if r.cseq.method == method]

    def received(self, method: str) -> list[Request]:
        return [r for r in self.requests if r.method == method]

    @property
    def is_idle(self) -> bool:
        return self.layer.client_count == 0 and self.layer.server_count == 0


def caller_invite(
    *,
    x: str = X_NUMBER,
    caller: str = "13800138000",
    body: bytes = A_SDP,
    call_id: str = "a-call-1@127.0.0.1",
    branch: str = "z9hG4bKa1",
    max_forwards: int = 70,
    extra: str = "",
    request_uri: str | None = None,
) -> Request:
    """The softswitch's initial INVITE to X, from literal text."""
    uri = request_uri or f"sip:{x}@127.0.0.1:5060"
    content = "Content-Type: application/sdp\n" if body else ""
    text = (
        f"INVITE {uri} SIP/2.0\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport\n"
        f"Max-Forwards: {max_forwards}\n"
        f"From: <sip:{caller}@127.0.0.1:5070>;tag=ftag-a\n"
        f"To: <sip:{x}@127.0.0.1:5060>\n"
        f"Call-ID: {call_id}\n"
        "CSeq: 1 INVITE\n"
        f"Contact: <sip:{caller}@127.0.0.1:5070>\n"
        "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO\n"
        "Supported: timer, 100rel, replaces\n"
        f"{extra}"
        f"{content}"
        f"Content-Length: {len(body)}\n\n"
    )
    message = parse(text.replace("\n", "\r\n").encode() + body)
    assert isinstance(message, Request)
    return message


# -- the network ---------------------------------------------------------------------


class Endpoint(Protocol):
    def receive(self, data: bytes, source: Address, now: float) -> list[Send]: ...
    def advance(self, now: float) -> list[Send]: ...
    def next_deadline(self) -> float | None: ...


@dataclass
class Datagram:
    """One message on the wire, as the network saw it."""

    at: float
    source: str
    destination: str
    data: bytes
    dropped: bool = False
    blocked: str | None = None

    @property
    def message(self) -> Request | Response:
        return parse(self.data)

    @property
    def first_line(self) -> str:
        return self.data.split(b"\r\n", 1)[0].decode()

    def is_request(self, method: str) -> bool:
        return self.data.startswith(method.encode() + b" ")

    def is_response(self, status: int, method: str | None = None) -> bool:
        if not self.data.startswith(f"SIP/2.0 {status} ".encode()):
            return False
        return method is None or self.message.cseq.method == method


@dataclass
class LeakHit:
    destination: str
    masked: str
    first_line: str


DropRule = Callable[[Datagram], bool]


class ProxyEndpoint:
    """The core behind the adapter logic of ``proxy.server.Server`` (lookups, leak guard,
    call records, error replies)."""

    def __init__(self, network: Network, core: B2BUA, store: MemoryBindingStore) -> None:
        self.network = network
        self.core = core
        self.store = store
        self.hold_lookups = False
        self.held: list[LookupBinding] = []
        self.errors: list[SipError] = []

    def receive(self, data: bytes, source: Address, now: float) -> list[Send]:
        try:
            outputs = self.core.receive(data, source, now)
        except SipError as error:
            self.errors.append(error)
            reply = error_reply(error, data, source)
            return [] if reply is None else [reply]
        return self.process(outputs, now)

    def advance(self, now: float) -> list[Send]:
        return self.process(self.core.advance(now), now)

    def next_deadline(self) -> float | None:
        return self.core.next_deadline()

    def process(self, outputs: Iterable[object], now: float) -> list[Send]:
        sends: list[Send] = []
        for item in outputs:
            if isinstance(item, Send):
                sends.append(item)
            elif isinstance(item, LookupBinding):
                if self.hold_lookups:
                    self.held.append(item)
                else:
                    sends += self.lookup(item, now)
            elif isinstance(item, CallFinished):
                self.network.finished.append(item.summary)
            else:
                raise AssertionError(f"unexpected output {item!r}")
        return sends

    def lookup(self, item: LookupBinding, now: float) -> list[Send]:
        binding = self.store.find_for_call(item.attempt.x, item.attempt.caller, now)
        return self.process(self.core.route_call(item.call_ref, binding, now), now)

    def release_lookups(self, now: float) -> list[Send]:
        held, self.held = self.held, []
        sends: list[Send] = []
        for item in held:
            sends += self.lookup(item, now)
        return sends


class Network:
    """Caller, proxy and callee wired in memory on a fake clock."""

    def __init__(
        self,
        *,
        settings: B2buaSettings | None = None,
        store: MemoryBindingStore | None = None,
        now: float = START,
    ) -> None:
        self.now = now
        self.store = store or MemoryBindingStore()
        self.core = B2BUA(
            settings or default_settings(),
            seed="t",
            timers=TimerSettings(t1=T1),
        )
        self.proxy = ProxyEndpoint(self, self.core, self.store)
        self.caller = ScriptedUA("a", CALLER, A_NUMBER)
        self.callee = ScriptedUA("b", CALLEE, B_NUMBER)
        self.names: dict[Address, str] = {PROXY: "proxy", CALLER: "caller", CALLEE: "callee"}
        self.endpoints: dict[str, Endpoint] = {
            "proxy": self.proxy,
            "caller": self.caller,
            "callee": self.callee,
        }
        self.log: list[Datagram] = []
        self.leaks: list[LeakHit] = []
        self.finished: list[CallSummary] = []
        self.drop_rules: list[DropRule] = []
        self._queue: list[tuple[str, Send]] = []

    # -- loss ----------------------------------------------------------------------

    def drop_once(self, predicate: DropRule) -> None:
        """Lose the first datagram matching ``predicate``."""
        fired = [False]

        def rule(datagram: Datagram) -> bool:
            if not fired[0] and predicate(datagram):
                fired[0] = True
                return True
            return False

        self.drop_rules.append(rule)

    def drop_nth(self, n: int) -> None:
        """Lose the ``n``-th datagram from now on (1-based)."""
        seen = [0]

        def rule(datagram: Datagram) -> bool:
            seen[0] += 1
            return seen[0] == n

        self.drop_rules.append(rule)

    def drop_all(self, predicate: DropRule) -> None:
        self.drop_rules.append(predicate)

    # -- moving bytes --------------------------------------------------------------

    def inject(self, source: str, sends: Iterable[Send]) -> None:
        """Queue what ``source`` wants to send and deliver until nothing moves."""
        self._queue += [(source, send) for send in sends]
        self.run()

    def run(self) -> None:
        while self._queue:
            source, send = self._queue.pop(0)
            self._deliver(source, send)

    def _deliver(self, source: str, send: Send) -> None:
        destination = self.names.get(send.destination, str(send.destination))
        datagram = Datagram(self.now, source, destination, send.data)
        self.log.append(datagram)
        if source == "proxy" and send.guard:
            # Exactly the adapter: guard, block, count, abort the call (proxy/server.py).
            masked = guard_for(send.guard).find(send.data)
            if masked is not None:
                datagram.blocked = masked
                self.leaks.append(LeakHit(destination, masked, datagram.first_line))
                call_id = parse(send.data).call_id
                outputs = self.core.abort_call(call_id, self.now, reason="leak")
                self._queue += [("proxy", s) for s in self.proxy.process(outputs, self.now)]
                return
        if any(rule(datagram) for rule in list(self.drop_rules)):
            datagram.dropped = True
            return
        endpoint = self.endpoints.get(destination)
        if endpoint is None:
            datagram.dropped = True
            return
        source_address = next(a for a, n in self.names.items() if n == source)
        replies = endpoint.receive(send.data, source_address, self.now)
        self._queue += [(destination, reply) for reply in replies]

    # -- time ----------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        self.advance_to(self.now + seconds)

    def advance_to(self, when: float) -> None:
        """Fire every timer of every party in deadline order up to ``when``."""
        self.run()
        while True:
            due = [
                (deadline, name)
                for name, endpoint in self.endpoints.items()
                if (deadline := endpoint.next_deadline()) is not None and deadline <= when
            ]
            if not due:
                break
            deadline, name = min(due)
            self.now = max(self.now, deadline)
            sends = self.endpoints[name].advance(self.now)
            self._queue += [(name, send) for send in sends]
            self.run()
        self.now = max(self.now, when)

    def settle(self) -> None:
        """Let every transaction and retransmission run out."""
        self.advance(SETTLE)

    # -- scripted actions ----------------------------------------------------------

    def call(self, request: Request | None = None) -> None:
        self.inject("caller", self.caller.send_invite(request or caller_invite(), self.now))

    def callee_responds(self, status: int, *, body: bytes = b"", **kwargs: object) -> None:
        sends = self.callee.respond(None, status, now=self.now, body=body, **kwargs)  # type: ignore[arg-type]
        self.inject("callee", sends)

    def release_lookups(self) -> None:
        self.inject("proxy", self.proxy.release_lookups(self.now))

    # -- assertions ----------------------------------------------------------------

    def sent(self, source: str, destination: str) -> list[Datagram]:
        return [d for d in self.log if d.source == source and d.destination == destination]

    def delivered(self, source: str, destination: str) -> list[Datagram]:
        return [d for d in self.sent(source, destination) if not d.dropped and d.blocked is None]

    def assert_clean(self) -> None:
        """No call, dialog, transaction, retransmission or timer left in the proxy."""
        core = self.core
        assert core.active_calls == 0, core.calls
        assert core.layer.client_count == 0, core.layer._clients
        assert core.layer.server_count == 0, core.layer._servers
        assert core.dialogs == {}
        assert core.by_call_id == {}
        assert core.next_deadline() is None
        assert not self.leaks, self.leaks

    def summary(self) -> CallSummary:
        assert len(self.finished) == 1, self.finished
        return self.finished[0]


def default_settings(**overrides: object) -> B2buaSettings:
    values: dict[str, object] = {
        "advertise_host": "127.0.0.1",
        "advertise_port": 5060,
        "trunk": CALLEE,
        "trunk_host": "127.0.0.1",
        "trunk_port": 5080,
        "plan": NumberPlan(),
    }
    values.update(overrides)
    return B2buaSettings(**values)  # type: ignore[arg-type]


def bound_network(
    *,
    direction: str = "both",
    expires_at: float | None = None,
    max_call_s: int | None = None,
    **settings: object,
) -> tuple[Network, Binding]:
    """A network whose store holds the binding (A, B) on X."""
    store = MemoryBindingStore()
    binding = store.add(
        A_NUMBER,
        B_NUMBER,
        X_NUMBER,
        now=START - 100,
        direction=direction,  # type: ignore[arg-type]
        expires_at=expires_at,
        max_call_s=max_call_s,
    )
    network = Network(settings=default_settings(**settings), store=store)
    return network, binding


def digits_leak(data: bytes, number: str) -> bool:
    """Whether the national digits of ``number`` appear in ``data``, %-escapes undone and
    any run of separators (space, tab, - . ( ) /) allowed between two digits: a plain regex
    independent of the leak guard, and stricter (no digit boundaries)."""
    national = number.removeprefix("+86").encode()
    pattern = rb"[\s\-.()/]*".join(re.escape(bytes([digit])) for digit in national)
    return re.search(pattern, unquote_to_bytes(data)) is not None
