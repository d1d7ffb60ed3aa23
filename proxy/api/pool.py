"""``/v1/pool``: the operator's privacy numbers (issue #4).

Admin keys add and remove numbers and see the whole pool; a tenant's key sees the numbers it
may use (its own and the shared ones) and their load, nothing more.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from bindings.models import PoolNumber, PoolStats, expand_range
from bindings.sqlite_store import SqliteBindingStore
from proxy.api.bindings import field_error, privacy_number
from proxy.api.deps import ApiSettings, Principal, admin, binding_store, now, principal, settings

router = APIRouter(prefix="/v1/pool", tags=["pool"])

#: Numbers one request may add, ranges included.
MAX_NUMBERS_PER_REQUEST: Final = 100_000

Store = Annotated[SqliteBindingStore, Depends(binding_store)]
Now = Annotated[float, Depends(now)]
Settings = Annotated[ApiSettings, Depends(settings)]


class PoolAdd(BaseModel):
    """Numbers to add, one by one and/or as ``FIRST-LAST`` ranges."""

    model_config = ConfigDict(extra="forbid")

    numbers: list[str] = Field(default_factory=list, examples=[["700123456780001"]])
    ranges: list[str] = Field(default_factory=list, examples=[["700123456780000-700123456789999"]])
    tenant: str | None = Field(
        None, min_length=1, max_length=128, description="Owner; omit for the shared pool."
    )
    city: str | None = Field(None, min_length=1, max_length=64)


class PoolAdded(BaseModel):
    added: int
    already_present: int = Field(description="Numbers already in the pool, left unchanged.")


class PoolNumberOut(BaseModel):
    x: str
    tenant: str | None
    city: str | None
    added_at: datetime
    live_bindings: int

    @classmethod
    def of(cls, number: PoolNumber) -> PoolNumberOut:
        return cls(
            x=number.x,
            tenant=number.tenant,
            city=number.city,
            added_at=datetime.fromtimestamp(number.added_at, UTC),
            live_bindings=number.live_bindings,
        )


class PoolStatsOut(BaseModel):
    numbers: int
    numbers_in_use: int
    live_bindings: int
    mean_bindings_per_number: float
    busiest_number_bindings: int
    max_per_number: int
    free_capacity: int = Field(description="Bindings the numbers could still take.")

    @classmethod
    def of(cls, stats: PoolStats) -> PoolStatsOut:
        return cls(
            numbers=stats.numbers,
            numbers_in_use=stats.numbers_in_use,
            live_bindings=stats.live_bindings,
            mean_bindings_per_number=round(stats.mean_bindings_per_number, 3),
            busiest_number_bindings=stats.busiest_number_bindings,
            max_per_number=stats.max_per_number,
            free_capacity=stats.free_capacity,
        )


def _scope(caller: Principal, tenant: str | None) -> str | None:
    if caller.admin:
        return tenant
    if tenant is not None and tenant != caller.tenant:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="only admin keys choose a tenant")
    return caller.tenant


@router.post("", status_code=status.HTTP_201_CREATED, response_model=PoolAdded)
def add_numbers(
    body: PoolAdd,
    store: Store,
    caller: Annotated[Principal, Depends(admin)],
    at: Now,
    api: Settings,
) -> PoolAdded:
    """Add privacy numbers to the pool (admin keys)."""
    plan = api.plan
    numbers = [privacy_number(plan, text, "body", "numbers") for text in body.numbers]
    for index, text in enumerate(body.ranges):
        try:
            numbers += expand_range(
                text,
                prefix=plan.privacy_prefix,
                length=plan.privacy_length,
                limit=MAX_NUMBERS_PER_REQUEST,
            )
        except ValueError as error:
            raise field_error("body", "ranges", f"ranges[{index}]: {error}", text) from None
    if not numbers:
        raise field_error("body", "numbers", "give at least one number or range")
    if len(numbers) > MAX_NUMBERS_PER_REQUEST:
        raise field_error(
            "body", "ranges", f"at most {MAX_NUMBERS_PER_REQUEST} numbers per request"
        )
    result = store.add_numbers(
        numbers, now=at, tenant=body.tenant, city=body.city, actor=caller.key_id
    )
    return PoolAdded(added=result.added, already_present=result.already_present)


@router.delete(
    "/{number}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={404: {}, 409: {"description": "live bindings still use the number"}},
)
def remove_number(
    number: str,
    store: Store,
    caller: Annotated[Principal, Depends(admin)],
    at: Now,
    api: Settings,
) -> Response:
    """Take an unused number out of the pool (admin keys)."""
    x = privacy_number(api.plan, number, "path", "number")
    store.remove_number(x, now=at, actor=caller.key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/stats", response_model=PoolStatsOut)
def pool_stats(
    store: Store,
    caller: Annotated[Principal, Depends(principal)],
    at: Now,
    tenant: Annotated[str | None, Query(description="Admin keys: one tenant's view")] = None,
) -> PoolStatsOut:
    """Numbers, their load and free capacity, as the caller may use them."""
    return PoolStatsOut.of(store.pool_stats(at, _scope(caller, tenant)))


@router.get("", response_model=list[PoolNumberOut])
def list_numbers(
    store: Store,
    caller: Annotated[Principal, Depends(principal)],
    tenant: Annotated[str | None, Query(description="Admin keys: one tenant's view")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[PoolNumberOut]:
    """Pool numbers in the order they joined, with their live load."""
    found = store.list_pool(_scope(caller, tenant), limit=limit, offset=offset)
    return [PoolNumberOut.of(number) for number in found]
