"""``/v1/bindings``: create, read, change, release and list AXB bindings (issue #4).

A tenant's key sees and changes only the tenant's bindings; anyone else's binding is a 404,
exactly as if it did not exist. An admin key sees every tenant's. Numbers in requests may be
written in any form ``NumberPlan`` accepts; responses carry A and B in E.164 and X as its
digits (the platform's own data, so unmasked; nothing here logs them).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bindings.models import (
    UNSET,
    Allocation,
    AllocationRequest,
    Binding,
    BindingError,
    BindingRefused,
    BindingStatus,
    Direction,
    Unset,
)
from bindings.sqlite_store import SqliteBindingStore
from proxy.api.deps import (
    AllocationWriter,
    ApiSettings,
    Principal,
    allocation_writer,
    authenticated,
    binding_store,
    now,
    principal,
    routing_changed,
    settings,
)
from proxy.numbers import NumberError, NumberPlan

router = APIRouter(prefix="/v1/bindings", tags=["bindings"])

MAX_TTL_S: Final = 366 * 86_400


def field_error(location: str, field: str | int, message: str, value: object = None) -> Exception:
    """A 422 in FastAPI's own shape: ``{"detail": [{"loc": [location, field], ...}]}``."""
    return RequestValidationError(
        [{"type": "value_error", "loc": (location, field), "msg": message, "input": value}]
    )


def real_number(plan: NumberPlan, text: str, location: str, field: str) -> str:
    try:
        return plan.real(text)
    except NumberError as error:
        raise field_error(location, field, str(error), text) from None


def privacy_number(plan: NumberPlan, text: str, location: str, field: str | int) -> str:
    try:
        return plan.privacy(text)
    except NumberError as error:
        raise field_error(location, field, str(error), text) from None


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _moment(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


class BindingCreate(BaseModel):
    """A new AXB binding; leave ``x`` out to have the allocator choose one."""

    model_config = ConfigDict(extra="forbid")

    a: str = Field(description="Real number of party A, any usual form.", examples=["13800138000"])
    b: str = Field(description="Real number of party B.", examples=["13900139000"])
    x: str | None = Field(
        None, description="A privacy number of the tenant's pool; omit to allocate one."
    )
    model: Literal["axb"] = "axb"
    ttl_s: int | None = Field(None, gt=0, le=MAX_TTL_S, description="Seconds until expiry.")
    expires_at: AwareDatetime | None = Field(
        None, description="Absolute expiry (ISO 8601 with a zone, or epoch seconds)."
    )
    direction: Direction = "both"
    max_call_s: int | None = Field(None, gt=0, le=86_400)
    order_id: str | None = Field(None, max_length=128)
    scenario: str | None = Field(None, max_length=128)
    city: str | None = Field(None, max_length=64, description="Preferred pool city tag.")
    request_id: str | None = Field(
        None,
        min_length=1,
        description="Idempotency key: a retry returns the first binding.",
        max_length=128,
    )


class BindingPatch(BaseModel):
    """A change of a live binding: its expiry (``null``: until released) and/or direction."""

    model_config = ConfigDict(extra="forbid")

    expires_at: AwareDatetime | None = None
    ttl_s: int | None = Field(None, gt=0, le=MAX_TTL_S, description="Seconds from now.")
    direction: Direction | None = None


class BindingOut(BaseModel):
    """A binding as stored; ``status`` is what routing sees now (a lapsed binding is
    ``expired`` even before the sweeper marks it)."""

    id: str
    tenant: str
    model: str
    a: str
    b: str
    x: str
    direction: Direction
    status: BindingStatus
    created_at: datetime
    expires_at: datetime | None
    ended_at: datetime | None
    max_call_s: int | None
    order_id: str | None
    scenario: str | None
    request_id: str | None

    @classmethod
    def of(cls, binding: Binding, at: float) -> BindingOut:
        return cls(
            id=binding.id,
            tenant=binding.tenant,
            model=binding.model,
            a=binding.a,
            b=binding.b,
            x=binding.x,
            direction=binding.direction,
            status=binding.effective_status(at),
            created_at=datetime.fromtimestamp(binding.created_at, UTC),
            expires_at=_moment(binding.expires_at),
            ended_at=_moment(binding.ended_at),
            max_call_s=binding.max_call_s,
            order_id=binding.order_id,
            scenario=binding.scenario,
            request_id=binding.request_id,
        )


class BindingPage(BaseModel):
    items: list[BindingOut]
    limit: int
    offset: int
    next_offset: int | None = Field(description="Offset of the next page, null on the last.")


Store = Annotated[SqliteBindingStore, Depends(binding_store)]
Caller = Annotated[Principal, Depends(principal)]
Now = Annotated[float, Depends(now)]
Settings = Annotated[ApiSettings, Depends(settings)]
Writer = Annotated[AllocationWriter, Depends(allocation_writer)]
RoutingChanged = Annotated[Callable[[], None], Depends(routing_changed)]

_NOT_FOUND: Final = "no such binding"


def _visible(store: SqliteBindingStore, caller: Principal, binding_id: str) -> Binding:
    binding = store.get(binding_id)
    if binding is None or not (caller.admin or binding.tenant == caller.tenant):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"{_NOT_FOUND} {binding_id}")
    return binding


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=BindingOut,
    responses={
        200: {"description": "A retry with the same request_id: the binding it made"},
        409: {"description": "X breaks the reuse rule, is quarantined or full; no free X"},
        422: {"description": "A field is malformed; detail[].loc names it"},
    },
)
async def create_binding(
    body: BindingCreate,
    writer: Writer,
    caller: Caller,
    at: Now,
    api: Settings,
) -> Response:
    """Bind A and B through X (AXB)."""
    allocation = await writer.allocate(allocation_request(body, caller, at, api.plan))
    return created_response(allocation, at)


def allocation_request(
    body: BindingCreate, caller: Principal, at: float, plan: NumberPlan
) -> AllocationRequest:
    """What ``body`` asks the allocator for, numbers normalised; a 422
    (``RequestValidationError``) naming the field otherwise."""
    if body.ttl_s is not None and body.expires_at is not None:
        raise field_error("body", "ttl_s", "give ttl_s or expires_at, not both", body.ttl_s)
    a = real_number(plan, body.a, "body", "a")
    b = real_number(plan, body.b, "body", "b")
    if a == b:
        raise field_error("body", "b", "A and B must be different numbers", body.b)
    x = None if body.x is None else privacy_number(plan, body.x, "body", "x")
    expires_at = at + body.ttl_s if body.ttl_s is not None else _epoch(body.expires_at)
    return AllocationRequest(
        a,
        b,
        at,
        x=x,
        tenant=caller.tenant,
        city=body.city,
        request_id=body.request_id,
        model=body.model,
        expires_at=expires_at,
        direction=body.direction,
        max_call_s=body.max_call_s,
        order_id=body.order_id,
        scenario=body.scenario,
        actor=caller.key_id,
    )


def created_response(allocation: Allocation, at: float) -> Response:
    """201 with the new binding, or 200 with the one a repeated ``request_id`` made.

    Serialised here rather than through ``response_model``, which would validate the model a
    second time; ``response_model`` still documents the body."""
    return Response(
        BindingOut.of(allocation.binding, at).model_dump_json(),
        status_code=status.HTTP_200_OK if allocation.replayed else status.HTTP_201_CREATED,
        media_type="application/json",
    )


class CreateFastPath:
    """ASGI middleware: ``POST /v1/bindings`` served without FastAPI's routing and
    dependency machinery, which costs ~10 times what uvicorn itself does per request and
    dominated the API's CPU per creation (design.md §5).

    It runs exactly the route's steps (``authenticated``, ``BindingCreate``,
    ``allocation_request``, the writer, ``created_response``, the app's handlers for refusals)
    on the same app state. Whatever it would answer with a client error before allocating (no
    or bad key, malformed JSON, an invalid field, a wrong content type) it hands to the
    FastAPI route instead, body replayed, so that every error body stays FastAPI's own.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != CREATE_PATH
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        body, more = await _read_body(receive)
        response = None if more else await self._create(scope, body)
        if response is None:
            await self.app(scope, _replay(body, more, receive), send)
        else:
            await response(scope, receive, send)

    async def _create(self, scope: Scope, body: bytes) -> Response | None:
        state = scope["app"].state
        authorization: str | None = None
        json_body = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-type":
                json_body = value.split(b";")[0].strip().lower() == b"application/json"
        if not json_body:
            return None
        try:
            caller = authenticated(state.db_pool, authorization)
            fields = BindingCreate.model_validate_json(body)
            at: float = state.clock()
            settings: ApiSettings = state.settings
            request = allocation_request(fields, caller, at, settings.plan)
        except (HTTPException, ValidationError, RequestValidationError):
            return None
        writer: AllocationWriter = state.allocation_writer
        try:
            allocation = await writer.allocate(request)
        except BindingError as error:
            handler = scope["app"].exception_handlers[_handler_class(error)]
            refusal: Response = await handler(Request(scope), error)
            return refusal
        return created_response(allocation, at)


CREATE_PATH: Final = "/v1/bindings"


def _handler_class(error: BindingError) -> type[BindingError]:
    return BindingRefused if isinstance(error, BindingRefused) else BindingError


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The request body, unless the client went away first (``more`` True: let the app see
    the rest of the conversation)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), True
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """``receive`` for the app, starting with the body already read."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed or more:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


@router.get("/{binding_id}", response_model=BindingOut, responses={404: {}})
def get_binding(binding_id: str, store: Store, caller: Caller, at: Now) -> BindingOut:
    """One binding of the caller's tenant."""
    return BindingOut.of(_visible(store, caller, binding_id), at)


@router.patch("/{binding_id}", response_model=BindingOut, responses={404: {}, 409: {}, 422: {}})
def change_binding(
    binding_id: str,
    body: BindingPatch,
    store: Store,
    caller: Caller,
    at: Now,
    routing: RoutingChanged,
) -> BindingOut:
    """Change a live binding's expiry or direction."""
    given = body.model_fields_set
    if not given:
        raise field_error(
            "body", "expires_at", "nothing to change: give expires_at, ttl_s or direction"
        )
    if {"ttl_s", "expires_at"} <= given:
        raise field_error("body", "ttl_s", "give ttl_s or expires_at, not both", body.ttl_s)
    if "direction" in given and body.direction is None:
        raise field_error("body", "direction", "direction cannot be null")
    _visible(store, caller, binding_id)
    expires_at: float | Unset | None = UNSET
    if "ttl_s" in given:
        if body.ttl_s is None:
            raise field_error("body", "ttl_s", "ttl_s cannot be null; use expires_at: null")
        expires_at = at + body.ttl_s
    elif "expires_at" in given:
        expires_at = _epoch(body.expires_at)
    changed = store.update(
        binding_id, at, expires_at=expires_at, direction=body.direction, actor=caller.key_id
    )
    routing()
    return BindingOut.of(changed, at)


@router.delete("/{binding_id}", response_model=BindingOut, responses={404: {}})
def release_binding(
    binding_id: str, store: Store, caller: Caller, at: Now, routing: RoutingChanged
) -> BindingOut:
    """Release a binding: calls through it stop at once. Releasing an ended binding
    returns it unchanged."""
    _visible(store, caller, binding_id)
    released = store.release(binding_id, at, actor=caller.key_id)
    routing()
    return BindingOut.of(released, at)


@router.get("", response_model=BindingPage)
def list_bindings(
    store: Store,
    caller: Caller,
    at: Now,
    api: Settings,
    party: Annotated[str | None, Query(description="A or B of the binding")] = None,
    x: Annotated[str | None, Query()] = None,
    binding_status: Annotated[BindingStatus | None, Query(alias="status")] = None,
    tenant: Annotated[str | None, Query(description="Admin keys only: one tenant")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> BindingPage:
    """The caller's bindings, newest first, a page at a time."""
    if tenant is not None and not caller.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="only admin keys choose a tenant")
    scope = tenant if caller.admin else caller.tenant
    filters: dict[str, Any] = {
        "party": None if party is None else real_number(api.plan, party, "query", "party"),
        "x": None if x is None else privacy_number(api.plan, x, "query", "x"),
    }
    # Sweep first, so that ?status= and each item's status agree with routing.
    store.expire_due(at)
    found = store.list(
        status=binding_status, limit=limit + 1, offset=offset, tenant=scope, **filters
    )
    return BindingPage(
        items=[BindingOut.of(binding, at) for binding in found[:limit]],
        limit=limit,
        offset=offset,
        next_offset=offset + limit if len(found) > limit else None,
    )
