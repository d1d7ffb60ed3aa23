"""The ``privproxy`` command on a temporary database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from bindings.sqlite_store import SqliteBindingStore
from proxy.cdr.record import CallRecord
from proxy.cdr.writer import CdrWriter
from proxy.cli import app

A_NATIONAL = "138 0013 8000"
A = "+8613800138000"
B = "+8613900139000"
C = "+8613700137000"
X = "700123456789012"
X_SPACED = "700-1234-5678-9012"
T0 = 1_700_000_000.0  # in the past: the CLI reads the real clock

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "cli.db"


def run(db: Path, *args: str) -> Result:
    return runner.invoke(app, [*args, "--db", str(db)])


def assert_no_real_number(text: str) -> None:
    for number in (A, B, C):
        assert number[3:] not in text, f"{number} leaked unmasked"


def bind_json(db: Path, *args: str) -> dict[str, object]:
    result = run(db, "bind", *args, "--json")
    assert result.exit_code == 0, result.output
    value = json.loads(result.stdout)
    assert isinstance(value, dict)
    return value


# ── bind ───────────────────────────────────────────────────────────────────────────────────


def test_bind_normalises_stores_and_prints_masked(db: Path) -> None:
    result = run(db, "bind", A_NATIONAL, "0086 139-0013-9000", "--x", X_SPACED)
    assert result.exit_code == 0, result.output
    assert "138****8000" in result.stdout and "139****9000" in result.stdout
    assert X in result.stdout and "active" in result.stdout
    assert_no_real_number(result.output)
    store = SqliteBindingStore.open(db)
    [stored] = store.list()
    store.close()
    assert (stored.a, stored.b, stored.x, stored.direction, stored.expires_at) == (
        A,
        B,
        X,
        "both",
        None,
    )
    assert stored.id in result.stdout


def test_bind_json_options_and_ttl(db: Path) -> None:
    value = bind_json(
        db,
        A,
        B,
        "--x",
        X,
        "--ttl",
        "3600",
        "--direction",
        "a_to_b",
        "--tenant",
        "ride",
        "--order-id",
        "o-1",
    )
    assert (value["a"], value["b"], value["x"]) == ("138****8000", "139****9000", X)
    assert (value["direction"], value["tenant"], value["order_id"]) == ("a_to_b", "ride", "o-1")
    created, expires = value["created_at"], value["expires_at"]
    assert isinstance(created, float) and isinstance(expires, float)
    assert expires - created == pytest.approx(3600)


def test_bind_unmasked_shows_full_numbers(db: Path) -> None:
    value = bind_json(db, A, B, "--x", X, "--unmasked")
    assert (value["a"], value["b"]) == (A, B)


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["12345", B, "--x", X], "'A'"),
        ([A, "not-a-number", "--x", X], "'B'"),
        ([A, B, "--x", "13800138000"], "'--x'"),
        ([A, A_NATIONAL, "--x", X], "'B'"),
        ([X, B, "--x", X], "'A'"),
    ],
)
def test_bind_usage_errors_name_the_argument(db: Path, args: list[str], names: str) -> None:
    result = run(db, "bind", *args)
    assert result.exit_code == 2
    assert f"Invalid value for {names}" in result.output
    assert_no_real_number(result.output)


@pytest.mark.parametrize(
    ("a", "b", "names"), [(A, C, "'A'"), (C, A, "'B'"), (B, C, "'A'"), (C, B, "'B'")]
)
def test_bind_conflict_names_the_reused_party(db: Path, a: str, b: str, names: str) -> None:
    first = bind_json(db, A, B, "--x", X)
    result = run(db, "bind", a, b, "--x", X)
    assert result.exit_code == 2
    assert f"Invalid value for {names}" in result.output
    assert "already uses X" in result.output and str(first["id"]) in result.output
    assert_no_real_number(result.output)
    store = SqliteBindingStore.open(db)
    assert len(store.list()) == 1
    store.close()


def test_db_comes_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "env.db"
    result = runner.invoke(app, ["bind", A, B, "--x", X], env={"PRIVPROXY_DB": str(path)})
    assert result.exit_code == 0, result.output
    store = SqliteBindingStore.open(path)
    assert len(store.list()) == 1
    store.close()


# ── unbind ─────────────────────────────────────────────────────────────────────────────────


def test_unbind_releases_and_frees_the_parties(db: Path) -> None:
    binding_id = str(bind_json(db, A, B, "--x", X)["id"])
    result = run(db, "unbind", binding_id, "--json")
    assert result.exit_code == 0, result.output
    released = json.loads(result.stdout)
    assert (released["id"], released["status"]) == (binding_id, "released")
    assert released["ended_at"] is not None
    again = run(db, "unbind", binding_id)
    assert again.exit_code == 0
    assert "already ended (released)" in again.output
    # The same pair may meet again on X ...
    assert bind_json(db, B, A, "--x", X)["status"] == "active"


def test_unbind_unknown_id_is_a_usage_error(db: Path) -> None:
    result = run(db, "unbind", "b_nope")
    assert result.exit_code == 2
    assert "Invalid value for 'ID'" in result.output and "b_nope" in result.output


# ── bindings ───────────────────────────────────────────────────────────────────────────────


def test_bindings_lists_masked_and_filters(db: Path) -> None:
    first = bind_json(db, A, B, "--x", X)
    second = bind_json(db, C, A, "--x", "700123456789013")
    third = bind_json(db, B, C, "--x", "700123456789014")
    run(db, "unbind", str(third["id"]))

    table = run(db, "bindings")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "ID",
        "TENANT",
        "A",
        "B",
        "X",
        "DIRECTION",
        "STATUS",
        "CREATED",
        "EXPIRES",
    ]
    assert [line.split()[0] for line in lines[2:]] == [third["id"], second["id"], first["id"]]
    assert "137****7000" in table.stdout
    assert_no_real_number(table.output)

    def listed(*args: str) -> list[object]:
        result = run(db, "bindings", "--json", *args)
        assert result.exit_code == 0, result.output
        return [binding["id"] for binding in json.loads(result.stdout)]

    assert listed("--party", A_NATIONAL) == [second["id"], first["id"]]
    assert listed("--x", "700 1234 5678 9012") == [first["id"]]
    assert listed("--status", "released") == [third["id"]]
    assert listed("--status", "active", "--party", C) == [second["id"]]
    assert listed("--limit", "1", "--offset", "1") == [second["id"]]

    masked_json = run(db, "bindings", "--json")
    assert_no_real_number(masked_json.stdout)
    unmasked = run(db, "bindings", "--json", "--unmasked", "--x", X)
    assert [(b["a"], b["b"]) for b in json.loads(unmasked.stdout)] == [(A, B)]


def test_bindings_shows_lapsed_bindings_as_expired(db: Path) -> None:
    store = SqliteBindingStore.open(db)
    lapsed = store.add(A, B, X, now=T0, expires_at=T0 + 60)
    store.close()
    result = run(db, "bindings", "--json", "--status", "expired")
    assert result.exit_code == 0, result.output
    [shown] = json.loads(result.stdout)
    assert (shown["id"], shown["status"], shown["ended_at"]) == (lapsed.id, "expired", T0 + 60)
    assert json.loads(run(db, "bindings", "--json", "--status", "active").stdout) == []


def test_bindings_rejects_a_bad_party(db: Path) -> None:
    result = run(db, "bindings", "--party", "12")
    assert result.exit_code == 2
    assert "Invalid value for '--party'" in result.output


# ── cdrs ───────────────────────────────────────────────────────────────────────────────────


def _record(n: int, disposition: str = "answered") -> CallRecord:
    return CallRecord(
        id=f"c_{n}",
        tenant="ride",
        binding_id="b_abcdefghijklmnopqrst",
        x=X,
        caller=A,
        callee=B,
        direction="a_to_b",
        invite_at=T0 + 100 * n,
        ring_at=T0 + 100 * n + 1,
        answer_at=T0 + 100 * n + 5 if disposition == "answered" else None,
        end_at=T0 + 100 * n + 47.5,
        disposition=disposition,  # type: ignore[arg-type]
        sip_status=200 if disposition == "answered" else 486,
        q850_cause=16 if disposition == "answered" else 17,
        released_by="caller",
        node="n1",
    )


@pytest.fixture
def db_with_cdrs(db: Path) -> Path:
    writer = CdrWriter(db)
    writer.start()
    for n in range(3):
        writer.submit(_record(n, "answered" if n != 1 else "busy"))
    assert writer.close(timeout=10)
    return db


def test_cdrs_table_is_masked_newest_first(db_with_cdrs: Path) -> None:
    result = run(db_with_cdrs, "cdrs")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["INVITE", "X", "CALLER", "CALLEE"]
    rows = [line.split() for line in lines[2:]]
    assert [row[5] for row in rows] == ["answered", "busy", "answered"]  # INVITE is 2 words
    assert [row[-2] for row in rows] == ["42.500", "0.000", "42.500"]
    assert rows[0][3:5] == ["138****8000", "139****9000"]
    assert_no_real_number(result.output)


def test_cdrs_json_limit_and_unmasked(db_with_cdrs: Path) -> None:
    result = run(db_with_cdrs, "cdrs", "--json", "--limit", "2")
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [r["id"] for r in records] == ["c_2", "c_1"]
    assert (records[0]["caller"], records[0]["callee"]) == ("138****8000", "139****9000")
    assert (records[0]["talk_s"], records[1]["talk_s"], records[1]["ring_s"]) == (42.5, 0.0, 46.5)
    assert_no_real_number(result.stdout)
    full = json.loads(run(db_with_cdrs, "cdrs", "--json", "--unmasked").stdout)
    assert {(r["caller"], r["callee"]) for r in full} == {(A, B)}


def test_cdrs_on_an_empty_database(db: Path) -> None:
    result = run(db, "cdrs", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []


def test_no_arguments_prints_help() -> None:
    result = runner.invoke(app, [])
    for command in ("bind", "unbind", "bindings", "cdrs"):
        assert command in result.output


# ── allocation, quarantine, pool, API keys ────────────────────────────────────────────────

X_POOL = ["700123456780000", "700123456780001", "700123456780002"]


def test_bind_without_x_allocates_from_the_pool(db: Path) -> None:
    assert run(db, "pool", "add", "--range", f"{X_POOL[0]}-{X_POOL[1]}").exit_code == 0
    assert bind_json(db, A, B)["x"] == X_POOL[0]
    assert bind_json(db, A, C)["x"] == X_POOL[1]
    full = run(db, "bind", A, "+8618600186000")
    assert full.exit_code == 2 and "no free privacy number" in full.output
    assert_no_real_number(full.output)


def test_a_released_party_is_quarantined_from_strangers_on_that_x(db: Path) -> None:
    binding_id = str(bind_json(db, A, B, "--x", X)["id"])
    assert run(db, "unbind", binding_id).exit_code == 0
    refused = run(db, "bind", A, C, "--x", X)
    assert refused.exit_code == 2
    assert "quarantined" in refused.output and "'--x'" in refused.output
    assert_no_real_number(refused.output)


def test_bind_request_id_is_idempotent(db: Path) -> None:
    run(db, "pool", "add", X_POOL[0])
    first = bind_json(db, A, B, "--request-id", "r-1")
    assert bind_json(db, A, B, "--request-id", "r-1")["id"] == first["id"]
    other = run(db, "bind", A, C, "--request-id", "r-1")
    assert other.exit_code == 2 and "'--request-id'" in other.output


def test_pool_add_list_stats_rm(db: Path) -> None:
    added = run(db, "pool", "add", X_POOL[0], "700 1234 5678 0001", "--tenant", "acme",
                "--city", "beijing", "--json")  # fmt: skip
    assert json.loads(added.stdout) == {"added": 2, "already_present": 0}
    assert run(db, "pool", "add", X_POOL[2]).exit_code == 0
    again = run(db, "pool", "add", X_POOL[2])
    assert "already in the pool 1" in again.stdout
    bind_json(db, A, B, "--tenant", "acme", "--city", "beijing")
    table = run(db, "pool", "list").stdout
    assert "(shared)" in table and "beijing" in table and "acme" in table
    listed = json.loads(run(db, "pool", "list", "--json").stdout)
    assert [(n["x"], n["live_bindings"]) for n in listed] == [
        (X_POOL[0], 1),
        (X_POOL[1], 0),
        (X_POOL[2], 0),
    ]
    stats = json.loads(run(db, "pool", "stats", "--json").stdout)
    assert (stats["numbers"], stats["live_bindings"], stats["free_capacity"]) == (3, 1, 14999)
    assert "free_capacity" in run(db, "pool", "stats").stdout
    busy = run(db, "pool", "rm", X_POOL[0])
    assert busy.exit_code == 2 and "live bindings" in busy.output
    assert run(db, "pool", "rm", X_POOL[1]).exit_code == 0
    missing = run(db, "pool", "rm", X_POOL[1])
    assert missing.exit_code == 2 and "not in the number pool" in missing.output


@pytest.mark.parametrize(
    "args",
    [
        ["pool", "add", "70012345678"],
        ["pool", "add", "--range", f"{X_POOL[1]}-{X_POOL[0]}"],
        ["pool", "add"],
    ],
)
def test_pool_add_usage_errors(db: Path, args: list[str]) -> None:
    assert run(db, *args).exit_code == 2


def test_apikey_create_list_revoke(db: Path) -> None:
    from bindings.keys import authenticate
    from proxy.db import open_database

    created = run(db, "apikey", "create", "--tenant", "acme", "--admin", "--json")
    assert created.exit_code == 0, created.output
    value = json.loads(created.stdout)
    token = value["key"]
    assert token.startswith("ppk.") and value["admin"] is True
    conn = open_database(db)
    stored = conn.execute("SELECT secret_hash FROM api_keys").fetchone()[0]
    assert token.split(".")[2] not in stored, "only the hash is stored"
    found = authenticate(conn, token)
    assert found is not None and found.tenant == "acme"
    plain = run(db, "apikey", "create", "--tenant", "globex")
    assert plain.stdout.startswith("ppk.")
    table = run(db, "apikey", "list").stdout
    assert value["id"] in table and "globex" in table and token not in table
    assert run(db, "apikey", "revoke", value["id"]).exit_code == 0
    assert authenticate(conn, token) is None
    conn.close()
    assert run(db, "apikey", "revoke", "k_nope").exit_code == 2


def test_api_rejects_a_bad_listen_address(db: Path) -> None:
    result = run(db, "api", "--listen", "nowhere")
    assert result.exit_code == 2 and "HOST:PORT" in result.output
