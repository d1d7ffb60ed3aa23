"""Batched CDR writer: the call path queues records, a thread commits them (design.md §5).

``submit`` only appends to a ``queue.SimpleQueue``; it never waits on the disk. A daemon
thread with its own connection drains the queue and commits with ``executemany`` every
``batch_rows`` rows or ``batch_ms`` milliseconds after the first row of a batch, whichever
comes first. In WAL mode a crash loses at most the batch not yet committed and never
damages committed rows.

The hash chain (``proxy.cdr.chain``) is computed here, at commit time, inside the write
transaction that also reads the current head: ``seq`` order is chain order, and the call path
never waits for a hash.

A commit that fails for a transient reason (lock held past busy_timeout, disk full) is
retried with back-off, keeping the rows. A batch the database rejects as such (a duplicate
record id) is written row by row and the offending rows are dropped and counted, so one bad
record cannot stall every record after it.
"""

from __future__ import annotations

import logging
import operator
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from proxy.cdr.chain import GENESIS, commit, ms, record_hash
from proxy.cdr.record import CALL_RECORD_FIELDS, CallRecord
from proxy.db import open_database

log = logging.getLogger(__name__)

_CHAIN_COLUMNS: Final = (
    "seq",
    "salt",
    "caller_commit",
    "callee_commit",
    "a_call_id_commit",
    "prev_hash",
    "hash",
)
_INSERT: Final = (
    f"INSERT INTO cdrs ({', '.join(CALL_RECORD_FIELDS + _CHAIN_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in CALL_RECORD_FIELDS + _CHAIN_COLUMNS)})"
)
_HEAD: Final = "SELECT seq, hash FROM cdrs ORDER BY seq DESC LIMIT 1"
_SELECT: Final = f"SELECT {', '.join(CALL_RECORD_FIELDS)} FROM cdrs"
_RETRY_FIRST_S: Final = 0.05
_RETRY_MAX_S: Final = 2.0


class _Flush:
    """Queue marker: set once every record queued before it is committed."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class _Stop:
    """Queue marker: commit what is left and end the thread."""

    __slots__ = ()


_STOP: Final = _Stop()

_QueueItem = CallRecord | _Flush | _Stop


_RECORD_VALUES: Final = operator.attrgetter(*CALL_RECORD_FIELDS)


def record_row(record: CallRecord) -> tuple[Any, ...]:
    """The ``cdrs`` column values of ``record`` in ``CALL_RECORD_FIELDS`` order."""
    values: tuple[Any, ...] = _RECORD_VALUES(record)
    return values


class CdrWriter:
    """Queue-fed batched writer of ``CallRecord``s into the ``cdrs`` table.

    ``submit`` may be called from the event loop thread before or after ``start``; the
    counters are plain ints written by one thread each, read anywhere.
    """

    def __init__(self, db_path: str | Path, batch_rows: int = 500, batch_ms: float = 200) -> None:
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        if batch_ms <= 0:
            raise ValueError("batch_ms must be positive")
        self.db_path = Path(db_path)
        self.batch_rows = batch_rows
        self.batch_s = batch_ms / 1000.0
        self._queue: queue.SimpleQueue[_QueueItem] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._closed = False
        self.submitted = 0
        """Records handed to ``submit``."""
        self.written = 0
        """Records committed to the database."""
        self.dropped = 0
        """Records the database refused (e.g. a duplicate id); each one is logged."""
        self.commit_errors = 0
        """Failed commit attempts, each retried."""
        self.batches = 0
        """Transactions committed."""
        self._progress = threading.Condition()

    @property
    def queued(self) -> int:
        """Records submitted and not yet committed or dropped."""
        return self.submitted - self.written - self.dropped

    def start(self) -> None:
        """Open the database (creating the schema) and start the writer thread.

        Raises what opening the database raised, in the calling thread.
        """
        if self._thread is not None:
            raise RuntimeError("CdrWriter already started")
        self._thread = threading.Thread(target=self._run, name="cdr-writer", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            self._thread.join()
            raise self._start_error

    def submit(self, record: CallRecord) -> None:
        """Queue ``record``; returns at once."""
        if self._closed:
            raise RuntimeError("CdrWriter is closed")
        self.submitted += 1
        self._queue.put(record)

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every record submitted so far is committed; False on timeout."""
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("CdrWriter is not running")
        marker = _Flush()
        self._queue.put(marker)
        return marker.done.wait(timeout)

    def wait_written(self, count: int, timeout: float | None = None) -> bool:
        """Block until at least ``count`` records are committed; False on timeout.

        Unlike ``flush`` this forces nothing: it waits for the batch policy to act.
        """
        with self._progress:
            return self._progress.wait_for(lambda: self.written >= count, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Commit everything submitted, stop the thread; False if it did not end in time."""
        if self._closed:
            return True
        self._closed = True
        if self._thread is None or not self._thread.is_alive():
            return True
        self._queue.put(_STOP)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            conn = open_database(self.db_path)
        except BaseException as exc:
            self._start_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self._drain(conn)
        finally:
            conn.close()

    def _drain(self, conn: sqlite3.Connection) -> None:
        batch: list[CallRecord] = []
        flushes: list[_Flush] = []
        deadline = 0.0
        stopping = False
        while not stopping:
            timeout = None if not batch else max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            # Take whatever else is already queued without waiting, up to a full batch.
            while item is not None:
                if isinstance(item, CallRecord):
                    if not batch:
                        deadline = time.monotonic() + self.batch_s
                    batch.append(item)
                elif isinstance(item, _Flush):
                    flushes.append(item)
                else:
                    stopping = True
                if len(batch) >= self.batch_rows or flushes or stopping:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = None
            if batch and (
                len(batch) >= self.batch_rows or flushes or stopping or time.monotonic() >= deadline
            ):
                self._commit(conn, batch)
                batch = []
            for marker in flushes:
                marker.done.set()
            flushes = []

    def _commit(self, conn: sqlite3.Connection, batch: Sequence[CallRecord]) -> None:
        delay = _RETRY_FIRST_S
        while True:
            try:
                self._insert(conn, batch)
            except sqlite3.IntegrityError:
                self._insert_one_by_one(conn, batch)
                return
            except sqlite3.Error:
                self.commit_errors += 1
                log.exception("CDR commit of %d rows failed; retrying in %.2fs", len(batch), delay)
                time.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
                continue
            self._count_written(len(batch))
            return

    def _count_written(self, rows: int) -> None:
        with self._progress:
            self.written += rows
            self.batches += 1
            self._progress.notify_all()

    def _insert(self, conn: sqlite3.Connection, records: Sequence[CallRecord]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # The head is read inside the write transaction: seq order is chain order even
            # when several processes share the database file.
            head = conn.execute(_HEAD).fetchone()
            head_seq, head_hash = (0, GENESIS) if head is None else (head[0], head[1] or GENESIS)
            conn.executemany(_INSERT, chained_rows(records, head_seq, head_hash))
        except BaseException:
            # SQLite may already have rolled back (e.g. SQLITE_FULL); a second ROLLBACK would
            # raise and hide the original error.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _insert_one_by_one(self, conn: sqlite3.Connection, records: Sequence[CallRecord]) -> None:
        for record in records:
            try:
                self._insert_with_retry(conn, record)
            except sqlite3.IntegrityError as exc:
                self.dropped += 1
                # Only the id: the row holds real numbers (design.md §4).
                log.error("CDR %s dropped: %s", record.id, exc)
            else:
                self._count_written(1)

    def _insert_with_retry(self, conn: sqlite3.Connection, record: CallRecord) -> None:
        delay = _RETRY_FIRST_S
        while True:
            try:
                self._insert(conn, (record,))
                return
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error:
                self.commit_errors += 1
                log.exception("CDR commit of one row failed; retrying in %.2fs", delay)
                time.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)


def chained_rows(
    records: Sequence[CallRecord], head_seq: int, head_hash: str
) -> list[tuple[Any, ...]]:
    """``_INSERT`` rows for ``records`` appended after the head (``head_seq``, ``head_hash``):
    each with a fresh salt, its commitments, ``seq``, ``prev_hash`` and ``hash``
    (``proxy.cdr.chain``)."""
    rows: list[tuple[Any, ...]] = []
    seq = head_seq
    prev_hash = head_hash
    salts = os.urandom(16 * len(records)).hex()
    for index, r in enumerate(records):
        seq += 1
        salt = salts[32 * index : 32 * index + 32]
        caller_commit = commit(salt, "caller", r.caller)
        callee_commit = commit(salt, "callee", r.callee)
        a_call_id_commit = commit(salt, "a_call_id", r.a_call_id)
        digest = record_hash(
            (
                seq,
                r.id,
                r.tenant,
                r.binding_id,
                r.x,
                caller_commit,
                callee_commit,
                r.direction,
                a_call_id_commit,
                r.b_call_id,
                ms(r.invite_at),
                ms(r.ring_at),
                ms(r.answer_at),
                ms(r.end_at),
                r.disposition,
                r.reject_reason,
                r.sip_status,
                r.q850_cause,
                r.released_by,
                r.node,
                prev_hash,
            )
        )
        rows.append(
            (
                *record_row(r),
                seq,
                salt,
                caller_commit,
                callee_commit,
                a_call_id_commit,
                prev_hash,
                digest,
            )
        )
        prev_hash = digest
    return rows


def read_records(
    db_path: str | Path,
    *,
    limit: int = 100,
    offset: int = 0,
    tenant: str | None = None,
    x: str | None = None,
    since: float | None = None,
    until: float | None = None,
    newest_first: bool = True,
) -> list[CallRecord]:
    """Stored records filtered on tenant, X and ``since <= invite_at < until``."""
    clauses: list[str] = []
    params: dict[str, object] = {"limit": limit, "offset": offset}
    if tenant is not None:
        clauses.append("tenant = :tenant")
        params["tenant"] = tenant
    if x is not None:
        clauses.append("x = :x")
        params["x"] = x
    if since is not None:
        clauses.append("invite_at >= :since")
        params["since"] = since
    if until is not None:
        clauses.append("invite_at < :until")
        params["until"] = until
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    order = "DESC" if newest_first else "ASC"
    conn = open_database(db_path)
    try:
        rows = conn.execute(
            f"{_SELECT}{where} ORDER BY invite_at {order}, seq {order} LIMIT :limit OFFSET :offset",
            params,
        ).fetchall()
    finally:
        conn.close()
    return [CallRecord(**dict(zip(CALL_RECORD_FIELDS, row, strict=True))) for row in rows]
