"""Batched CDR writer: the call path queues records, a thread commits them (design.md §5).

``submit`` only appends to a ``queue.SimpleQueue``; it never waits on the disk. A daemon
thread with its own connection drains the queue and commits with ``executemany`` every
``batch_rows`` rows or ``batch_ms`` milliseconds after the first row of a batch, whichever
comes first. While a batch fills, the thread sleeps through its window instead of taking
records one by one: a record queued then costs the call path no wake-up of another thread
(a futex call and a hand-over of the GIL each); ``submit`` wakes it early only for a full
batch, ``flush`` and ``close`` at once. In WAL mode a crash loses at most the batch not
yet committed and never damages committed rows.

A second thread with its own connection copies committed WAL frames into the database file
every ``_CHECKPOINT_ROWS`` committed rows, about the WAL growth after which SQLite would
checkpoint on its own (a PASSIVE checkpoint, which neither waits for nor blocks the writer
or readers): the writer's connection does not stop its commits to checkpoint and fsync, and
only checkpoints itself if the WAL ever grows past ``_OWN_CHECKPOINT_PAGES``. Checkpoints
move committed data only; a crash at any point keeps every committed transaction.

The hash chain (``proxy.cdr.chain``) is computed here, at commit time, inside the write
transaction that also reads the current head: ``seq`` order is chain order, and the call path
never waits for a hash.

A commit that fails for a transient reason (lock held past busy_timeout, disk full) is
retried with back-off, keeping the rows. A batch the database rejects as such (a duplicate
record id) is written row by row and the offending rows are dropped and counted, so one bad
record cannot stall every record after it.
"""

from __future__ import annotations

import hashlib
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

from proxy.cdr.chain import CANONICAL_PREFIX, GENESIS, ms, record_hash
from proxy.cdr.record import CALL_RECORD_FIELDS, CallRecord
from proxy.db import connect, open_database, where_clause

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
_OWN_CHECKPOINT_PAGES: Final = 10_000
#: Rows committed between two checkpoints: a checkpoint after every small commit would
#: copy the same index pages and fsync the database file several times a second.
_CHECKPOINT_ROWS: Final = 4_000
_CHECKPOINTER_EXIT_S: Final = 10.0
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
        self.checkpoints = 0
        """WAL checkpoints run by the checkpoint thread."""
        self._wal_grown = threading.Event()
        self._rows_since_checkpoint = 0
        self._wake = threading.Event()
        self._checkpointer_stop = False
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
        if self._queue.qsize() >= self.batch_rows:
            self._wake.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every record submitted so far is committed; False on timeout."""
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("CdrWriter is not running")
        marker = _Flush()
        self._queue.put(marker)
        self._wake.set()
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
        self._wake.set()
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
        checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="cdr-checkpoint", daemon=True
        )
        try:
            conn.execute(f"PRAGMA wal_autocheckpoint = {_OWN_CHECKPOINT_PAGES}")
            checkpointer.start()
            self._drain(conn)
        finally:
            self._checkpointer_stop = True
            self._wal_grown.set()
            if checkpointer.is_alive():
                checkpointer.join(_CHECKPOINTER_EXIT_S)
            conn.close()

    def _checkpoint_loop(self) -> None:
        """After each commit, copy the committed WAL frames into the database file; once
        more after the writer stops."""
        try:
            conn = connect(self.db_path)
        except sqlite3.Error:
            log.exception("CDR checkpoint thread cannot open the database; the writer checkpoints")
            return
        try:
            while True:
                self._wal_grown.wait()
                self._wal_grown.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error:
                    log.exception("CDR checkpoint failed; the next commit retries it")
                if self._checkpointer_stop:
                    return
        finally:
            conn.close()

    def _drain(self, conn: sqlite3.Connection) -> None:
        """Commit what is queued as the batch policy says: full batches as soon as they
        are full, the rows after them when the window of the batch's first row ends (or
        a flush or stop comes); rows carried over keep that window."""
        items: list[_QueueItem] = []
        window_end = 0.0
        while True:
            if not items:
                items.append(self._queue.get())
                window_end = time.monotonic() + self.batch_s
            if isinstance(items[-1], CallRecord) and len(items) < self.batch_rows:
                # Sleep through the window (see the module docstring); ``submit`` wakes
                # this thread early for a full batch, ``flush`` and ``close`` at once.
                self._wake.wait(max(0.0, window_end - time.monotonic()))
            self._wake.clear()
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            carried: list[_QueueItem] = []
            if time.monotonic() < window_end and all(
                isinstance(item, CallRecord) for item in items
            ):
                # Woken for a full batch: the rows after the last full one wait on.
                full = len(items) - len(items) % self.batch_rows
                items, carried = items[:full], items[full:]
            if self._write(conn, items):
                return
            items = carried

    def _write(self, conn: sqlite3.Connection, items: list[_QueueItem]) -> bool:
        """Commit the records of ``items`` in queue order, ``batch_rows`` at most per
        transaction, releasing each flush marker once what was queued before it is
        committed; True when the stop marker was among them."""
        batch: list[CallRecord] = []
        for item in items:
            if isinstance(item, CallRecord):
                batch.append(item)
                if len(batch) < self.batch_rows:
                    continue
            if batch:
                # Salts, commitments and most of the canonical text do not depend on the
                # chain head: computed before the write lock is taken.
                self._commit(conn, batch, prepare_records(batch))
                batch = []
            if isinstance(item, _Flush):
                item.done.set()
            elif item is _STOP:
                return True
        if batch:
            self._commit(conn, batch, prepare_records(batch))
        return False

    def _commit(
        self,
        conn: sqlite3.Connection,
        batch: Sequence[CallRecord],
        prepared: Sequence[PreparedRecord],
    ) -> None:
        delay = _RETRY_FIRST_S
        while True:
            try:
                self._insert(conn, prepared)
            except sqlite3.IntegrityError:
                self._insert_one_by_one(conn, batch, prepared)
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
        self._rows_since_checkpoint += rows
        if self._rows_since_checkpoint >= _CHECKPOINT_ROWS:
            self._rows_since_checkpoint = 0
            self._wal_grown.set()
        with self._progress:
            self.written += rows
            self.batches += 1
            self._progress.notify_all()

    def _insert(self, conn: sqlite3.Connection, prepared: Sequence[PreparedRecord]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # The head is read inside the write transaction: seq order is chain order even
            # when several processes share the database file.
            head = conn.execute(_HEAD).fetchone()
            head_seq, head_hash = (0, GENESIS) if head is None else (head[0], head[1] or GENESIS)
            conn.executemany(_INSERT, link_prepared(prepared, head_seq, head_hash))
        except BaseException:
            # SQLite may already have rolled back (e.g. SQLITE_FULL); a second ROLLBACK would
            # raise and hide the original error.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _insert_one_by_one(
        self,
        conn: sqlite3.Connection,
        records: Sequence[CallRecord],
        prepared: Sequence[PreparedRecord],
    ) -> None:
        for record, one in zip(records, prepared, strict=True):
            try:
                self._insert_with_retry(conn, one)
            except sqlite3.IntegrityError as exc:
                self.dropped += 1
                # Only the id: the row holds real numbers (design.md §4).
                log.error("CDR %s dropped: %s", record.id, exc)
            else:
                self._count_written(1)

    def _insert_with_retry(self, conn: sqlite3.Connection, prepared: PreparedRecord) -> None:
        delay = _RETRY_FIRST_S
        while True:
            try:
                self._insert(conn, (prepared,))
                return
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error:
                self.commit_errors += 1
                log.exception("CDR commit of one row failed; retrying in %.2fs", delay)
                time.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)


PreparedRecord = tuple[tuple[Any, ...], str, str | None, str | None, str | None, str | None]
"""A record ready to be chained: its ``cdrs`` column values, salt, the three commitments,
and the canonical netstrings of ``id`` … ``node`` (None when the record needs the generic
``chain.record_hash``)."""


def chained_rows(
    records: Sequence[CallRecord], head_seq: int, head_hash: str
) -> list[tuple[Any, ...]]:
    """``_INSERT`` rows for ``records`` appended after the head (``head_seq``, ``head_hash``):
    each with a fresh salt, its commitments, ``seq``, ``prev_hash`` and ``hash``
    (``proxy.cdr.chain``)."""
    return link_prepared(prepare_records(records), head_seq, head_hash)


def prepare_records(records: Sequence[CallRecord]) -> list[PreparedRecord]:
    """Everything of the chain that does not depend on the head: a fresh salt per record,
    the commitments, and the canonical netstrings of the fields between ``seq`` and
    ``prev_hash``.

    This is the writer's hot loop, so it writes the encoding of ``proxy.cdr.chain`` out in
    one f-string instead of calling ``record_hash``. It does so only for a record whose
    field types it has checked (exact ``str`` or NULL, ``int``, times) and whose text is
    ASCII, where a character count is the byte count; ``link_prepared`` sends any other
    record through ``record_hash``, which also raises for a value with no canonical form.
    Property tests hold the two to the same bytes.

    Each hash starts as a copy of an empty SHA-256 object: with OpenSSL 3 a fresh
    ``hashlib.sha256()`` sets up its digest context each time, which costs more than
    hashing a commitment's 60 bytes.
    """
    prepared: list[PreparedRecord] = []
    append = prepared.append
    new_hash = _EMPTY_SHA256.copy
    fast_types = _FAST_TYPES
    tails = _TAILS
    salts = os.urandom(16 * len(records)).hex()
    end = 0
    for record in records:
        values: tuple[Any, ...] = _RECORD_VALUES(record)
        (
            id_,
            tenant,
            binding_id,
            x,
            caller,
            callee,
            direction,
            a_call_id,
            b_call_id,
            invite_at,
            ring_at,
            answer_at,
            end_at,
            _disposition,
            _reject_reason,
            sip_status,
            q850_cause,
            _released_by,
            _node,
        ) = values
        start, end = end, end + 32
        salt = salts[start:end]
        caller_commit = callee_commit = a_call_id_commit = None
        if caller:
            digest = new_hash()
            digest.update(f"{salt}:caller:{caller}".encode())
            caller_commit = digest.hexdigest()
        if callee:
            digest = new_hash()
            digest.update(f"{salt}:callee:{callee}".encode())
            callee_commit = digest.hexdigest()
        if a_call_id:
            digest = new_hash()
            digest.update(f"{salt}:a_call_id:{a_call_id}".encode())
            a_call_id_commit = digest.hexdigest()
        middle = None
        types = tuple(map(type, values))
        fast = fast_types.get(types)
        if fast is None:
            fast = _check_fast_types(types)
        if fast and invite_at >= 0 and sip_status >= 0 and (q850_cause is None or q850_cause >= 0):
            # NULL and "" are both "0:,"; the times are non-negative integer milliseconds
            # (times never decrease, so a non-negative invite_at bounds them all). The exact
            # types are checked, so equal tails (disposition … node) encode alike.
            tail_key = values[13:]
            tail = tails.get(tail_key)
            if tail is None:
                tail = _tail_netstrings(tail_key)
            binding_id = binding_id or ""
            direction = direction or ""
            b_call_id = b_call_id or ""
            caller_c = caller_commit or ""
            callee_c = callee_commit or ""
            a_call_id_c = a_call_id_commit or ""
            invite_t = str(round(invite_at * 1000))
            ring_t = "" if ring_at is None else str(round(ring_at * 1000))
            answer_t = "" if answer_at is None else str(round(answer_at * 1000))
            end_t = str(round(end_at * 1000))
            middle = (
                f"{len(id_)}:{id_},{len(tenant)}:{tenant},{len(binding_id)}:{binding_id},"
                f"{len(x)}:{x},{len(caller_c)}:{caller_c},{len(callee_c)}:{callee_c},"
                f"{len(direction)}:{direction},{len(a_call_id_c)}:{a_call_id_c},"
                f"{len(b_call_id)}:{b_call_id},{len(invite_t)}:{invite_t},"
                f"{len(ring_t)}:{ring_t},{len(answer_t)}:{answer_t},{len(end_t)}:{end_t},"
                f"{tail}"
            )
            if not middle.isascii():
                middle = None
        append((values, salt, caller_commit, callee_commit, a_call_id_commit, middle))
    return prepared


def link_prepared(
    prepared: Sequence[PreparedRecord], head_seq: int, head_hash: str
) -> list[tuple[Any, ...]]:
    """``_INSERT`` rows for ``prepared`` appended after the head (``head_seq``,
    ``head_hash``): each with its ``seq``, ``prev_hash`` and ``hash``."""
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    new_hash = _CANONICAL_SHA256.copy
    seq = head_seq
    prev_hash = head_hash
    # Every hash this loop makes is 64 ASCII characters; only the stored head may not be.
    prev_ascii = type(prev_hash) is str and prev_hash.isascii()
    for values, salt, caller_commit, callee_commit, a_call_id_commit, middle in prepared:
        seq += 1
        if middle is not None and prev_ascii:
            digest = new_hash()
            digest.update(f"{len(str(seq))}:{seq},{middle}{len(prev_hash)}:{prev_hash},".encode())
            record_digest = digest.hexdigest()
        else:
            record_digest = record_hash(
                (
                    seq,
                    *values[:4],
                    caller_commit,
                    callee_commit,
                    values[6],
                    a_call_id_commit,
                    values[8],
                    ms(values[9]),
                    ms(values[10]),
                    ms(values[11]),
                    ms(values[12]),
                    *values[13:],
                    prev_hash,
                )
            )
        # One concatenation: a single allocation, where unpacking goes through a list.
        append(
            values  # noqa: RUF005
            + (seq, salt, caller_commit, callee_commit, a_call_id_commit, prev_hash, record_digest)
        )
        prev_hash = record_digest
        prev_ascii = True
    return rows


_EMPTY_SHA256: Final = hashlib.sha256()
_CANONICAL_SHA256: Final = hashlib.sha256(CANONICAL_PREFIX)
_TAILS: dict[tuple[Any, ...], str] = {}
"""Canonical netstrings of ``disposition`` … ``node`` by their values: few distinct ones."""


def _tail_netstrings(values: tuple[Any, ...]) -> str:
    """The netstrings of ``disposition``, ``reject_reason``, ``sip_status``,
    ``q850_cause``, ``released_by``, ``node`` (exact types checked, ints non-negative);
    remembered."""
    texts = ("" if value is None else str(value) for value in values)
    tail = "".join(f"{len(text)}:{text}," for text in texts)
    if len(_TAILS) >= 4096:
        _TAILS.clear()
    _TAILS[values] = tail
    return tail


_REQUIRED: Final = frozenset({"id", "tenant", "x", "caller", "disposition", "node"})
_ALLOWED_TYPES: Final[tuple[frozenset[type], ...]] = tuple(
    frozenset(
        {int}
        if name == "sip_status"
        else {int, type(None)}
        if name == "q850_cause"
        else {float, int}
        if name in ("invite_at", "end_at")
        else {float, int, type(None)}
        if name.endswith("_at")
        else {str}
        if name in _REQUIRED
        else {str, type(None)}
    )
    for name in CALL_RECORD_FIELDS
)
"""Per field, the exact types ``chained_rows`` writes out itself."""
_FAST_TYPES: dict[tuple[type, ...], bool] = {}
"""Field-type tuples already checked by ``_check_fast_types``."""


def _check_fast_types(types: tuple[type, ...]) -> bool:
    """Whether a record with these field types (exact types: a ``str`` subclass or a
    ``bool`` is not canonical) may take ``chained_rows``'s shortcut; remembered."""
    fast = len(types) == len(_ALLOWED_TYPES) and all(
        kind in allowed for kind, allowed in zip(types, _ALLOWED_TYPES, strict=False)
    )
    if len(_FAST_TYPES) < 4096:
        _FAST_TYPES[types] = fast
    return fast


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
    where, params = where_clause(
        {
            "tenant": ("tenant = :tenant", tenant),
            "x": ("x = :x", x),
            "since": ("invite_at >= :since", since),
            "until": ("invite_at < :until", until),
        }
    )
    params.update(limit=limit, offset=offset)
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
