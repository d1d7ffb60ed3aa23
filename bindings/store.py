"""The binding store protocol every backend honours (design.md §1, §5).

Backends: ``SqliteBindingStore`` (the default, one file shared by processes) and
``MemoryBindingStore`` (tests, demos). Both pass the same test suite.

Threading: a store instance belongs to the thread that made it (the event loop thread in
the server); it holds no locks. Several *processes* may share one SQLite file: ``add`` runs
its conflict check and insert in one write transaction.
"""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Sequence
from typing import Final, Protocol

from bindings.models import (
    UNSET,
    Allocation,
    Binding,
    BindingConflict,
    BindingError,
    BindingModel,
    BindingNotFound,
    BindingRefused,
    BindingStatus,
    Direction,
    PoolAddResult,
    PoolNumber,
    PoolStats,
    Unset,
)

__all__ = [
    "AddThroughAllocate",
    "Binding",
    "BindingConflict",
    "BindingError",
    "BindingNotFound",
    "BindingRefused",
    "BindingStore",
    "new_binding_id",
]

_BINDING_ID_PREFIX: Final = "b_"
# 15 random bytes encode to exactly 20 url-safe base64 characters (120 bits).
_BINDING_ID_BYTES: Final = 15


def numbers_to_pool(numbers: Sequence[str], tenant: str | None) -> list[str]:
    """The numbers of an ``add_numbers`` call, each once, in the order given; an empty
    tenant is refused (None means the shared pool)."""
    if tenant == "":
        raise BindingError("tenant must not be empty", field="tenant")
    return list(dict.fromkeys(numbers))


def new_binding_id() -> str:
    """A fresh, unguessable binding id: ``b_`` + 20 url-safe characters."""
    return _BINDING_ID_PREFIX + secrets.token_urlsafe(_BINDING_ID_BYTES)


class BindingStore(Protocol):
    """Bindings by id and by (X, party); ``now`` is epoch seconds from the caller's clock."""

    def add(
        self,
        a: str,
        b: str,
        x: str,
        *,
        now: float,
        tenant: str = "default",
        model: BindingModel = "axb",
        expires_at: float | None = None,
        direction: Direction = "both",
        max_call_s: int | None = None,
        order_id: str | None = None,
        scenario: str | None = None,
        actor: str = "cli",
    ) -> Binding:
        """Store a new active binding on the operator's chosen X, created at ``now``.

        X need not be in the pool (the operator owns the numbers); when it is, its tenant
        and cap apply. Raises ``BindingConflict`` when A or B already appears, in either
        role, in a live binding on X (the AXB reuse rule), ``NumberQuarantined`` when one of
        them left X with someone else less than the quarantine ago, ``BindingError`` for a
        malformed request.
        """
        ...

    def allocate(
        self,
        a: str,
        b: str,
        *,
        now: float,
        x: str | None = None,
        tenant: str = "default",
        city: str | None = None,
        request_id: str | None = None,
        model: BindingModel = "axb",
        expires_at: float | None = None,
        direction: Direction = "both",
        max_call_s: int | None = None,
        order_id: str | None = None,
        scenario: str | None = None,
        strict_pool: bool = True,
        actor: str = "cli",
    ) -> Allocation:
        """Bind A and B through ``x``, or through the first pool number that may take them.

        Candidates, in order: the tenant's own numbers in ``city``, shared ones in ``city``,
        then the tenant's own and shared ones anywhere, each in the order they joined the
        pool; numbers at the per-X cap are skipped. A ``request_id`` already used by the
        tenant returns that binding (``replayed``) if the parties match, else raises
        ``RequestIdReused``. ``strict_pool`` refuses an ``x`` outside the pool.
        Raises ``BindingRefused`` subclasses (conflict, quarantine, no free number, X
        unavailable) and ``BindingError`` for malformed requests.
        """
        ...

    def update(
        self,
        binding_id: str,
        now: float,
        *,
        expires_at: float | Unset | None = UNSET,
        direction: Direction | None = None,
        actor: str = "cli",
    ) -> Binding:
        """Change a live binding's expiry (None: until released) and/or direction.

        Raises ``BindingNotFound``, ``BindingEnded`` for an ended binding, ``BindingError``
        for an expiry not in the future.
        """
        ...

    def get(self, binding_id: str) -> Binding | None:
        """The binding with this id, whatever its status."""
        ...

    def release(self, binding_id: str, now: float, *, actor: str = "cli") -> Binding:
        """End a binding at ``now`` and return it as stored.

        A binding that already ended is returned unchanged; one past its expiry that no
        sweeper has marked yet is marked expired (ended at ``expires_at``) rather than
        released. Raises ``BindingNotFound`` for an unknown id.
        """
        ...

    def find_for_call(self, x: str, caller: str, now: float) -> Binding | None:
        """The binding routing a call from ``caller`` to ``x``.

        The live binding where ``caller`` is A or B if there is one; else the most recently
        created ended or expired one for (``x``, ``caller``), so routing can tell "expired"
        from "no binding"; else None.
        """
        ...

    def list(
        self,
        party: str | None = None,
        x: str | None = None,
        status: BindingStatus | None = None,
        limit: int = 100,
        offset: int = 0,
        *,
        tenant: str | None = None,
    ) -> list[Binding]:
        """Stored bindings, newest first, filtered on party (A or B), X, stored status and
        tenant."""
        ...

    def expire_due(self, now: float, *, actor: str = "sweeper") -> int:
        """Mark active bindings whose ``expires_at`` has passed as expired; return how many."""
        ...

    def add_numbers(
        self,
        numbers: Sequence[str],
        *,
        now: float,
        tenant: str | None = None,
        city: str | None = None,
        actor: str = "cli",
    ) -> PoolAddResult:
        """Add privacy numbers (already normalised) to the pool: ``tenant`` None is the
        shared pool. Numbers already there are left as they are and counted."""
        ...

    def remove_number(self, x: str, *, now: float, actor: str = "cli") -> PoolNumber:
        """Take an unused number out of the pool; ``PoolNumberNotFound``,
        ``PoolNumberInUse`` while live bindings use it."""
        ...

    def pool_number(self, x: str) -> PoolNumber | None:
        """One pool number with its live load."""
        ...

    def list_pool(
        self, tenant: str | None = None, limit: int = 1000, offset: int = 0
    ) -> builtins.list[PoolNumber]:
        """Pool numbers in the order they joined; ``tenant`` limits to its own and shared."""
        ...

    def pool_stats(self, now: float, tenant: str | None = None) -> PoolStats:
        """Numbers, live bindings, free capacity, for the whole pool or a tenant's view."""
        ...


class AddThroughAllocate:
    """The one implementation of ``BindingStore.add`` for every store: an ``allocate`` on
    the operator's chosen X, with the pool rules relaxed (X need not be in the pool)."""

    def add(
        self: BindingStore,
        a: str,
        b: str,
        x: str,
        *,
        now: float,
        tenant: str = "default",
        model: BindingModel = "axb",
        expires_at: float | None = None,
        direction: Direction = "both",
        max_call_s: int | None = None,
        order_id: str | None = None,
        scenario: str | None = None,
        actor: str = "cli",
    ) -> Binding:
        return self.allocate(
            a,
            b,
            now=now,
            x=x,
            tenant=tenant,
            model=model,
            expires_at=expires_at,
            direction=direction,
            max_call_s=max_call_s,
            order_id=order_id,
            scenario=scenario,
            strict_pool=False,
            actor=actor,
        ).binding
