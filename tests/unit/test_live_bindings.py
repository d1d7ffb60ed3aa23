"""Routing from memory (bindings/live.py): a call that goes through reads no database, a
binding made by another process routes at once, ends made elsewhere arrive within the
refresh interval, and after a refresh the answers equal the database's."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from bindings import blocklist
from bindings.live import LiveBindings
from bindings.models import Binding, BindingError, Direction
from bindings.sqlite_store import SqliteBindingStore

T0 = 1_800_000_000.0
A = "+8613800138000"
B = "+8613900139000"
C = "+8613700137000"
X = "700123456789012"
REFRESH_S = 0.25
DIRECTIONS: tuple[Direction, ...] = ("both", "a_to_b", "b_to_a")


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[SqliteBindingStore, SqliteBindingStore]]:
    """The proxy's store and another process's, on one file; no quarantine, so that a
    party may hold an ended binding and a live one on the same X."""
    path = tmp_path / "live.db"
    mine = SqliteBindingStore.open(path, quarantine_s=0)
    other = SqliteBindingStore.open(path, quarantine_s=0)
    yield mine, other
    mine.close()
    other.close()


def loaded(store: SqliteBindingStore, now: float = T0) -> LiveBindings:
    live = LiveBindings(store, refresh_s=REFRESH_S)
    live.load(now)
    return live


def statements(store: SqliteBindingStore) -> list[str]:
    """The SQL statements ``store``'s connection runs from now on."""
    ran: list[str] = []
    store.connection.set_trace_callback(ran.append)
    return ran


def test_a_call_that_goes_through_reads_no_database(
    stores: tuple[SqliteBindingStore, SqliteBindingStore],
) -> None:
    mine, _ = stores
    binding = mine.add(A, B, X, now=T0)
    live = loaded(mine)
    ran = statements(mine)
    assert live.route_for_call(X, A, T0 + 0.1) == (binding, False)
    assert live.route_for_call(X, B, T0 + 0.2) == (binding, False)
    assert ran == []
    assert len(live) == 1


def test_a_binding_made_elsewhere_routes_at_once(
    stores: tuple[SqliteBindingStore, SqliteBindingStore],
) -> None:
    mine, other = stores
    live = loaded(mine)
    binding = other.add(A, B, X, now=T0)
    assert live.route_for_call(X, A, T0 + 0.01) == (binding, False)  # before any refresh


def test_an_unknown_caller_gets_the_databases_answer(
    stores: tuple[SqliteBindingStore, SqliteBindingStore],
) -> None:
    mine, _ = stores
    mine.add(A, B, X, now=T0)
    live = loaded(mine)
    assert live.route_for_call(X, C, T0 + 0.1) == (None, False)


def test_a_release_elsewhere_stops_routing_at_the_next_refresh(
    stores: tuple[SqliteBindingStore, SqliteBindingStore],
) -> None:
    mine, other = stores
    binding = other.add(A, B, X, now=T0)
    live = loaded(mine)
    released = other.release(binding.id, T0 + 0.1)
    # Within the interval the row read at the last refresh still routes, as it would for
    # a proxy that read it just before the release.
    assert live.route_for_call(X, A, T0 + 0.2) == (binding, False)
    found, blocked = live.route_for_call(X, A, T0 + REFRESH_S)
    assert (found, blocked) == (released, False)
    assert found is not None and found.status == "released"
    assert len(live) == 0


def test_expiry_needs_no_refresh(stores: tuple[SqliteBindingStore, SqliteBindingStore]) -> None:
    mine, _ = stores
    binding = mine.add(A, B, X, now=T0, expires_at=T0 + 0.1)
    live = loaded(mine)
    assert live.route_for_call(X, A, T0 + 0.05) == (binding, False)
    found, _ = live.route_for_call(X, A, T0 + 0.1)  # the database's view: the expired binding
    assert found == binding and not found.is_live(T0 + 0.1)


def test_an_expired_binding_gives_way_to_a_newer_one_before_the_refresh(
    stores: tuple[SqliteBindingStore, SqliteBindingStore],
) -> None:
    mine, other = stores
    other.add(A, B, X, now=T0, expires_at=T0 + 1)
    live = loaded(mine, now=T0 + 1.9)
    newer = other.add(C, A, X, now=T0 + 2)  # A is now the B party of a binding on X
    assert live.route_for_call(X, A, T0 + 2) == (newer, False)


def test_an_update_elsewhere_arrives_at_the_next_refresh(
    stores: tuple[SqliteBindingStore, SqliteBindingStore],
) -> None:
    mine, other = stores
    binding = other.add(A, B, X, now=T0)
    live = loaded(mine)
    updated = other.update(binding.id, T0 + 0.1, direction="a_to_b", expires_at=T0 + 100)
    assert live.route_for_call(X, B, T0 + REFRESH_S) == (updated, False)


def test_blocklist_entries_count_for_every_party_and_lapse_by_time(
    stores: tuple[SqliteBindingStore, SqliteBindingStore],
) -> None:
    mine, other = stores
    binding = mine.add(A, B, X, now=T0)
    blocklist.block(other.connection, B, reason="abuse", actor="cli", now=T0, expires_at=T0 + 5)
    live = loaded(mine)
    ran = statements(mine)
    assert live.route_for_call(X, A, T0 + 0.1) == (binding, True)  # the callee's entry
    assert live.route_for_call(X, B, T0 + 0.2) == (binding, True)  # the caller's own
    assert ran == []
    assert live.route_for_call(X, A, T0 + 5) == (binding, False)  # lapsed at its expiry
    blocklist.block(other.connection, A, reason="fraud", actor="cli", now=T0 + 5)
    assert live.route_for_call(X, B, T0 + 5 + REFRESH_S) == (binding, True)
    blocklist.unblock(other.connection, A, actor="cli", now=T0 + 6)
    assert live.route_for_call(X, B, T0 + 6 + REFRESH_S) == (binding, False)


def test_a_clock_that_steps_back_refreshes(
    stores: tuple[SqliteBindingStore, SqliteBindingStore],
) -> None:
    mine, other = stores
    binding = other.add(A, B, X, now=T0)
    live = loaded(mine, now=T0 + 10)
    released = other.release(binding.id, T0 + 10)
    assert live.route_for_call(X, A, T0 + 5) == (released, False)


def test_refresh_interval_must_be_positive(
    stores: tuple[SqliteBindingStore, SqliteBindingStore],
) -> None:
    with pytest.raises(ValueError, match="refresh_s"):
        LiveBindings(stores[0], refresh_s=0)


def test_after_a_refresh_every_answer_equals_the_databases(
    stores: tuple[SqliteBindingStore, SqliteBindingStore],
) -> None:
    """Random changes made elsewhere (add, release, update, block, unblock) and time
    passing: after each refresh, every (X, caller) gets what a fresh query gets."""
    mine, other = stores
    rng = random.Random(20261201)
    xs = ["700123456789012", "700123456789013"]
    parties = [A, B, C, "+8613600136000"]
    now = T0
    live = loaded(mine, now)
    answers: set[tuple[bool, bool]] = set()
    for _ in range(400):
        now += rng.choice((0.0, 0.5, 3.0))
        action = rng.randrange(5)
        try:
            if action == 0:
                a, b = rng.sample(parties, 2)
                expires = rng.choice((None, now + 1, now + 10))
                direction = rng.choice(DIRECTIONS)
                other.add(a, b, rng.choice(xs), now=now, expires_at=expires, direction=direction)
            elif live_ids := [binding.id for binding in other.active()]:
                chosen = rng.choice(live_ids)
                if action == 1:
                    other.release(chosen, now)
                elif action == 2:
                    other.update(chosen, now, direction=rng.choice(DIRECTIONS[:2]))
            if action == 3:
                until = rng.choice((None, now + 2))
                party = rng.choice(parties)
                blocklist.block(
                    other.connection, party, reason="r", actor="cli", now=now, expires_at=until
                )
            elif action == 4 and (entries := blocklist.blocked(other.connection, now=now)):
                blocklist.unblock(
                    other.connection, rng.choice(entries).number, actor="cli", now=now
                )
        except BindingError:
            pass  # a refused add (a party already on that X, quarantine): nothing changed
        live.refresh(now)
        for x in xs:
            for caller in parties:
                binding, blocked = live.route_for_call(x, caller, now)
                assert (binding, blocked) == other.route_for_call(x, caller, now)
                answers.add((binding is not None and binding.is_live(now), blocked))
    assert answers == {(True, True), (True, False), (False, True), (False, False)}


def test_a_change_announced_during_a_refresh_is_read_by_the_next_lookup(
    stores: tuple[SqliteBindingStore, SqliteBindingStore],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mine, other = stores
    first = other.add(A, B, X, now=T0)
    second = other.add(C, B, "700123456789013", now=T0)
    live = LiveBindings(mine, refresh_s=3600)
    live.load(T0)
    other.release(first.id, T0 + 1)
    live.changed()
    read = mine.get

    def get_while_another_change_commits(binding_id: str) -> Binding | None:
        monkeypatch.setattr(mine, "get", read)
        other.release(second.id, T0 + 1)  # committed after this refresh read the log
        live.changed()
        return read(binding_id)

    monkeypatch.setattr(mine, "get", get_while_another_change_commits)
    assert live.route_for_call(X, A, T0 + 2)[0] == other.get(first.id)  # refreshed
    found, _ = live.route_for_call("700123456789013", C, T0 + 3)  # and again
    assert found is not None and found.status == "released"
