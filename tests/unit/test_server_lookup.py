"""The adapter's binding lookup on the call path: blocklist verdicts and database errors
(issue #6), through ``Server.deliver`` with the socket and the record writer stubbed."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from bindings.blocklist import block
from bindings.live import LiveBindings
from bindings.sqlite_store import SqliteBindingStore
from proxy.b2bua.events import CallSummary
from proxy.config import load_config
from proxy.server import Server
from proxy.sip.transaction import Address, Send
from tests.unit.b2bua_harness import A_NUMBER, B_NUMBER, X_NUMBER, caller_invite

CALLER = Address("udp", "127.0.0.1", 5070)


class BrokenStore:
    def route_for_call(self, x: str, caller: str, now: float) -> None:
        raise sqlite3.OperationalError("disk I/O error")


def run_invite(tmp_path: Path, prepare: str) -> tuple[list[Send], list[CallSummary], Server]:
    db = str(tmp_path / "s.db")

    async def scenario() -> tuple[list[Send], list[CallSummary], Server]:
        server = Server(load_config(None, {"db": db, "api": "off"}))
        store = SqliteBindingStore.open(db)
        store.add(A_NUMBER, B_NUMBER, X_NUMBER, now=time.time() - 10)
        if prepare == "broken":
            server.routes = BrokenStore()  # type: ignore[assignment]
        else:
            if prepare != "clean":
                block(store.connection, prepare, reason="test", actor="cli", now=time.time())
            server.store = store
            live = LiveBindings(store)
            live.load(time.time())
            server.routes = live
        sends: list[Send] = []
        finished: list[CallSummary] = []
        server.send = sends.append  # type: ignore[method-assign]
        server.finished = finished.append  # type: ignore[method-assign]
        server.deliver(caller_invite().to_bytes(), CALLER)
        store.close()
        return sends, finished, server

    return asyncio.run(scenario())


def finals(sends: list[Send]) -> list[int]:
    return [
        int(send.data.split(b" ", 2)[1])
        for send in sends
        if send.data.startswith(b"SIP/2.0 ") and not send.data.startswith(b"SIP/2.0 1")
    ]


def test_lookup_error_fails_the_call_with_503(tmp_path: Path) -> None:
    sends, finished, server = run_invite(tmp_path, "broken")
    assert finals(sends) == [503]
    [summary] = finished
    assert (summary.disposition, summary.reject_reason, summary.released_by) == (
        "failed",
        None,
        "proxy",
    )
    assert server.core.active_calls == 0
    assert server.counters["lookup_errors"] == 1


def test_blocked_caller_gets_403(tmp_path: Path) -> None:
    sends, finished, _ = run_invite(tmp_path, A_NUMBER)
    assert finals(sends) == [403]
    assert finished[0].reject_reason == "blocked"


def test_blocked_callee_gets_403(tmp_path: Path) -> None:
    sends, finished, _ = run_invite(tmp_path, B_NUMBER)
    assert finals(sends) == [403]
    assert finished[0].reject_reason == "blocked"


def test_unblocked_call_goes_to_the_trunk(tmp_path: Path) -> None:
    sends, finished, _ = run_invite(tmp_path, "clean")
    assert finished == []
    assert any(send.data.startswith(b"INVITE ") for send in sends)
