"""Opening the privproxy SQLite database: pragmas, schema version, migrations (design.md §3).

One file holds bindings and call records. Every connection runs in WAL mode with
``synchronous=NORMAL``: a crash or power cut can lose the last transactions but never
corrupts committed ones, and readers (the CLI, exports) never block the writers.

Connections are opened with ``isolation_level=None`` so that the code, not the sqlite3
module, decides where transactions start (``BEGIN IMMEDIATE`` for read-modify-write).

Migrations are an append-only list: entry *n* brings the schema from version *n* to
*n + 1*. Never edit a released entry; add a new one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from bindings.schema import BINDINGS_SCHEMA_V2
from proxy.cdr.schema import CDR_SCHEMA_V3

DEFAULT_BUSY_TIMEOUT_MS: Final = 5000

_SCHEMA_V1: Final[tuple[str, ...]] = (
    """
    CREATE TABLE bindings (
        seq         INTEGER PRIMARY KEY,
        id          TEXT    NOT NULL UNIQUE,
        tenant      TEXT    NOT NULL,
        model       TEXT    NOT NULL CHECK (model IN ('axb', 'axn', 'axe')),
        a           TEXT    NOT NULL,
        b           TEXT,
        x           TEXT    NOT NULL,
        extension   TEXT,
        created_at  REAL    NOT NULL,
        expires_at  REAL,
        direction   TEXT    NOT NULL CHECK (direction IN ('both', 'a_to_b', 'b_to_a')),
        max_call_s  INTEGER,
        order_id    TEXT,
        scenario    TEXT,
        status      TEXT    NOT NULL CHECK (status IN ('active', 'expired', 'released')),
        ended_at    REAL
    )
    """,
    # Routing: the live binding for (X, caller) in either role, one probe per role.
    "CREATE INDEX bindings_live_x_a ON bindings (x, a) WHERE status = 'active'",
    "CREATE INDEX bindings_live_x_b ON bindings (x, b) WHERE status = 'active'",
    # Routing misses: the latest ended binding for (X, caller), to answer "expired".
    "CREATE INDEX bindings_x_a_created ON bindings (x, a, created_at)",
    "CREATE INDEX bindings_x_b_created ON bindings (x, b, created_at)",
    "CREATE INDEX bindings_live_expires ON bindings (expires_at) WHERE status = 'active'",
    "CREATE INDEX bindings_a ON bindings (a)",
    "CREATE INDEX bindings_b ON bindings (b)",
    "CREATE INDEX bindings_created ON bindings (created_at)",
    # prev_hash and hash are reserved for the tamper-evident chain (issue #5); nullable until
    # the chain writer fills them.
    """
    CREATE TABLE cdrs (
        seq            INTEGER PRIMARY KEY,
        id             TEXT    NOT NULL UNIQUE,
        tenant         TEXT    NOT NULL,
        binding_id     TEXT,
        x              TEXT    NOT NULL,
        caller         TEXT    NOT NULL,
        callee         TEXT,
        direction      TEXT,
        a_call_id      TEXT,
        b_call_id      TEXT,
        invite_at      REAL    NOT NULL,
        ring_at        REAL,
        answer_at      REAL,
        end_at         REAL    NOT NULL,
        disposition    TEXT    NOT NULL,
        reject_reason  TEXT,
        sip_status     INTEGER NOT NULL,
        q850_cause     INTEGER,
        released_by    TEXT,
        node           TEXT    NOT NULL,
        prev_hash      TEXT,
        hash           TEXT
    )
    """,
    "CREATE INDEX cdrs_invite_at ON cdrs (invite_at)",
    "CREATE INDEX cdrs_x ON cdrs (x, invite_at)",
    "CREATE INDEX cdrs_tenant ON cdrs (tenant, invite_at)",
    # Append-only record of audited acts (proxy/audit.py): binding changes, unmasking, purges.
    """
    CREATE TABLE audit_log (
        seq      INTEGER PRIMARY KEY,
        at       REAL    NOT NULL,
        actor    TEXT    NOT NULL,
        action   TEXT    NOT NULL,
        subject  TEXT,
        before   TEXT,
        after    TEXT,
        reason   TEXT
    )
    """,
    "CREATE INDEX audit_log_at ON audit_log (at)",
    "CREATE INDEX audit_log_action ON audit_log (action, at)",
)

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    _SCHEMA_V1,
    BINDINGS_SCHEMA_V2,  # issue #4: pool, tenants, API keys (bindings/schema.py)
    CDR_SCHEMA_V3,  # issue #5: hash chain checkpoints, retention (proxy/cdr/schema.py)
)
"""Migration ``i`` takes the schema from version ``i`` to ``i + 1``."""

SCHEMA_VERSION: Final = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    """The database was written by a newer privproxy; refusing to touch it."""


def connect(path: str | Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """Open ``path`` with the privproxy pragmas, without touching the schema.

    ``check_same_thread=False`` only for a connection that is handed to another thread once
    and then used there alone.
    """
    conn = sqlite3.connect(
        str(path), isolation_level=None, check_same_thread=check_same_thread, timeout=0
    )
    # busy_timeout rather than the module's timeout: it also covers BEGIN IMMEDIATE.
    conn.execute(f"PRAGMA busy_timeout = {DEFAULT_BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def open_database(path: str | Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """Open ``path`` (created if missing) and bring its schema up to ``SCHEMA_VERSION``."""
    conn = connect(path, check_same_thread=check_same_thread)
    try:
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in the database (0 for a fresh file)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


def migrate(conn: sqlite3.Connection, migrations: Sequence[Sequence[str]] = MIGRATIONS) -> int:
    """Apply the missing migrations in one write transaction; return the resulting version.

    ``BEGIN IMMEDIATE`` takes the write lock before reading the version, so two processes
    starting together on a fresh file do not both create the tables.
    """
    if schema_version(conn) == len(migrations):
        return len(migrations)
    with transaction(conn):
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY,"
            " applied_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0))"
        )
        current = schema_version(conn)
        if current > len(migrations):
            raise SchemaTooNew(
                f"database schema version {current} is newer than this privproxy "
                f"({len(migrations)})"
            )
        for version in range(current, len(migrations)):
            for statement in migrations[version]:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version + 1,))
    return len(migrations)


def where_clause(filters: Mapping[str, tuple[str, object | None]]) -> tuple[str, dict[str, object]]:
    """`` WHERE …`` and its named parameters from ``{name: (condition, value)}``, keeping
    the filters whose value is not None (``{"x": ("x = :x", x)}``); "" when none is."""
    used = {name: (sql, value) for name, (sql, value) in filters.items() if value is not None}
    where = f" WHERE {' AND '.join(sql for sql, _ in used.values())}" if used else ""
    return where, {name: value for name, (_, value) in used.items()}


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        # SQLite may already have rolled back (e.g. SQLITE_FULL); a second ROLLBACK would
        # raise and hide the original error.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
