"""Call detail records, pure: the value, its derived durations, SIP → Q.850 (design.md §1).

Every call attempt, answered or refused, yields one ``CallRecord`` when it ends. Times are
epoch seconds rounded to the millisecond, given by the caller (no clock here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Final, Literal, get_args

import phonenumbers

from proxy.numbers import mask

Disposition = Literal["answered", "busy", "no_answer", "cancelled", "failed", "rejected"]
RejectReason = Literal[
    "no_binding",
    "expired",
    "direction",
    "untrusted_peer",
    "rate_limited",
    "blocked",
    "leak_blocked",
]
CallDirection = Literal["a_to_b", "b_to_a"]
ReleasedBy = Literal["caller", "callee", "proxy"]

DISPOSITIONS: Final[tuple[str, ...]] = get_args(Disposition)
REJECT_REASONS: Final[tuple[str, ...]] = get_args(RejectReason)
CALL_DIRECTIONS: Final[tuple[str, ...]] = get_args(CallDirection)
RELEASED_BY: Final[tuple[str, ...]] = get_args(ReleasedBy)

Q850_NORMAL_CLEARING: Final = 16
Q850_NO_ANSWER: Final = 19
Q850_BEARER_NOT_IMPLEMENTED: Final = 65
Q850_INTERWORKING: Final = 127

# RFC 3398 §8.2.6.1, SIP final response → ISUP/Q.850 cause.
_Q850_BY_STATUS: Final[dict[int, int]] = {
    400: 41,
    401: 21,
    402: 21,
    403: 21,
    404: 1,
    405: 63,
    406: 79,
    407: 21,
    408: 102,
    410: 22,
    413: 127,
    414: 127,
    415: 79,
    416: 127,
    420: 127,
    421: 127,
    423: 127,
    480: 18,
    481: 41,
    482: 25,
    483: 25,
    484: 28,
    485: 1,
    486: 17,
    # RFC 3398 gives no cause for 487: the caller cleared before answer, a normal clearing.
    487: Q850_NORMAL_CLEARING,
    # 488 and 606 map "by Warning header" (RFC 3398); the media-mismatch cause absent one.
    488: Q850_BEARER_NOT_IMPLEMENTED,
    500: 41,
    501: 79,
    502: 38,
    503: 41,
    504: 102,
    505: 127,
    513: 127,
    600: 17,
    603: 21,
    604: 1,
    606: Q850_BEARER_NOT_IMPLEMENTED,
}

_DISPOSITION_BY_STATUS: Final[dict[int, Disposition]] = {
    486: "busy",
    600: "busy",
    # A handset's "reject" key sends 603; for the parties that is a busy callee.
    603: "busy",
    408: "no_answer",
    480: "no_answer",
    487: "cancelled",
}


def q850_for_status(status: int, *, alerted: bool = False, reason_cause: int | None = None) -> int:
    """The Q.850 cause for a final SIP status (RFC 3398 §8.2.6.1).

    ``reason_cause`` is the cause a peer sent in ``Reason: Q.850;cause=N`` (RFC 6432) and
    wins when present. ``alerted``: the callee rang, so a 408/480 means "no answer from user,
    user alerted" (Q.850 cause 19) rather than "no user responding" (18, 102).
    A 2xx ends with normal clearing; statuses missing from the table are interworking.
    """
    if not 200 <= status <= 699:
        raise ValueError(f"{status} is not a final SIP status")
    if reason_cause is not None:
        if not 1 <= reason_cause <= 127:
            raise ValueError(f"Q.850 cause {reason_cause} out of range 1..127")
        return reason_cause
    if status < 300:
        return Q850_NORMAL_CLEARING
    if alerted and status in (408, 480):
        return Q850_NO_ANSWER
    return _Q850_BY_STATUS.get(status, Q850_INTERWORKING)


def disposition_for_status(status: int) -> Disposition:
    """How a call relayed to the callee ended, from the final status the callee side gave.

    ``rejected`` is never derived here: it means the proxy refused the call itself, which
    the caller records with a ``reject_reason``.
    """
    if not 200 <= status <= 699:
        raise ValueError(f"{status} is not a final SIP status")
    if status < 300:
        return "answered"
    return _DISPOSITION_BY_STATUS.get(status, "failed")


def to_ms(t: float) -> float:
    """Epoch seconds rounded to the millisecond, the precision records keep."""
    return round(t, 3)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecord:
    """One call attempt (design.md §1 Records); field order is the ``cdrs`` column order.

    ``caller`` and ``callee`` are real E.164 numbers (``callee`` is None when the call was
    refused before routing); ``x`` is the privacy number dialled. ``direction`` is the
    binding direction the call took, None when no binding routed it.
    """

    id: str
    tenant: str
    binding_id: str | None = None
    x: str
    caller: str
    callee: str | None = None
    direction: CallDirection | None = None
    a_call_id: str | None = None
    b_call_id: str | None = None
    invite_at: float
    ring_at: float | None = None
    answer_at: float | None = None
    end_at: float
    disposition: Disposition
    reject_reason: RejectReason | None = None
    sip_status: int
    q850_cause: int | None = None
    released_by: ReleasedBy | None = None
    node: str

    def __post_init__(self) -> None:
        for name in ("invite_at", "ring_at", "answer_at", "end_at"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, to_ms(value))
        self._check()

    def _check(self) -> None:
        if self.disposition not in DISPOSITIONS:
            raise ValueError(f"unknown disposition {self.disposition!r}")
        if self.reject_reason is not None and self.reject_reason not in REJECT_REASONS:
            raise ValueError(f"unknown reject_reason {self.reject_reason!r}")
        if (self.disposition == "rejected") != (self.reject_reason is not None):
            raise ValueError("reject_reason is set exactly when disposition is 'rejected'")
        if self.direction is not None and self.direction not in CALL_DIRECTIONS:
            raise ValueError(f"unknown direction {self.direction!r}")
        if self.released_by is not None and self.released_by not in RELEASED_BY:
            raise ValueError(f"unknown released_by {self.released_by!r}")
        if (self.disposition == "answered") != (self.answer_at is not None):
            raise ValueError("answer_at is set exactly when disposition is 'answered'")
        if not 200 <= self.sip_status <= 699:
            raise ValueError(f"sip_status {self.sip_status} is not a final status")
        times = [
            t for t in (self.invite_at, self.ring_at, self.answer_at, self.end_at) if t is not None
        ]
        if times != sorted(times):
            raise ValueError("times must not decrease: invite ≤ ring ≤ answer ≤ end")

    @property
    def pdd_s(self) -> float | None:
        """Post-dial delay: INVITE to first ringing, None if it never rang."""
        return None if self.ring_at is None else to_ms(self.ring_at - self.invite_at)

    @property
    def ring_s(self) -> float | None:
        """Ringing time: first ringing to answer (or to the end), None if it never rang."""
        if self.ring_at is None:
            return None
        until = self.answer_at if self.answer_at is not None else self.end_at
        return to_ms(until - self.ring_at)

    @property
    def talk_s(self) -> float:
        """Billable time: answer to end, 0.0 for a call never answered."""
        return 0.0 if self.answer_at is None else to_ms(self.end_at - self.answer_at)

    @property
    def duration_s(self) -> float:
        """INVITE to end."""
        return to_ms(self.end_at - self.invite_at)


CALL_RECORD_FIELDS: Final[tuple[str, ...]] = tuple(f.name for f in fields(CallRecord))


PURGED_PREFIX: Final = "h:"
"""Retention replaces a personal value by ``h:`` and a keyed hash (``proxy.cdr.retention``)."""

NUMBER_RUN: Final = re.compile(r"\+?[0-9][0-9 ().-]{5,}[0-9]")
"""A run of digits that may be a number (``mask_call_id``; the export's fast path shares it)."""


_COUNTRY_CODE_SIZE: dict[str, int] = {}


def country_code_size(digits: str) -> int:
    """Length of the E.164 country code that starts ``digits`` (codes are prefix-free)."""
    head = digits[:3]
    size = _COUNTRY_CODE_SIZE.get(head)
    if size is None:
        size = next(
            (n for n in (1, 2, 3) if int(head[:n]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE), 0
        )
        _COUNTRY_CODE_SIZE[head] = size
    return size


def mask_party(value: str) -> str:
    """A real number masked (``138****8000``, as ``proxy.numbers.mask``); a retention token
    is shown as it is. E.164 numbers take a fast path: exports mask millions."""
    if value.startswith(PURGED_PREFIX):
        return value
    digits = value[1:]
    if value[:1] == "+" and len(digits) > 3 and digits.isdigit():
        national = digits[country_code_size(digits) :]
        if len(national) >= 8:
            return f"{national[:3]}****{national[-4:]}"
    return mask(value)


def mask_call_id(value: str) -> str:
    """A Call-ID with every run of 7 or more digits masked: softswitches often build the
    A leg's Call-ID from the caller's number (``13800138000///1-42@host``)."""
    if value.startswith(PURGED_PREFIX):
        return value
    return NUMBER_RUN.sub(_mask_run, value)


def _mask_run(match: re.Match[str]) -> str:
    run = match.group(0)
    if run.isdigit():
        if len(run) >= 8:
            return f"{run[:3]}****{run[-4:]}"
        return mask(run)
    digits = sum(c.isdigit() for c in run)
    return mask(run) if digits >= 7 else run


def masked(record: CallRecord) -> CallRecord:
    """The record with real numbers masked (``138****8000``), for exports and listings;
    the A leg's Call-ID too, as it may carry the caller's number."""
    return replace(
        record,
        caller=mask_party(record.caller),
        callee=None if record.callee is None else mask_party(record.callee),
        a_call_id=None if record.a_call_id is None else mask_call_id(record.a_call_id),
    )
