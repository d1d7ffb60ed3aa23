"""The binding store protocol every backend honours (design.md §1, §5).

Backends: ``SqliteBindingStore`` (the default, one file shared by processes) and
``MemoryBindingStore`` (tests, demos). Both pass the same test suite.

Threading: a store instance belongs to the thread that made it (the event loop thread in
the server); it holds no locks. Several *processes* may share one SQLite file: ``add`` runs
its conflict check and insert in one write transaction.
"""

from __future__ import annotations

import secrets
from typing import Final, Protocol

from bindings.models import (
    Binding,
    BindingConflict,
    BindingError,
    BindingModel,
    BindingNotFound,
    BindingStatus,
    Direction,
)

__all__ = [
    "Binding",
    "BindingConflict",
    "BindingError",
    "BindingNotFound",
    "BindingStore",
    "new_binding_id",
]

_BINDING_ID_PREFIX: Final = "b_"
# 15 random bytes encode to exactly 20 url-safe base64 characters (120 bits).
_BINDING_ID_BYTES: Final = 15


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
    ) -> Binding:
        """Store a new active binding created at ``now`` and return it.

        Raises ``BindingConflict`` when A or B already appears, in either role, in a live
        binding on X (the AXB reuse rule), ``BindingError`` for a malformed request.
        """
        ...

    def get(self, binding_id: str) -> Binding | None:
        """The binding with this id, whatever its status."""
        ...

    def release(self, binding_id: str, now: float) -> Binding:
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
    ) -> list[Binding]:
        """Stored bindings, newest first, filtered on party (A or B), X and stored status."""
        ...

    def expire_due(self, now: float) -> int:
        """Mark active bindings whose ``expires_at`` has passed as expired; return how many."""
        ...
