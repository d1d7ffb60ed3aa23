"""SQLite binding store (design.md §3, §5): indexed point lookups on (X, party), the number
pool and the allocator, with every change written to the audit log in its own transaction.

Threading: one ``SqliteBindingStore`` belongs to one thread at a time (the event loop thread
in the server, one API worker thread per request). Other connections and processes may use
the same file at the same time (WAL): ``allocate`` reads the blocking bindings, chooses X and
inserts in one ``BEGIN IMMEDIATE`` transaction, so two writers can never both bind a party
on one X, and a repeated ``request_id`` finds the first binding.
"""

from __future__ import annotations

import builtins
import sqlite3
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Final

from bindings.allocator import blocked_numbers, first_fit
from bindings.blocklist import any_blocked_sql, is_blocked
from bindings.models import (
    DEFAULT_MAX_PER_X,
    DEFAULT_QUARANTINE_S,
    DEFAULT_TENANT,
    UNSET,
    Allocation,
    AllocationRequest,
    Binding,
    BindingError,
    BindingModel,
    BindingNotFound,
    BindingStatus,
    Direction,
    NoFreeNumber,
    NumberUnavailable,
    PoolAddResult,
    PoolNumber,
    PoolNumberInUse,
    PoolNumberNotFound,
    PoolStats,
    RequestIdReused,
    Unset,
    ended_binding,
    updated_binding,
    validate_new_binding,
)
from bindings.store import AddThroughAllocate, new_binding_id, numbers_to_pool
from proxy import audit
from proxy.db import open_database, transaction, where_clause

_COLUMNS: Final = (
    "id, a, b, x, created_at, tenant, model, expires_at, direction, max_call_s, order_id, "
    "scenario, status, ended_at, request_id"
)
_LIVE: Final = "status = 'active' AND (expires_at IS NULL OR expires_at > :now)"

# Hot path of every call: both roles in one statement, each probe on a partial index that
# holds active rows only, so the cost does not grow with a party's history; the last column
# is the blocklist verdict on the caller and both parties. Every statement that touches a
# table opens and closes a WAL read transaction (two fcntl calls, ~10 µs), so the call path
# reads the binding and the verdict in this one statement.
_LIVE_BLOCKED: Final = any_blocked_sql(":caller, a, b", ":now")
_FIND_LIVE: Final = (
    f"SELECT {_COLUMNS}, {_LIVE_BLOCKED} FROM bindings INDEXED BY bindings_live_x_a"
    f" WHERE x = :x AND a = :caller AND {_LIVE}"
    f" UNION ALL SELECT {_COLUMNS}, {_LIVE_BLOCKED} FROM bindings INDEXED BY bindings_live_x_b"
    f" WHERE x = :x AND b = :caller AND {_LIVE}"
    " LIMIT 1"
)
# Miss path (the call will be rejected): the newest binding over both roles, live or not.
_FIND_LATEST: Final = (
    f"SELECT {_COLUMNS} FROM ("
    f" SELECT * FROM (SELECT seq, {_COLUMNS} FROM bindings INDEXED BY bindings_x_a_created"
    "  WHERE x = :x AND a = :caller ORDER BY created_at DESC, seq DESC LIMIT 1)"
    f" UNION ALL SELECT * FROM (SELECT seq, {_COLUMNS} FROM bindings"
    "  INDEXED BY bindings_x_b_created"
    "  WHERE x = :x AND b = :caller ORDER BY created_at DESC, seq DESC LIMIT 1)"
    ") ORDER BY created_at DESC, seq DESC LIMIT 1"
)
# Allocation: every binding of A or B that can still block a number — active ones (the
# sweep just before has ended the lapsed ones) and those ended within the quarantine.
_BLOCKING_HISTORY: Final = (
    f"SELECT {_COLUMNS} FROM bindings INDEXED BY bindings_a"
    " WHERE a IN (:a, :b) AND (status = 'active' OR ended_at > :horizon)"
    f" UNION ALL SELECT {_COLUMNS} FROM bindings INDEXED BY bindings_b"
    " WHERE b IN (:a, :b) AND (status = 'active' OR ended_at > :horizon)"
)
_INSERT: Final = (
    f"INSERT INTO bindings ({_COLUMNS}) VALUES"
    " (:id, :a, :b, :x, :created_at, :tenant, :model, :expires_at, :direction, :max_call_s,"
    " :order_id, :scenario, :status, :ended_at, :request_id)"
)
_DUE: Final = (
    f"SELECT {_COLUMNS} FROM bindings INDEXED BY bindings_live_expires"
    " WHERE status = 'active' AND expires_at <= ?"
)
# Candidates in preference order: numbers at the cap are skipped by the query itself.
_CANDIDATES_IN_CITY: Final = (
    "SELECT x FROM pool_numbers INDEXED BY pool_tenant_city_seq"
    " WHERE tenant IS :tenant AND city = :city AND live_count < :cap ORDER BY seq"
)
_CANDIDATES: Final = (
    "SELECT x FROM pool_numbers INDEXED BY pool_tenant_seq"
    " WHERE tenant IS :tenant AND live_count < :cap ORDER BY seq"
)
_POOL_COLUMNS: Final = "x, tenant, city, added_at, live_count"
# A tenant's view of the pool: its own numbers and the shared ones.
_POOL_SCOPE: Final = "(:all OR tenant = :tenant OR tenant IS NULL)"


_BINDING_FIELDS: Final = tuple(field.name for field in fields(Binding))
#: Positions in ``_COLUMNS`` of values that repeat across bindings.
_SHARED_COLUMNS: Final = frozenset(
    _BINDING_FIELDS.index(name) for name in ("x", "tenant", "model", "direction", "status")
)

#: Address space for reading the database through mmap: routing lookups then read index
#: and table pages straight from the OS page cache, without a ``pread`` system call per page
#: (a 1,000,000-binding file is ~460 MB; the median lookup drops from ~17 to ~13 µs and the
#: tail with it). Reserves address space only; memory stays the shared page cache.
MMAP_SIZE: Final = 1 << 30


def tune_connection(conn: sqlite3.Connection) -> sqlite3.Connection:
    """Per-connection settings of a store's connection (``proxy.db`` sets the durable ones):
    reads through mmap (``MMAP_SIZE``)."""
    conn.execute(f"PRAGMA mmap_size = {MMAP_SIZE}")
    return conn


def _binding_from_row(row: tuple[Any, ...]) -> Binding:
    return Binding(*row)


def _pool_number_from_row(row: tuple[Any, ...]) -> PoolNumber:
    return PoolNumber(*row)


def _snapshot(binding: Binding) -> dict[str, Any]:
    """A binding as a flat dict: the INSERT's parameters and the audit log's ``after`` (real
    numbers under keys it masks on display). ``dataclasses.asdict`` deep-copies and costs
    ~90 µs; this costs ~2."""
    return {name: getattr(binding, name) for name in _BINDING_FIELDS}


class SqliteBindingStore(AddThroughAllocate):
    """``BindingStore`` on a SQLite connection opened by ``proxy.db.open_database``.

    ``quarantine_s`` is how long a (party, X) pair stays blocked after its binding ends;
    ``max_per_x`` caps the live bindings one pool number carries.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        quarantine_s: float = DEFAULT_QUARANTINE_S,
        max_per_x: int = DEFAULT_MAX_PER_X,
    ) -> None:
        if quarantine_s < 0 or max_per_x < 1:
            raise ValueError("quarantine_s must not be negative and max_per_x must be positive")
        self._conn = conn
        self.quarantine_s = quarantine_s
        self.max_per_x = max_per_x

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        quarantine_s: float = DEFAULT_QUARANTINE_S,
        max_per_x: int = DEFAULT_MAX_PER_X,
        check_same_thread: bool = True,
    ) -> SqliteBindingStore:
        """Open (and create or migrate) the database at ``path``."""
        return cls(
            tune_connection(open_database(path, check_same_thread=check_same_thread)),
            quarantine_s=quarantine_s,
            max_per_x=max_per_x,
        )

    @property
    def connection(self) -> sqlite3.Connection:
        """The underlying connection (same thread rules as the store)."""
        return self._conn

    def close(self) -> None:
        self._conn.close()

    # -- bindings ------------------------------------------------------------------------

    def allocate(
        self,
        a: str,
        b: str,
        *,
        now: float,
        x: str | None = None,
        tenant: str = DEFAULT_TENANT,
        city: str | None = None,
        request_id: str | None = None,
        model: BindingModel = "axb",
        expires_at: float | None = None,
        direction: Direction = "both",
        max_call_s: int | None = None,
        order_id: str | None = None,
        scenario: str | None = None,
        strict_pool: bool = True,
        actor: str = "cli",
    ) -> Allocation:
        request = AllocationRequest(
            a,
            b,
            now,
            x=x,
            tenant=tenant,
            city=city,
            request_id=request_id,
            model=model,
            expires_at=expires_at,
            direction=direction,
            max_call_s=max_call_s,
            order_id=order_id,
            scenario=scenario,
            strict_pool=strict_pool,
            actor=actor,
        )
        (outcome,) = self.allocate_many((request,))
        if isinstance(outcome, BindingError):
            raise outcome
        return outcome

    def allocate_many(
        self, requests: Sequence[AllocationRequest]
    ) -> builtins.list[Allocation | BindingError]:
        """``allocate`` each request in order, all in one write transaction (group commit:
        one ``COMMIT`` and one WAL write for the group); return each one's ``Allocation`` or
        the ``BindingError`` that refused it, in request order.

        Each request sees the ones before it, exactly as consecutive ``allocate`` calls
        would; a refusal leaves the others untouched (it is decided before its request
        writes anything). Any other error (the database itself failing) rolls back the
        whole group and propagates.
        """
        outcomes: builtins.list[Allocation | BindingError] = []
        with transaction(self._conn):
            swept_until = float("-inf")
            for request in requests:
                try:
                    validate_new_binding(
                        a=request.a,
                        b=request.b,
                        x=request.x,
                        now=request.now,
                        model=request.model,
                        direction=request.direction,
                        expires_at=request.expires_at,
                        max_call_s=request.max_call_s,
                        tenant=request.tenant,
                    )
                    replayed = self._replayed(request)
                    if replayed is not None:
                        outcomes.append(replayed)
                        continue
                    # Lapsed bindings end first, so that pool loads and the audit log are
                    # exact; one sweep covers every later request of the group that is no
                    # newer. A refusal below keeps it: it is right whatever is refused.
                    if request.now > swept_until:
                        self._expire_due(request.now, "sweeper")
                        swept_until = request.now
                    outcomes.append(Allocation(self._insert(request, self._choose(request))))
                except BindingError as refusal:
                    outcomes.append(refusal)
        return outcomes

    def _replayed(self, request: AllocationRequest) -> Allocation | None:
        """The earlier binding of a repeated ``request_id``, or None for a new request."""
        if request.request_id is None:
            return None
        earlier = self._by_request_id(request.tenant, request.request_id)
        if earlier is None:
            return None
        if (earlier.a, earlier.b) != (request.a, request.b) or request.x not in (
            None,
            earlier.x,
        ):
            raise RequestIdReused(request.request_id, earlier.id)
        return Allocation(earlier, replayed=True)

    def _choose(self, request: AllocationRequest) -> str:
        """The X for ``request`` under the reuse rule, quarantine and cap; raises the
        refusal otherwise."""
        a, b, now = request.a, request.b, request.now
        history = self._conn.execute(
            _BLOCKING_HISTORY, {"a": a, "b": b, "horizon": now - self.quarantine_s}
        ).fetchall()
        blocked = blocked_numbers(
            map(_binding_from_row, history),
            a=a,
            b=b,
            now=now,
            quarantine_s=self.quarantine_s,
        )
        if request.x is not None:
            self._check_requested(request.x, request.tenant, request.strict_pool)
            if request.x in blocked:
                raise blocked[request.x].refusal(request.x)
            return request.x
        found = first_fit(self._candidates(request.tenant, request.city), blocked)
        if found is None:
            raise NoFreeNumber(
                f"no free privacy number for tenant {request.tenant!r}: every pool number"
                f" open to it is at its cap of {self.max_per_x} bindings or already"
                " carries A or B (live or in quarantine)"
            )
        return found

    def _insert(self, request: AllocationRequest, x: str) -> Binding:
        binding = Binding(
            id=new_binding_id(),
            a=request.a,
            b=request.b,
            x=x,
            created_at=request.now,
            tenant=request.tenant,
            model=request.model,
            expires_at=request.expires_at,
            direction=request.direction,
            max_call_s=request.max_call_s,
            order_id=request.order_id,
            scenario=request.scenario,
            request_id=request.request_id,
        )
        snapshot = _snapshot(binding)
        self._conn.execute(_INSERT, snapshot)
        audit.append(
            self._conn,
            at=request.now,
            actor=request.actor,
            action="binding.create",
            subject=binding.id,
            after=snapshot,
        )
        return binding

    def _by_request_id(self, tenant: str, request_id: str) -> Binding | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM bindings WHERE tenant = ? AND request_id = ?",
            (tenant, request_id),
        ).fetchone()
        return None if row is None else _binding_from_row(row)

    def _check_requested(self, x: str, tenant: str, strict_pool: bool) -> None:
        row = self._conn.execute(
            "SELECT tenant, live_count FROM pool_numbers WHERE x = ?", (x,)
        ).fetchone()
        if row is None:
            if strict_pool:
                raise NumberUnavailable(f"X {x} is not in the number pool")
            return
        owner, live = row
        if owner is not None and owner != tenant:
            raise NumberUnavailable(f"X {x} belongs to another tenant")
        if live >= self.max_per_x:
            raise NumberUnavailable(f"X {x} already carries {live} live bindings (the cap)")

    def _candidates(self, tenant: str, city: str | None) -> Iterator[str]:
        tiers: list[tuple[str, Mapping[str, object]]] = []
        if city is not None:
            tiers += [
                (_CANDIDATES_IN_CITY, {"tenant": tenant, "city": city}),
                (_CANDIDATES_IN_CITY, {"tenant": None, "city": city}),
            ]
        tiers += [(_CANDIDATES, {"tenant": tenant}), (_CANDIDATES, {"tenant": None})]
        for query, params in tiers:
            for (x,) in self._conn.execute(query, {**params, "cap": self.max_per_x}):
                yield x

    def active(self) -> Iterator[Binding]:
        """Every binding whose status is active (some may be past their expiry), for a table
        in memory: the strings many bindings repeat (X, tenant, model, direction, status)
        are shared, which saves ~280 bytes a binding."""
        intern, shared = sys.intern, _SHARED_COLUMNS
        for row in self._conn.execute(f"SELECT {_COLUMNS} FROM bindings WHERE status = 'active'"):
            values: list[Any] = [intern(v) if i in shared else v for i, v in enumerate(row)]
            yield Binding(*values)

    def get(self, binding_id: str) -> Binding | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM bindings WHERE id = ?", (binding_id,)
        ).fetchone()
        return None if row is None else _binding_from_row(row)

    def update(
        self,
        binding_id: str,
        now: float,
        *,
        expires_at: float | Unset | None = UNSET,
        direction: Direction | None = None,
        actor: str = "cli",
    ) -> Binding:
        with transaction(self._conn):
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM bindings WHERE id = ?", (binding_id,)
            ).fetchone()
            if row is None:
                raise BindingNotFound(binding_id)
            before = _binding_from_row(row)
            after = updated_binding(before, now, expires_at=expires_at, direction=direction)
            if after == before:
                return before
            self._conn.execute(
                "UPDATE bindings SET expires_at = ?, direction = ? WHERE id = ?",
                (after.expires_at, after.direction, binding_id),
            )
            audit.append(
                self._conn,
                at=now,
                actor=actor,
                action="binding.update",
                subject=binding_id,
                before={"expires_at": before.expires_at, "direction": before.direction},
                after={"expires_at": after.expires_at, "direction": after.direction},
            )
        return after

    def release(self, binding_id: str, now: float, *, actor: str = "cli") -> Binding:
        with transaction(self._conn):
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM bindings WHERE id = ?", (binding_id,)
            ).fetchone()
            if row is None:
                raise BindingNotFound(binding_id)
            binding = _binding_from_row(row)
            if binding.status != "active":
                return binding
            ended = ended_binding(binding, now)
            self._conn.execute(
                "UPDATE bindings SET status = ?, ended_at = ? WHERE id = ?",
                (ended.status, ended.ended_at, binding_id),
            )
            audit.append(
                self._conn,
                at=now,
                actor=actor,
                action="binding.release" if ended.status == "released" else "binding.expire",
                subject=binding_id,
                before={"status": binding.status},
                after={"status": ended.status, "ended_at": ended.ended_at},
            )
        return ended

    def find_for_call(self, x: str, caller: str, now: float) -> Binding | None:
        return self._find(x, caller, now)[0]

    def route_for_call(self, x: str, caller: str, now: float) -> tuple[Binding | None, bool]:
        """``find_for_call`` and whether the caller or a party of the binding found is on
        the blocklist at ``now``: what routing a call needs, in one statement when the
        binding is live (every call that goes through)."""
        binding, blocked = self._find(x, caller, now)
        if blocked is None:
            parties = {caller} if binding is None else {caller, binding.a, binding.b}
            blocked = any(is_blocked(self._conn, number, now) for number in parties)
        return binding, blocked

    def _find(self, x: str, caller: str, now: float) -> tuple[Binding | None, bool | None]:
        """The binding ``find_for_call`` names and, when it is live, the blocklist verdict
        on its parties read with it (None otherwise)."""
        params = {"x": x, "caller": caller, "now": now}
        row = self._conn.execute(_FIND_LIVE, params).fetchone()
        if row is not None:
            return _binding_from_row(row[:-1]), bool(row[-1])
        row = self._conn.execute(_FIND_LATEST, params).fetchone()
        return (None if row is None else _binding_from_row(row)), None

    def list(
        self,
        party: str | None = None,
        x: str | None = None,
        status: BindingStatus | None = None,
        limit: int = 100,
        offset: int = 0,
        *,
        tenant: str | None = None,
    ) -> list[Binding]:
        where, params = where_clause(
            {
                "party": ("(a = :party OR b = :party)", party),
                "x": ("x = :x", x),
                "status": ("status = :status", status),
                "tenant": ("tenant = :tenant", tenant),
            }
        )
        params.update(limit=limit, offset=offset)
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM bindings{where}"
            " ORDER BY created_at DESC, seq DESC LIMIT :limit OFFSET :offset",
            params,
        ).fetchall()
        return [_binding_from_row(row) for row in rows]

    def expire_due(self, now: float, *, actor: str = "sweeper") -> int:
        with transaction(self._conn):
            return self._expire_due(now, actor)

    def _expire_due(self, now: float, actor: str) -> int:
        due = [_binding_from_row(row) for row in self._conn.execute(_DUE, (now,)).fetchall()]
        if not due:
            return 0
        self._conn.executemany(
            "UPDATE bindings SET status = 'expired', ended_at = expires_at WHERE id = ?",
            [(binding.id,) for binding in due],
        )
        for binding in due:
            audit.append(
                self._conn,
                at=now,
                actor=actor,
                action="binding.expire",
                subject=binding.id,
                before={"status": "active"},
                after={"status": "expired", "ended_at": binding.expires_at},
            )
        return len(due)

    # -- the number pool -----------------------------------------------------------------

    def add_numbers(
        self,
        numbers: Sequence[str],
        *,
        now: float,
        tenant: str | None = None,
        city: str | None = None,
        actor: str = "cli",
    ) -> PoolAddResult:
        unique = numbers_to_pool(numbers, tenant)
        with transaction(self._conn):
            if tenant is not None:
                self._conn.execute(
                    "INSERT OR IGNORE INTO tenants (id, created_at) VALUES (?, ?)", (tenant, now)
                )
            before = self._conn.total_changes
            # A number bound by the operator before it joined the pool starts with its load.
            self._conn.executemany(
                "INSERT INTO pool_numbers (x, tenant, city, added_at, live_count)"
                " VALUES (?, ?, ?, ?, (SELECT count(*) FROM bindings INDEXED BY"
                " bindings_live_x_a WHERE x = ? AND status = 'active'))"
                " ON CONFLICT (x) DO NOTHING",
                [(x, tenant, city, now, x) for x in unique],
            )
            added = self._conn.total_changes - before
            if added:
                audit.append(
                    self._conn,
                    at=now,
                    actor=actor,
                    action="pool.add",
                    subject=unique[0] if len(unique) == 1 else f"{min(unique)}-{max(unique)}",
                    after={"added": added, "tenant": tenant, "city": city},
                )
        return PoolAddResult(added=added, already_present=len(unique) - added)

    def remove_number(self, x: str, *, now: float, actor: str = "cli") -> PoolNumber:
        with transaction(self._conn):
            self._expire_due(now, "sweeper")
            row = self._conn.execute(
                f"SELECT {_POOL_COLUMNS} FROM pool_numbers WHERE x = ?", (x,)
            ).fetchone()
            if row is None:
                raise PoolNumberNotFound(f"{x} is not in the number pool")
            number = _pool_number_from_row(row)
            if number.live_bindings:
                raise PoolNumberInUse(
                    f"{x} still carries {number.live_bindings} live bindings", field="number"
                )
            self._conn.execute("DELETE FROM pool_numbers WHERE x = ?", (x,))
            audit.append(
                self._conn,
                at=now,
                actor=actor,
                action="pool.remove",
                subject=x,
                before={"tenant": number.tenant, "city": number.city},
            )
        return number

    def pool_number(self, x: str) -> PoolNumber | None:
        row = self._conn.execute(
            f"SELECT {_POOL_COLUMNS} FROM pool_numbers WHERE x = ?", (x,)
        ).fetchone()
        return None if row is None else _pool_number_from_row(row)

    def list_pool(
        self, tenant: str | None = None, limit: int = 1000, offset: int = 0
    ) -> builtins.list[PoolNumber]:
        rows = self._conn.execute(
            f"SELECT {_POOL_COLUMNS} FROM pool_numbers WHERE {_POOL_SCOPE}"
            " ORDER BY seq LIMIT :limit OFFSET :offset",
            {"all": tenant is None, "tenant": tenant, "limit": limit, "offset": offset},
        ).fetchall()
        return [_pool_number_from_row(row) for row in rows]

    def pool_stats(self, now: float, tenant: str | None = None) -> PoolStats:
        self.expire_due(now)
        numbers, live, busiest, free, in_use = self._conn.execute(
            "SELECT count(*), coalesce(sum(live_count), 0), coalesce(max(live_count), 0),"
            " coalesce(sum(max(:cap - live_count, 0)), 0), coalesce(sum(live_count > 0), 0)"
            f" FROM pool_numbers WHERE {_POOL_SCOPE}",
            {"all": tenant is None, "tenant": tenant, "cap": self.max_per_x},
        ).fetchone()
        return PoolStats(
            numbers=numbers,
            live_bindings=live,
            max_per_number=self.max_per_x,
            busiest_number_bindings=busiest,
            free_capacity=free,
            numbers_in_use=in_use,
        )
