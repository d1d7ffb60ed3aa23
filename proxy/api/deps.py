"""Dependencies shared by the HTTP API's routers: the database, the caller, the clock.

For router authors (``proxy/api/cdrs.py`` and the like):

- ``principal`` — ``Depends(principal)`` gives the authenticated ``Principal`` (key id,
  tenant, admin flag) from ``Authorization: Bearer KEY``; a missing, malformed, unknown or
  revoked key is answered 401 ``{"detail": ...}`` before the route runs. ``Depends(admin)``
  also refuses non-admin keys with 403.
- ``database`` — ``Depends(database)`` gives a ``sqlite3.Connection`` to the privproxy
  database (``proxy.db`` pragmas, autocommit: use ``proxy.db.transaction`` for writes) for
  the duration of one request. Use it from ``def`` (not ``async def``) routes: FastAPI runs
  those in its thread pool, and the connection belongs to that request alone until it
  returns to the pool. Never keep it beyond the request.
- ``now`` — ``Depends(now)`` gives the current time in epoch seconds from the app's clock
  (tests replace the clock).

Binding creation is the write hot path (thousands a minute): it does not take a pooled
connection but queues its ``AllocationRequest`` on the app's ``AllocationWriter``, whose
thread allocates whatever is queued in one transaction (group commit).
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Final

from fastapi import Depends, Header, HTTPException, Request, status

from bindings.keys import authenticate
from bindings.models import (
    DEFAULT_MAX_PER_X,
    DEFAULT_QUARANTINE_S,
    Allocation,
    AllocationRequest,
)
from bindings.sqlite_store import SqliteBindingStore, tune_connection
from proxy.db import connect
from proxy.numbers import NumberPlan

#: Idle connections kept open; more are opened under load and closed when returned.
POOL_SIZE: Final = 16
#: Most creations allocated in one transaction: bounds how long the write lock is held.
MAX_GROUP: Final = 64


@dataclass(frozen=True)
class Principal:
    """Who is calling: the API key's id (the audit actor), its tenant, and whether it is an
    operator (admin) key."""

    key_id: str
    tenant: str
    admin: bool


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """What the API needs beyond the database: the number plan and the allocator limits."""

    plan: NumberPlan = field(default_factory=NumberPlan)
    quarantine_s: float = DEFAULT_QUARANTINE_S
    max_per_x: int = DEFAULT_MAX_PER_X


class ConnectionPool:
    """SQLite connections handed to one thread at a time.

    A connection is opened with ``check_same_thread=False`` because a request's dependency
    set-up, route and tear-down may run on different pool threads; it is still never used by
    two threads at once.
    """

    def __init__(self, path: str | Path, size: int = POOL_SIZE) -> None:
        self._path = path
        self._idle: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._size = size
        self._closed = False
        self._lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = connect(self._path, check_same_thread=False)
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            with self._lock:
                keep = not self._closed and self._idle.qsize() < self._size
            if keep:
                self._idle.put(conn)
            else:
                conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


_Outcome = Allocation | BaseException
_Job = tuple[AllocationRequest, asyncio.AbstractEventLoop, "asyncio.Future[Allocation]"]


def _settle(jobs: Sequence[_Job], outcomes: Sequence[_Outcome]) -> None:
    """On the jobs' event loop: hand each waiting request its outcome."""
    for (_, _, future), outcome in zip(jobs, outcomes, strict=True):
        if future.done():  # the client went away; the binding stands, as in any write
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class AllocationWriter:
    """Binding creations from any number of requests, allocated by one thread on one
    connection, whatever is queued at a time in one transaction (group commit).

    Per creation this saves the thread-pool hop, a pooled connection and, above all, the
    commit: a group of *n* writes its shared pages (pool load, audit log and index tails)
    to the WAL once instead of *n* times. A request waits for nothing but the commit of its
    own group, so a lone request is as quick as before; under load groups grow by
    themselves. Allocation rules and their order are exactly ``allocate``'s
    (``SqliteBindingStore.allocate_many``), so the result is the same as one at a time.

    The thread starts with the first creation and ends with ``close``.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        quarantine_s: float = DEFAULT_QUARANTINE_S,
        max_per_x: int = DEFAULT_MAX_PER_X,
        max_group: int = MAX_GROUP,
    ) -> None:
        self._path = path
        self._quarantine_s = quarantine_s
        self._max_per_x = max_per_x
        self._max_group = max_group
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    async def allocate(self, request: AllocationRequest) -> Allocation:
        """Allocate ``request`` (``SqliteBindingStore.allocate`` semantics): its
        ``Allocation``, or the ``BindingError`` that refused it raised here."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Allocation] = loop.create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the allocation writer is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="privproxy-allocation-writer", daemon=True
                )
                self._thread.start()
            self._jobs.put((request, loop, future))
        return await future

    def close(self, timeout: float = 10.0) -> None:
        """Finish the queued creations, then stop the thread and close its connection."""
        with self._lock:
            self._closed = True
            thread = self._thread
            self._jobs.put(None)
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        store: SqliteBindingStore | None = None
        try:
            stopping = False
            while not stopping:
                first = self._jobs.get()
                if first is None:
                    break
                group = [first]
                while len(group) < self._max_group:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stopping = True
                        break
                    group.append(job)
                store = self._allocate(store, group)
        finally:
            if store is not None:
                store.close()

    def _allocate(
        self, store: SqliteBindingStore | None, group: Sequence[_Job]
    ) -> SqliteBindingStore | None:
        """Allocate ``group``, answer each request, and return the store for the next group
        (opened here, so that a database that cannot be opened fails the requests rather
        than leaving them waiting)."""
        outcomes: Sequence[_Outcome]
        try:
            if store is None:
                store = SqliteBindingStore(
                    tune_connection(connect(self._path)),
                    quarantine_s=self._quarantine_s,
                    max_per_x=self._max_per_x,
                )
            outcomes = store.allocate_many([request for request, _, _ in group])
        except Exception as failure:  # the database failed the whole group
            outcomes = [failure] * len(group)
        by_loop: dict[asyncio.AbstractEventLoop, tuple[list[_Job], list[_Outcome]]] = {}
        for job, outcome in zip(group, outcomes, strict=True):
            jobs, results = by_loop.setdefault(job[1], ([], []))
            jobs.append(job)
            results.append(outcome)
        for loop, (jobs, results) in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, jobs, results)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                continue
        return store


def _pool(request: Request) -> ConnectionPool:
    pool: ConnectionPool = request.app.state.db_pool
    return pool


# The dependencies below are ``async`` although they do no I/O worth awaiting: FastAPI runs
# a plain ``def`` dependency in its thread pool, one hop (tens of microseconds) each.


async def database(request: Request) -> AsyncIterator[sqlite3.Connection]:
    """The request's database connection (see the module docstring). Taking an idle one is
    immediate; opening a new one (under load) costs well under a millisecond."""
    with _pool(request).connection() as conn:
        yield conn


async def settings(request: Request) -> ApiSettings:
    api_settings: ApiSettings = request.app.state.settings
    return api_settings


async def now(request: Request) -> float:
    """Epoch seconds from the app's clock."""
    clock: Callable[[], float] = request.app.state.clock
    return clock()


async def routing_changed(request: Request) -> Callable[[], None]:
    """What to call after committing a change that routing must see at once (a release, a
    narrower binding, a blocklist entry): ``LiveBindings.changed`` under ``serve``."""
    changed: Callable[[], None] = request.app.state.routing_changed
    return changed


async def allocation_writer(request: Request) -> AllocationWriter:
    writer: AllocationWriter = request.app.state.allocation_writer
    return writer


async def binding_store(
    conn: Annotated[sqlite3.Connection, Depends(database)],
    api_settings: Annotated[ApiSettings, Depends(settings)],
) -> SqliteBindingStore:
    """A binding store on the request's connection, with the configured limits."""
    return SqliteBindingStore(
        conn, quarantine_s=api_settings.quarantine_s, max_per_x=api_settings.max_per_x
    )


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def principal(
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    """The caller behind ``Authorization: Bearer KEY``; 401 otherwise.

    The check is one primary-key read on the event loop thread (tens of microseconds, the
    same cost as a call's binding lookup), cheaper than a hop to the thread pool.
    """
    return authenticated(_pool(request), authorization)


def authenticated(pool: ConnectionPool, authorization: str | None) -> Principal:
    """``principal`` without FastAPI: the caller behind an ``Authorization`` header value,
    or ``HTTPException`` 401."""
    if authorization is None:
        raise _unauthorized("missing Authorization header: expected 'Bearer KEY'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("malformed Authorization header: expected 'Bearer KEY'")
    with pool.connection() as conn:
        key = authenticate(conn, token.strip())
    if key is None:
        raise _unauthorized("invalid or revoked API key")
    return Principal(key_id=key.id, tenant=key.tenant, admin=key.admin)


async def admin(caller: Annotated[Principal, Depends(principal)]) -> Principal:
    """The caller, who must hold an admin (operator) key; 403 otherwise."""
    if not caller.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="this needs an admin API key")
    return caller
