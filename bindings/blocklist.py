"""The number blocklist (issue #6 "anti-fraud"): real numbers that may neither call nor be
called through any privacy number.

Numbers are stored in E.164 with ``+`` exactly as ``NumberPlan.real`` writes them, so the
call path checks the caller it already normalised with one primary-key probe
(``is_blocked``); callers of ``block`` and ``unblock`` normalise first. An entry may expire;
an expired entry no longer blocks and is replaced by the next ``block`` of its number.

Adding, replacing and removing entries is audited (``blocklist.add``, ``blocklist.remove``)
in the same transaction as the change; so is showing the list with real numbers unmasked
(``blocklist.unmask``). Audit events carry the number under ``number``, which
``proxy.audit.masked`` masks whenever an event is shown.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import Any, Final

from proxy import audit
from proxy.db import transaction

#: Longest reason kept; a reason is a note for operators, not a document.
MAX_REASON_CHARS: Final = 200
#: Subject of every blocklist audit event (the number itself is in ``before``/``after``, where
#: showing an event masks it).
AUDIT_SUBJECT: Final = "blocklist"

_E164: Final = re.compile(r"\+[1-9][0-9]{6,14}")
_COLUMNS: Final = "number, reason, created_at, created_by, expires_at"


def any_blocked_sql(numbers: str, now: str) -> str:
    """An SQL expression, 1 when one of ``numbers`` (an SQL list: placeholders or columns)
    has an entry in force at ``now`` and 0 otherwise, so a statement that reads a binding
    can carry the blocklist verdict on its parties in the same probe."""
    return (
        f"EXISTS (SELECT 1 FROM blocklist WHERE number IN ({numbers})"
        f" AND (expires_at IS NULL OR expires_at > {now}))"
    )


_IS_BLOCKED: Final = f"SELECT {any_blocked_sql('?', '?')}"


class BlocklistError(ValueError):
    """A malformed blocklist entry; ``field`` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class NotBlocked(LookupError):
    """The number has no blocklist entry."""


@dataclass(frozen=True, slots=True)
class BlockedNumber:
    """One blocklist entry. ``created_by`` is an API key id or ``cli``."""

    number: str
    reason: str
    created_at: float
    created_by: str
    expires_at: float | None = None

    def active(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now

    def as_audit(self) -> dict[str, Any]:
        return {"number": self.number, "reason": self.reason, "expires_at": self.expires_at}


def _entry(row: tuple[Any, ...]) -> BlockedNumber:
    number, reason, created_at, created_by, expires_at = row
    return BlockedNumber(number, reason, created_at, created_by, expires_at)


def _checked_number(number: str) -> str:
    if not _E164.fullmatch(number):
        raise BlocklistError("number", "expected an E.164 number with '+' (NumberPlan.real)")
    return number


def checked_reason(reason: str) -> str:
    """``reason`` stripped, or ``BlocklistError``: it must be printable text of 1 to
    ``MAX_REASON_CHARS`` characters (it is shown in tables and logs as one line)."""
    text = reason.strip()
    if not text:
        raise BlocklistError("reason", "give a reason")
    if len(text) > MAX_REASON_CHARS:
        raise BlocklistError("reason", f"at most {MAX_REASON_CHARS} characters")
    if not text.isprintable():
        raise BlocklistError("reason", "only printable characters on one line")
    return text


def get(conn: sqlite3.Connection, number: str) -> BlockedNumber | None:
    """The entry of ``number``, expired or not."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM blocklist WHERE number = ?", (number,)).fetchone()
    return None if row is None else _entry(row)


def block(
    conn: sqlite3.Connection,
    number: str,
    *,
    reason: str,
    actor: str,
    now: float,
    expires_at: float | None = None,
) -> BlockedNumber:
    """Block ``number`` (E.164) from now until ``expires_at`` (None: until unblocked).

    Blocking a number already listed replaces its entry (new reason, creator, time and
    expiry); the audit event keeps the old one as ``before``.
    """
    entry = BlockedNumber(
        number=_checked_number(number),
        reason=checked_reason(reason),
        created_at=now,
        created_by=actor,
        expires_at=expires_at,
    )
    if expires_at is not None and expires_at <= now:
        raise BlocklistError("expires_at", "the expiry must lie in the future")
    with transaction(conn):
        before = get(conn, number)
        conn.execute(
            f"INSERT OR REPLACE INTO blocklist ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
            (entry.number, entry.reason, now, actor, expires_at),
        )
        audit.append(
            conn,
            at=now,
            actor=actor,
            action="blocklist.add",
            subject=AUDIT_SUBJECT,
            before=None if before is None else before.as_audit(),
            after=entry.as_audit(),
            reason=entry.reason,
        )
    return entry


def unblock(conn: sqlite3.Connection, number: str, *, actor: str, now: float) -> BlockedNumber:
    """Remove the entry of ``number`` (expired or not) and return it; ``NotBlocked`` when
    there is none."""
    with transaction(conn):
        before = get(conn, number)
        if before is None:
            raise NotBlocked("the number is not on the blocklist")
        conn.execute("DELETE FROM blocklist WHERE number = ?", (number,))
        audit.append(
            conn,
            at=now,
            actor=actor,
            action="blocklist.remove",
            subject=AUDIT_SUBJECT,
            before=before.as_audit(),
        )
    return before


def is_blocked(conn: sqlite3.Connection, number: str, now: float) -> bool:
    """Whether ``number`` (E.164, as routing normalised it) is blocked at ``now``.

    One probe of the table's primary key, whose prepared statement the sqlite3 module
    caches per connection (a few microseconds).
    """
    return bool(conn.execute(_IS_BLOCKED, (number, now)).fetchone()[0])


def blocked(
    conn: sqlite3.Connection,
    *,
    now: float,
    include_expired: bool = False,
    limit: int = 1000,
    offset: int = 0,
) -> list[BlockedNumber]:
    """Entries newest first; expired ones only with ``include_expired``."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM blocklist"
        " WHERE :all OR expires_at IS NULL OR expires_at > :now"
        " ORDER BY created_at DESC, number LIMIT :limit OFFSET :offset",
        {"all": include_expired, "now": now, "limit": limit, "offset": offset},
    ).fetchall()
    return [_entry(row) for row in rows]


def audit_unmasked_listing(
    conn: sqlite3.Connection, *, actor: str, now: float, shown: int, reason: str | None = None
) -> int:
    """Record that ``actor`` was shown ``shown`` blocklist entries with real numbers in full
    (``blocklist.unmask``); return the event's sequence number."""
    with transaction(conn):
        return audit.append(
            conn,
            at=now,
            actor=actor,
            action="blocklist.unmask",
            subject=AUDIT_SUBJECT,
            after={"entries": shown},
            reason=reason,
        )
