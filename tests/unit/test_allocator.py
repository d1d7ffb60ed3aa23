"""The AXB allocator: the reuse rule under random binds, releases and expiries, quarantine,
and first fit's 2Δ−1 bound (design.md §1)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bindings.allocator import blocked_numbers, first_fit
from bindings.memory_store import MemoryBindingStore
from bindings.models import Binding, BindingRefused, NoFreeNumber
from bindings.sqlite_store import SqliteBindingStore
from bindings.store import BindingStore
from proxy import db

T0 = 1_800_000_000.0
QUARANTINE_S = 50.0
POOL = [f"7001234567800{i:02d}" for i in range(6)]
PARTIES = [f"+86138001380{i:02d}" for i in range(7)]


def _binding(binding_id: str, a: str, b: str, x: str, **changes: object) -> Binding:
    values: dict[str, object] = {"id": binding_id, "a": a, "b": b, "x": x, "created_at": T0}
    values.update(changes)
    return Binding(**values)  # type: ignore[arg-type]


def test_blocked_numbers_reasons() -> None:
    a, b, c = PARTIES[:3]
    history = [
        _binding("live", a, c, POOL[0]),
        _binding("old", c, b, POOL[1], status="released", ended_at=T0 + 10),
        _binding("same-pair", b, a, POOL[2], status="released", ended_at=T0 + 10),
        _binding("lapsed", a, c, POOL[3], expires_at=T0 + 5),
        _binding("long-ago", a, c, POOL[4], status="expired", ended_at=T0 - 100),
    ]
    blocked = blocked_numbers(history, a=a, b=b, now=T0 + 20, quarantine_s=QUARANTINE_S)
    assert set(blocked) == {POOL[0], POOL[1], POOL[3]}
    assert (blocked[POOL[0]].kind, blocked[POOL[0]].role) == ("live", "a")
    assert (blocked[POOL[1]].kind, blocked[POOL[1]].role) == ("quarantine", "b")
    assert blocked[POOL[1]].until == T0 + 10 + QUARANTINE_S
    assert blocked[POOL[3]].until == T0 + 5 + QUARANTINE_S
    assert first_fit(POOL, blocked) == POOL[2]
    assert first_fit(POOL[:2], blocked) is None


def _stores() -> tuple[SqliteBindingStore, MemoryBindingStore]:
    sqlite_store = SqliteBindingStore(db.open_database(":memory:"), quarantine_s=QUARANTINE_S)
    memory_store = MemoryBindingStore(quarantine_s=QUARANTINE_S)
    for store in (sqlite_store, memory_store):
        store.add_numbers(POOL, now=T0)
    return sqlite_store, memory_store


_step = st.one_of(
    st.tuples(
        st.just("bind"),
        st.sampled_from(PARTIES),
        st.sampled_from(PARTIES),
        st.one_of(st.none(), st.sampled_from(POOL)),
        st.one_of(st.none(), st.integers(1, 40)),
    ),
    st.tuples(st.just("release"), st.integers(0, 1000)),
    st.tuples(st.just("advance"), st.integers(1, 30)),
    st.tuples(st.just("sweep")),
)


def _check_invariants(store: BindingStore, now: float) -> None:
    bindings = store.list(limit=10_000)
    live = [binding for binding in bindings if binding.is_live(now)]
    for x in POOL:
        members = [party for binding in live if binding.x == x for party in (binding.a, binding.b)]
        assert len(members) == len(set(members)), f"reuse rule broken on {x}"
    # Quarantine: no live binding joined a party to a stranger on an X that party left less
    # than QUARANTINE_S before the new binding was made.
    for binding in bindings:
        for party in (binding.a, binding.b):
            for other in bindings:
                ended = other.ended_time(now)
                if (
                    other.created_at < binding.created_at
                    and other.x == binding.x
                    and other.role_of(party) is not None
                    and ended is not None
                    and ended <= binding.created_at < ended + QUARANTINE_S
                ):
                    assert {other.a, other.b} == {binding.a, binding.b}, "quarantine broken"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_step, max_size=60))
def test_reuse_rule_and_quarantine_hold_under_random_operations(
    steps: list[tuple[object, ...]],
) -> None:
    stores = _stores()
    made: tuple[list[str], list[str]] = ([], [])
    now = T0
    for step in steps:
        if step[0] == "bind":
            _, a, b, x, ttl = step
            outcomes: list[object] = []
            for store, ids in zip(stores, made, strict=True):
                try:
                    allocation = store.allocate(
                        str(a),
                        str(b),
                        now=now,
                        x=None if x is None else str(x),
                        expires_at=None if ttl is None else now + int(str(ttl)),
                    )
                except BindingRefused as refused:
                    outcomes.append(type(refused).__name__)
                except ValueError as malformed:
                    outcomes.append(str(malformed))
                else:
                    ids.append(allocation.binding.id)
                    outcomes.append(allocation.binding.x)
            assert outcomes[0] == outcomes[1], "the two stores allocate alike"
        elif step[0] == "release" and made[0]:
            index = int(str(step[1])) % len(made[0])
            for store, ids in zip(stores, made, strict=True):
                store.release(ids[index], now)
        elif step[0] == "advance":
            now += int(str(step[1]))
        elif step[0] == "sweep":
            assert stores[0].expire_due(now) == stores[1].expire_due(now)
        for store in stores:
            _check_invariants(store, now)
        assert stores[0].pool_stats(now) == stores[1].pool_stats(now)
    stores[0].close()


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_ten_thousand_random_bindings_need_at_most_two_delta_minus_one_numbers(
    kind: str,
) -> None:
    rng = random.Random(4)
    parties = [f"+8613{n:09d}" for n in rng.sample(range(10**9), 2000)]
    # Skewed: a few parties (couriers) hold many bindings, most hold a few.
    weights = [1.0 / (rank + 1) ** 0.5 for rank in range(len(parties))]
    store: BindingStore
    if kind == "sqlite":
        store = SqliteBindingStore(db.open_database(":memory:"), quarantine_s=0)
    else:
        store = MemoryBindingStore(quarantine_s=0)
    pool = [f"700123{n:09d}" for n in range(1000)]
    store.add_numbers(pool, now=T0)
    degree: Counter[str] = Counter()
    made = 0
    while made < 10_000:
        a, b = rng.choices(parties, weights, k=2)
        if a == b:
            continue
        try:
            store.allocate(a, b, now=T0)
        except NoFreeNumber:
            pytest.fail("the pool ran out although 2Δ−1 numbers suffice")
        except BindingRefused:
            continue  # this very pair is already live on every number it could use
        degree[a] += 1
        degree[b] += 1
        made += 1
    delta = max(degree.values())
    used = {binding.x for binding in store.list(limit=20_000)}
    assert delta > 50, "the sample must load some parties heavily"
    assert len(used) <= 2 * delta - 1
    # First fit packs: it used a prefix of the pool.
    assert used == set(pool[: len(used)])
