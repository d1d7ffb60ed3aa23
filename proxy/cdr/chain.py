"""The tamper-evident hash chain over call records (issue #5), pure.

An auditor can re-implement ``verify`` from this docstring alone.

**Personal fields and commitments.** ``caller``, ``callee`` and ``a_call_id`` (the A leg's
Call-ID, which softswitches often build from the caller's number) are *personal fields*. The
chain never hashes them directly. Each record has a random 16-byte ``salt`` (32 lower-case hex
characters) and, for each personal field whose value is not NULL or empty, a *commitment*::

    commit(field) = hex(SHA-256(UTF-8(salt_hex + ":" + field_name + ":" + value)))

e.g. ``SHA-256("9f…e1:caller:+8613800138000")``. Commitments are stored beside the record
(``caller_commit``, ``callee_commit``, ``a_call_id_commit``; NULL when the value is NULL or
empty). Retention (``proxy.cdr.retention``) replaces the personal values of old records by
keyed tokens and deletes the salt; the commitments stay, so the chain still verifies, and
without the salt they cannot be brute-forced back to a number. Masked exports carry the
commitments but never the salt, so they too can be fully recomputed.

**Canonical encoding, version 1.** Every value becomes text:

- NULL and the empty string both become the empty text;
- integers are written in decimal ASCII without sign or leading zeros;
- the four times (``invite_at``, ``ring_at``, ``answer_at``, ``end_at``; epoch seconds, UTC)
  become integer *milliseconds* since the epoch, in decimal (``round(t * 1000)``);
- text fields are their UTF-8 bytes.

Each text ``v`` is framed as a netstring, ``len(v) ":" v ","`` where ``len`` is the byte
length in decimal. The canonical bytes of a record are ``b"privproxy-cdr-v1\\n"`` followed by
the netstrings of, in this order::

    seq, id, tenant, binding_id, x, caller_commit, callee_commit, direction,
    a_call_id_commit, b_call_id, invite_at, ring_at, answer_at, end_at, disposition,
    reject_reason, sip_status, q850_cause, released_by, node, prev_hash

and ``hash = hex(SHA-256(canonical))`` in lower case. ``prev_hash`` is the ``hash`` of the
record with ``seq - 1``; the first record (``seq`` 1) has ``prev_hash`` = 64 ``"0"``
characters (``GENESIS``). ``seq`` starts at 1 and increases by one per record, in commit
order, with no gaps.

**Checkpoints.** A checkpoint states "after ``count`` records the head was ``seq`` with hash
``head_hash``". Its signed message is the UTF-8 text (``\\n`` separated, no final newline)::

    privproxy-cdr-checkpoint-v1
    <day YYYY-MM-DD>
    <seq>
    <count>
    <head_hash>
    <created_at, integer milliseconds since the epoch>

signed with Ed25519 (RFC 8032); ``key_id`` is the first 16 hex characters of SHA-256 of the
raw 32-byte public key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

GENESIS: Final = "0" * 64
CANONICAL_PREFIX: Final = b"privproxy-cdr-v1\n"
PERSONAL_FIELDS: Final[tuple[str, ...]] = ("caller", "callee", "a_call_id")
COMMIT_COLUMNS: Final[tuple[str, ...]] = tuple(f"{name}_commit" for name in PERSONAL_FIELDS)
TIME_FIELDS: Final = frozenset({"invite_at", "ring_at", "answer_at", "end_at"})
CHAINED_FIELDS: Final[tuple[str, ...]] = (
    "seq",
    "id",
    "tenant",
    "binding_id",
    "x",
    "caller_commit",
    "callee_commit",
    "direction",
    "a_call_id_commit",
    "b_call_id",
    "invite_at",
    "ring_at",
    "answer_at",
    "end_at",
    "disposition",
    "reject_reason",
    "sip_status",
    "q850_cause",
    "released_by",
    "node",
    "prev_hash",
)
"""The fields the hash covers, in canonical order."""

CHECKPOINT_PREFIX: Final = "privproxy-cdr-checkpoint-v1"

_TIME_INDEXES: Final = frozenset(i for i, name in enumerate(CHAINED_FIELDS) if name in TIME_FIELDS)


def new_salt() -> str:
    """A fresh per-record salt: 16 random bytes as 32 hex characters."""
    return os.urandom(16).hex()


def commit(salt: str, field: str, value: str | None) -> str | None:
    """The commitment to one personal field; None for a NULL or empty value."""
    if not value:
        return None
    return hashlib.sha256(f"{salt}:{field}:{value}".encode()).hexdigest()


def ms(t: float | None) -> int | None:
    """Epoch seconds → integer milliseconds, the canonical form of a time."""
    return None if t is None else round(t * 1000)


def canonical(values: Sequence[object]) -> bytes:
    """The canonical bytes of a record given as ``CHAINED_FIELDS`` values, with the four
    times already in integer milliseconds (or None). Raises TypeError/ValueError for a value
    that has no canonical form (a float, a negative integer)."""
    if len(values) != len(CHAINED_FIELDS):
        raise ValueError(f"expected {len(CHAINED_FIELDS)} values, got {len(values)}")
    parts: list[str] = []
    append = parts.append
    for value in values:
        if value is None:
            append("0:,")
            continue
        kind = type(value)
        if kind is str:
            text: str = value  # type: ignore[assignment]
        elif kind is int and value >= 0:  # type: ignore[operator]
            text = str(value)
        else:
            raise TypeError(f"no canonical form for {value!r}")
        size = len(text) if text.isascii() else len(text.encode())
        append(f"{size}:{text},")
    return CANONICAL_PREFIX + "".join(parts).encode()


def record_hash(values: Sequence[object]) -> str:
    """``hash`` of a record given as ``CHAINED_FIELDS`` values (times in milliseconds)."""
    return hashlib.sha256(canonical(values)).hexdigest()


def chained_values(row: Mapping[str, Any]) -> list[object]:
    """``CHAINED_FIELDS`` values from a mapping holding times in epoch seconds."""
    return [
        ms(row[name]) if i in _TIME_INDEXES else row[name] for i, name in enumerate(CHAINED_FIELDS)
    ]


def hash_of_row(row: Mapping[str, Any]) -> str:
    """``hash`` of a stored row (times in seconds) whose ``prev_hash`` is set."""
    return record_hash(chained_values(row))


def link(rows: Iterable[dict[str, Any]], *, first_seq: int, prev_hash: str) -> tuple[int, str]:
    """Give each row (a dict with the record's fields, times in seconds, and its
    ``salt``) a commitment per personal field, ``seq``, ``prev_hash`` and ``hash``, in
    order, continuing the chain whose head is ``first_seq - 1`` with hash ``prev_hash``.
    Returns the new head (seq, hash)."""
    seq = first_seq - 1
    for row in rows:
        seq += 1
        salt = row["salt"]
        for name in PERSONAL_FIELDS:
            row[f"{name}_commit"] = commit(salt, name, row[name])
        row["seq"] = seq
        row["prev_hash"] = prev_hash
        prev_hash = hash_of_row(row)
        row["hash"] = prev_hash
    return seq, prev_hash


def checkpoint_message(day: str, seq: int, count: int, head_hash: str, created_at: float) -> bytes:
    """The exact bytes a checkpoint signature covers (see the module docstring)."""
    return "\n".join(
        (CHECKPOINT_PREFIX, day, str(seq), str(count), head_hash, str(ms(created_at)))
    ).encode()


def key_id(public_key_raw: bytes) -> str:
    """A short stable name for an Ed25519 public key."""
    return hashlib.sha256(public_key_raw).hexdigest()[:16]
