"""Schema migration 3 of the privproxy database (issue #5): hash-chain checkpoints and
retention of call records.

Statements run in order inside one transaction by ``proxy.db.migrate``. The chain itself
(``prev_hash``, ``hash``) has columns since version 1; the encoding is in
``proxy/cdr/chain.py``.
"""

from __future__ import annotations

from typing import Final

CDR_SCHEMA_V3: Final[tuple[str, ...]] = (
    # Per-record salt of the commitments to the personal fields; NULL once purged.
    "ALTER TABLE cdrs ADD COLUMN salt TEXT",
    "ALTER TABLE cdrs ADD COLUMN caller_commit TEXT",
    "ALTER TABLE cdrs ADD COLUMN callee_commit TEXT",
    "ALTER TABLE cdrs ADD COLUMN a_call_id_commit TEXT",
    # The cdr_redactions entry that purged this record's personal fields, NULL while live.
    "ALTER TABLE cdrs ADD COLUMN redaction INTEGER REFERENCES cdr_redactions (seq)",
    # Derived durations, as documented in the README; computed, so never out of step.
    "ALTER TABLE cdrs ADD COLUMN ring_s REAL GENERATED ALWAYS AS ("
    " CASE WHEN ring_at IS NULL THEN NULL"
    " ELSE round(coalesce(answer_at, end_at) - ring_at, 3) END) VIRTUAL",
    "ALTER TABLE cdrs ADD COLUMN talk_s REAL GENERATED ALWAYS AS ("
    " CASE WHEN answer_at IS NULL THEN 0.0 ELSE round(end_at - answer_at, 3) END) VIRTUAL",
    "CREATE INDEX cdrs_live_invite_at ON cdrs (invite_at) WHERE salt IS NOT NULL",
    # One checkpoint per UTC day: the chain head at the time it was taken.
    """
    CREATE TABLE cdr_checkpoints (
        day         TEXT    PRIMARY KEY,
        seq         INTEGER NOT NULL,
        count       INTEGER NOT NULL,
        head_hash   TEXT    NOT NULL,
        created_at  REAL    NOT NULL,
        key_id      TEXT,
        signature   TEXT
    )
    """,
    # One row per purge run: which records it redacted and a digest of what it left.
    """
    CREATE TABLE cdr_redactions (
        seq         INTEGER PRIMARY KEY,
        at          REAL    NOT NULL,
        cutoff      REAL    NOT NULL,
        first_seq   INTEGER,
        last_seq    INTEGER,
        count       INTEGER NOT NULL,
        digest      TEXT    NOT NULL,
        key_id      TEXT    NOT NULL,
        signer      TEXT,
        signature   TEXT
    )
    """,
)
