"""The audit log appends, filters and masks (proxy/audit.py)."""

from __future__ import annotations

from pathlib import Path

from proxy import audit
from proxy.db import open_database


def test_append_filter_and_mask(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "audit.db")
    first = audit.append(
        conn, at=10.0, actor="cli", action="binding.create", subject="b_1",
        after={"a": "+8613800138000", "b": "+8613900139000", "x": "700123456789012"},
    )  # fmt: skip
    audit.append(
        conn, at=20.0, actor="key_9", action="cdr.unmask", reason="police request 42",
        after={"count": 3},
    )  # fmt: skip
    audit.append(conn, at=30.0, actor="cli", action="binding.release", subject="b_1")
    assert first == 1
    assert [e.action for e in audit.events(conn)] == [
        "binding.create",
        "cdr.unmask",
        "binding.release",
    ]
    assert [e.seq for e in audit.events(conn, action="binding.")] == [1, 3]
    assert [e.seq for e in audit.events(conn, since=15.0, until=30.0)] == [2]
    assert audit.events(conn, action="cdr.unmask")[0].reason == "police request 42"
    stored = audit.events(conn, subject="b_1")[0]
    assert stored.after is not None and stored.after["a"] == "+8613800138000"
    shown = audit.masked(stored)
    assert shown.after == {"a": "138****8000", "b": "139****9000", "x": "700123456789012"}
