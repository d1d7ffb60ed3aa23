"""In-memory binding store with the SQLite store's behaviour, for tests and demos.

Same threading rule as the SQLite store: one instance, one thread. It keeps no audit log
(that lives in the database); ``actor`` arguments are accepted and ignored.
"""

from __future__ import annotations

import builtins
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from bindings.allocator import blocked_numbers, first_fit
from bindings.models import (
    DEFAULT_MAX_PER_X,
    DEFAULT_QUARANTINE_S,
    DEFAULT_TENANT,
    UNSET,
    Allocation,
    Binding,
    BindingModel,
    BindingNotFound,
    BindingStatus,
    Direction,
    NoFreeNumber,
    NumberUnavailable,
    PoolAddResult,
    PoolNumber,
    PoolNumberInUse,
    PoolNumberNotFound,
    PoolStats,
    RequestIdReused,
    Unset,
    ended_binding,
    pick_for_call,
    updated_binding,
    validate_new_binding,
)
from bindings.store import AddThroughAllocate, new_binding_id, numbers_to_pool


@dataclass
class _PoolEntry:
    seq: int
    tenant: str | None
    city: str | None
    added_at: float


class MemoryBindingStore(AddThroughAllocate):
    """``BindingStore`` kept in dicts; ``(x, party)`` maps to that party's bindings on X."""

    def __init__(
        self,
        *,
        quarantine_s: float = DEFAULT_QUARANTINE_S,
        max_per_x: int = DEFAULT_MAX_PER_X,
    ) -> None:
        if quarantine_s < 0 or max_per_x < 1:
            raise ValueError("quarantine_s must not be negative and max_per_x must be positive")
        self.quarantine_s = quarantine_s
        self.max_per_x = max_per_x
        self._by_id: dict[str, Binding] = {}
        # Insertion order is creation order, which breaks created_at ties as SQLite's seq does.
        self._order: dict[str, int] = {}
        self._by_x_party: defaultdict[tuple[str, str], list[str]] = defaultdict(list)
        self._by_party: defaultdict[str, list[str]] = defaultdict(list)
        self._by_request: dict[tuple[str, str], str] = {}
        self._live_on_x: defaultdict[str, int] = defaultdict(int)
        self._pool: dict[str, _PoolEntry] = {}
        self._pool_seq = 0

    # -- bindings ------------------------------------------------------------------------

    def allocate(
        self,
        a: str,
        b: str,
        *,
        now: float,
        x: str | None = None,
        tenant: str = DEFAULT_TENANT,
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
        if request_id is not None and (tenant, request_id) in self._by_request:
            earlier = self._by_id[self._by_request[(tenant, request_id)]]
            if (earlier.a, earlier.b) != (a, b) or x not in (None, earlier.x):
                raise RequestIdReused(request_id, earlier.id)
            return Allocation(earlier, replayed=True)
        self.expire_due(now)
        history = [
            self._by_id[binding_id]
            for party in (a, b)
            for binding_id in self._by_party.get(party, ())
        ]
        blocked = blocked_numbers(history, a=a, b=b, now=now, quarantine_s=self.quarantine_s)
        if x is not None:
            self._check_requested(x, tenant, strict_pool)
            if x in blocked:
                raise blocked[x].refusal(x)
            chosen = x
        else:
            found = first_fit(self._candidates(tenant, city), blocked)
            if found is None:
                raise NoFreeNumber(
                    f"no free privacy number for tenant {tenant!r}: every pool number"
                    f" open to it is at its cap of {self.max_per_x} bindings or already"
                    " carries A or B (live or in quarantine)"
                )
            chosen = found
        binding = Binding(
            id=new_binding_id(),
            a=a,
            b=b,
            x=chosen,
            created_at=now,
            tenant=tenant,
            model=model,
            expires_at=expires_at,
            direction=direction,
            max_call_s=max_call_s,
            order_id=order_id,
            scenario=scenario,
            request_id=request_id,
        )
        self._by_id[binding.id] = binding
        self._order[binding.id] = len(self._order)
        self._by_x_party[(chosen, a)].append(binding.id)
        self._by_x_party[(chosen, b)].append(binding.id)
        self._by_party[a].append(binding.id)
        self._by_party[b].append(binding.id)
        self._live_on_x[chosen] += 1
        if request_id is not None:
            self._by_request[(tenant, request_id)] = binding.id
        return Allocation(binding)

    def _check_requested(self, x: str, tenant: str, strict_pool: bool) -> None:
        entry = self._pool.get(x)
        if entry is None:
            if strict_pool:
                raise NumberUnavailable(f"X {x} is not in the number pool")
            return
        if entry.tenant is not None and entry.tenant != tenant:
            raise NumberUnavailable(f"X {x} belongs to another tenant")
        live = self._live_on_x[x]
        if live >= self.max_per_x:
            raise NumberUnavailable(f"X {x} already carries {live} live bindings (the cap)")

    def _candidates(self, tenant: str, city: str | None) -> Iterator[str]:
        tiers: list[tuple[str | None, str | None]] = []
        if city is not None:
            tiers += [(tenant, city), (None, city)]
        tiers += [(tenant, None), (None, None)]
        for owner, wanted_city in tiers:
            # Dicts keep insertion order, which is the pool's seq order.
            for x, entry in self._pool.items():
                if (
                    entry.tenant == owner
                    and (wanted_city is None or entry.city == wanted_city)
                    and self._live_on_x[x] < self.max_per_x
                ):
                    yield x

    def get(self, binding_id: str) -> Binding | None:
        return self._by_id.get(binding_id)

    def update(
        self,
        binding_id: str,
        now: float,
        *,
        expires_at: float | Unset | None = UNSET,
        direction: Direction | None = None,
        actor: str = "cli",
    ) -> Binding:
        binding = self._by_id.get(binding_id)
        if binding is None:
            raise BindingNotFound(binding_id)
        changed = updated_binding(binding, now, expires_at=expires_at, direction=direction)
        self._by_id[binding_id] = changed
        return changed

    def release(self, binding_id: str, now: float, *, actor: str = "cli") -> Binding:
        binding = self._by_id.get(binding_id)
        if binding is None:
            raise BindingNotFound(binding_id)
        if binding.status != "active":
            return binding
        ended = ended_binding(binding, now)
        self._by_id[binding_id] = ended
        self._live_on_x[binding.x] -= 1
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
        *,
        tenant: str | None = None,
    ) -> builtins.list[Binding]:
        selected = [
            binding
            for binding in self._by_id.values()
            if (party is None or party in (binding.a, binding.b))
            and (x is None or binding.x == x)
            and (status is None or binding.status == status)
            and (tenant is None or binding.tenant == tenant)
        ]
        selected.sort(key=self._newest_first_key)
        return selected[offset : offset + limit]

    def expire_due(self, now: float, *, actor: str = "sweeper") -> int:
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
            self._live_on_x[binding.x] -= 1
        return len(due)

    def _for_x_party(self, x: str, party: str) -> builtins.list[Binding]:
        return [self._by_id[binding_id] for binding_id in self._by_x_party.get((x, party), ())]

    def _newest_first_key(self, binding: Binding) -> tuple[float, int]:
        return (-binding.created_at, -self._order[binding.id])

    # -- the number pool -----------------------------------------------------------------

    def add_numbers(
        self,
        numbers: Sequence[str],
        *,
        now: float,
        tenant: str | None = None,
        city: str | None = None,
        actor: str = "cli",
    ) -> PoolAddResult:
        unique = numbers_to_pool(numbers, tenant)
        added = 0
        for x in unique:
            if x in self._pool:
                continue
            self._pool_seq += 1
            self._pool[x] = _PoolEntry(self._pool_seq, tenant, city, now)
            added += 1
        return PoolAddResult(added=added, already_present=len(unique) - added)

    def remove_number(self, x: str, *, now: float, actor: str = "cli") -> PoolNumber:
        self.expire_due(now)
        number = self.pool_number(x)
        if number is None:
            raise PoolNumberNotFound(f"{x} is not in the number pool")
        if number.live_bindings:
            raise PoolNumberInUse(
                f"{x} still carries {number.live_bindings} live bindings", field="number"
            )
        del self._pool[x]
        return number

    def pool_number(self, x: str) -> PoolNumber | None:
        entry = self._pool.get(x)
        if entry is None:
            return None
        return PoolNumber(x, entry.tenant, entry.city, entry.added_at, self._live_on_x[x])

    def list_pool(
        self, tenant: str | None = None, limit: int = 1000, offset: int = 0
    ) -> builtins.list[PoolNumber]:
        in_scope = [
            number
            for x, entry in self._pool.items()
            if tenant is None or entry.tenant in (tenant, None)
            for number in (self.pool_number(x),)
            if number is not None
        ]
        return in_scope[offset : offset + limit]

    def pool_stats(self, now: float, tenant: str | None = None) -> PoolStats:
        self.expire_due(now)
        loads = [number.live_bindings for number in self.list_pool(tenant, limit=len(self._pool))]
        return PoolStats(
            numbers=len(loads),
            live_bindings=sum(loads),
            max_per_number=self.max_per_x,
            busiest_number_bindings=max(loads, default=0),
            free_capacity=sum(max(self.max_per_x - load, 0) for load in loads),
            numbers_in_use=sum(1 for load in loads if load),
        )
