"""Binding values and the AXB rules, pure: no clock, no storage (design.md §1).

A binding ties two real numbers A and B (E.164, ``+86…``) to a privacy number X (digits).
Calls from A to X reach B and the other way round. Time enters as ``now`` (epoch seconds),
so a binding past ``expires_at`` stops routing at once, whether or not a sweeper has yet
marked it expired.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Final, Literal, get_args

from proxy.numbers import mask

BindingModel = Literal["axb", "axn", "axe"]
Direction = Literal["both", "a_to_b", "b_to_a"]
BindingStatus = Literal["active", "expired", "released"]
Role = Literal["a", "b"]


class Unset(enum.Enum):
    """Marks an argument that was not given, where None is a meaningful value."""

    UNSET = enum.auto()


UNSET: Final = Unset.UNSET

BINDING_MODELS: Final[tuple[str, ...]] = get_args(BindingModel)
DIRECTIONS: Final[tuple[str, ...]] = get_args(Direction)
BINDING_STATUSES: Final[tuple[str, ...]] = get_args(BindingStatus)
# AXN and AXE need their own routing keys (any caller, extension digits); until they are
# built a store accepts only AXB so that a half-supported binding never routes calls.
SUPPORTED_MODELS: Final[frozenset[str]] = frozenset({"axb"})

DEFAULT_TENANT: Final = "default"
#: Per-(party, X) quarantine after a binding ends (design.md §1): 24 hours.
DEFAULT_QUARANTINE_S: Final = 86_400.0
#: Concurrent live bindings one X may carry.
DEFAULT_MAX_PER_X: Final = 5_000

# Which caller each direction lets through: the role whose calls may reach the other party.
_CALLING_ROLES: Final[dict[str, frozenset[str]]] = {
    "both": frozenset({"a", "b"}),
    "a_to_b": frozenset({"a"}),
    "b_to_a": frozenset({"b"}),
}


class BindingError(ValueError):
    """A malformed binding request; the message says why and ``field`` names the request
    field at fault when there is one (``a``, ``b``, ``x``, ``expires_at`` …)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BindingRefused(BindingError):
    """A well-formed request the current state refuses (an API answers 409)."""


class BindingConflict(BindingRefused):
    """AXB reuse rule broken: ``party`` already appears in a live binding on ``x``.

    ``role`` is the role ``party`` had in the *requested* binding ("a" or "b"), so an API or
    CLI can point at the offending argument. The message masks the number (design.md §4).
    """

    def __init__(self, *, party: str, role: Role, x: str, binding_id: str) -> None:
        super().__init__(
            f"{role.upper()} {mask(party)} already uses X {x} in live binding {binding_id}",
            field=role,
        )
        self.party = party
        self.role = role
        self.x = x
        self.binding_id = binding_id


class NumberQuarantined(BindingRefused):
    """``party`` left a binding on ``x`` with someone else less than the quarantine ago: a
    call from them to a recycled X must never reach a stranger (design.md §1)."""

    def __init__(self, *, party: str, role: Role, x: str, until: float) -> None:
        super().__init__(
            f"{role.upper()} {mask(party)} is quarantined on X {x} after an earlier binding",
            field="x",
        )
        self.party = party
        self.role = role
        self.x = x
        self.until = until


class NoFreeNumber(BindingRefused):
    """No pool number open to the tenant can take this pair now."""


class NumberUnavailable(BindingRefused):
    """The requested X is not in the pool, belongs to another tenant, or is full."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="x")


class RequestIdReused(BindingRefused):
    """The client's ``request_id`` already created a binding with different parties."""

    def __init__(self, request_id: str, binding_id: str) -> None:
        super().__init__(
            f"request_id {request_id!r} already created binding {binding_id}"
            " with different parties",
            field="request_id",
        )
        self.binding_id = binding_id


class BindingEnded(BindingRefused):
    """A change asked of a binding that is no longer live."""


class BindingNotFound(LookupError):
    """No binding has this id."""

    def __init__(self, binding_id: str) -> None:
        super().__init__(f"no binding {binding_id}")
        self.binding_id = binding_id


@dataclass(frozen=True, slots=True)
class Binding:
    """One AXB binding: A and B reach each other through X (design.md §1 Binding models)."""

    id: str
    a: str
    b: str
    x: str
    created_at: float
    tenant: str = DEFAULT_TENANT
    model: BindingModel = "axb"
    expires_at: float | None = None
    direction: Direction = "both"
    max_call_s: int | None = None
    order_id: str | None = None
    scenario: str | None = None
    status: BindingStatus = "active"
    ended_at: float | None = None
    request_id: str | None = None

    def role_of(self, number: str) -> Role | None:
        """The role ``number`` plays in this binding, or None for a stranger."""
        if number == self.a:
            return "a"
        if number == self.b:
            return "b"
        return None

    def other_party(self, caller: str) -> str:
        """The real number a call from ``caller`` to X goes to; ValueError for a stranger."""
        if caller == self.a:
            return self.b
        if caller == self.b:
            return self.a
        raise ValueError("caller is not a party of this binding")

    def allows(self, caller: str) -> bool:
        """Whether ``direction`` lets ``caller`` call through X (False for a stranger)."""
        role = self.role_of(caller)
        return role is not None and role in _CALLING_ROLES[self.direction]

    def is_live(self, now: float) -> bool:
        """Active and not yet at ``expires_at``: the only state in which calls are routed."""
        return self.status == "active" and (self.expires_at is None or now < self.expires_at)

    def ended_time(self, now: float) -> float | None:
        """When the binding stopped routing, or None while it is live."""
        if self.status != "active":
            return self.ended_at
        if self.expires_at is not None and self.expires_at <= now:
            return self.expires_at
        return None

    def effective_status(self, now: float) -> BindingStatus:
        """``status`` as the router sees it: an unswept binding past its expiry is expired."""
        if self.status == "active" and not self.is_live(now):
            return "expired"
        return self.status


def validate_new_binding(
    *,
    a: str,
    b: str,
    x: str | None,
    now: float,
    model: str,
    direction: str,
    expires_at: float | None,
    max_call_s: int | None,
    tenant: str,
) -> None:
    """Reject a binding request that is malformed whatever else is stored.

    Numbers arrive already normalised (``NumberPlan``); this checks the relations between
    fields, which normalisation cannot see. ``x`` None asks the allocator to choose.
    """
    if not a:
        raise BindingError("a is required", field="a")
    if not b:
        raise BindingError("b is required", field="b")
    if x == "":
        raise BindingError("x is required (or leave it out to have one chosen)", field="x")
    if a == b:
        raise BindingError("A and B must be different numbers", field="b")
    if x is not None and x in (a, b):
        raise BindingError("X must not be one of the real numbers", field="x")
    if model not in BINDING_MODELS:
        raise BindingError(f"unknown binding model {model!r}", field="model")
    if model not in SUPPORTED_MODELS:
        raise BindingError(f"binding model {model!r} is not supported yet", field="model")
    if direction not in DIRECTIONS:
        raise BindingError(f"unknown direction {direction!r}", field="direction")
    if expires_at is not None and expires_at <= now:
        raise BindingError("expires_at must be in the future", field="expires_at")
    if max_call_s is not None and max_call_s <= 0:
        raise BindingError("max_call_s must be positive", field="max_call_s")
    if not tenant:
        raise BindingError("tenant must not be empty", field="tenant")


def find_conflict(
    live_on_x: Iterable[Binding], *, a: str, b: str, x: str
) -> BindingConflict | None:
    """The AXB reuse-rule violation a new (a, b) on ``x`` would cause, if any (design.md §1).

    ``live_on_x`` holds the live bindings on ``x`` that involve ``a`` or ``b``; any of them is
    a conflict, since {A1,B1} ∩ {A2,B2} must be empty for two live bindings to share X.
    """
    requested: tuple[tuple[Role, str], ...] = (("a", a), ("b", b))
    for existing in live_on_x:
        for role, party in requested:
            if existing.role_of(party) is not None:
                return BindingConflict(party=party, role=role, x=x, binding_id=existing.id)
    return None


def pick_for_call(candidates: Iterable[Binding], now: float) -> Binding | None:
    """The binding a call to X from a given caller should see among ``candidates``.

    A live one wins; otherwise the most recently created ended one, so that routing can
    answer "expired" rather than "no binding". Ties on ``created_at`` keep the first seen.
    """
    best: Binding | None = None
    for candidate in candidates:
        if candidate.is_live(now):
            return candidate
        if best is None or candidate.created_at > best.created_at:
            best = candidate
    return best


@dataclass(frozen=True, slots=True)
class PoolNumber:
    """A privacy number the operator holds; ``tenant`` None means the shared pool."""

    x: str
    tenant: str | None
    city: str | None
    added_at: float
    live_bindings: int = 0


@dataclass(frozen=True, slots=True)
class PoolAddResult:
    """What a pool add did: numbers newly added, numbers already in the pool (untouched)."""

    added: int
    already_present: int


@dataclass(frozen=True, slots=True)
class PoolStats:
    """Load of the numbers a tenant may use (or the whole pool)."""

    numbers: int
    live_bindings: int
    max_per_number: int
    busiest_number_bindings: int
    free_capacity: int
    numbers_in_use: int

    @property
    def mean_bindings_per_number(self) -> float:
        return self.live_bindings / self.numbers if self.numbers else 0.0


@dataclass(frozen=True, slots=True)
class Allocation:
    """A binding as created, or as found again for a repeated ``request_id``."""

    binding: Binding
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class AllocationRequest:
    """The arguments of one ``allocate`` call as a value, so that a writer can queue many and
    allocate them in one transaction (``SqliteBindingStore.allocate_many``)."""

    a: str
    b: str
    now: float
    x: str | None = None
    tenant: str = DEFAULT_TENANT
    city: str | None = None
    request_id: str | None = None
    model: BindingModel = "axb"
    expires_at: float | None = None
    direction: Direction = "both"
    max_call_s: int | None = None
    order_id: str | None = None
    scenario: str | None = None
    strict_pool: bool = True
    actor: str = "cli"


class PoolError(ValueError):
    """A pool change that cannot be made; ``field`` names the request field at fault."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class PoolNumberInUse(PoolError):
    """Removal of a number that live bindings still use."""


class PoolNumberNotFound(LookupError):
    """The number is not in the pool (or not in the part of it the caller may see)."""


def expand_range(text: str, *, prefix: str, length: int, limit: int) -> list[str]:
    """``"FIRST-LAST"`` as the list of numbers it spans, both ends included.

    Both ends must be privacy numbers of the plan (``prefix``, ``length`` digits), FIRST no
    greater than LAST and the span at most ``limit`` numbers; ValueError otherwise.
    """
    first, sep, last = text.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not sep:
        raise ValueError(f"range {text!r}: expected FIRST-LAST")
    for end in (first, last):
        if not (end.isascii() and end.isdigit() and len(end) == length and end.startswith(prefix)):
            raise ValueError(f"range {text!r}: {end!r} is not {length} digits starting {prefix}")
    low, high = int(first), int(last)
    if low > high:
        raise ValueError(f"range {text!r}: FIRST is greater than LAST")
    if high - low + 1 > limit:
        raise ValueError(f"range {text!r}: more than {limit} numbers")
    return [str(n).zfill(length) for n in range(low, high + 1)]


def ended_binding(binding: Binding, now: float) -> Binding:
    """``binding`` ended at ``now``: released if it was live, else expired at its expiry."""
    if binding.is_live(now):
        return replace(binding, status="released", ended_at=now)
    ended_at = binding.expires_at if binding.expires_at is not None else now
    return replace(binding, status="expired", ended_at=ended_at)


def updated_binding(
    binding: Binding,
    now: float,
    *,
    expires_at: float | Unset | None,
    direction: Direction | None,
) -> Binding:
    """``binding`` with a new expiry and/or direction, checked as a new binding would be."""
    if not binding.is_live(now):
        raise BindingEnded(
            f"binding {binding.id} is {binding.effective_status(now)}; only a live binding"
            " can change"
        )
    changed = binding
    if not isinstance(expires_at, Unset):
        if expires_at is not None and expires_at <= now:
            raise BindingError("expires_at must be in the future", field="expires_at")
        changed = replace(changed, expires_at=expires_at)
    if direction is not None:
        if direction not in DIRECTIONS:
            raise BindingError(f"unknown direction {direction!r}", field="direction")
        changed = replace(changed, direction=direction)
    return changed
