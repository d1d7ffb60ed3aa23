"""``/v1/cdrs``: call records for platform developers, tenant-scoped and masked (issue #5).

A tenant key sees only its own tenant's records; an admin key sees every tenant, or one with
``?tenant=``. Real numbers are always masked here (``138****8000``, digit runs of the A
leg's Call-ID too): unmasking is an audited act of ``privproxy cdr export --unmask``.

Pagination is by keyset on ``seq`` (newest first): ``next_cursor`` of one page is the
``cursor`` of the next, stable while new records arrive.
"""

from __future__ import annotations

import sqlite3
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, HTTPException, Query, status

from proxy.api.deps import Principal, database, principal
from proxy.cdr.export import RECORD_COLUMNS, ExportError, iso_time, parse_when
from proxy.cdr.record import DISPOSITIONS, REJECT_REASONS, mask_call_id, mask_party
from proxy.cdr.stats import cdr_stats

router = APIRouter(prefix="/v1/cdrs", tags=["cdrs"])

MAX_LIMIT: Final = 1000
#: The record's own fields, without the chain's commitments and links (an API reader
#: sees masked numbers; verification works on exports).
_COLUMNS: Final = RECORD_COLUMNS[: RECORD_COLUMNS.index("node") + 1]
_TIMES: Final = frozenset({"invite_at", "ring_at", "answer_at", "end_at"})

Conn = Annotated[sqlite3.Connection, Depends(database)]
Caller = Annotated[Principal, Depends(principal)]


def _tenant_scope(caller: Principal, tenant: str | None) -> str | None:
    if caller.admin:
        return tenant
    if tenant is not None and tenant != caller.tenant:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail="a tenant key sees its own tenant only"
        )
    return caller.tenant


def _when(text: str | None, name: str, *, end_of_day: bool = False) -> float | None:
    if text is None:
        return None
    try:
        return parse_when(text, end_of_day=end_of_day)
    except ExportError as exc:
        raise HTTPException(422, detail=f"{name}: {exc}") from exc


def _item(row: tuple[Any, ...]) -> dict[str, Any]:
    item = dict(zip(_COLUMNS, row, strict=True))
    item["caller"] = mask_party(item["caller"])
    if item["callee"] is not None:
        item["callee"] = mask_party(item["callee"])
    if item["a_call_id"] is not None:
        item["a_call_id"] = mask_call_id(item["a_call_id"])
    for name in _TIMES:
        if item[name] is not None:
            item[name] = iso_time(item[name])
    return item


@router.get("")
def list_cdrs(
    conn: Conn,
    caller: Caller,
    since: Annotated[str | None, Query(description="ISO time or date (UTC), inclusive")] = None,
    until: Annotated[str | None, Query(description="ISO time, or a date included whole")] = None,
    tenant: Annotated[str | None, Query(description="admin keys only")] = None,
    x: Annotated[str | None, Query(description="privacy number")] = None,
    binding_id: str | None = None,
    disposition: str | None = None,
    reject_reason: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    cursor: Annotated[int | None, Query(ge=1, description="next_cursor of the last page")] = None,
) -> dict[str, Any]:
    """Call records, newest first, masked."""
    if disposition is not None and disposition not in DISPOSITIONS:
        raise HTTPException(422, detail=f"disposition must be one of {', '.join(DISPOSITIONS)}")
    if reject_reason is not None and reject_reason not in REJECT_REASONS:
        raise HTTPException(422, detail=f"reject_reason must be one of {', '.join(REJECT_REASONS)}")
    filters: list[tuple[str, object]] = []
    scope = _tenant_scope(caller, tenant)
    for clause, value in (
        ("tenant = ?", scope),
        ("invite_at >= ?", _when(since, "since")),
        ("invite_at < ?", _when(until, "until", end_of_day=True)),
        ("x = ?", x),
        ("binding_id = ?", binding_id),
        ("disposition = ?", disposition),
        ("reject_reason = ?", reject_reason),
        ("seq < ?", cursor),
    ):
        if value is not None:
            filters.append((clause, value))
    where = f" WHERE {' AND '.join(c for c, _ in filters)}" if filters else ""
    rows = conn.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM cdrs{where} ORDER BY seq DESC LIMIT ?",
        [v for _, v in filters] + [limit + 1],
    ).fetchall()
    more = len(rows) > limit
    items = [_item(row) for row in rows[:limit]]
    return {"items": items, "next_cursor": items[-1]["seq"] if more and items else None}


@router.get("/stats")
def cdr_statistics(
    conn: Conn,
    caller: Caller,
    since: str | None = None,
    until: str | None = None,
    tenant: Annotated[str | None, Query(description="admin keys only")] = None,
) -> dict[str, Any]:
    """Calls, answered, answer-seizure ratio, average call duration, rejects by reason, per
    UTC day."""
    return cdr_stats(
        conn,
        since=_when(since, "since"),
        until=_when(until, "until", end_of_day=True),
        tenant=_tenant_scope(caller, tenant),
    )
