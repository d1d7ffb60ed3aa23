"""The number blocklist's storage (bindings/blocklist.py): block, replace, expire, unblock,
list, and the audit trail of each."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from bindings import blocklist, sqlite_store
from bindings.blocklist import BlockedNumber, BlocklistError, NotBlocked
from bindings.sqlite_store import SqliteBindingStore
from proxy import audit
from proxy.cli import app
from proxy.db import open_database

T0 = 1_800_000_000.0
A = "+8613800138000"
B = "+8613900139000"
X = "700123456789012"
PARAMS = {"x": X, "caller": A, "now": T0}


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_database(tmp_path / "blocklist.db")
    yield connection
    connection.close()


def test_a_blocked_number_is_blocked_and_others_are_not(conn: sqlite3.Connection) -> None:
    entry = blocklist.block(conn, A, reason="  marketing calls  ", actor="cli", now=T0)
    assert entry == BlockedNumber(A, "marketing calls", T0, "cli", None)
    assert blocklist.is_blocked(conn, A, T0)
    assert blocklist.is_blocked(conn, A, T0 + 10 * 365 * 86400)  # no expiry: until removed
    assert not blocklist.is_blocked(conn, B, T0)
    assert not blocklist.is_blocked(conn, "13800138000", T0)  # only the E.164 form is stored


def test_a_block_lapses_at_its_expiry(conn: sqlite3.Connection) -> None:
    blocklist.block(conn, A, reason="fraud", actor="k_1", now=T0, expires_at=T0 + 60)
    assert blocklist.is_blocked(conn, A, T0 + 59.999)
    assert not blocklist.is_blocked(conn, A, T0 + 60)
    assert blocklist.blocked(conn, now=T0 + 61) == []
    assert [e.number for e in blocklist.blocked(conn, now=T0 + 61, include_expired=True)] == [A]


def test_blocking_again_replaces_the_entry_and_audits_both(conn: sqlite3.Connection) -> None:
    blocklist.block(conn, A, reason="first", actor="cli", now=T0, expires_at=T0 + 60)
    blocklist.block(conn, A, reason="second", actor="k_2", now=T0 + 100)
    assert blocklist.get(conn, A) == BlockedNumber(A, "second", T0 + 100, "k_2", None)
    assert blocklist.is_blocked(conn, A, T0 + 200)
    events = audit.events(conn, action="blocklist.add")
    assert [(e.actor, e.reason) for e in events] == [("cli", "first"), ("k_2", "second")]
    assert events[0].before is None
    assert events[1].before == {"number": A, "reason": "first", "expires_at": T0 + 60}
    assert events[1].after == {"number": A, "reason": "second", "expires_at": None}
    shown = audit.masked(events[1])
    assert shown.after is not None and shown.after["number"] == "138****8000"


def test_unblock_removes_the_entry_and_is_audited(conn: sqlite3.Connection) -> None:
    blocklist.block(conn, A, reason="fraud", actor="cli", now=T0)
    removed = blocklist.unblock(conn, A, actor="k_9", now=T0 + 5)
    assert removed.reason == "fraud"
    assert not blocklist.is_blocked(conn, A, T0 + 5)
    assert blocklist.get(conn, A) is None
    (event,) = audit.events(conn, action="blocklist.remove")
    assert (event.actor, event.at, event.subject) == ("k_9", T0 + 5, "blocklist")
    assert event.before is not None and event.before["number"] == A
    with pytest.raises(NotBlocked):
        blocklist.unblock(conn, A, actor="k_9", now=T0 + 6)
    assert len(audit.events(conn, action="blocklist.remove")) == 1


def test_listing_is_newest_first_and_pages(conn: sqlite3.Connection) -> None:
    numbers = [f"+86138001380{i:02d}" for i in range(5)]
    for offset, number in enumerate(numbers):
        blocklist.block(conn, number, reason="r", actor="cli", now=T0 + offset)
    listed = blocklist.blocked(conn, now=T0 + 10)
    assert [e.number for e in listed] == numbers[::-1]
    page = blocklist.blocked(conn, now=T0 + 10, limit=2, offset=1)
    assert [e.number for e in page] == [numbers[3], numbers[2]]


@pytest.mark.parametrize(
    ("number", "reason", "expires_at", "field"),
    [
        ("13800138000", "r", None, "number"),  # not normalised
        ("+0123456789", "r", None, "number"),
        ("+86 138 0013 8000", "r", None, "number"),
        (A, "   ", None, "reason"),
        (A, "x" * (blocklist.MAX_REASON_CHARS + 1), None, "reason"),
        (A, "two\nlines", None, "reason"),
        (A, "r", T0, "expires_at"),
        (A, "r", T0 - 1, "expires_at"),
    ],
)
def test_malformed_entries_name_the_field_and_change_nothing(
    conn: sqlite3.Connection, number: str, reason: str, expires_at: float | None, field: str
) -> None:
    with pytest.raises(BlocklistError) as caught:
        blocklist.block(conn, number, reason=reason, actor="cli", now=T0, expires_at=expires_at)
    assert caught.value.field == field
    assert blocklist.blocked(conn, now=T0, include_expired=True) == []
    assert audit.events(conn, action="blocklist.") == []


def test_the_call_path_check_is_a_primary_key_probe(conn: sqlite3.Connection) -> None:
    plan = " ".join(
        row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sqlite_store._FIND_LIVE}", PARAMS)
    )
    assert "SEARCH blocklist USING PRIMARY KEY (number=?)" in plan
    assert "USING INDEX bindings_live_x_a (x=? AND a=?)" in plan
    assert "USING INDEX bindings_live_x_b (x=? AND b=?)" in plan


def test_routing_reads_the_binding_and_the_verdict_on_every_party(tmp_path: Path) -> None:
    store = SqliteBindingStore.open(tmp_path / "route.db")
    binding = store.add(A, B, X, now=T0)
    assert store.route_for_call(X, A, T0 + 1) == (binding, False)
    blocklist.block(store.connection, B, reason="r", actor="cli", now=T0, expires_at=T0 + 100)
    assert store.route_for_call(X, A, T0 + 50) == (binding, True)  # the callee's entry
    assert store.route_for_call(X, B, T0 + 50) == (binding, True)  # the caller's own
    assert store.route_for_call(X, A, T0 + 200) == (binding, False)  # lapsed
    unbound = "+8613300133000"
    assert store.route_for_call(X, unbound, T0 + 1) == (None, False)
    blocklist.block(store.connection, unbound, reason="r", actor="cli", now=T0)
    assert store.route_for_call(X, unbound, T0 + 1) == (None, True)  # miss path too
    store.release(binding.id, T0 + 300)
    assert store.route_for_call(X, A, T0 + 301)[0] == store.get(binding.id)
    store.close()


def test_an_unmasked_listing_is_audited(conn: sqlite3.Connection) -> None:
    seq = blocklist.audit_unmasked_listing(conn, actor="k_1", now=T0, shown=3, reason="ticket 7")
    (event,) = audit.events(conn, action="blocklist.unmask")
    assert (event.seq, event.actor, event.after, event.reason) == (
        seq,
        "k_1",
        {"entries": 3},
        "ticket 7",
    )


# ── privproxy block add | rm | list ──────────────────────────────────────────────────────


def _cli(db: Path, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--db", str(db)])


def test_cli_blocks_lists_masked_and_unblocks(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    added = _cli(db, "block", "add", "138 0013 8000", "--reason", "spam calls", "--ttl", "600")
    assert added.exit_code == 0, added.output
    assert "138****8000" in added.output and "13800138000" not in added.output
    listed = _cli(db, "block", "list", "--json")
    (entry,) = json.loads(listed.output)
    assert (entry["number"], entry["reason"], entry["created_by"]) == (
        "138****8000",
        "spam calls",
        "cli",
    )
    assert entry["expires_at"] - entry["created_at"] == pytest.approx(600)
    table = _cli(db, "block", "list")
    assert "138****8000" in table.output and A not in table.output
    removed = _cli(db, "block", "rm", "+8613800138000")
    assert removed.exit_code == 0, removed.output
    assert json.loads(_cli(db, "block", "list", "--json").output) == []
    missing = _cli(db, "block", "rm", "+8613800138000")
    assert missing.exit_code == 2 and "not on the blocklist" in missing.output


def test_cli_unmasked_listing_is_audited(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    assert _cli(db, "block", "add", A, "--reason", "fraud").exit_code == 0
    shown = _cli(db, "block", "list", "--json", "--unmasked")
    assert [entry["number"] for entry in json.loads(shown.output)] == [A]
    conn = open_database(db)
    try:
        events = audit.events(conn, action="blocklist.")
    finally:
        conn.close()
    assert [(e.action, e.actor) for e in events] == [
        ("blocklist.add", "cli"),
        ("blocklist.unmask", "cli"),
    ]


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (("block", "add", "12345", "--reason", "r"), "'NUMBER'"),
        (("block", "add", A, "--reason", "  "), "'--reason'"),
        (("block", "add", A, "--reason", "r", "--ttl", "0"), "'--ttl'"),
    ],
)
def test_cli_argument_errors_name_the_argument(
    tmp_path: Path, args: tuple[str, ...], hint: str
) -> None:
    result = _cli(tmp_path / "cli.db", *args)
    assert result.exit_code == 2
    assert hint.strip("'") in result.output
