"""The SIP transaction layer, sans-IO (RFC 3261 §17, with the RFC 6026 corrections).

Bytes, addresses and the time come in as arguments; what to send, what to tell the
transaction user (TU) and when to be called next come out (``Output`` values and
``next_deadline()``). Nothing here reads a clock or touches a socket.

The four machines of §17 are explicit tables, ``(state, event) -> (next state, actions)``:

- ``INVITE_CLIENT_TABLE``  — §17.1.1, Figure 5, with the Accepted state of RFC 6026 §8.4;
- ``NON_INVITE_CLIENT_TABLE`` — §17.1.2, Figure 6;
- ``INVITE_SERVER_TABLE``  — §17.2.1, Figure 7, with the Accepted state of RFC 6026 §8.7;
- ``NON_INVITE_SERVER_TABLE`` — §17.2.2, Figure 8.

Events are a received response class (``1xx``, ``2xx``, ``300-699``) or request
(``request``, ``ack``), a response the TU sends (``send_1xx`` …), a timer name
(``timer_a`` … ``timer_m``), and ``send`` / ``cancel_sent`` on the client side. A pair
missing from its table is a protocol anomaly: it is counted (``anomalies``), logged without
message content, and dropped — it never raises.

Choices the RFC leaves open, made here:

- The INVITE server does not send 100 Trying by itself: the TU sends it at once (§17.2.1
  lets the TU do so, and then the transaction must not).
- Timer C (§16.6 step 11) belongs to proxies and is not implemented; a B2BUA ends a
  ringing INVITE with CANCEL, and after a CANCEL the INVITE client transaction is given
  64*T1 to see its final response before it times out (``timer_cancel``, §9.1).
- A 2xx reaching an INVITE client transaction after a non-2xx final (a forking proxy
  forwards 2xx late, §16.7 step 5) is passed to the TU, which must ACK it (§13.2.2.4).
- Timer D is max(32 s, 64*T1) on UDP: "at least 32 seconds" (§17.1.1.2), and long enough
  to absorb a server that retransmits for 64*T1 with a larger T1.
- Sending failures are not modelled: every ``Send`` is assumed to go out. A transport
  error (§17.1.4, §17.2.4) is for the adapter to report to the TU by its own means.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeAlias

from proxy.sip.destination import (
    MAGIC_COOKIE,
    Address,
    make_branch,
    response_destination,
    stamp_received,
)
from proxy.sip.headers import canonical_name
from proxy.sip.message import Header, Request, Response
from proxy.sip.timers import TimerHandle, TimerHeap

__all__ = [
    "INVITE_CLIENT_TABLE",
    "INVITE_SERVER_TABLE",
    "NON_INVITE_CLIENT_TABLE",
    "NON_INVITE_SERVER_TABLE",
    "NO_GUARD",
    "AckTimeout",
    "Address",
    "ClientTransaction",
    "Output",
    "RequestReceived",
    "ResponseReceived",
    "Send",
    "ServerTransaction",
    "TimerFired",
    "TimerSettings",
    "TransactionLayer",
    "TransactionTimeout",
    "make_branch",
    "response_destination",
]

_log = logging.getLogger(__name__)

TERMINATED: Final = "terminated"
_INITIAL: Final = "init"
#: The guard of messages that need none: one shared set, not one per transaction (each
#: would be an object the cyclic collector walks for as long as the transaction lives).
NO_GUARD: Final[frozenset[str]] = frozenset()


# -- values and events ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Write ``data`` to ``destination``. ``guard`` is the TU's leak-guard set, opaque
    here, carried unchanged onto every retransmission and generated ACK."""

    data: bytes
    destination: Address
    guard: frozenset[str] = NO_GUARD


@dataclass(frozen=True, slots=True)
class TimerSettings:
    """T1, T2, T4 in seconds (RFC 3261 §17.1.1.1, Table 4)."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    def __post_init__(self) -> None:
        if not (self.t1 > 0 and self.t2 >= self.t1 and self.t4 >= 0):
            raise ValueError("timer settings need T1 > 0, T2 >= T1 and T4 >= 0")


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request for the TU. ``transaction`` is None only for an ACK that matches no
    INVITE server transaction: the ACK for a 2xx (RFC 3261 §17.2.3, §13.3.2.5)."""

    request: Request
    source: Address
    transaction: ServerTransaction | None


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for the TU (RFC 3261 §17.1.1.2, §17.1.2.2; RFC 6026 §8.4 for 2xx)."""

    response: Response
    transaction: ClientTransaction


@dataclass(frozen=True, slots=True)
class TransactionTimeout:
    """Timer B or F (client, §17.1.1.2, §17.1.2.2), the post-CANCEL wait (§9.1), or
    Timer H (INVITE server: no ACK came, §17.2.1)."""

    transaction: ClientTransaction | ServerTransaction


@dataclass(frozen=True, slots=True)
class AckTimeout:
    """The 2xx retransmission of ``key`` ran 64*T1 without an ACK (RFC 3261 §13.3.1.4)."""

    key: Hashable


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A TU timer set with ``call_later`` is due."""

    payload: object


Output: TypeAlias = (
    Send | RequestReceived | ResponseReceived | TransactionTimeout | AckTimeout | TimerFired
)


_DEFAULT_SETTINGS: Final = TimerSettings()


#: A transaction's machine until the layer gives it the compiled one.
_NO_MACHINE: Final[dict[tuple[str, str], Any]] = {}


# -- the state tables ----------------------------------------------------------------

Table: TypeAlias = Mapping[tuple[str, str], tuple[str, tuple[str, ...]]]

_LEAVE_CALLING: Final = ("stop_timer_a", "stop_timer_b")

INVITE_CLIENT_TABLE: Final[Table] = {
    # §17.1.1.2: Timer A only on unreliable transports (start_timer_a is a no-op on TCP).
    ("init", "send"): ("calling", ("send_request", "start_timer_a", "start_timer_b")),
    ("calling", "timer_a"): ("calling", ("retransmit_request", "backoff_timer_a")),
    ("calling", "timer_b"): (TERMINATED, ("report_timeout",)),
    ("calling", "1xx"): ("proceeding", (*_LEAVE_CALLING, "pass_response")),
    # RFC 6026 §8.4: a 2xx moves to Accepted, the TU ACKs it; Timer M absorbs the rest.
    ("calling", "2xx"): (
        "accepted",
        (*_LEAVE_CALLING, "stop_timer_cancel", "pass_response", "start_timer_m"),
    ),
    ("calling", "300-699"): (
        "completed",
        (*_LEAVE_CALLING, "stop_timer_cancel", "pass_response", "send_ack", "start_timer_d"),
    ),
    ("calling", "cancel_sent"): ("calling", ("start_timer_cancel",)),
    ("proceeding", "1xx"): ("proceeding", ("pass_response",)),
    ("proceeding", "2xx"): ("accepted", ("stop_timer_cancel", "pass_response", "start_timer_m")),
    ("proceeding", "300-699"): (
        "completed",
        ("stop_timer_cancel", "pass_response", "send_ack", "start_timer_d"),
    ),
    ("proceeding", "cancel_sent"): ("proceeding", ("start_timer_cancel",)),
    # §9.1: no final response 64*T1 after the CANCEL: consider the INVITE cancelled.
    ("proceeding", "timer_cancel"): (TERMINATED, ("report_timeout",)),
    # §17.1.1.2: a retransmitted final is absorbed and answered with the same ACK.
    ("completed", "300-699"): ("completed", ("send_ack",)),
    ("completed", "1xx"): ("completed", ()),
    ("completed", "2xx"): ("completed", ("pass_response",)),
    ("completed", "cancel_sent"): ("completed", ()),
    ("completed", "timer_d"): (TERMINATED, ()),
    # RFC 6026 §8.4: every further 2xx (retransmission or another fork) goes to the TU.
    ("accepted", "2xx"): ("accepted", ("pass_response",)),
    ("accepted", "1xx"): ("accepted", ()),
    ("accepted", "300-699"): ("accepted", ()),
    ("accepted", "cancel_sent"): ("accepted", ()),
    ("accepted", "timer_m"): (TERMINATED, ()),
}

_COMPLETE_NON_INVITE: Final = (
    "completed",
    ("stop_timer_e", "stop_timer_f", "pass_response", "start_timer_k"),
)

NON_INVITE_CLIENT_TABLE: Final[Table] = {
    ("init", "send"): ("trying", ("send_request", "start_timer_e", "start_timer_f")),
    ("trying", "timer_e"): ("trying", ("retransmit_request", "backoff_timer_e")),
    ("trying", "timer_f"): (TERMINATED, ("report_timeout",)),
    # Timer E keeps its schedule; from its next firing on it runs at T2 (§17.1.2.2).
    ("trying", "1xx"): ("proceeding", ("pass_response",)),
    ("trying", "2xx"): _COMPLETE_NON_INVITE,
    ("trying", "300-699"): _COMPLETE_NON_INVITE,
    ("proceeding", "timer_e"): ("proceeding", ("retransmit_request", "hold_timer_e")),
    ("proceeding", "timer_f"): (TERMINATED, ("report_timeout",)),
    ("proceeding", "1xx"): ("proceeding", ("pass_response",)),
    ("proceeding", "2xx"): _COMPLETE_NON_INVITE,
    ("proceeding", "300-699"): _COMPLETE_NON_INVITE,
    # Timer K absorbs response retransmissions (§17.1.2.2).
    ("completed", "1xx"): ("completed", ()),
    ("completed", "2xx"): ("completed", ()),
    ("completed", "300-699"): ("completed", ()),
    ("completed", "timer_k"): (TERMINATED, ()),
}

INVITE_SERVER_TABLE: Final[Table] = {
    # §17.2.1: no automatic 100 Trying — the TU sends it at once (module docstring).
    ("init", "request"): ("proceeding", ("pass_request",)),
    ("proceeding", "request"): ("proceeding", ("resend_response",)),
    ("proceeding", "send_1xx"): ("proceeding", ("send_response",)),
    # RFC 6026 §8.7: after a 2xx, Accepted; the TU retransmits the 2xx itself.
    ("proceeding", "send_2xx"): ("accepted", ("send_response", "start_timer_l")),
    ("proceeding", "send_300-699"): (
        "completed",
        ("send_response", "start_timer_g", "start_timer_h"),
    ),
    ("completed", "request"): ("completed", ("resend_response",)),
    ("completed", "timer_g"): ("completed", ("resend_response", "backoff_timer_g")),
    ("completed", "timer_h"): (TERMINATED, ("report_timeout",)),
    ("completed", "ack"): ("confirmed", ("stop_timer_g", "stop_timer_h", "start_timer_i")),
    # Timer I absorbs ACK retransmissions (§17.2.1).
    ("confirmed", "request"): ("confirmed", ()),
    ("confirmed", "ack"): ("confirmed", ()),
    ("confirmed", "timer_i"): (TERMINATED, ()),
    # RFC 6026 §8.7: INVITE retransmissions are absorbed, ACKs go to the TU.
    ("accepted", "request"): ("accepted", ()),
    ("accepted", "ack"): ("accepted", ("pass_request",)),
    ("accepted", "send_2xx"): ("accepted", ("send_response",)),
    ("accepted", "timer_l"): (TERMINATED, ()),
}

_COMPLETE_SERVER: Final = ("completed", ("send_response", "start_timer_j"))

NON_INVITE_SERVER_TABLE: Final[Table] = {
    ("init", "request"): ("trying", ("pass_request",)),
    # §17.2.2: in Trying there is no response yet; the retransmission is discarded.
    ("trying", "request"): ("trying", ()),
    ("trying", "send_1xx"): ("proceeding", ("send_response",)),
    ("trying", "send_2xx"): _COMPLETE_SERVER,
    ("trying", "send_300-699"): _COMPLETE_SERVER,
    ("proceeding", "request"): ("proceeding", ("resend_response",)),
    ("proceeding", "send_1xx"): ("proceeding", ("send_response",)),
    ("proceeding", "send_2xx"): _COMPLETE_SERVER,
    ("proceeding", "send_300-699"): _COMPLETE_SERVER,
    ("completed", "request"): ("completed", ("resend_response",)),
    ("completed", "timer_j"): (TERMINATED, ()),
}

#: Timers that only keep a finished machine around to absorb retransmissions (RFC 3261
#: §17.1.1.2 D, §17.1.2.2 K, §17.2.1 I, §17.2.2 J; RFC 6026 §8.4 M, §8.7 L). Holding the
#: state a little longer changes nothing on the wire, so their deadlines are rounded up
#: to the next 1/``_WAIT_GRID_PER_S`` second: the expiries of many calls then share one
#: deadline, and the adapter wakes a few times a second for them instead of several
#: times per call.
_WAIT_TIMERS: Final = frozenset({"timer_d", "timer_i", "timer_j", "timer_k", "timer_l", "timer_m"})
_WAIT_GRID_PER_S: Final = 4

#: Retransmission timers: they run on unreliable transports only (§17.1.1.2, §17.1.2.2,
#: §17.2.1) and start at T1.
_RETRANSMIT_TIMERS: Final = ("timer_a", "timer_e", "timer_g")


def _fixed_durations(settings: TimerSettings, reliable: bool) -> dict[str, float]:
    """The non-retransmitting timers (RFC 3261 Table 4, RFC 6026 §8.11).

    D, I, J, K only absorb retransmissions, so they are zero on reliable transports.
    """
    t1, t4 = settings.t1, settings.t4
    return {
        "timer_b": 64 * t1,
        "timer_d": 0.0 if reliable else max(32.0, 64 * t1),
        "timer_f": 64 * t1,
        "timer_h": 64 * t1,
        "timer_i": 0.0 if reliable else t4,
        "timer_j": 0.0 if reliable else 64 * t1,
        "timer_k": 0.0 if reliable else t4,
        "timer_l": 64 * t1,
        "timer_m": 64 * t1,
        "timer_cancel": 64 * t1,
    }


def _response_class(status: int) -> str:
    if status < 200:
        return "1xx"
    if status < 300:
        return "2xx"
    return "300-699"


# -- transactions --------------------------------------------------------------------


class _Transaction:
    """State shared by client and server transactions."""

    __slots__ = (
        "_entry",
        "_expired",
        "_guard",
        "_interval",
        "_machine",
        "_reliable",
        "_timers",
        "context",
        "is_invite",
        "key",
        "request",
        "state",
    )

    def __init__(
        self, key: Hashable, request: Request, reliable: bool, guard: frozenset[str]
    ) -> None:
        self.key = key
        self.request = request
        self.state: str = _INITIAL
        self.context: object = None
        self.is_invite = request.method == "INVITE"
        self._reliable = reliable
        self._guard = guard
        #: running timers: name → (deadline, start order). The heap holds one entry per
        #: transaction, ``_entry``, at the earliest of them: starting Timers A and B (or E
        #: and F) and stopping both at the first response costs one heap entry, not two.
        self._timers: dict[str, tuple[float, int]] = {}
        self._entry: TimerHandle[_TimerPayload] | None = None
        #: The current interval of the one retransmission timer a machine has (A, E or G).
        self._interval = 0.0
        # Zero-length timers (D, I, J, K on TCP) fire as soon as the current event is done.
        self._expired: list[str] | None = None
        #: The machine's table compiled for this transport (``TransactionLayer._compile``).
        self._machine: _Machine = _NO_MACHINE


class ClientTransaction(_Transaction):
    """A client transaction (RFC 3261 §17.1), keyed by (branch, CSeq method) (§17.1.3).

    ``context`` belongs to the TU. Retransmissions reuse the bytes serialized once at send.
    """

    __slots__ = ("_ack", "_request_send", "destination")

    def __init__(
        self,
        key: tuple[str, str],
        request: Request,
        destination: Address,
        guard: frozenset[str],
        context: object,
    ) -> None:
        super().__init__(key, request, destination.reliable, guard)
        self.destination = destination
        self.context = context
        self._request_send = Send(request.to_bytes(), destination, guard)
        self._ack: Send | None = None

    def __repr__(self) -> str:
        return f"<ClientTransaction {self.request.method} {self.state}>"

    def fire(self, layer: TransactionLayer, when: float) -> list[Output]:
        """The heap entry of this transaction's earliest timer is due."""
        return layer._transaction_due(self, when)


class ServerTransaction(_Transaction):
    """A server transaction (RFC 3261 §17.2), keyed per §17.2.3.

    ``response_destination`` is fixed when the request arrives (§18.2.2, RFC 3581);
    ``last_response`` is what a retransmitted request gets again.
    """

    __slots__ = ("_ack_key", "_last_send", "last_response", "response_destination", "source")

    def __init__(
        self, key: Hashable, request: Request, source: Address, ack_key: Hashable | None
    ) -> None:
        super().__init__(key, request, source.reliable, NO_GUARD)
        self.source = source
        self.response_destination = response_destination(request, source)
        self.last_response: Response | None = None
        self._last_send: Send | None = None
        self._ack_key = ack_key

    def __repr__(self) -> str:
        return f"<ServerTransaction {self.request.method} {self.state}>"

    def fire(self, layer: TransactionLayer, when: float) -> list[Output]:
        """The heap entry of this transaction's earliest timer is due."""
        return layer._transaction_due(self, when)


# -- keys (RFC 3261 §17.1.3, §17.2.3, §9.2) ------------------------------------------


def _is_rfc3261_branch(branch: str | None) -> bool:
    return branch is not None and branch.startswith(MAGIC_COOKIE)


def _server_key(request: Request, method: str) -> Hashable:
    """The server transaction a request belongs to (§17.2.3).

    ``method`` is the method of the transaction: INVITE for an ACK or for the CANCEL being
    matched to its INVITE (§9.2). Without the magic cookie the RFC 2543 rule applies:
    Request-URI, To tag, From tag, Call-ID, CSeq number and top Via; the Request-URI is
    compared as written, which is how a retransmission repeats it.
    """
    via = request.top_via
    if _is_rfc3261_branch(via.branch):
        return ("rfc3261", via.branch, via.host.lower(), via.port, method)
    return (
        "rfc2543",
        request.uri,
        request.to.tag,
        request.from_.tag,
        request.call_id,
        request.cseq.number,
        method,
        via,
    )


def _rfc2543_ack_key(request: Request) -> Hashable:
    """The §17.2.3 RFC 2543 ACK match: as for the INVITE but without the To tag, which
    the ACK takes from the response (checked separately)."""
    return (
        "rfc2543-ack",
        request.uri,
        request.from_.tag,
        request.call_id,
        request.cseq.number,
        request.top_via,
    )


def _build_ack(request: Request, response: Response) -> Request:
    """The ACK for a non-2xx final response (RFC 3261 §17.1.1.3): same Request-URI,
    Call-ID, From, CSeq number and Route set as the INVITE, the To of the response, and
    only the INVITE's top Via."""

    def written(key: str, value: str) -> Header:
        return Header(key, canonical_name(key), value, None)

    max_forwards = request.headers_with(("max-forwards",)) or [written("max-forwards", "70")]
    headers = [
        written("via", request.get_all("via")[0]),
        *request.headers_with(("route",)),
        *max_forwards,
        *request.headers_with(("from",)),
        *response.headers_with(("to",)),
        *request.headers_with(("call-id",)),
        written("cseq", f"{request.cseq.number} ACK"),
        written("content-length", "0"),
    ]
    return Request("ACK", request.uri, headers)


def _earliest(timers: dict[str, tuple[float, int]]) -> str | None:
    """The timer due first (deadline, then start order), None when none runs."""
    earliest = None
    first: tuple[float, int] | None = None
    for name, due in timers.items():
        if first is None or due < first:
            earliest, first = name, due
    return earliest


# -- timer payloads ------------------------------------------------------------------
#
# Plain slotted classes rather than frozen dataclasses: one or more is made for every
# message, and a frozen dataclass pays an ``object.__setattr__`` per field to be built.


class _TimerPayload(Protocol):
    def fire(self, layer: TransactionLayer, when: float) -> list[Output]: ...


class _Retransmission:
    """One 2xx being retransmitted (RFC 3261 §13.3.1.4), its own timer payload.

    One heap entry at a time serves both deadlines: the next resend and, when that would
    come at or after it, the end of the wait for the ACK (64*T1).
    """

    __slots__ = ("give_up_at", "handle", "interval", "key", "send")

    def __init__(self, key: Hashable, send: Send, interval: float, give_up_at: float) -> None:
        self.key = key
        self.send = send
        self.interval = interval
        self.give_up_at = give_up_at
        self.handle: TimerHandle[_TimerPayload] | None = None

    def fire(self, layer: TransactionLayer, when: float) -> list[Output]:
        if when >= self.give_up_at:
            return layer._ack_wait_over(self)
        return layer._retransmit_2xx(self, when)


class _UserTimer:
    """A TU timer set with ``call_later``."""

    __slots__ = ("payload",)

    def __init__(self, payload: object) -> None:
        self.payload = payload

    def fire(self, layer: TransactionLayer, when: float) -> list[Output]:
        return [TimerFired(self.payload)]


# -- the layer -----------------------------------------------------------------------


class _Incoming:
    """A request arriving for a server transaction, with where it came from."""

    __slots__ = ("request", "source")

    def __init__(self, request: Request, source: Address) -> None:
        self.request = request
        self.source = source


class _Outgoing:
    """A response the TU sends on a server transaction."""

    __slots__ = ("guard", "response")

    def __init__(self, response: Response, guard: frozenset[str]) -> None:
        self.response = response
        self.guard = guard


#: What an event carries: the response a client received, the request a server received
#: or the response its TU sends; None for timers.
_Payload: TypeAlias = Response | _Incoming | _Outgoing | None
#: An action of a state table: it appends what it produces to the list it is given.
ClientAction: TypeAlias = Callable[[ClientTransaction, _Payload, float, list[Output]], None]
ServerAction: TypeAlias = Callable[[ServerTransaction, _Payload, float, list[Output]], None]
_CommonAction: TypeAlias = Callable[[Any, _Payload, float, list[Output]], None]
#: A state table with its action names resolved, for one kind of machine on one kind of
#: transport: (state, event) → (next state, the actions to run).
_Machine: TypeAlias = dict[tuple[str, str], tuple[str, tuple[_CommonAction, ...]]]


class TransactionLayer:
    """All client and server transactions of one SIP endpoint, and its one timer heap.

    Feed it every parsed message with ``receive`` and call ``advance`` at
    ``next_deadline()``; write each ``Send`` it returns to the socket and hand the other
    outputs to the TU. Sending failures are not modelled (no transport errors).
    """

    def __init__(self, settings: TimerSettings = _DEFAULT_SETTINGS) -> None:
        self.settings = settings
        self._durations = {
            reliable: _fixed_durations(self.settings, reliable) for reliable in (False, True)
        }
        self._clients: dict[Hashable, ClientTransaction] = {}
        self._servers: dict[Hashable, ServerTransaction] = {}
        self._rfc2543_acks: dict[Hashable, ServerTransaction] = {}
        self._retransmissions: dict[Hashable, _Retransmission] = {}
        self._heap: TimerHeap[_TimerPayload] = TimerHeap()
        #: timers started so far: the order of a transaction's timers due at one time
        self._started = 0
        #: Pairs missing from a state table, dropped (see the module docstring).
        self.anomalies = 0
        #: Messages sent again: requests on Timer A/E, responses on Timer G or a
        #: retransmitted request, 2xx on the §13.3.1.4 schedule (for metrics).
        self.retransmissions = 0
        common = self._timer_actions()
        self._client_actions: dict[str, ClientAction] = {
            **common,
            "send_request": self._send_request,
            "retransmit_request": self._retransmit_request,
            "pass_response": self._pass_response,
            "send_ack": self._send_ack,
            "report_timeout": self._report_timeout,
        }
        self._server_actions: dict[str, ServerAction] = {
            **common,
            "pass_request": self._pass_request,
            "send_response": self._send_response,
            "resend_response": self._resend_response,
            "report_timeout": self._report_timeout,
        }
        #: (is a client, is an INVITE, reliable transport) → its compiled machine.
        self._machines: dict[tuple[bool, bool, bool], _Machine] = {}
        for reliable in (False, True):
            for client, invite, table in (
                (True, True, INVITE_CLIENT_TABLE),
                (True, False, NON_INVITE_CLIENT_TABLE),
                (False, True, INVITE_SERVER_TABLE),
                (False, False, NON_INVITE_SERVER_TABLE),
            ):
                actions: Mapping[str, _CommonAction] = (
                    self._client_actions if client else self._server_actions
                )
                self._machines[client, invite, reliable] = self._compile(table, actions, reliable)

    def _compile(
        self, table: Table, actions: Mapping[str, _CommonAction], reliable: bool
    ) -> _Machine:
        """Resolve a table's action names once, for one kind of transport: timer starts
        carry their duration, and the retransmission timers, which never run on a reliable
        transport (RFC 3261 §17.1.1.2, §17.1.2.2, §17.2.1), are left out there."""
        machine: _Machine = {}
        for pair, (next_state, names) in table.items():
            steps: list[_CommonAction] = []
            for name in names:
                kind, _, timer = name.partition("_")
                if timer in _RETRANSMIT_TIMERS and kind in ("start", "stop") and reliable:
                    continue
                if kind == "start" and timer not in _RETRANSMIT_TIMERS:
                    steps.append(self._fixed_starter(timer, self._durations[reliable][timer]))
                else:
                    steps.append(actions[name])
            machine[pair] = (next_state, tuple(steps))
        return machine

    # -- counts --------------------------------------------------------------------------

    @property
    def client_count(self) -> int:
        return len(self._clients)

    @property
    def server_count(self) -> int:
        return len(self._servers)

    # -- input ---------------------------------------------------------------------------

    def receive(self, message: Request | Response, source: Address, now: float) -> list[Output]:
        """Match a message to its transaction and run that machine (RFC 3261 §17.1.3,
        §17.2.3).

        A request with an unparsable Via, CSeq, From, To or Call-ID raises ``SipError``
        (the adapter answers it statelessly); such a response is dropped (§18.1.2).
        Responses matching no client transaction are dropped too: a B2BUA does not
        forward stray responses (§17.1.3 would hand them to a proxy core).
        """
        if isinstance(message, Response):
            return self._receive_response(message, now)
        return self._receive_request(message, source, now)

    def _receive_request(self, request: Request, source: Address, now: float) -> list[Output]:
        stamp_received(request, source)
        incoming = _Incoming(request, source)
        if request.method == "ACK":
            invite = self._match_ack(request)
            if invite is None:
                return [RequestReceived(request, source, None)]
            return self._run(invite, "ack", incoming, now)
        key = _server_key(request, request.method)
        transaction = self._servers.get(key)
        if transaction is None:
            ack_key = None
            if request.method == "INVITE" and not _is_rfc3261_branch(request.top_via.branch):
                ack_key = _rfc2543_ack_key(request)
            transaction = ServerTransaction(key, request, source, ack_key)
            transaction._machine = self._machines[False, transaction.is_invite, source.reliable]
            self._servers[key] = transaction
            if ack_key is not None:
                self._rfc2543_acks[ack_key] = transaction
        return self._run(transaction, "request", incoming, now)

    def _match_ack(self, ack: Request) -> ServerTransaction | None:
        """The INVITE server transaction an ACK belongs to (§17.2.3), if any."""
        if _is_rfc3261_branch(ack.top_via.branch):
            return self._servers.get(_server_key(ack, "INVITE"))
        invite = self._rfc2543_acks.get(_rfc2543_ack_key(ack))
        if invite is None or invite.last_response is None:
            return None
        if ack.to.tag != invite.last_response.to.tag:
            return None
        return invite

    def _receive_response(self, response: Response, now: float) -> list[Output]:
        try:
            key = (response.top_via.branch, response.cseq.method)
        except ValueError:
            self.anomalies += 1
            return []
        transaction = self._clients.get(key)
        if transaction is None:
            return []
        return self._run(transaction, _response_class(response.status), response, now)

    # -- output --------------------------------------------------------------------------

    def send_request(
        self,
        request: Request,
        destination: Address,
        now: float,
        *,
        guard: frozenset[str] = NO_GUARD,
        context: object = None,
        branch: str | None = None,
    ) -> tuple[ClientTransaction, list[Output]]:
        """Start a client transaction (RFC 3261 §17.1.1, §17.1.2).

        The request already carries its top Via with a z9hG4bK branch; it is serialized
        once here and those bytes are retransmitted. ``branch`` is that Via's branch when
        the caller wrote the Via itself (it saves reading it back). A CANCEL also starts
        the §9.1 wait on the INVITE it cancels (same branch). Raises ValueError for an ACK
        (never a transaction of its own: use ``send_stateless``), a branch without the
        magic cookie, or a branch and method already in use.
        """
        if request.method == "ACK":
            raise ValueError("an ACK is not a client transaction; use send_stateless")
        if branch is None:
            branch = request.top_via.branch
        if branch is None or not _is_rfc3261_branch(branch):
            raise ValueError("the top Via needs a branch starting with z9hG4bK")
        key = (branch, request.method)
        if key in self._clients:
            raise ValueError(f"a client transaction {key!r} already exists")
        transaction = ClientTransaction(key, request, destination, guard, context)
        transaction._machine = self._machines[True, transaction.is_invite, destination.reliable]
        self._clients[key] = transaction
        outputs = self._run(transaction, "send", None, now)
        if request.method == "CANCEL":
            invite = self._clients.get((branch, "INVITE"))
            if invite is not None:
                outputs += self._run(invite, "cancel_sent", None, now)
        return transaction, outputs

    def send_response(
        self,
        transaction: ServerTransaction,
        response: Response,
        now: float,
        *,
        guard: frozenset[str] = NO_GUARD,
    ) -> list[Output]:
        """Send a response on a server transaction (RFC 3261 §17.2.1, §17.2.2).

        It goes to ``transaction.response_destination``. A response the machine does not
        accept in its state (a second final, anything after termination) is not sent:
        the result is empty and ``anomalies`` counts it.
        """
        status = response.status
        event = "send_1xx" if status < 200 else "send_2xx" if status < 300 else "send_300-699"
        return self._run(transaction, event, _Outgoing(response, guard), now)

    def send_stateless(
        self,
        message: Request | Response,
        destination: Address,
        *,
        guard: frozenset[str] = NO_GUARD,
    ) -> Send:
        """Bytes to send outside any transaction: the ACK for a 2xx (§13.2.2.4), a
        stateless reply. Nothing is retransmitted."""
        return Send(message.to_bytes(), destination, guard)

    def cancel_target(self, cancel: Request) -> ServerTransaction | None:
        """The INVITE server transaction a CANCEL cancels (RFC 3261 §9.2): the §17.2.3
        match with the method taken as INVITE; None when there is none (answer 481)."""
        transaction = self._servers.get(_server_key(cancel, "INVITE"))
        if transaction is None or not transaction.is_invite:
            return None
        return transaction

    # -- 2xx retransmission (RFC 3261 §13.3.1.4) -------------------------------------------

    def start_2xx_retransmit(self, key: Hashable, send: Send, now: float) -> None:
        """Resend ``send`` at T1, then doubling intervals capped at T2, until
        ``stop_2xx_retransmit(key)``; ``AckTimeout(key)`` at 64*T1. The TU has already
        sent the first copy. This runs on every transport: the 2xx may cross a proxy
        onto UDP (§13.3.1.4). Starting a key again replaces its retransmission."""
        self.stop_2xx_retransmit(key)
        t1 = self.settings.t1
        retransmission = _Retransmission(key, send, t1, now + 64 * t1)
        retransmission.handle = self._heap.schedule(now + t1, retransmission)
        self._retransmissions[key] = retransmission

    def stop_2xx_retransmit(self, key: Hashable) -> None:
        """The ACK came (or the TU gave up): stop resending. Unknown keys are ignored."""
        retransmission = self._retransmissions.pop(key, None)
        if retransmission is not None and retransmission.handle is not None:
            self._heap.cancel(retransmission.handle)

    def _retransmit_2xx(self, retransmission: _Retransmission, when: float) -> list[Output]:
        self.retransmissions += 1
        retransmission.interval = min(2 * retransmission.interval, self.settings.t2)
        # At 64*T1 the same entry ends the wait; a resend due then comes after it.
        retransmission.handle = self._heap.schedule(
            min(when + retransmission.interval, retransmission.give_up_at), retransmission
        )
        return [retransmission.send]

    def _ack_wait_over(self, retransmission: _Retransmission) -> list[Output]:
        if self._retransmissions.get(retransmission.key) is retransmission:
            del self._retransmissions[retransmission.key]
        return [AckTimeout(retransmission.key)]

    # -- timers ----------------------------------------------------------------------------

    def call_later(self, when: float, payload: object) -> object:
        """A TU timer: ``TimerFired(payload)`` comes out of ``advance`` at or after the
        absolute time ``when`` (the same clock as every ``now``). Returns a handle for
        ``cancel_timer``."""
        return self._heap.schedule(when, _UserTimer(payload))

    def cancel_timer(self, handle: object) -> None:
        """Cancel a TU timer; a fired or already cancelled one is ignored."""
        if not isinstance(handle, TimerHandle) or not isinstance(handle.payload, _UserTimer):
            raise TypeError("not a handle returned by call_later")
        self._heap.cancel(handle)

    def next_deadline(self) -> float | None:
        """The earliest pending timer of any kind; None when nothing is pending."""
        return self._heap.next_deadline()

    def advance(self, now: float) -> list[Output]:
        """Fire every timer due at or before ``now``, in deadline order.

        Each runs at its own deadline, so a late call still produces the exact RFC
        schedule (retransmission intervals measured from the previous deadline).
        """
        outputs: list[Output] = []
        while (handle := self._heap.pop_due(now)) is not None:
            outputs += handle.payload.fire(self, handle.when)
        return outputs

    def _transaction_due(
        self, transaction: ClientTransaction | ServerTransaction, when: float
    ) -> list[Output]:
        """Fire the earliest timer of ``transaction`` at its own deadline; ``_run`` arms
        the entry again for the timers left."""
        transaction._entry = None
        timers = transaction._timers
        earliest = _earliest(timers)
        if earliest is None:
            return []
        deadline = timers[earliest][0]
        if deadline > when:  # the entry always sits at the earliest deadline; be safe
            self._arm(transaction)
            return []
        del timers[earliest]
        return self._run(transaction, earliest, None, deadline)

    def _timer_actions(self) -> dict[str, _CommonAction]:
        """start_/stop_ for every timer, backoff_ for A, E, G and hold_timer_e."""
        actions: dict[str, _CommonAction] = {}
        for name in (*_RETRANSMIT_TIMERS, *_fixed_durations(self.settings, False)):
            actions[f"start_{name}"] = self._starter(name)
            actions[f"stop_{name}"] = self._stopper(name)
        # §17.1.1.2: Timer A doubles without a cap (Timer B ends it);
        # §17.1.2.2, §17.2.1: E and G double up to T2; E in Proceeding fires every T2.
        t2 = self.settings.t2
        actions["backoff_timer_a"] = self._rescheduler("timer_a", lambda i: 2 * i)
        actions["backoff_timer_e"] = self._rescheduler("timer_e", lambda i: min(2 * i, t2))
        actions["backoff_timer_g"] = self._rescheduler("timer_g", lambda i: min(2 * i, t2))
        actions["hold_timer_e"] = self._rescheduler("timer_e", lambda i: t2)
        return actions

    def _starter(self, name: str) -> _CommonAction:
        """Start a retransmission timer (A, E, G) at T1; the fixed timers get theirs from
        ``_fixed_starter`` when a table is compiled."""
        t1 = self.settings.t1

        def start(
            transaction: ClientTransaction | ServerTransaction,
            payload: _Payload,
            now: float,
            out: list[Output],
        ) -> None:
            transaction._interval = t1
            self._schedule(transaction, name, now + t1)

        return start

    def _fixed_starter(self, name: str, duration: float) -> _CommonAction:
        """Start a timer of fixed ``duration``; a zero one fires as soon as the current
        event is done (D, I, J, K on a reliable transport)."""
        if duration <= 0:

            def expire(
                transaction: _Transaction, payload: _Payload, now: float, out: list[Output]
            ) -> None:
                if transaction._expired is None:
                    transaction._expired = [name]
                else:
                    transaction._expired.append(name)

            return expire

        if name in _WAIT_TIMERS:

            def start_wait(
                transaction: ClientTransaction | ServerTransaction,
                payload: _Payload,
                now: float,
                out: list[Output],
            ) -> None:
                due = math.ceil((now + duration) * _WAIT_GRID_PER_S) / _WAIT_GRID_PER_S
                self._schedule(transaction, name, due)

            return start_wait

        def start(
            transaction: ClientTransaction | ServerTransaction,
            payload: _Payload,
            now: float,
            out: list[Output],
        ) -> None:
            self._schedule(transaction, name, now + duration)

        return start

    def _stopper(self, name: str) -> _CommonAction:
        heap = self._heap

        def stop(
            transaction: _Transaction, payload: _Payload, now: float, out: list[Output]
        ) -> None:
            timer = transaction._timers.pop(name, None)
            entry = transaction._entry
            if timer is not None and entry is not None and timer[0] <= entry.when:
                # It was the earliest: ``_run`` arms the entry for the others, if any.
                heap.cancel(entry)
                transaction._entry = None

        return stop

    def _rescheduler(self, name: str, next_interval: Callable[[float], float]) -> _CommonAction:
        def reschedule(
            transaction: ClientTransaction | ServerTransaction,
            payload: _Payload,
            now: float,
            out: list[Output],
        ) -> None:
            interval = transaction._interval = next_interval(transaction._interval)
            self._schedule(transaction, name, now + interval)

        return reschedule

    def _schedule(
        self, transaction: ClientTransaction | ServerTransaction, name: str, when: float
    ) -> None:
        """Start (or restart) a timer. The heap entry moves only when this one comes
        before it, and then at the end of the event (``_run``)."""
        self._started += 1
        transaction._timers[name] = (when, self._started)
        entry = transaction._entry
        if entry is not None and when < entry.when:
            self._heap.cancel(entry)
            transaction._entry = None

    # -- the machine -----------------------------------------------------------------------

    def _run(
        self,
        transaction: ClientTransaction | ServerTransaction,
        event: str,
        payload: _Payload,
        now: float,
    ) -> list[Output]:
        """Look the pair up in the transaction's table, move to the next state, run its
        actions in order; then run the zero-length timers those actions started, and
        forget a terminated machine."""
        outputs: list[Output] = []
        machine = transaction._machine
        while True:
            row = machine.get((transaction.state, event))
            if row is None:
                self.anomalies += 1
                _log.debug(
                    "%r: event %s not expected in state %s, dropped",
                    transaction,
                    event,
                    transaction.state,
                )
                break
            transaction.state, steps = row
            for step in steps:
                step(transaction, payload, now, outputs)
            if transaction.state == TERMINATED:
                self._forget(transaction)
                return outputs
            expired = transaction._expired
            if not expired:
                break
            event = expired.pop(0)
            payload = None
        if transaction._entry is None and transaction._timers:
            self._arm(transaction)
        return outputs

    def _arm(self, transaction: ClientTransaction | ServerTransaction) -> None:
        """Put the transaction's heap entry at its earliest timer."""
        earliest = _earliest(transaction._timers)
        assert earliest is not None
        when = transaction._timers[earliest][0]
        transaction._entry = self._heap.schedule(when, transaction)

    def _forget(self, transaction: ClientTransaction | ServerTransaction) -> None:
        """A terminated transaction leaves the tables and its timers the heap."""
        if transaction._entry is not None:
            self._heap.cancel(transaction._entry)
            transaction._entry = None
        if transaction._timers:  # most machines end on their last timer, already gone
            transaction._timers.clear()
        transaction._expired = None
        if isinstance(transaction, ClientTransaction):
            if self._clients.get(transaction.key) is transaction:
                del self._clients[transaction.key]
            return
        if self._servers.get(transaction.key) is transaction:
            del self._servers[transaction.key]
        ack_key = transaction._ack_key
        if ack_key is not None and self._rfc2543_acks.get(ack_key) is transaction:
            del self._rfc2543_acks[ack_key]

    # -- actions ---------------------------------------------------------------------------

    def _send_request(
        self, transaction: ClientTransaction, payload: _Payload, now: float, out: list[Output]
    ) -> None:
        out.append(transaction._request_send)

    def _pass_response(
        self, transaction: ClientTransaction, response: _Payload, now: float, out: list[Output]
    ) -> None:
        assert isinstance(response, Response)
        out.append(ResponseReceived(response, transaction))

    def _send_ack(
        self, transaction: ClientTransaction, response: _Payload, now: float, out: list[Output]
    ) -> None:
        """§17.1.1.3: built from the first non-2xx final, re-sent for its retransmissions."""
        if transaction._ack is None:
            assert isinstance(response, Response)
            ack = _build_ack(transaction.request, response)
            transaction._ack = Send(ack.to_bytes(), transaction.destination, transaction._guard)
        out.append(transaction._ack)

    def _report_timeout(
        self, transaction: _Transaction, payload: _Payload, now: float, out: list[Output]
    ) -> None:
        assert isinstance(transaction, ClientTransaction | ServerTransaction)
        out.append(TransactionTimeout(transaction))

    def _pass_request(
        self, transaction: ServerTransaction, payload: _Payload, now: float, out: list[Output]
    ) -> None:
        assert isinstance(payload, _Incoming)
        out.append(RequestReceived(payload.request, payload.source, transaction))

    def _send_response(
        self, transaction: ServerTransaction, payload: _Payload, now: float, out: list[Output]
    ) -> None:
        assert isinstance(payload, _Outgoing)
        send = Send(payload.response.to_bytes(), transaction.response_destination, payload.guard)
        transaction.last_response = payload.response
        transaction._last_send = send
        out.append(send)

    def _retransmit_request(
        self, transaction: ClientTransaction, payload: _Payload, now: float, out: list[Output]
    ) -> None:
        self.retransmissions += 1
        out.append(transaction._request_send)

    def _resend_response(
        self, transaction: ServerTransaction, payload: _Payload, now: float, out: list[Output]
    ) -> None:
        if transaction._last_send is None:
            return
        self.retransmissions += 1
        out.append(transaction._last_send)
