"""In-memory binding store with the SQLite store's behaviour, for tests and demos.

Same threading rule as the SQLite store: one instance, one thread.
"""

from __future__ import annotations

import builtins
from collections import defaultdict
from dataclasses import replace

from bindings.models import (
    Binding,
    BindingModel,
    BindingNotFound,
    BindingStatus,
    Direction,
    find_conflict,
    pick_for_call,
    validate_new_binding,
)
from bindings.store import new_binding_id


class MemoryBindingStore:
    """``BindingStore`` kept in dicts; ``(x, party)`` maps to that party's bindings on X."""

    def __init__(self) -> None:
        self._by_id: dict[str, Binding] = {}
        # Insertion order is creation order, which breaks created_at ties as SQLite's seq does.
        self._order: dict[str, int] = {}
        self._by_x_party: defaultdict[tuple[str, str], list[str]] = defaultdict(list)

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
        validate_new_binding(
            a=a,
            b=b,
            x=x,
            now=now,
            model=model,
            direction=direction,
            expires_at=expires_at,
            max_call_s=max_call_s,
            tenant=tenant,
        )
        live = [
            binding
            for party in (a, b)
            for binding in self._for_x_party(x, party)
            if binding.is_live(now)
        ]
        conflict = find_conflict(live, a=a, b=b, x=x)
        if conflict is not None:
            raise conflict
        binding = Binding(
            id=new_binding_id(),
            a=a,
            b=b,
            x=x,
            created_at=now,
            tenant=tenant,
            model=model,
            expires_at=expires_at,
            direction=direction,
            max_call_s=max_call_s,
            order_id=order_id,
            scenario=scenario,
        )
        self._by_id[binding.id] = binding
        self._order[binding.id] = len(self._order)
        self._by_x_party[(x, a)].append(binding.id)
        self._by_x_party[(x, b)].append(binding.id)
        return binding

    def get(self, binding_id: str) -> Binding | None:
        return self._by_id.get(binding_id)

    def release(self, binding_id: str, now: float) -> Binding:
        binding = self._by_id.get(binding_id)
        if binding is None:
            raise BindingNotFound(binding_id)
        if binding.status != "active":
            return binding
        if binding.is_live(now):
            ended = replace(binding, status="released", ended_at=now)
        else:
            ended = replace(
                binding,
                status="expired",
                ended_at=binding.expires_at if binding.expires_at is not None else now,
            )
        self._by_id[binding_id] = ended
        return ended

    def find_for_call(self, x: str, caller: str, now: float) -> Binding | None:
        newest_first = sorted(self._for_x_party(x, caller), key=self._newest_first_key)
        return pick_for_call(newest_first, now)

    def list(
        self,
        party: str | None = None,
        x: str | None = None,
        status: BindingStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Binding]:
        selected = [
            binding
            for binding in self._by_id.values()
            if (party is None or party in (binding.a, binding.b))
            and (x is None or binding.x == x)
            and (status is None or binding.status == status)
        ]
        selected.sort(key=self._newest_first_key)
        return selected[offset : offset + limit]

    def expire_due(self, now: float) -> int:
        due = [
            binding
            for binding in self._by_id.values()
            if binding.status == "active"
            and binding.expires_at is not None
            and binding.expires_at <= now
        ]
        for binding in due:
            self._by_id[binding.id] = replace(
                binding, status="expired", ended_at=binding.expires_at
            )
        return len(due)

    def _for_x_party(self, x: str, party: str) -> builtins.list[Binding]:
        return [self._by_id[binding_id] for binding_id in self._by_x_party.get((x, party), ())]

    def _newest_first_key(self, binding: Binding) -> tuple[float, int]:
        return (-binding.created_at, -self._order[binding.id])
