"""``/v1/blocklist``: real numbers that may neither call nor be called through any privacy
number (issue #6). Admin keys only.

Numbers are accepted in any usual form and stored in E.164 (``NumberPlan.real``). Listings
mask them (``138****8000``) unless ``?unmasked=true``, which is audited
(``blocklist.unmask``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Final

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from bindings import blocklist
from bindings.blocklist import BlockedNumber, BlocklistError, NotBlocked
from proxy.api.bindings import field_error, real_number
from proxy.api.deps import (
    ApiSettings,
    Principal,
    admin,
    database,
    now,
    routing_changed,
    settings,
)
from proxy.numbers import mask

router = APIRouter(prefix="/v1/blocklist", tags=["blocklist"])

#: Longest block one request may set (ten years); none given blocks until removed.
MAX_TTL_S: Final = 10 * 365 * 86400

Connection = Annotated[sqlite3.Connection, Depends(database)]
Admin = Annotated[Principal, Depends(admin)]
Now = Annotated[float, Depends(now)]
Settings = Annotated[ApiSettings, Depends(settings)]
RoutingChanged = Annotated[Callable[[], None], Depends(routing_changed)]


class BlockCreate(BaseModel):
    """A number to block, why, and for how long."""

    model_config = ConfigDict(extra="forbid")

    number: str = Field(description="Real number, any usual form.", examples=["13800138000"])
    reason: str = Field(
        min_length=1,
        max_length=blocklist.MAX_REASON_CHARS,
        examples=["marketing calls reported by drivers"],
    )
    ttl_s: int | None = Field(
        None, ge=1, le=MAX_TTL_S, description="Seconds until the block lapses; omit: never."
    )


class BlockedNumberOut(BaseModel):
    number: str = Field(description="E.164, masked in listings unless unmasked=true.")
    reason: str
    created_at: datetime
    created_by: str = Field(description="API key id, or 'cli'.")
    expires_at: datetime | None

    @classmethod
    def of(cls, entry: BlockedNumber, *, unmasked: bool = True) -> BlockedNumberOut:
        return cls(
            number=entry.number if unmasked else mask(entry.number),
            reason=entry.reason,
            created_at=datetime.fromtimestamp(entry.created_at, UTC),
            created_by=entry.created_by,
            expires_at=None
            if entry.expires_at is None
            else datetime.fromtimestamp(entry.expires_at, UTC),
        )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=BlockedNumberOut)
def add_block(
    body: BlockCreate,
    conn: Connection,
    caller: Admin,
    at: Now,
    api: Settings,
    routing: RoutingChanged,
) -> BlockedNumberOut:
    """Block a number (admin keys); blocking it again replaces the entry."""
    number = real_number(api.plan, body.number, "body", "number")
    try:
        entry = blocklist.block(
            conn,
            number,
            reason=body.reason,
            actor=caller.key_id,
            now=at,
            expires_at=None if body.ttl_s is None else at + body.ttl_s,
        )
    except BlocklistError as error:
        raise field_error(
            "body", error.field, str(error), getattr(body, error.field, None)
        ) from None
    routing()
    return BlockedNumberOut.of(entry)


@router.delete(
    "/{number}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={404: {"description": "the number is not on the blocklist"}},
)
def remove_block(
    number: str, conn: Connection, caller: Admin, at: Now, api: Settings, routing: RoutingChanged
) -> Response:
    """Unblock a number (admin keys)."""
    real = real_number(api.plan, number, "path", "number")
    try:
        blocklist.unblock(conn, real, actor=caller.key_id, now=at)
    except NotBlocked as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(error)) from None
    routing()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("", response_model=list[BlockedNumberOut])
def list_blocks(
    conn: Connection,
    caller: Admin,
    at: Now,
    unmasked: Annotated[
        bool, Query(description="Show numbers in full (audited as blocklist.unmask).")
    ] = False,
    include_expired: Annotated[bool, Query(description="Lapsed entries too.")] = False,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[BlockedNumberOut]:
    """Blocked numbers, newest first (admin keys)."""
    entries = blocklist.blocked(
        conn, now=at, include_expired=include_expired, limit=limit, offset=offset
    )
    if unmasked:
        blocklist.audit_unmasked_listing(conn, actor=caller.key_id, now=at, shown=len(entries))
    return [BlockedNumberOut.of(entry, unmasked=unmasked) for entry in entries]
