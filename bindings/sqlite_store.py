"""SQLite binding store (design.md §3, §5): indexed point lookups on (X, party).

Threading: one ``SqliteBindingStore`` belongs to one thread, the event loop thread in the
server; its connection keeps sqlite3's ``check_same_thread`` guard on. Other processes may
use the same file at the same time (WAL): ``add`` checks the AXB reuse rule and inserts in
one ``BEGIN IMMEDIATE`` transaction, so two processes cannot both bind a party on one X.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from bindings.models import (
    Binding,
    BindingModel,
    BindingNotFound,
    BindingStatus,
    Direction,
    find_conflict,
    validate_new_binding,
)
from bindings.store import new_binding_id
from proxy.db import open_database, transaction

_COLUMNS: Final = (
    "id, a, b, x, created_at, tenant, model, expires_at, direction, max_call_s, order_id, "
    "scenario, status, ended_at"
)
_LIVE: Final = "status = 'active' AND (expires_at IS NULL OR expires_at > :now)"

# Hot path of every call: both roles in one statement, each probe on a partial index that
# holds active rows only, so the cost does not grow with a party's history.
_FIND_LIVE: Final = (
    f"SELECT {_COLUMNS} FROM bindings INDEXED BY bindings_live_x_a"
    f" WHERE x = :x AND a = :caller AND {_LIVE}"
    f" UNION ALL SELECT {_COLUMNS} FROM bindings INDEXED BY bindings_live_x_b"
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
# Reuse-rule check: live bindings on X holding A or B in either role, on the live indexes
# (left to itself the planner picks the full ones and walks each party's history).
_LIVE_FOR_PARTIES: Final = (
    f"SELECT {_COLUMNS} FROM bindings INDEXED BY bindings_live_x_a"
    f" WHERE x = :x AND a IN (:a, :b) AND {_LIVE}"
    f" UNION ALL SELECT {_COLUMNS} FROM bindings INDEXED BY bindings_live_x_b"
    f" WHERE x = :x AND b IN (:a, :b) AND {_LIVE}"
)
_INSERT: Final = (
    f"INSERT INTO bindings ({_COLUMNS}) VALUES"
    " (:id, :a, :b, :x, :created_at, :tenant, :model, :expires_at, :direction, :max_call_s,"
    " :order_id, :scenario, :status, :ended_at)"
)


def _binding_from_row(row: tuple[Any, ...]) -> Binding:
    return Binding(*row)


class SqliteBindingStore:
    """``BindingStore`` on a SQLite connection opened by ``proxy.db.open_database``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @classmethod
    def open(cls, path: str | Path) -> SqliteBindingStore:
        """Open (and create or migrate) the database at ``path``."""
        return cls(open_database(path))

    def close(self) -> None:
        self._conn.close()

    def add(
        self,
        a: str,
        b: str,
        x: str,
        *,
        now: float,
        tenant: str = "default",
        model: BindingModel = "axb",
        expires_at: float | None = None,
        direction: Direction = "both",
        max_call_s: int | None = None,
        order_id: str | None = None,
        scenario: str | None = None,
    ) -> Binding:
        validate_new_binding(
            a=a,
            b=b,
            x=x,
            now=now,
            model=model,
            direction=direction,
            expires_at=expires_at,
            max_call_s=max_call_s,
            tenant=tenant,
        )
        binding = Binding(
            id=new_binding_id(),
            a=a,
            b=b,
            x=x,
            created_at=now,
            tenant=tenant,
            model=model,
            expires_at=expires_at,
            direction=direction,
            max_call_s=max_call_s,
            order_id=order_id,
            scenario=scenario,
        )
        with transaction(self._conn):
            rows = self._conn.execute(
                _LIVE_FOR_PARTIES, {"x": x, "a": a, "b": b, "now": now}
            ).fetchall()
            conflict = find_conflict(map(_binding_from_row, rows), a=a, b=b, x=x)
            if conflict is not None:
                raise conflict
            self._conn.execute(_INSERT, _binding_params(binding))
        return binding

    def get(self, binding_id: str) -> Binding | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM bindings WHERE id = ?", (binding_id,)
        ).fetchone()
        return None if row is None else _binding_from_row(row)

    def release(self, binding_id: str, now: float) -> Binding:
        with transaction(self._conn):
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM bindings WHERE id = ?", (binding_id,)
            ).fetchone()
            if row is None:
                raise BindingNotFound(binding_id)
            binding = _binding_from_row(row)
            if binding.status != "active":
                return binding
            if binding.is_live(now):
                status: BindingStatus = "released"
                ended_at = now
            else:
                status = "expired"
                ended_at = binding.expires_at if binding.expires_at is not None else now
            self._conn.execute(
                "UPDATE bindings SET status = ?, ended_at = ? WHERE id = ?",
                (status, ended_at, binding_id),
            )
        return replace(binding, status=status, ended_at=ended_at)

    def find_for_call(self, x: str, caller: str, now: float) -> Binding | None:
        params = {"x": x, "caller": caller, "now": now}
        row = self._conn.execute(_FIND_LIVE, params).fetchone()
        if row is not None:
            return _binding_from_row(row)
        row = self._conn.execute(_FIND_LATEST, params).fetchone()
        return None if row is None else _binding_from_row(row)

    def list(
        self,
        party: str | None = None,
        x: str | None = None,
        status: BindingStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Binding]:
        clauses: list[str] = []
        params: dict[str, object] = {"limit": limit, "offset": offset}
        if party is not None:
            clauses.append("(a = :party OR b = :party)")
            params["party"] = party
        if x is not None:
            clauses.append("x = :x")
            params["x"] = x
        if status is not None:
            clauses.append("status = :status")
            params["status"] = status
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM bindings{where}"
            " ORDER BY created_at DESC, seq DESC LIMIT :limit OFFSET :offset",
            params,
        ).fetchall()
        return [_binding_from_row(row) for row in rows]

    def expire_due(self, now: float) -> int:
        with transaction(self._conn):
            cursor = self._conn.execute(
                "UPDATE bindings SET status = 'expired', ended_at = expires_at"
                " WHERE status = 'active' AND expires_at IS NOT NULL AND expires_at <= ?",
                (now,),
            )
        return cursor.rowcount


def _binding_params(binding: Binding) -> dict[str, object]:
    return {
        "id": binding.id,
        "a": binding.a,
        "b": binding.b,
        "x": binding.x,
        "created_at": binding.created_at,
        "tenant": binding.tenant,
        "model": binding.model,
        "expires_at": binding.expires_at,
        "direction": binding.direction,
        "max_call_s": binding.max_call_s,
        "order_id": binding.order_id,
        "scenario": binding.scenario,
        "status": binding.status,
        "ended_at": binding.ended_at,
    }
