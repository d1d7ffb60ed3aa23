"""Binding values and the AXB rules, pure: no clock, no storage (design.md §1).

A binding ties two real numbers A and B (E.164, ``+86…``) to a privacy number X (digits).
Calls from A to X reach B and the other way round. Time enters as ``now`` (epoch seconds),
so a binding past ``expires_at`` stops routing at once, whether or not a sweeper has yet
marked it expired.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, get_args

from proxy.numbers import mask

BindingModel = Literal["axb", "axn", "axe"]
Direction = Literal["both", "a_to_b", "b_to_a"]
BindingStatus = Literal["active", "expired", "released"]
Role = Literal["a", "b"]

BINDING_MODELS: Final[tuple[str, ...]] = get_args(BindingModel)
DIRECTIONS: Final[tuple[str, ...]] = get_args(Direction)
BINDING_STATUSES: Final[tuple[str, ...]] = get_args(BindingStatus)
# AXN and AXE need their own routing keys (any caller, extension digits); until they are
# built a store accepts only AXB so that a half-supported binding never routes calls.
SUPPORTED_MODELS: Final[frozenset[str]] = frozenset({"axb"})

DEFAULT_TENANT: Final = "default"

# Which caller each direction lets through: the role whose calls may reach the other party.
_CALLING_ROLES: Final[dict[str, frozenset[str]]] = {
    "both": frozenset({"a", "b"}),
    "a_to_b": frozenset({"a"}),
    "b_to_a": frozenset({"b"}),
}


class BindingError(ValueError):
    """A binding request that cannot be honoured; the message says why."""


class BindingConflict(BindingError):
    """AXB reuse rule broken: ``party`` already appears in a live binding on ``x``.

    ``role`` is the role ``party`` had in the *requested* binding ("a" or "b"), so an API or
    CLI can point at the offending argument. The message masks the number (design.md §4).
    """

    def __init__(self, *, party: str, role: Role, x: str, binding_id: str) -> None:
        super().__init__(
            f"{role.upper()} {mask(party)} already uses X {x} in live binding {binding_id}"
        )
        self.party = party
        self.role = role
        self.x = x
        self.binding_id = binding_id


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

    def effective_status(self, now: float) -> BindingStatus:
        """``status`` as the router sees it: an unswept binding past its expiry is expired."""
        if self.status == "active" and not self.is_live(now):
            return "expired"
        return self.status


def validate_new_binding(
    *,
    a: str,
    b: str,
    x: str,
    now: float,
    model: str,
    direction: str,
    expires_at: float | None,
    max_call_s: int | None,
    tenant: str,
) -> None:
    """Reject a binding request that is malformed whatever else is stored.

    Numbers arrive already normalised (``NumberPlan``); this checks the relations between
    fields, which normalisation cannot see.
    """
    if not (a and b and x):
        raise BindingError("a, b and x are required")
    if a == b:
        raise BindingError("A and B must be different numbers")
    if x in (a, b):
        raise BindingError("X must not be one of the real numbers")
    if model not in BINDING_MODELS:
        raise BindingError(f"unknown binding model {model!r}")
    if model not in SUPPORTED_MODELS:
        raise BindingError(f"binding model {model!r} is not supported yet")
    if direction not in DIRECTIONS:
        raise BindingError(f"unknown direction {direction!r}")
    if expires_at is not None and expires_at <= now:
        raise BindingError("expires_at must be in the future")
    if max_call_s is not None and max_call_s <= 0:
        raise BindingError("max_call_s must be positive")
    if not tenant:
        raise BindingError("tenant must not be empty")


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
