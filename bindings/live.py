"""Routing from memory: the live bindings and the blocklist, kept in step with the database
through the audit log (design.md §5).

Every call needs the binding of (X, caller) and the blocklist verdict on its parties. The
indexed point query behind it (``SqliteBindingStore.route_for_call``) costs ~10 µs of CPU
on a busy core, but 100-200 µs on the cold one a proxy at 100 calls/s wakes up with:
SQLite's code and pages have left the caches between two calls. ``LiveBindings`` holds
every live binding and every blocklist entry in dicts instead, so a call that goes through
reads no database at all.

Keeping step: every change to a binding or to the blocklist, from this process or any other
(the CLI, the HTTP API, other ``serve`` processes on the same file), appends an audit event
in its own transaction (``proxy/audit.py``). At most every ``refresh_s`` seconds, on the
next lookup, the events since the last one seen are read, and each binding they name is
read again from its table (the blocklist, which is small, is read whole). Reading the row
rather than the event makes a refresh idempotent: a row read in a state newer than its
event is simply read again when the newer event arrives.

What this means for a caller:

- A binding made anywhere routes at once: a call that finds no live binding in memory asks
  the database, which also gives the expired, released or unknown answer its 404 needs.
- Expiry needs no refresh: a binding past ``expires_at`` and a blocklist entry past its
  own expiry stop counting at that instant.
- An end made through this process's HTTP API routes at once (``changed``). One made
  elsewhere (release, a narrower direction, an earlier expiry, a new blocklist entry)
  reaches routing within ``refresh_s``, as it would reach a proxy that had already read the
  row just before the change.

Memory: about 0.6 KB of objects and 1.1 KB of resident memory per live binding
(``benchmarks/bindings.py`` prints it); ``binding_refresh_s = 0`` routes from the database
instead, for tables too large to hold.
"""

from __future__ import annotations

from typing import Final, Protocol

from bindings.models import Binding
from bindings.sqlite_store import SqliteBindingStore

#: How often the audit log is read for changes made elsewhere (``binding_refresh_s``).
DEFAULT_REFRESH_S: Final = 0.25

_EVENTS: Final = (
    "SELECT seq, action, subject FROM audit_log WHERE seq > ?"
    " AND (action LIKE 'binding.%' OR action LIKE 'blocklist.%') ORDER BY seq"
)


class Routes(Protocol):
    """What the call path asks of a binding source (``Server.lookup``)."""

    def route_for_call(self, x: str, caller: str, now: float) -> tuple[Binding | None, bool]:
        """The binding of (x, caller) and whether a party of the call is blocklisted."""
        ...


class LiveBindings:
    """``route_for_call`` answered from memory, with the store as the fall-back for calls
    that find no live binding here. Same thread rules as the store it reads."""

    __slots__ = (
        "_blocked",
        "_by_a",
        "_by_b",
        "_changes",
        "_changes_applied",
        "_refresh_s",
        "_refreshed_at",
        "_seen",
        "_store",
    )

    def __init__(self, store: SqliteBindingStore, *, refresh_s: float = DEFAULT_REFRESH_S) -> None:
        if refresh_s <= 0:
            raise ValueError("refresh_s must be positive")
        self._store = store
        self._refresh_s = refresh_s
        self._by_a: dict[tuple[str, str], Binding] = {}
        self._by_b: dict[tuple[str, str], Binding] = {}
        #: blocklisted number → the end of its entry (None: until unblocked)
        self._blocked: dict[str, float | None] = {}
        self._seen = 0
        self._refreshed_at = float("-inf")
        #: ``changed`` calls, and how many of them the last refresh had seen
        self._changes = 0
        self._changes_applied = 0

    def __len__(self) -> int:
        """The live bindings held."""
        return len(self._by_a)

    def load(self, now: float) -> None:
        """Read every active binding and the whole blocklist (at start)."""
        conn = self._store.connection
        # The position first: a change committed while the rows are read is read again at
        # the next refresh, which is harmless; one read before it would be lost.
        (self._seen,) = conn.execute("SELECT coalesce(max(seq), 0) FROM audit_log").fetchone()
        self._by_a.clear()
        self._by_b.clear()
        for binding in self._store.active():
            self._hold(binding)
        self._load_blocklist()
        self._refreshed_at = now

    def changed(self) -> None:
        """A change was just committed in this process (the HTTP API calls this from its
        worker threads): the next lookup refreshes first, so the change routes at once. A
        call during a refresh still counts, since the refresh only marks what it saw."""
        self._changes += 1

    def refresh(self, now: float) -> None:
        """Apply the binding and blocklist changes logged since the last refresh."""
        self._changes_applied = self._changes
        conn = self._store.connection
        changed: set[str] = set()
        blocklist_changed = False
        for seq, action, subject in conn.execute(_EVENTS, (self._seen,)).fetchall():
            self._seen = seq
            if action.startswith("blocklist."):
                blocklist_changed = True
            elif subject is not None:
                changed.add(subject)
        for binding_id in changed:
            binding = self._store.get(binding_id)
            if binding is None:
                continue  # purged: it had ended, and was let go then
            if binding.status == "active":
                self._hold(binding)
            else:
                self._let_go(binding)
        if blocklist_changed:
            self._load_blocklist()
        self._refreshed_at = now

    def route_for_call(self, x: str, caller: str, now: float) -> tuple[Binding | None, bool]:
        """``SqliteBindingStore.route_for_call``, from memory when the binding is live."""
        if (
            not 0 <= now - self._refreshed_at < self._refresh_s
            or self._changes != self._changes_applied
        ):
            self.refresh(now)
        binding = self._by_a.get((x, caller))
        if binding is None or not binding.is_live(now):
            binding = self._by_b.get((x, caller))
            if binding is None or not binding.is_live(now):
                return self._store.route_for_call(x, caller, now)
        blocked = self._blocked
        return binding, bool(blocked) and (
            _in_force(blocked, caller, now)
            or _in_force(blocked, binding.a, now)
            or _in_force(blocked, binding.b, now)
        )

    def _hold(self, binding: Binding) -> None:
        self._by_a[binding.x, binding.a] = binding
        if binding.b is not None:
            self._by_b[binding.x, binding.b] = binding

    def _let_go(self, binding: Binding) -> None:
        """Forget an ended binding (X and the parties of a binding never change), unless
        its keys already name a newer one."""
        for index, party in ((self._by_a, binding.a), (self._by_b, binding.b)):
            held = index.get((binding.x, party)) if party is not None else None
            if held is not None and held.id == binding.id:
                del index[binding.x, party]

    def _load_blocklist(self) -> None:
        rows = self._store.connection.execute("SELECT number, expires_at FROM blocklist")
        self._blocked = dict(rows.fetchall())


def _in_force(blocked: dict[str, float | None], number: str | None, now: float) -> bool:
    if number not in blocked:
        return False
    until = blocked[number]
    return until is None or until > now
