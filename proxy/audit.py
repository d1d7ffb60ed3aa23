"""The audit log: an append-only record of audited acts (design.md §1 "Records").

Binding changes (create, update, release, expire), unmasking of call records, retention
purges, API keys and pool changes each append one event: when, who (an API key id or
``cli``), what, on which subject, the state before and after, and the reason given. The
stored values keep real numbers, because an auditor may need them; ``masked`` is how an
event is shown.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from proxy.numbers import mask

#: Keys whose values are real numbers, masked whenever an event is shown.
NUMBER_KEYS: Final = frozenset({"a", "b", "caller", "callee", "party", "number"})


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audited act; ``before``/``after`` are JSON-able mappings or None."""

    seq: int
    at: float
    actor: str
    action: str
    subject: str | None
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    reason: str | None


def append(
    conn: sqlite3.Connection,
    *,
    at: float,
    actor: str,
    action: str,
    subject: str | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    reason: str | None = None,
) -> int:
    """Append one event in the caller's transaction (so the act and its record commit
    together); return its sequence number."""
    cursor = conn.execute(
        "INSERT INTO audit_log (at, actor, action, subject, before, after, reason)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (at, actor, action, subject, _dump(before), _dump(after), reason),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def events(
    conn: sqlite3.Connection,
    *,
    since: float | None = None,
    until: float | None = None,
    action: str | None = None,
    subject: str | None = None,
    limit: int = 1000,
) -> list[AuditEvent]:
    """Events in time order, filtered; ``action`` may end in ``.`` to match a family
    (``"binding."``)."""
    clauses: list[str] = []
    params: list[object] = []
    if since is not None:
        clauses.append("at >= ?")
        params.append(since)
    if until is not None:
        clauses.append("at < ?")
        params.append(until)
    if action is not None:
        if action.endswith("."):
            clauses.append("action LIKE ? ESCAPE '\\'")
            params.append(action.replace("_", "\\_") + "%")
        else:
            clauses.append("action = ?")
            params.append(action)
    if subject is not None:
        clauses.append("subject = ?")
        params.append(subject)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(
        "SELECT seq, at, actor, action, subject, before, after, reason FROM audit_log"
        f"{where} ORDER BY seq LIMIT ?",
        (*params, limit),
    ).fetchall()
    return [
        AuditEvent(seq, at, actor, action_, subject_, _load(before), _load(after), reason)
        for seq, at, actor, action_, subject_, before, after, reason in rows
    ]


def masked(event: AuditEvent) -> AuditEvent:
    """The event as it may be shown: every real number masked (``138****8000``)."""
    return replace(event, before=_mask_values(event.before), after=_mask_values(event.after))


def _mask_values(values: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if values is None:
        return None
    return {
        key: mask(value) if key in NUMBER_KEYS and isinstance(value, str) else value
        for key, value in values.items()
    }


def _dump(values: Mapping[str, Any] | None) -> str | None:
    return None if values is None else json.dumps(dict(values), sort_keys=True, default=str)


def _load(text: str | None) -> Mapping[str, Any] | None:
    if text is None:
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}
