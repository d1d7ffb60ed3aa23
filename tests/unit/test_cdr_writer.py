"""Call records: the pure value and mappings, and the batched writer."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from proxy import db
from proxy.cdr.record import (
    CALL_RECORD_FIELDS,
    CallRecord,
    disposition_for_status,
    masked,
    q850_for_status,
)
from proxy.cdr.writer import CdrWriter, read_records

A = "+8613800138000"
B = "+8613900139000"
X = "700123456789012"
T0 = 1_800_000_000.0


def answered(n: int = 0, **changes: object) -> CallRecord:
    record = CallRecord(
        id=f"c_{n:06d}",
        tenant="ride",
        binding_id="b_abcdefghijklmnopqrst",
        x=X,
        caller=A,
        callee=B,
        direction="a_to_b",
        a_call_id=f"a-{n}@softswitch",
        b_call_id=f"b-{n}@privproxy",
        invite_at=T0 + n,
        ring_at=T0 + n + 1.5,
        answer_at=T0 + n + 6.25,
        end_at=T0 + n + 66.25,
        disposition="answered",
        sip_status=200,
        q850_cause=16,
        released_by="callee",
        node="node-1",
    )
    return replace(record, **changes)  # type: ignore[arg-type]


def rejected(n: int = 0) -> CallRecord:
    return CallRecord(
        id=f"r_{n:06d}",
        tenant="default",
        x=X,
        caller=A,
        invite_at=T0 + n,
        end_at=T0 + n,
        disposition="rejected",
        reject_reason="no_binding",
        sip_status=404,
        q850_cause=1,
        released_by="proxy",
        node="node-1",
    )


# ── SIP status → Q.850 cause and disposition ───────────────────────────────────────────────


@pytest.mark.parametrize(
    ("status", "cause"),
    [
        (200, 16),
        (403, 21),
        (404, 1),
        (408, 102),
        (410, 22),
        (480, 18),
        (484, 28),
        (486, 17),
        (487, 16),
        (488, 65),
        (500, 41),
        (502, 38),
        (503, 41),
        (504, 102),
        (600, 17),
        (603, 21),
        (604, 1),
        (499, 127),
        (599, 127),
    ],
)
def test_q850_for_status_follows_rfc3398(status: int, cause: int) -> None:
    assert q850_for_status(status) == cause


def test_q850_for_status_after_ringing_and_with_reason_header() -> None:
    assert q850_for_status(480, alerted=True) == 19
    assert q850_for_status(408, alerted=True) == 19
    assert q850_for_status(486, alerted=True) == 17
    assert q850_for_status(503, reason_cause=34) == 34
    with pytest.raises(ValueError):
        q850_for_status(503, reason_cause=128)
    for bad in (100, 180, 199, 700):
        with pytest.raises(ValueError):
            q850_for_status(bad)


@pytest.mark.parametrize(
    ("status", "disposition"),
    [
        (200, "answered"),
        (202, "answered"),
        (486, "busy"),
        (600, "busy"),
        (603, "busy"),
        (408, "no_answer"),
        (480, "no_answer"),
        (487, "cancelled"),
        (404, "failed"),
        (503, "failed"),
        (488, "failed"),
    ],
)
def test_disposition_for_status(status: int, disposition: str) -> None:
    assert disposition_for_status(status) == disposition


# ── the CallRecord value ───────────────────────────────────────────────────────────────────


def test_durations_and_millisecond_precision() -> None:
    record = answered(invite_at=T0 + 0.0004, ring_at=T0 + 1.0006)
    assert record.invite_at == T0
    assert record.ring_at == T0 + 1.001
    assert record.pdd_s == 1.001
    assert record.ring_s == 5.249
    assert record.talk_s == 60.0
    assert record.duration_s == 66.25


def test_unanswered_and_unrung_durations() -> None:
    busy = answered(answer_at=None, disposition="busy", sip_status=486, end_at=T0 + 4)
    assert busy.talk_s == 0.0
    assert busy.ring_s == 2.5
    refused = rejected()
    assert (refused.ring_s, refused.pdd_s, refused.talk_s) == (None, None, 0.0)


@pytest.mark.parametrize(
    "changes",
    [
        {"disposition": "rejected"},  # no reject_reason
        {"reject_reason": "no_binding"},  # reason on an answered call
        {"answer_at": None},  # answered without an answer time
        {"disposition": "busy"},  # an answer time on a busy call
        {"disposition": "hung"},
        {"direction": "sideways"},
        {"released_by": "nobody"},
        {"sip_status": 180},
        {"end_at": T0 + 5},  # ends before the answer
        {"ring_at": T0 - 1},  # rings before the INVITE
    ],
)
def test_inconsistent_records_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        answered(0, **changes)


def test_masked_hides_real_numbers_only() -> None:
    record = masked(answered())
    assert (record.caller, record.callee, record.x) == ("138****8000", "139****9000", X)
    assert masked(rejected()).callee is None


# ── the writer ─────────────────────────────────────────────────────────────────────────────


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cdr.db"


@pytest.fixture
def writer(db_path: Path) -> Iterator[CdrWriter]:
    cdr_writer = CdrWriter(db_path, batch_rows=500, batch_ms=60_000)
    cdr_writer.start()
    yield cdr_writer
    assert cdr_writer.close(timeout=10)


def test_flush_commits_everything_submitted(writer: CdrWriter, db_path: Path) -> None:
    records = [answered(n) for n in range(250)] + [rejected(n) for n in range(3)]
    for record in records:
        writer.submit(record)
    assert writer.submitted == 253
    assert writer.flush(timeout=10)
    assert (writer.written, writer.queued, writer.dropped) == (253, 0, 0)
    assert read_records(db_path, limit=1000, newest_first=False) == sorted(
        records, key=lambda r: (r.invite_at, r.id.startswith("r"))
    )


def test_rows_read_back_equal_and_newest_first(writer: CdrWriter, db_path: Path) -> None:
    for n in range(5):
        writer.submit(answered(n))
    writer.submit(rejected(10))
    assert writer.flush(timeout=10)
    newest = read_records(db_path, limit=2)
    assert newest == [rejected(10), answered(4)]
    assert read_records(db_path, limit=2, offset=2) == [answered(3), answered(2)]
    assert read_records(db_path, tenant="default") == [rejected(10)]
    assert read_records(db_path, since=T0 + 1, until=T0 + 3) == [answered(2), answered(1)]
    assert read_records(db_path, x="700999999999999") == []


def test_batches_close_at_batch_rows(db_path: Path) -> None:
    cdr_writer = CdrWriter(db_path, batch_rows=3, batch_ms=3_600_000)
    cdr_writer.start()
    for n in range(7):
        cdr_writer.submit(answered(n))
    # Two full batches commit on their own; the seventh row waits for the hour-long window.
    assert cdr_writer.wait_written(6, timeout=10)
    assert cdr_writer.written == 6
    assert cdr_writer.queued == 1
    assert cdr_writer.flush(timeout=10)
    assert (cdr_writer.written, cdr_writer.batches) == (7, 3)
    assert cdr_writer.close(timeout=10)


def test_rows_after_the_full_batches_wait_for_their_window(db_path: Path) -> None:
    """All seven rows are queued when the writer first wakes: it commits the two full
    batches and leaves the seventh to its window, not to ride along early."""
    cdr_writer = CdrWriter(db_path, batch_rows=3, batch_ms=3_600_000)
    for n in range(7):
        cdr_writer.submit(answered(n))
    cdr_writer.start()
    assert cdr_writer.wait_written(6, timeout=10)
    assert not cdr_writer.wait_written(7, timeout=0.3)
    assert (cdr_writer.written, cdr_writer.batches) == (6, 2)
    assert cdr_writer.flush(timeout=10)
    assert (cdr_writer.written, cdr_writer.batches) == (7, 3)
    assert cdr_writer.close(timeout=10)
    assert sorted(r.id for r in read_records(db_path)) == [answered(n).id for n in range(7)]


def test_carried_rows_keep_the_window_of_their_batch(db_path: Path) -> None:
    """A row carried over after a full batch is committed when the window that began
    with its batch's first row ends, not a whole window later."""
    cdr_writer = CdrWriter(db_path, batch_rows=2, batch_ms=400)
    for n in range(3):
        cdr_writer.submit(answered(n))
    started = time.monotonic()
    cdr_writer.start()
    assert cdr_writer.wait_written(3, timeout=10)
    assert time.monotonic() - started < 0.4 + 0.3  # one window (and scheduling slack)
    assert cdr_writer.close(timeout=10)


def test_a_partial_batch_commits_when_its_window_ends(db_path: Path) -> None:
    cdr_writer = CdrWriter(db_path, batch_rows=1000, batch_ms=20)
    cdr_writer.start()
    cdr_writer.submit(answered(1))
    assert cdr_writer.wait_written(1, timeout=10)
    assert read_records(db_path) == [answered(1)]
    assert cdr_writer.close(timeout=10)


def test_close_commits_what_is_queued_and_refuses_more(db_path: Path) -> None:
    cdr_writer = CdrWriter(db_path, batch_ms=3_600_000)
    cdr_writer.start()
    for n in range(10):
        cdr_writer.submit(answered(n))
    assert cdr_writer.close(timeout=10)
    assert len(read_records(db_path)) == 10
    with pytest.raises(RuntimeError):
        cdr_writer.submit(answered(11))


def test_a_checkpoint_thread_copies_commits_into_the_database_file(db_path: Path) -> None:
    cdr_writer = CdrWriter(db_path, batch_rows=20, batch_ms=3_600_000)
    cdr_writer.start()
    # A reader keeps the WAL file in place after the writer's connections close.
    reader = db.connect(db_path)
    reader.execute("SELECT count(*) FROM cdrs").fetchone()
    for n in range(100):
        cdr_writer.submit(answered(n))
    assert cdr_writer.close(timeout=10)
    assert cdr_writer.batches == 5
    # Closing stops the checkpoint thread after one last checkpoint: nothing committed is
    # left only in the WAL.
    assert cdr_writer.checkpoints >= 1
    busy, wal_frames, copied = reader.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    # 100 records are far below the 1,000 pages at which SQLite checkpoints on its own.
    assert busy == 0 and copied == wal_frames > 0
    reader.close()
    assert len(read_records(db_path, limit=1000)) == 100


def test_records_submitted_before_start_are_written(db_path: Path) -> None:
    cdr_writer = CdrWriter(db_path)
    cdr_writer.submit(answered(1))
    cdr_writer.start()
    assert cdr_writer.flush(timeout=10)
    assert read_records(db_path) == [answered(1)]
    assert cdr_writer.close(timeout=10)


def test_a_duplicate_id_drops_one_row_not_the_batch(writer: CdrWriter, db_path: Path) -> None:
    writer.submit(answered(1))
    assert writer.flush(timeout=10)
    writer.submit(answered(2))
    writer.submit(answered(1, invite_at=T0 + 50, ring_at=None, answer_at=T0 + 51))
    writer.submit(answered(3))
    assert writer.flush(timeout=10)
    assert (writer.written, writer.dropped, writer.queued) == (3, 1, 0)
    assert [r.id for r in read_records(db_path)] == ["c_000003", "c_000002", "c_000001"]


def test_a_locked_database_delays_but_loses_nothing(writer: CdrWriter, db_path: Path) -> None:
    blocker = db.connect(db_path)
    blocker.execute(f"PRAGMA busy_timeout = {0}")
    blocker.execute("BEGIN IMMEDIATE")
    writer.submit(answered(1))
    assert not writer.flush(timeout=0.2)
    assert writer.written == 0
    blocker.execute("COMMIT")
    blocker.close()
    assert writer.flush(timeout=10)
    assert read_records(db_path) == [answered(1)]


def test_committed_rows_survive_a_writer_that_never_closes(db_path: Path) -> None:
    abandoned = CdrWriter(db_path)
    abandoned.start()
    abandoned.submit(answered(1))
    assert abandoned.flush(timeout=10)
    # The daemon thread is still running and holds its connection; a reader sees the row.
    assert read_records(db_path) == [answered(1)]
    assert abandoned.close(timeout=10)


def test_start_reports_an_unopenable_database(tmp_path: Path) -> None:
    cdr_writer = CdrWriter(tmp_path / "missing-dir" / "cdr.db")
    with pytest.raises(sqlite3.OperationalError):
        cdr_writer.start()


def test_writer_chains_records_at_commit_time(writer: CdrWriter, db_path: Path) -> None:
    writer.submit(answered(1))
    writer.submit(rejected(2))
    assert writer.flush(timeout=10)
    conn = db.open_database(db_path)
    columns = [row[1] for row in conn.execute("PRAGMA table_xinfo(cdrs)")]
    assert columns[: len(CALL_RECORD_FIELDS) + 3] == [
        "seq",
        *CALL_RECORD_FIELDS,
        "prev_hash",
        "hash",
    ]
    assert {"salt", "caller_commit", "ring_s", "talk_s"} <= set(columns)
    rows = conn.execute(
        "SELECT seq, prev_hash, hash, salt, ring_s, talk_s FROM cdrs ORDER BY seq"
    ).fetchall()
    assert [row[0] for row in rows] == [1, 2]
    assert rows[0][1] == "0" * 64
    assert rows[1][1] == rows[0][2] and len(rows[1][2]) == 64 and rows[0][2] != rows[1][2]
    assert rows[0][3] != rows[1][3] and len(rows[0][3]) == 32
    assert rows[0][4:] == (4.75, 60.0) and rows[1][4:] == (None, 0.0)
    indexes = {row[1] for row in conn.execute("PRAGMA index_list(cdrs)")}
    assert {"cdrs_invite_at", "cdrs_x", "cdrs_tenant"} <= indexes
    conn.close()


def test_writer_continues_the_chain_of_an_earlier_writer(db_path: Path) -> None:
    for n in range(3):
        cdr_writer = CdrWriter(db_path, batch_rows=2)
        cdr_writer.start()
        cdr_writer.submit(answered(2 * n))
        cdr_writer.submit(answered(2 * n + 1))
        assert cdr_writer.close(timeout=10)
    conn = db.open_database(db_path)
    rows = conn.execute("SELECT seq, prev_hash, hash FROM cdrs ORDER BY seq").fetchall()
    conn.close()
    assert [row[0] for row in rows] == list(range(1, 7))
    assert all(rows[i][1] == rows[i - 1][2] for i in range(1, 6))


def test_writer_rejects_bad_batch_settings(db_path: Path) -> None:
    with pytest.raises(ValueError):
        CdrWriter(db_path, batch_rows=0)
    with pytest.raises(ValueError):
        CdrWriter(db_path, batch_ms=0)
