"""AXB allocation, pure: which X may carry a new (A, B) binding (design.md §1 reuse rule).

Parties are vertices, bindings edges, privacy numbers colours. A new edge (A, B) may take
colour X unless A or B already has a live edge coloured X (the reuse rule) or left an edge
coloured X with someone else less than the quarantine ago. First fit over one fixed order of
the pool then never needs more than 2Δ−1 numbers: at most (Δ−1) + (Δ−1) colours are blocked
by A's and B's other edges, so one of the first 2Δ−1 numbers is always free.

The stores feed this module the bindings that can block (live ones, and ended ones younger
than the quarantine) and the candidate numbers in preference order; it never reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from bindings.models import (
    Binding,
    BindingConflict,
    BindingRefused,
    NumberQuarantined,
    Role,
)

BlockKind = Literal["live", "quarantine"]


@dataclass(frozen=True, slots=True)
class Block:
    """Why X cannot take the new pair: ``party`` (in ``role`` of the request) is live on X
    in ``binding``, or quarantined on X until ``until``."""

    kind: BlockKind
    party: str
    role: Role
    binding: Binding
    until: float

    def refusal(self, x: str) -> BindingRefused:
        """The error a request for exactly this X gets."""
        if self.kind == "live":
            return BindingConflict(
                party=self.party, role=self.role, x=x, binding_id=self.binding.id
            )
        return NumberQuarantined(party=self.party, role=self.role, x=x, until=self.until)


def blocked_numbers(
    history: Iterable[Binding], *, a: str, b: str, now: float, quarantine_s: float
) -> dict[str, Block]:
    """The numbers a new (a, b) binding may not use, each with its reason.

    ``history`` holds bindings involving ``a`` or ``b`` (others are ignored). A live one
    blocks its X outright. One that ended at ``t`` blocks its X until ``t + quarantine_s``
    unless it joined the same two parties: the same pair meeting again on X reaches no
    stranger. A live block wins over a quarantine on the same X.
    """
    blocked: dict[str, Block] = {}
    requested: tuple[tuple[Role, str, str], ...] = (("a", a, b), ("b", b, a))
    for binding in history:
        for role, party, partner in requested:
            if binding.role_of(party) is None:
                continue
            ended = binding.ended_time(now)
            if ended is None:
                blocked[binding.x] = Block("live", party, role, binding, float("inf"))
                break
            until = ended + quarantine_s
            if now >= until or binding.other_party(party) == partner:
                continue
            current = blocked.get(binding.x)
            if current is None or (current.kind == "quarantine" and current.until < until):
                blocked[binding.x] = Block("quarantine", party, role, binding, until)
    return blocked


def first_fit(candidates: Iterable[str], blocked: Mapping[str, Block]) -> str | None:
    """The first candidate that is not blocked (candidates come in preference order and
    already exclude numbers at their concurrent-binding cap)."""
    for x in candidates:
        if x not in blocked:
            return x
    return None
