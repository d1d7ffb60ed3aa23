"""Binding stores: one behaviour suite run on the SQLite and the in-memory store."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bindings.memory_store import MemoryBindingStore
from bindings.models import (
    Allocation,
    AllocationRequest,
    Binding,
    BindingConflict,
    BindingError,
    BindingNotFound,
    NumberQuarantined,
)
from bindings.sqlite_store import SqliteBindingStore
from bindings.store import BindingStore
from proxy import db

A = "+8613800138000"
B = "+8613900139000"
C = "+8613700137000"
D = "+8618600186000"
X = "700123456789012"
X2 = "700123456789013"
T0 = 1_800_000_000.0


@pytest.fixture(params=["sqlite", "memory"])
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., BindingStore]]:
    """A factory of empty stores of one kind; keyword arguments go to the constructor."""
    opened: list[SqliteBindingStore] = []

    def make(**options: Any) -> BindingStore:
        if request.param == "memory":
            return MemoryBindingStore(**options)
        sqlite_store = SqliteBindingStore.open(tmp_path / f"bindings{len(opened)}.db", **options)
        opened.append(sqlite_store)
        return sqlite_store

    yield make
    for sqlite_store in opened:
        sqlite_store.close()


@pytest.fixture
def store(make_store: Callable[..., BindingStore]) -> BindingStore:
    """A store without quarantine: the reuse rule alone (quarantine has its own tests)."""
    return make_store(quarantine_s=0)


# ── the Binding value ──────────────────────────────────────────────────────────────────────


def _binding(**changes: object) -> Binding:
    base = Binding(id="b_test", a=A, b=B, x=X, created_at=T0)
    return replace(base, **changes)  # type: ignore[arg-type]


def test_other_party_maps_each_side_to_the_other() -> None:
    binding = _binding()
    assert binding.other_party(A) == B
    assert binding.other_party(B) == A
    with pytest.raises(ValueError):
        binding.other_party(C)


@pytest.mark.parametrize(
    ("direction", "a_may_call", "b_may_call"),
    [("both", True, True), ("a_to_b", True, False), ("b_to_a", False, True)],
)
def test_allows_follows_direction(direction: str, a_may_call: bool, b_may_call: bool) -> None:
    binding = _binding(direction=direction)
    assert binding.allows(A) is a_may_call
    assert binding.allows(B) is b_may_call
    assert binding.allows(C) is False


def test_is_live_stops_exactly_at_expiry_and_on_release() -> None:
    binding = _binding(expires_at=T0 + 60)
    assert binding.is_live(T0 + 59.999)
    assert not binding.is_live(T0 + 60)
    assert binding.effective_status(T0 + 60) == "expired"
    assert binding.effective_status(T0 + 1) == "active"
    assert not replace(binding, status="released", ended_at=T0 + 1).is_live(T0 + 2)
    assert _binding().is_live(T0 + 10**9)


# ── add / get ──────────────────────────────────────────────────────────────────────────────


def test_add_returns_stored_active_binding_with_random_id(store: BindingStore) -> None:
    binding = store.add(
        A,
        B,
        X,
        now=T0,
        tenant="ride",
        expires_at=T0 + 3600,
        direction="a_to_b",
        max_call_s=600,
        order_id="order-1",
        scenario="delivery",
    )
    assert re.fullmatch(r"b_[A-Za-z0-9_-]{20}", binding.id)
    assert (binding.a, binding.b, binding.x, binding.tenant) == (A, B, X, "ride")
    assert (binding.created_at, binding.expires_at, binding.ended_at) == (T0, T0 + 3600, None)
    assert (binding.direction, binding.max_call_s, binding.order_id) == ("a_to_b", 600, "order-1")
    assert (binding.status, binding.model, binding.scenario) == ("active", "axb", "delivery")
    assert store.get(binding.id) == binding
    assert store.add(C, D, X, now=T0).id != binding.id
    assert store.get("b_missing") is None


@pytest.mark.parametrize(
    ("a", "b", "x", "expires_at", "message"),
    [
        (A, A, X, None, "different"),
        (A, B, X, T0, "future"),
        (A, B, X, T0 - 1, "future"),
        (A, B, "", None, "required"),
    ],
)
def test_add_rejects_malformed_requests(
    store: BindingStore, a: str, b: str, x: str, expires_at: float | None, message: str
) -> None:
    with pytest.raises(BindingError, match=message):
        store.add(a, b, x, now=T0, expires_at=expires_at)
    assert store.list() == []


def test_add_rejects_models_not_built_yet(store: BindingStore) -> None:
    with pytest.raises(BindingError, match="not supported"):
        store.add(A, B, X, now=T0, model="axn")


# ── the AXB reuse rule ─────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("a", "b", "role", "party"),
    [
        (A, C, "a", A),  # A again as A
        (C, A, "b", A),  # A again, now as B
        (C, B, "b", B),  # B again as B
        (B, C, "a", B),  # B again, now as A
        (A, B, "a", A),  # the same pair
        (B, A, "a", B),  # the same pair reversed
    ],
)
def test_a_party_may_not_be_in_two_live_bindings_on_one_x(
    store: BindingStore, a: str, b: str, role: str, party: str
) -> None:
    first = store.add(A, B, X, now=T0)
    with pytest.raises(BindingConflict) as caught:
        store.add(a, b, X, now=T0 + 1)
    conflict = caught.value
    assert (conflict.party, conflict.role, conflict.x, conflict.binding_id) == (
        party,
        role,
        X,
        first.id,
    )
    message = str(conflict)
    assert party[3:6] + "****" + party[-4:] in message
    assert party not in message and party[3:] not in message, "the message masks the number"
    assert first.id in message and X in message
    assert isinstance(conflict, ValueError)
    assert len(store.list()) == 1


def test_disjoint_pairs_share_x_and_a_party_may_use_other_xs(store: BindingStore) -> None:
    store.add(A, B, X, now=T0)
    store.add(C, D, X, now=T0)
    store.add(A, C, X2, now=T0)
    assert len(store.list(x=X)) == 2


def test_ended_bindings_free_their_parties(store: BindingStore) -> None:
    released = store.add(A, B, X, now=T0)
    store.release(released.id, T0 + 10)
    store.add(A, C, X, now=T0 + 11)
    expiring = store.add(D, B, X, now=T0 + 11, expires_at=T0 + 20)
    # Past expiry the party is free again even though no sweeper ran; the allocation marks
    # the lapsed binding expired, at its expiry, on the way.
    store.add(B, "+8613300133000", X, now=T0 + 20)
    assert store.get(expiring.id) == replace(expiring, status="expired", ended_at=T0 + 20)


# ── routing lookups ────────────────────────────────────────────────────────────────────────


def test_find_for_call_from_either_party(store: BindingStore) -> None:
    binding = store.add(A, B, X, now=T0)
    other = store.add(C, D, X, now=T0 + 1)
    assert store.find_for_call(X, A, T0 + 2) == binding
    assert store.find_for_call(X, B, T0 + 2) == binding
    assert store.find_for_call(X, C, T0 + 2) == other
    assert store.find_for_call(X, "+8613300133000", T0 + 2) is None
    assert store.find_for_call(X2, A, T0 + 2) is None


def test_find_for_call_sees_expiry_without_a_sweeper(store: BindingStore) -> None:
    binding = store.add(A, B, X, now=T0, expires_at=T0 + 60)
    assert store.find_for_call(X, B, T0 + 59.999) == binding
    found = store.find_for_call(X, B, T0 + 60)
    assert found is not None and found.id == binding.id
    assert not found.is_live(T0 + 60)
    assert found.effective_status(T0 + 60) == "expired"


def test_find_for_call_returns_newest_ended_binding_when_none_is_live(
    store: BindingStore,
) -> None:
    oldest = store.add(A, B, X, now=T0)
    store.release(oldest.id, T0 + 1)
    middle = store.add(C, A, X, now=T0 + 2)
    store.release(middle.id, T0 + 3)
    newest = store.add(A, D, X, now=T0 + 4, expires_at=T0 + 5)
    found = store.find_for_call(X, A, T0 + 6)
    assert found is not None and found.id == newest.id
    # From B only the oldest binding involves it.
    found_b = store.find_for_call(X, B, T0 + 6)
    assert found_b is not None and found_b.id == oldest.id and found_b.status == "released"


def test_find_for_call_prefers_the_live_binding_over_history(store: BindingStore) -> None:
    for i in range(5):
        ended = store.add(A, B, X, now=T0 + 10 * i)
        store.release(ended.id, T0 + 10 * i + 1)
    live = store.add(B, A, X, now=T0 + 100)
    assert store.find_for_call(X, A, T0 + 101) == live
    assert store.find_for_call(X, B, T0 + 101) == live


# ── release / expire / list ────────────────────────────────────────────────────────────────


def test_release_ends_a_binding_once(store: BindingStore) -> None:
    binding = store.add(A, B, X, now=T0)
    released = store.release(binding.id, T0 + 5)
    assert (released.status, released.ended_at) == ("released", T0 + 5)
    assert store.get(binding.id) == released
    assert store.release(binding.id, T0 + 9) == released
    with pytest.raises(BindingNotFound):
        store.release("b_missing", T0)


def test_release_after_expiry_records_expiry_not_release(store: BindingStore) -> None:
    binding = store.add(A, B, X, now=T0, expires_at=T0 + 30)
    ended = store.release(binding.id, T0 + 100)
    assert (ended.status, ended.ended_at) == ("expired", T0 + 30)


def test_expire_due_marks_only_past_due_active_bindings(store: BindingStore) -> None:
    due = store.add(A, B, X, now=T0, expires_at=T0 + 10)
    later = store.add(C, D, X, now=T0, expires_at=T0 + 100)
    forever = store.add(A, B, X2, now=T0)
    released = store.add(C, D, X2, now=T0, expires_at=T0 + 5)
    store.release(released.id, T0 + 1)
    assert store.expire_due(T0 + 9.999) == 0
    assert store.expire_due(T0 + 10) == 1
    assert store.expire_due(T0 + 10) == 0
    swept = store.get(due.id)
    assert swept is not None and (swept.status, swept.ended_at) == ("expired", T0 + 10)
    for unchanged in (later, forever):
        assert store.get(unchanged.id) == unchanged
    still_released = store.get(released.id)
    assert still_released is not None and still_released.status == "released"


def test_list_filters_and_pages_newest_first(store: BindingStore) -> None:
    ab = store.add(A, B, X, now=T0)
    cd = store.add(C, D, X, now=T0 + 1)
    ca = store.add(C, A, X2, now=T0 + 2)
    store.release(cd.id, T0 + 3)
    ids = lambda bindings: [b.id for b in bindings]  # noqa: E731
    assert ids(store.list()) == [ca.id, cd.id, ab.id]
    assert ids(store.list(party=A)) == [ca.id, ab.id]
    assert ids(store.list(party=D)) == [cd.id]
    assert ids(store.list(x=X)) == [cd.id, ab.id]
    assert ids(store.list(status="released")) == [cd.id]
    assert ids(store.list(status="active", party=C)) == [ca.id]
    assert ids(store.list(limit=1, offset=1)) == [cd.id]
    assert ids(store.list(limit=2, offset=2)) == [ab.id]


# ── both stores agree on random histories ──────────────────────────────────────────────────

_PARTIES = [A, B, C, D, "+8613300133000"]
_XS = [X, X2]
_operation = st.one_of(
    st.tuples(
        st.just("add"),
        st.sampled_from(_PARTIES),
        st.sampled_from(_PARTIES),
        st.sampled_from(_XS),
        st.one_of(st.none(), st.integers(1, 30)),
    ),
    st.tuples(st.just("release"), st.integers(0, 20)),
    st.tuples(st.just("advance"), st.integers(1, 20)),
    st.tuples(st.just("sweep")),
)


def _shape(binding: Binding | None, ids: dict[str, int]) -> tuple[object, ...] | None:
    if binding is None:
        return None
    return (ids[binding.id], binding.a, binding.b, binding.x, binding.status, binding.ended_at)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_operation, max_size=40))
def test_sqlite_and_memory_stores_agree(operations: list[tuple[object, ...]]) -> None:
    sqlite_store = SqliteBindingStore(db.open_database(":memory:"), quarantine_s=15)
    memory_store = MemoryBindingStore(quarantine_s=15)
    stores: tuple[BindingStore, BindingStore] = (sqlite_store, memory_store)
    # Each store makes its own random ids; compare them by creation index.
    ids: tuple[dict[str, int], dict[str, int]] = ({}, {})
    created: tuple[list[str], list[str]] = ([], [])
    now = T0
    for op in operations:
        if op[0] == "add":
            _, a, b, x, ttl = op
            outcomes = []
            for store, id_map, made in zip(stores, ids, created, strict=True):
                try:
                    binding = store.add(
                        str(a),
                        str(b),
                        str(x),
                        now=now,
                        expires_at=None if ttl is None else now + int(str(ttl)),
                    )
                except BindingError as exc:
                    outcomes.append(type(exc).__name__)
                else:
                    id_map[binding.id] = len(made)
                    made.append(binding.id)
                    outcomes.append("added")
            assert outcomes[0] == outcomes[1]
        elif op[0] == "release" and created[0]:
            index = int(str(op[1])) % len(created[0])
            released = [
                _shape(store.release(made[index], now), id_map)
                for store, id_map, made in zip(stores, ids, created, strict=True)
            ]
            assert released[0] == released[1]
        elif op[0] == "advance":
            now += int(str(op[1]))
        elif op[0] == "sweep":
            assert sqlite_store.expire_due(now) == memory_store.expire_due(now)
        for x in _XS:
            live_parties: list[str] = []
            for party in _PARTIES:
                found = [
                    _shape(store.find_for_call(x, party, now), id_map)
                    for store, id_map in zip(stores, ids, strict=True)
                ]
                assert found[0] == found[1]
                live = sqlite_store.find_for_call(x, party, now)
                if live is not None and live.is_live(now):
                    live_parties += [live.a, live.b]
            # The reuse rule: a party appears in at most one live binding per X.
            live_bindings = [
                binding for binding in sqlite_store.list(x=x, limit=1000) if binding.is_live(now)
            ]
            members = [party for binding in live_bindings for party in (binding.a, binding.b)]
            assert len(members) == len(set(members))
    sqlite_store.close()


# ── SQLite specifics ───────────────────────────────────────────────────────────────────────


def test_sqlite_store_persists_and_opens_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    first = SqliteBindingStore.open(path)
    binding = first.add(A, B, X, now=T0)
    first.close()
    conn = db.open_database(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == db.DEFAULT_BUSY_TIMEOUT_MS
    assert db.schema_version(conn) == db.SCHEMA_VERSION
    assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == db.SCHEMA_VERSION
    again = SqliteBindingStore(conn)
    assert again.get(binding.id) == binding
    again.close()


def test_two_connections_on_one_file_enforce_the_reuse_rule(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    one, two = SqliteBindingStore.open(path), SqliteBindingStore.open(path)
    one.add(A, B, X, now=T0)
    with pytest.raises(BindingConflict):
        two.add(C, A, X, now=T0 + 1)
    found = two.find_for_call(X, B, T0 + 1)
    assert found is not None and found.other_party(B) == A
    one.close()
    two.close()


def test_allocate_many_is_allocate_in_order_with_refusals_as_values(tmp_path: Path) -> None:
    store = SqliteBindingStore.open(tmp_path / "group.db", quarantine_s=0)
    store.add_numbers([X, X2], now=T0)
    outcomes = store.allocate_many(
        [
            AllocationRequest(A, B, T0, x=X),
            AllocationRequest(C, A, T0, x=X),  # A is already live on X, one request earlier
            AllocationRequest(C, A, T0),  # allocated: X2 is the first number free for both
            AllocationRequest(A, A, T0),  # malformed
            AllocationRequest(C, D, T0, request_id="r1"),
            AllocationRequest(C, D, T0, request_id="r1"),  # a retry within the same group
        ]
    )
    first, conflict, moved, malformed, made, retried = outcomes
    assert isinstance(first, Allocation) and first.binding.x == X
    assert isinstance(conflict, BindingConflict)
    assert isinstance(moved, Allocation) and moved.binding.x == X2
    assert isinstance(malformed, BindingError) and malformed.field == "b"
    assert isinstance(made, Allocation) and isinstance(retried, Allocation)
    assert retried.replayed and retried.binding == made.binding
    live = store.list(status="active")
    assert {binding.id for binding in live} == {
        first.binding.id,
        moved.binding.id,
        made.binding.id,
    }
    store.close()


def test_a_refused_allocation_keeps_the_sweep_it_ran(tmp_path: Path) -> None:
    store = SqliteBindingStore.open(tmp_path / "sweep.db", quarantine_s=60)
    lapsing = store.add(A, C, X, now=T0, expires_at=T0 + 1)
    with pytest.raises(NumberQuarantined):
        store.add(A, B, X, now=T0 + 2)
    swept = store.get(lapsing.id)
    assert swept is not None and swept.status == "expired" and swept.ended_at == T0 + 1
    store.close()


def test_routing_lookups_use_the_indexes(tmp_path: Path) -> None:
    conn = db.open_database(tmp_path / "plan.db")
    from bindings import sqlite_store

    params = {"x": X, "caller": A, "a": A, "b": B, "now": T0}
    for query, wanted in (
        (sqlite_store._FIND_LIVE, ("bindings_live_x_a", "bindings_live_x_b")),
        (sqlite_store._FIND_LATEST, ("bindings_x_a_created", "bindings_x_b_created")),
    ):
        plan = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {query}", params))
        for index in wanted:
            assert f"USING INDEX {index} (x=? AND " in plan, plan
        assert "SCAN bindings" not in plan, plan
    allocation_queries = (
        (sqlite_store._BLOCKING_HISTORY, {"a": A, "b": B, "horizon": T0}, ("bindings_a (a=?)",)),
        (sqlite_store._CANDIDATES, {"tenant": "t", "cap": 5}, ("pool_tenant_seq (tenant=?)",)),
        (
            sqlite_store._CANDIDATES_IN_CITY,
            {"tenant": None, "city": "bj", "cap": 5},
            ("pool_tenant_city_seq (tenant=? AND city=?)",),
        ),
        (sqlite_store._DUE, (T0,), ("bindings_live_expires (expires_at<?)",)),
    )
    for query, query_params, wanted in allocation_queries:
        plan = " | ".join(
            row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {query}", query_params)
        )
        for index in wanted:
            assert index in plan, plan
        assert "SCAN" not in plan and "TEMP B-TREE" not in plan, plan
    conn.close()


def test_migrations_run_once_and_refuse_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    conn = db.open_database(path)
    assert db.migrate(conn) == db.SCHEMA_VERSION
    extra = ("CREATE TABLE later (id INTEGER)",)
    assert db.migrate(conn, (*db.MIGRATIONS, extra)) == db.SCHEMA_VERSION + 1
    assert conn.execute("SELECT COUNT(*) FROM later").fetchone()[0] == 0
    conn.close()
    with pytest.raises(db.SchemaTooNew):
        db.open_database(path)


def test_failed_migration_leaves_the_file_untouched(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "bad.db")
    broken = (("CREATE TABLE fine (id INTEGER)", "CREATE TABLE fine (id INTEGER)"),)
    with pytest.raises(sqlite3.OperationalError):
        db.migrate(conn, broken)
    assert not conn.in_transaction
    assert db.schema_version(conn) == 0
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "fine" not in tables
    conn.close()
