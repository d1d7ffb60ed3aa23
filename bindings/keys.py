"""API keys of the tenants (business users) and the operator's admin keys.

A key reads ``ppk.<key id>.<secret>``; the secret is 32 random bytes (256 bits) and only its
SHA-256 is stored, so a copy of the database grants no access. A slow password hash adds
nothing for a secret of that entropy. The stored hash is compared in constant time.
Creating and revoking keys is audited (``apikey.create``, ``apikey.revoke``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from dataclasses import dataclass
from typing import Any, Final

from proxy import audit
from proxy.db import transaction

KEY_PREFIX: Final = "ppk"
_SECRET_BYTES: Final = 32
_KEY_COLUMNS: Final = "id, tenant, admin, label, created_at, revoked_at"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key's record; the secret itself is never stored."""

    id: str
    tenant: str
    admin: bool
    label: str | None
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class ApiKeyNotFound(LookupError):
    """No key has this id."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _key_from_row(row: tuple[Any, ...]) -> ApiKey:
    key_id, tenant, admin, label, created_at, revoked_at = row
    return ApiKey(key_id, tenant, bool(admin), label, created_at, revoked_at)


def create_api_key(
    conn: sqlite3.Connection,
    *,
    tenant: str,
    admin: bool,
    now: float,
    actor: str,
    label: str | None = None,
) -> tuple[ApiKey, str]:
    """Make a key for ``tenant``; return its record and the full key, shown only now."""
    if not tenant or not tenant.isprintable():
        raise ValueError("tenant must be a non-empty printable name")
    key = ApiKey(
        id="k_" + secrets.token_hex(8),
        tenant=tenant,
        admin=admin,
        label=label,
        created_at=now,
    )
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    with transaction(conn):
        conn.execute("INSERT OR IGNORE INTO tenants (id, created_at) VALUES (?, ?)", (tenant, now))
        conn.execute(
            "INSERT INTO api_keys (id, tenant, admin, secret_hash, label, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (key.id, tenant, int(admin), _hash(secret), label, now),
        )
        audit.append(
            conn,
            at=now,
            actor=actor,
            action="apikey.create",
            subject=key.id,
            after={"tenant": tenant, "admin": admin, "label": label},
        )
    return key, f"{KEY_PREFIX}.{key.id}.{secret}"


def authenticate(conn: sqlite3.Connection, token: str) -> ApiKey | None:
    """The active key ``token`` spells, or None (malformed, unknown, revoked, wrong)."""
    prefix, _, rest = token.partition(".")
    key_id, _, secret = rest.partition(".")
    if prefix != KEY_PREFIX or not key_id or not secret:
        return None
    row = conn.execute(
        f"SELECT {_KEY_COLUMNS}, secret_hash FROM api_keys WHERE id = ?", (key_id,)
    ).fetchone()
    if row is None:
        return None
    key = _key_from_row(row[:-1])
    if not hmac.compare_digest(row[-1], _hash(secret)) or not key.active:
        return None
    return key


def list_api_keys(conn: sqlite3.Connection, tenant: str | None = None) -> list[ApiKey]:
    """Keys in creation order, revoked ones included, optionally of one tenant."""
    rows = conn.execute(
        f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE (:tenant IS NULL OR tenant = :tenant)"
        " ORDER BY created_at, id",
        {"tenant": tenant},
    ).fetchall()
    return [_key_from_row(row) for row in rows]


def revoke_api_key(conn: sqlite3.Connection, key_id: str, *, now: float, actor: str) -> ApiKey:
    """Revoke a key at once (revoking twice keeps the first time)."""
    with transaction(conn):
        row = conn.execute(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)
        ).fetchone()
        if row is None:
            raise ApiKeyNotFound(f"no API key {key_id}")
        key = _key_from_row(row)
        if not key.active:
            return key
        conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (now, key_id))
        audit.append(
            conn,
            at=now,
            actor=actor,
            action="apikey.revoke",
            subject=key_id,
            before={"tenant": key.tenant, "admin": key.admin},
        )
    return ApiKey(key.id, key.tenant, key.admin, key.label, key.created_at, now)
