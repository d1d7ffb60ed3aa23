"""``privproxy serve`` runs the call-record maintenance of issue #5: purge past the retention
period, then a signed checkpoint of the chain (proxy/server.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from proxy import server as server_module
from proxy.cdr.checkpoint import checkpoints, generate_keypair
from proxy.cdr.record import CallRecord
from proxy.cdr.writer import CdrWriter, read_records
from proxy.config import load_config
from proxy.db import open_database


def record(n: int, invite_at: float) -> CallRecord:
    return CallRecord(
        id=f"r{n}", tenant="default", x="700123456789012", caller="+8613800138000",
        callee="+8613900139000", direction="a_to_b", invite_at=invite_at, ring_at=invite_at + 1,
        answer_at=invite_at + 2, end_at=invite_at + 10, disposition="answered", sip_status=200,
        q850_cause=16, released_by="caller", node="test",
    )  # fmt: skip


async def test_serve_purges_old_records_and_signs_a_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "p.db"
    now = time.time()
    writer = CdrWriter(db)
    writer.start()
    writer.submit(record(1, now - 400 * 86400))
    writer.submit(record(2, now - 60))
    writer.close()
    private = tmp_path / "cdr.key"
    generate_keypair(private)
    config = load_config(
        None,
        {
            "db": str(db),
            "api": "off",
            "cdr_retention_days": 180.0,
            "cdr_retention_key": str(tmp_path / "retention.key"),
            "cdr_signing_key": str(private),
        },
    )
    monkeypatch.setattr(server_module, "MAINTENANCE_FIRST_DELAY_S", 0.0)
    task = asyncio.create_task(server_module.Server(config)._daily_cdr_maintenance())
    conn = open_database(db)
    deadline = time.monotonic() + 10
    while not checkpoints(conn):
        assert time.monotonic() < deadline, "no checkpoint was stored"
        await asyncio.sleep(0.05)
    task.cancel()
    (checkpoint,) = checkpoints(conn)
    assert checkpoint.count == 2 and checkpoint.signature
    old, recent = sorted(read_records(db), key=lambda r: r.invite_at)
    assert old.caller.startswith("h:") and recent.caller == "+8613800138000"
