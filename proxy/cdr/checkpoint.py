"""Daily checkpoints of the CDR hash chain, signed with Ed25519 when a key is configured.

A checkpoint pins the chain head (seq, hash) and the record count at a moment; once an
auditor holds a signed checkpoint, rewriting any record at or before its ``seq`` (even with
every later hash recomputed) no longer verifies. The signed message is defined in
``proxy.cdr.chain``. Keys are PEM files: PKCS#8 for the private key (mode 0600), Subject
Public Key Info for the public one (``privproxy cdr keygen``).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from proxy.cdr.chain import GENESIS, checkpoint_message, key_id


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The chain head after ``count`` records, taken at ``created_at`` (epoch seconds)."""

    day: str
    seq: int
    count: int
    head_hash: str
    created_at: float
    key_id: str | None = None
    signature: str | None = None

    def message(self) -> bytes:
        return checkpoint_message(self.day, self.seq, self.count, self.head_hash, self.created_at)

    def as_json(self) -> dict[str, object]:
        return {
            "day": self.day,
            "seq": self.seq,
            "count": self.count,
            "head_hash": self.head_hash,
            "created_at": self.created_at,
            "key_id": self.key_id,
            "signature": self.signature,
        }


def public_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_id(key: Ed25519PublicKey) -> str:
    return key_id(public_raw(key))


def generate_keypair(private_path: Path) -> tuple[Path, str]:
    """Write a new Ed25519 private key (PEM, 0600) and ``<path>.pub``; return the public key
    path and the key id. Refuses to overwrite an existing key."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public_path = private_path.with_name(private_path.name + ".pub")
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return public_path, public_key_id(key.public_key())


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """A public key from a PEM file; a private key file is accepted too."""
    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        return load_signing_key(path).public_key()
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def signature_valid(public_key: Ed25519PublicKey, message: bytes, signature_hex: str) -> bool:
    try:
        public_key.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def utc_day(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


def take_checkpoint(
    conn: sqlite3.Connection, now: float, signing_key: Ed25519PrivateKey | None = None
) -> Checkpoint:
    """Store (replacing any earlier one of the same UTC day) and return a checkpoint of the
    current head, signed when ``signing_key`` is given."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        head = conn.execute("SELECT seq, hash FROM cdrs ORDER BY seq DESC LIMIT 1").fetchone()
        count = conn.execute("SELECT COUNT(*) FROM cdrs").fetchone()[0]
        seq, head_hash = (0, GENESIS) if head is None else (int(head[0]), str(head[1]))
        checkpoint = Checkpoint(utc_day(now), seq, int(count), head_hash, round(now, 3))
        if signing_key is not None:
            checkpoint = Checkpoint(
                checkpoint.day,
                seq,
                checkpoint.count,
                head_hash,
                checkpoint.created_at,
                public_key_id(signing_key.public_key()),
                signing_key.sign(checkpoint.message()).hex(),
            )
        conn.execute(
            "INSERT OR REPLACE INTO cdr_checkpoints"
            " (day, seq, count, head_hash, created_at, key_id, signature)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                checkpoint.day,
                checkpoint.seq,
                checkpoint.count,
                checkpoint.head_hash,
                checkpoint.created_at,
                checkpoint.key_id,
                checkpoint.signature,
            ),
        )
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return checkpoint


def checkpoints(conn: sqlite3.Connection) -> list[Checkpoint]:
    """Every stored checkpoint, oldest first."""
    rows = conn.execute(
        "SELECT day, seq, count, head_hash, created_at, key_id, signature"
        " FROM cdr_checkpoints ORDER BY seq, day"
    ).fetchall()
    return [Checkpoint(*row) for row in rows]


def latest_checkpoint(
    conn: sqlite3.Connection, *, at_most_seq: int | None = None
) -> Checkpoint | None:
    found = [c for c in checkpoints(conn) if at_most_seq is None or c.seq <= at_most_seq]
    return found[-1] if found else None
