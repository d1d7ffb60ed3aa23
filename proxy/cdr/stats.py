"""Call statistics from the ``cdrs`` table, per UTC day and in total (issue #5).

- ``calls``: call attempts, refused ones included;
- ``answered``; ``asr``: answer-seizure ratio, ``answered / calls`` (ITU-T E.411);
  ``asr_routed``: ``answered / (calls - rejected)``, the ratio over calls the proxy routed;
- ``acd_s``: average call duration, talk seconds per answered call;
- ``by_disposition`` and ``rejects_by_reason``: counts.

Purged records count like any other: retention removes numbers, not records.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from proxy.cdr.record import DISPOSITIONS


def _summary(calls: int, answered: int, rejected: int, talk: float) -> dict[str, Any]:
    routed = calls - rejected
    return {
        "calls": calls,
        "answered": answered,
        "asr": round(answered / calls, 4) if calls else None,
        "asr_routed": round(answered / routed, 4) if routed else None,
        "acd_s": round(talk / answered, 3) if answered else None,
        "talk_s": round(talk, 3),
    }


def cdr_stats(
    conn: sqlite3.Connection,
    *,
    since: float | None = None,
    until: float | None = None,
    tenant: str | None = None,
) -> dict[str, Any]:
    """Totals and per-day figures over records with ``since <= invite_at < until``."""
    clauses: list[str] = []
    params: list[object] = []
    if since is not None:
        clauses.append("invite_at >= ?")
        params.append(since)
    if until is not None:
        clauses.append("invite_at < ?")
        params.append(until)
    if tenant is not None:
        clauses.append("tenant = ?")
        params.append(tenant)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(
        "SELECT date(invite_at, 'unixepoch') AS day, disposition, reject_reason, COUNT(*),"
        f" COALESCE(SUM(talk_s), 0) FROM cdrs{where}"
        " GROUP BY day, disposition, reject_reason ORDER BY day",
        params,
    ).fetchall()
    days: dict[str, dict[str, Any]] = {}
    total_disposition = dict.fromkeys(DISPOSITIONS, 0)
    total_rejects: dict[str, int] = {}
    total_talk = 0.0
    for day, disposition, reason, count, talk in rows:
        entry = days.setdefault(
            day,
            {
                "by_disposition": dict.fromkeys(DISPOSITIONS, 0),
                "rejects_by_reason": {},
                "talk": 0.0,
            },
        )
        entry["by_disposition"][disposition] = entry["by_disposition"].get(disposition, 0) + count
        entry["talk"] += talk
        total_disposition[disposition] = total_disposition.get(disposition, 0) + count
        total_talk += talk
        if reason is not None:
            entry["rejects_by_reason"][reason] = entry["rejects_by_reason"].get(reason, 0) + count
            total_rejects[reason] = total_rejects.get(reason, 0) + count
    per_day = []
    for day, entry in days.items():
        by_disposition = entry["by_disposition"]
        calls = sum(by_disposition.values())
        per_day.append(
            {
                "day": day,
                **_summary(
                    calls, by_disposition["answered"], by_disposition["rejected"], entry["talk"]
                ),
                "by_disposition": by_disposition,
                "rejects_by_reason": entry["rejects_by_reason"],
            }
        )
    calls = sum(total_disposition.values())
    return {
        **_summary(calls, total_disposition["answered"], total_disposition["rejected"], total_talk),
        "by_disposition": total_disposition,
        "rejects_by_reason": dict(sorted(total_rejects.items(), key=lambda kv: -kv[1])),
        "per_day": per_day,
    }
