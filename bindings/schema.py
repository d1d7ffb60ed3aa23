"""Schema migration 2 of the privproxy database (issue #4): number pool, tenants, API keys,
idempotent binding creation; the number blocklist (issue #6).

Statements run in order inside one transaction by ``proxy.db.migrate``.

Quarantine has no table of its own: a released (party, X) pair is quarantined while the
binding's ``ended_at`` (or the lapsed ``expires_at``) is younger than the store's quarantine
period, so changing the period applies to past releases too and nothing has to be swept.
"""

from __future__ import annotations

from typing import Final

BINDINGS_SCHEMA_V2: Final[tuple[str, ...]] = (
    # Client-chosen idempotency key, unique per tenant (a retried POST returns the original).
    "ALTER TABLE bindings ADD COLUMN request_id TEXT",
    "CREATE UNIQUE INDEX bindings_request ON bindings (tenant, request_id)"
    " WHERE request_id IS NOT NULL",
    "CREATE INDEX bindings_tenant_created ON bindings (tenant, created_at)",
    """
    CREATE TABLE tenants (
        id          TEXT PRIMARY KEY,
        created_at  REAL NOT NULL
    )
    """,
    # tenant NULL: the shared pool, open to every tenant. live_count is kept by the triggers
    # below so that the allocator reads a number's load without counting its bindings.
    """
    CREATE TABLE pool_numbers (
        seq         INTEGER PRIMARY KEY,
        x           TEXT    NOT NULL UNIQUE,
        tenant      TEXT,
        city        TEXT,
        added_at    REAL    NOT NULL,
        live_count  INTEGER NOT NULL DEFAULT 0 CHECK (live_count >= 0)
    )
    """,
    "CREATE INDEX pool_tenant_seq ON pool_numbers (tenant, seq)",
    "CREATE INDEX pool_tenant_city_seq ON pool_numbers (tenant, city, seq)",
    """
    CREATE TRIGGER pool_count_on_insert AFTER INSERT ON bindings
    WHEN NEW.status = 'active'
    BEGIN
        UPDATE pool_numbers SET live_count = live_count + 1 WHERE x = NEW.x;
    END
    """,
    """
    CREATE TRIGGER pool_count_on_end AFTER UPDATE OF status ON bindings
    WHEN OLD.status = 'active' AND NEW.status <> 'active'
    BEGIN
        UPDATE pool_numbers SET live_count = live_count - 1 WHERE x = NEW.x;
    END
    """,
    # Only the SHA-256 of a key's secret is kept; the key itself is shown once at creation.
    """
    CREATE TABLE api_keys (
        id          TEXT    PRIMARY KEY,
        tenant      TEXT    NOT NULL REFERENCES tenants (id),
        admin       INTEGER NOT NULL CHECK (admin IN (0, 1)),
        secret_hash TEXT    NOT NULL,
        label       TEXT,
        created_at  REAL    NOT NULL,
        revoked_at  REAL
    )
    """,
    # Real numbers that may not call or be called through any privacy number
    # (bindings/blocklist.py). WITHOUT ROWID: the call path's check is one probe of this
    # primary-key B-tree, with the expiry read from the same leaf.
    """
    CREATE TABLE blocklist (
        number      TEXT    PRIMARY KEY,
        reason      TEXT    NOT NULL,
        created_at  REAL    NOT NULL,
        created_by  TEXT    NOT NULL,
        expires_at  REAL
    ) WITHOUT ROWID
    """,
    "CREATE INDEX blocklist_created ON blocklist (created_at)",
)
