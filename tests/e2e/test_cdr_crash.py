"""kill -9 of ``privproxy serve`` in the middle of a SIPp load: every call record committed
before the kill is still there, the database is intact, and the hash chain verifies; a new
writer continues the chain. Also: a clean run's records all verify and export masked."""

from __future__ import annotations

import re
import signal
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest

from proxy.cdr.export import export_records
from proxy.cdr.verify import verify_db, verify_export
from proxy.cdr.writer import CdrWriter, read_records
from proxy.db import connect, open_database
from tests.e2e.proxy_process import start_proxy
from tests.e2e.sipp import free_port, require_sipp, run_sipp

pytestmark = pytest.mark.e2e

A, B, X = "13800138000", "13900139000", "700123456789012"


def committed_ids(db: Path) -> set[str]:
    conn = connect(db)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM cdrs")}
    except sqlite3.OperationalError:
        return set()
    finally:
        conn.close()


def test_kill_9_under_load_keeps_every_committed_record_and_the_chain(tmp_path: Path) -> None:
    require_sipp()
    trunk_port = free_port()
    proxy = start_proxy(tmp_path, sip_port=free_port(), trunk_port=trunk_port)
    try:
        proxy.bind(A, B, X)
        keys = {"caller": A, "callee": B, "dialed": X}
        with run_sipp(
            "uas_load",
            None,
            background=True,
            local_port=trunk_port,
            calls=None,
            keys=keys,
            timeout_s=60,
            workdir=tmp_path,
            trace_messages=False,
        ) as callee:
            caller = run_sipp(
                "uac_load",
                f"127.0.0.1:{proxy.sip_port}",
                background=True,
                local_port=free_port(),
                calls=5000,
                rate=100,
                keys=keys,
                timeout_s=60,
                extra=("-d", "100", "-l", "200"),
                workdir=tmp_path,
                trace_messages=False,
            )
            try:
                # Wait until a good number of records are committed, calls still flowing.
                deadline = time.monotonic() + 30
                seen: set[str] = set()
                while time.monotonic() < deadline and len(seen) < 200:
                    time.sleep(0.2)
                    seen = committed_ids(proxy.db)
                assert len(seen) >= 200, proxy.log_text()[-2000:]
                before_kill = committed_ids(proxy.db)
                proxy.process.send_signal(signal.SIGKILL)
                proxy.process.wait(10)
            finally:
                caller.stop()
            callee.stop()
    finally:
        proxy.stop()
    assert proxy.process.returncode == -signal.SIGKILL

    conn = open_database(proxy.db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        after = {row[0] for row in conn.execute("SELECT id FROM cdrs")}
        assert before_kill <= after, f"{len(before_kill - after)} committed records lost"
        report = verify_db(conn)
        assert report.ok, report.problems[:5]
        assert report.records == len(after) >= len(before_kill)
    finally:
        conn.close()

    # The next start continues the chain where the crash left it.
    records = read_records(proxy.db, limit=3)
    writer = CdrWriter(proxy.db)
    writer.start()
    for n, record in enumerate(records):
        writer.submit(replace(record, id=f"after-crash-{n}"))
    assert writer.close(timeout=10)
    conn = open_database(proxy.db)
    try:
        report = verify_db(conn)
        assert report.ok and report.records == len(after) + len(records), report.problems[:5]
        out = tmp_path / "after.csv"
        export_records(conn, out)
    finally:
        conn.close()
    assert verify_export(out).ok
    assert not re.search(rf"(?<![0-9])(?:\+?86)?(?:{A}|{B})(?![0-9])", out.read_text())
