"""Retention of call records: purge the real numbers of old records, keep everything else.

``purge_older_than`` takes every record whose ``invite_at`` is older than the cutoff and
still holds personal values, and in one transaction:

1. replaces ``caller`` and ``callee`` by ``h:`` + the first 24 hex characters of
   HMAC-SHA256(retention key, ``"party:" + number``) and ``a_call_id`` by the same over
   ``"call-id:" + value``: the same number always maps to the same token under one key,
   so per-party statistics survive, but without the key a token cannot be reversed by
   trying all numbers;
2. deletes the record's salt. The commitments to the personal fields stay, so the hash
   chain (``proxy.cdr.chain``, which covers commitments, never numbers) verifies exactly as
   before; without the salt they cannot be brute-forced;
3. appends a *redaction record* to ``cdr_redactions``: time, cutoff, first/last seq, count,
   the retention key id and ``digest`` = hex SHA-256 over, for each purged record in seq
   order, the netstrings (``len:value,``) of ``seq``, ``caller``, ``callee``, ``a_call_id``
   after replacement, signed with Ed25519 over ``redaction_message`` when a signing key is
   configured; each purged record points to it (``cdrs.redaction``);
4. appends ``cdr.purge`` to the audit log.

``verify --db`` checks every purged record against its redaction record, so changing a token
after a purge is caught too. No record is ever deleted: the chain has no holes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from proxy import audit
from proxy.cdr.chain import ms
from proxy.cdr.checkpoint import Checkpoint, public_key_id, take_checkpoint
from proxy.cdr.record import PURGED_PREFIX
from proxy.db import transaction

DAY_S: Final = 86_400.0
REDACTION_PREFIX: Final = "privproxy-cdr-redaction-v1"


def load_retention_key(path: Path, *, create: bool = True) -> bytes:
    """The HMAC key of purge tokens: 32 random bytes in a file (created 0600 if missing).

    It must live outside the database: with the key, a token can be matched against every
    possible number."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        if not create:
            raise
        key = os.urandom(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key)
    if len(key) < 16:
        raise ValueError(f"retention key {path} is shorter than 16 bytes")
    return key


def retention_key_id(key: bytes) -> str:
    return hashlib.sha256(b"privproxy-retention-key:" + key).hexdigest()[:16]


def token(key: bytes, domain: str, value: str | None) -> str | None:
    """The keyed token that replaces a personal value; NULL and empty stay as they are."""
    if not value or value.startswith(PURGED_PREFIX):
        return value
    mac = hmac.new(key, f"{domain}:{value}".encode(), hashlib.sha256).hexdigest()
    return PURGED_PREFIX + mac[:24]


def _netstring(value: object) -> bytes:
    data = b"" if value is None else str(value).encode()
    return b"%d:%s," % (len(data), data)


def redaction_digest(rows: list[tuple[int, str | None, str | None, str | None]]) -> str:
    """Digest over (seq, caller, callee, a_call_id) of purged records, in seq order."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(b"".join(_netstring(value) for value in row))
    return digest.hexdigest()


def redaction_message(
    seq: int,
    at: float,
    cutoff: float,
    first_seq: int | None,
    last_seq: int | None,
    count: int,
    digest: str,
    key_id: str,
) -> bytes:
    """The bytes a redaction record's signature covers (``\\n``-separated, times in ms)."""
    fields = (seq, ms(at), ms(cutoff), first_seq or 0, last_seq or 0, count, digest, key_id)
    return "\n".join((REDACTION_PREFIX, *(str(f) for f in fields))).encode()


def purge_older_than(
    conn: sqlite3.Connection,
    days: float,
    now: float,
    key: bytes,
    *,
    actor: str = "retention",
    signing_key: Ed25519PrivateKey | None = None,
    chunk: int = 50_000,
) -> int:
    """Purge the real numbers of records whose INVITE is more than ``days`` days before
    ``now``; return how many records were purged (0: nothing written at all).

    Safe to run while the writer is committing: it takes the write lock for at most
    ``chunk`` records at a time (each chunk is one transaction with its own redaction
    record and audit event), so the writer's commits wait well under its busy timeout."""
    if days < 0:
        raise ValueError("days must not be negative")
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    total = 0
    while True:
        purged = _purge_chunk(conn, days, now, key, actor, signing_key, chunk)
        total += purged
        if purged < chunk:
            return total


def _purge_chunk(
    conn: sqlite3.Connection,
    days: float,
    now: float,
    key: bytes,
    actor: str,
    signing_key: Ed25519PrivateKey | None,
    chunk: int,
) -> int:
    cutoff = now - days * DAY_S
    kid = retention_key_id(key)
    with transaction(conn):
        rows = conn.execute(
            "SELECT seq, caller, callee, a_call_id FROM cdrs"
            " WHERE salt IS NOT NULL AND invite_at < ? ORDER BY seq LIMIT ?",
            (cutoff, chunk),
        ).fetchall()
        if not rows:
            return 0
        at = round(now, 3)
        redaction = conn.execute(
            "INSERT INTO cdr_redactions (at, cutoff, count, digest, key_id)"
            " VALUES (?, ?, ?, '', ?)",
            (at, cutoff, len(rows), kid),
        ).lastrowid
        assert redaction is not None
        purged = [
            (
                int(seq),
                token(key, "party", caller),
                token(key, "party", callee),
                token(key, "call-id", a_call_id),
            )
            for seq, caller, callee, a_call_id in rows
        ]
        conn.executemany(
            "UPDATE cdrs SET caller = ?, callee = ?, a_call_id = ?, salt = NULL, redaction = ?"
            " WHERE seq = ?",
            [(c, e, a, redaction, seq) for seq, c, e, a in purged],
        )
        digest = redaction_digest(purged)
        first_seq, last_seq = purged[0][0], purged[-1][0]
        signer = signature = None
        if signing_key is not None:
            signer = public_key_id(signing_key.public_key())
            message = redaction_message(
                redaction, at, cutoff, first_seq, last_seq, len(purged), digest, kid
            )
            signature = signing_key.sign(message).hex()
        conn.execute(
            "UPDATE cdr_redactions SET first_seq = ?, last_seq = ?, digest = ?, signer = ?,"
            " signature = ? WHERE seq = ?",
            (first_seq, last_seq, digest, signer, signature, redaction),
        )
        audit.append(
            conn,
            at=at,
            actor=actor,
            action="cdr.purge",
            subject=f"redaction:{redaction}",
            after={
                "count": len(purged),
                "first_seq": first_seq,
                "last_seq": last_seq,
                "older_than_days": days,
                "cutoff": cutoff,
                "retention_key_id": kid,
            },
            reason=f"retention: personal numbers older than {days:g} days",
        )
    return len(purged)


def retention_status(conn: sqlite3.Connection) -> dict[str, object]:
    """What an auditor asks about retention: how many records are purged, the oldest record
    still holding real numbers, the last purge runs."""
    total, purged = conn.execute("SELECT COUNT(*), COUNT(*) - COUNT(salt) FROM cdrs").fetchone()
    oldest_live = conn.execute("SELECT MIN(invite_at) FROM cdrs WHERE salt IS NOT NULL").fetchone()[
        0
    ]
    runs = conn.execute(
        "SELECT seq, at, cutoff, first_seq, last_seq, count, key_id, signature IS NOT NULL"
        " FROM cdr_redactions ORDER BY seq DESC LIMIT 20"
    ).fetchall()
    return {
        "records": int(total),
        "purged": int(purged),
        "oldest_unpurged_invite_at": oldest_live,
        "runs": [
            {
                "redaction": seq,
                "at": at,
                "cutoff": cutoff,
                "first_seq": first,
                "last_seq": last,
                "count": count,
                "retention_key_id": kid,
                "signed": bool(signed),
            }
            for seq, at, cutoff, first, last, count, kid, signed in runs
        ],
    }


def daily_maintenance(
    conn: sqlite3.Connection,
    now: float,
    *,
    retention_days: float | None,
    retention_key: bytes | None,
    signing_key: Ed25519PrivateKey | None = None,
) -> tuple[int, Checkpoint]:
    """What ``serve`` runs once a day: purge records older than ``retention_days`` (when
    set; it needs ``retention_key``), then store the day's checkpoint. Returns (records
    purged, checkpoint). Blocking (SQLite): run it off the event loop thread."""
    purged = 0
    if retention_days is not None:
        if retention_key is None:
            raise ValueError("a retention period needs a retention key")
        purged = purge_older_than(conn, retention_days, now, retention_key, signing_key=signing_key)
    return purged, take_checkpoint(conn, now, signing_key)
