"""The CDR hash chain, checkpoints, retention and exports: tampering is named, purges verify."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from proxy import audit, db
from proxy.cdr.chain import GENESIS
from proxy.cdr.checkpoint import (
    generate_keypair,
    load_public_key,
    load_signing_key,
    take_checkpoint,
)
from proxy.cdr.export import ExportError, ExportFilter, export_records, parse_when
from proxy.cdr.record import CallRecord
from proxy.cdr.retention import purge_older_than, retention_status
from proxy.cdr.verify import verify_db, verify_export
from proxy.cdr.writer import CdrWriter, read_records
from tests.unit.test_cdr_writer import T0, A, B, answered, rejected

DAY = 86_400.0
REAL_NUMBER = re.compile(r"(?<![0-9])(?:\+?86)?(13800138000|13900139000)(?![0-9])")
INJECTIONS = ("=cmd|' /C calc'!A0", "+SUM(1,2)", "-2+3", "@SUM(1)", "\t=1", "\r=1", "'=1")


def fill(path: Path, records: list[CallRecord]) -> None:
    writer = CdrWriter(path, batch_rows=7)
    writer.start()
    for record in records:
        writer.submit(record)
    assert writer.close(timeout=10)


def sample(n: int = 20) -> list[CallRecord]:
    return [
        answered(i, a_call_id=f"13800138000///{i}@sw") if i % 3 else rejected(i) for i in range(n)
    ]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cdr.db"


@pytest.fixture
def conn(db_path: Path) -> Iterator[sqlite3.Connection]:
    fill(db_path, sample())
    connection = db.open_database(db_path)
    yield connection
    connection.close()


# ── the chain in the database ─────────────────────────────────────────────────────────────


def test_an_auditor_can_recompute_a_hash_from_the_documented_encoding(
    conn: sqlite3.Connection,
) -> None:
    row = conn.execute(
        "SELECT seq, id, tenant, binding_id, x, caller_commit, callee_commit, direction,"
        " a_call_id_commit, b_call_id, invite_at, ring_at, answer_at, end_at, disposition,"
        " reject_reason, sip_status, q850_cause, released_by, node, prev_hash, hash, salt, caller"
        " FROM cdrs WHERE seq = 2"
    ).fetchone()
    # Written from the chain.py docstring, independently of its code.
    salt, caller = row[22], row[23]
    assert row[5] == hashlib.sha256(f"{salt}:caller:{caller}".encode()).hexdigest()
    texts = []
    for i, value in enumerate(row[:21]):
        if value is None:
            text = ""
        elif 10 <= i <= 13:
            text = str(round(value * 1000))
        else:
            text = str(value)
        data = text.encode()
        texts.append(f"{len(data)}:".encode() + data + b",")
    expected = hashlib.sha256(b"privproxy-cdr-v1\n" + b"".join(texts)).hexdigest()
    assert row[21] == expected
    assert conn.execute("SELECT prev_hash FROM cdrs WHERE seq = 1").fetchone()[0] == GENESIS


def test_an_untouched_database_verifies(conn: sqlite3.Connection) -> None:
    report = verify_db(conn)
    assert report.ok, report.problems
    assert (report.records, report.head_seq) == (20, 20)


@pytest.mark.parametrize(
    ("statement", "seq", "words"),
    [
        ("UPDATE cdrs SET sip_status = 486 WHERE seq = 5", 5, "hash does not match"),
        ("UPDATE cdrs SET end_at = end_at + 0.001 WHERE seq = 9", 9, "hash does not match"),
        ("UPDATE cdrs SET tenant = 'other' WHERE seq = 1", 1, "hash does not match"),
        ("UPDATE cdrs SET caller = '+8613700137000' WHERE seq = 8", 8, "caller does not match"),
        ("DELETE FROM cdrs WHERE seq = 11", 12, "seq 11 missing"),
    ],
)
def test_a_changed_or_deleted_row_is_named(
    conn: sqlite3.Connection, statement: str, seq: int, words: str
) -> None:
    conn.execute(statement)
    report = verify_db(conn)
    assert not report.ok
    first = report.first_problem
    assert first is not None and first.seq == seq and words in first.message, report.problems


def test_two_rows_swapped_are_named(conn: sqlite3.Connection) -> None:
    columns = [r[1] for r in conn.execute("PRAGMA table_info(cdrs)") if r[1] != "seq"]
    six, seven = (
        conn.execute(f"SELECT {', '.join(columns)} FROM cdrs WHERE seq = ?", (n,)).fetchone()
        for n in (6, 7)
    )
    conn.execute("UPDATE cdrs SET id = 'tmp' WHERE seq = 6")
    assignment = ", ".join(f"{c} = ?" for c in columns)
    conn.execute(f"UPDATE cdrs SET {assignment} WHERE seq = 7", six)
    conn.execute(f"UPDATE cdrs SET {assignment} WHERE seq = 6", seven)
    first = verify_db(conn).first_problem
    assert first is not None and first.seq == 6


def test_a_row_cut_from_the_end_is_caught_by_the_checkpoint(conn: sqlite3.Connection) -> None:
    take_checkpoint(conn, T0 + 100)
    conn.execute("DELETE FROM cdrs WHERE seq = 20")
    report = verify_db(conn)
    assert not report.ok and "checkpoint" in report.problems[0].where


def test_a_recomputed_chain_fails_the_signed_checkpoint(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    public_path, _ = generate_keypair(tmp_path / "cdr.key")
    key = load_signing_key(tmp_path / "cdr.key")
    take_checkpoint(conn, T0 + 100, key)
    assert verify_db(conn, public_key=load_public_key(public_path)).ok
    # A forger rewrites the checkpoint's head hash to match a rebuilt chain.
    conn.execute("UPDATE cdr_checkpoints SET head_hash = ?", ("f" * 64,))
    conn.execute("UPDATE cdrs SET hash = ? WHERE seq = 20", ("f" * 64,))
    report = verify_db(conn, public_key=load_public_key(public_path))
    assert any("signature does not verify" in p.message for p in report.problems)
    other_public, _ = generate_keypair(tmp_path / "other.key")
    report = verify_db(conn, public_key=load_public_key(other_public))
    assert any("signed by key" in p.message for p in report.problems)
    conn.execute("UPDATE cdr_checkpoints SET signature = NULL, key_id = NULL")
    public = load_public_key(public_path)
    assert verify_db(conn, public_key=public).notes[-2].endswith("is not signed")
    report = verify_db(conn, public_key=public, require_signed=True)
    assert any(p.message == "not signed" for p in report.problems)


# ── retention ─────────────────────────────────────────────────────────────────────────────


def test_purge_replaces_old_numbers_and_the_chain_still_verifies(
    conn: sqlite3.Connection, db_path: Path
) -> None:
    key = b"k" * 32
    purged = purge_older_than(conn, 30, T0 + 10 + 30 * DAY, key)
    assert purged == 10  # invite_at T0+0 … T0+9 are older than 30 days
    assert purge_older_than(conn, 30, T0 + 10 + 30 * DAY, key) == 0
    report = verify_db(conn)
    assert report.ok, report.problems
    rows = conn.execute(
        "SELECT seq, caller, callee, a_call_id, salt FROM cdrs ORDER BY seq"
    ).fetchall()
    for _seq, caller, callee, a_call_id, salt in rows[:10]:
        assert caller.startswith("h:") and salt is None and not REAL_NUMBER.search(caller)
        assert callee is None or callee.startswith("h:")
        assert a_call_id is None or (a_call_id.startswith("h:") and "13800138000" not in a_call_id)
    assert rows[10][1] == A and rows[10][4] is not None
    # The same number gets the same token: per-party statistics survive.
    assert len({row[1] for row in rows[:10]}) == 1
    events = audit.events(conn, action="cdr.purge")
    assert len(events) == 1 and events[0].after is not None and events[0].after["count"] == 10
    status = retention_status(conn)
    assert status["purged"] == 10 and status["oldest_unpurged_invite_at"] == T0 + 10
    # Statistics still read every record.
    assert len(read_records(db_path, limit=100)) == 20


def test_a_large_purge_runs_in_chunks_each_verifiable(conn: sqlite3.Connection) -> None:
    assert purge_older_than(conn, 30, T0 + 10 + 30 * DAY, b"k" * 32, chunk=4) == 10
    assert conn.execute("SELECT COUNT(*) FROM cdr_redactions").fetchone()[0] == 3
    assert len(audit.events(conn, action="cdr.purge")) == 3
    assert verify_db(conn).ok


def test_a_changed_token_after_a_purge_is_caught(conn: sqlite3.Connection) -> None:
    purge_older_than(conn, 30, T0 + 10 + 30 * DAY, b"k" * 32)
    conn.execute("UPDATE cdrs SET caller = 'h:000000000000000000000000' WHERE seq = 3")
    report = verify_db(conn)
    assert not report.ok and "a purged value was changed" in report.problems[0].message


# ── exports ───────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_masked_export_holds_no_real_number_and_verifies(
    conn: sqlite3.Connection, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / f"cdrs.{fmt}"
    result = export_records(conn, out, fmt=fmt, now=T0)  # type: ignore[arg-type]
    text = out.read_text()
    assert not REAL_NUMBER.search(text)
    assert "138****8000" in text and "salt" not in text
    manifest = json.loads(result.manifest_path.read_text())
    assert (manifest["count"], manifest["first_seq"], manifest["last_seq"]) == (20, 1, 20)
    assert manifest["masked"] is True and manifest["contiguous"] is True
    assert manifest["file"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    report = verify_export(out)
    assert report.ok, report.problems


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("tamper", ["change", "delete", "reorder"])
def test_a_tampered_export_fails_and_names_the_line(
    conn: sqlite3.Connection, tmp_path: Path, fmt: str, tamper: str
) -> None:
    out = tmp_path / f"cdrs.{fmt}"
    export_records(conn, out, fmt=fmt, now=T0)  # type: ignore[arg-type]
    lines = _lines(out)
    offset = 1 if fmt == "csv" else 0  # the CSV header line
    target = offset + 4  # seq 5
    if tamper == "change":
        lines[target] = lines[target].replace("answered", "busy").replace("rejected", "failed")
    elif tamper == "delete":
        del lines[target]
    else:
        lines[target], lines[target + 1] = lines[target + 1], lines[target]
    out.write_text("".join(lines))
    report = verify_export(out)
    assert not report.ok
    assert report.problems[0].where == "file"  # the checksum
    named = report.problems[1]
    assert named.seq in (5, 6) and named.where.startswith("line "), report.problems


def test_an_export_with_a_rewritten_manifest_still_fails_on_the_record(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    out = tmp_path / "cdrs.jsonl"
    result = export_records(conn, out, fmt="jsonl", now=T0)
    lines = _lines(out)
    record = json.loads(lines[2])
    record["talk_s"] = 1.0
    record["sip_status"] = 486
    lines[2] = json.dumps(record) + "\n"
    out.write_text("".join(lines))
    manifest = json.loads(result.manifest_path.read_text())
    manifest["file"]["sha256"] = hashlib.sha256(out.read_bytes()).hexdigest()
    result.manifest_path.write_text(json.dumps(manifest))
    report = verify_export(out)
    assert [p.where for p in report.problems] == ["line 3 (seq 3)"]


def test_unmasking_needs_a_reason_and_is_audited(conn: sqlite3.Connection, tmp_path: Path) -> None:
    out = tmp_path / "cdrs.csv"
    with pytest.raises(ExportError):
        export_records(conn, out, unmask=True, now=T0)
    assert audit.events(conn, action="cdr.unmask") == []
    result = export_records(
        conn, out, unmask=True, reason="court order 2027/17", actor="alice", now=T0
    )
    assert "+8613800138000" in out.read_text()
    events = audit.events(conn, action="cdr.unmask")
    assert [(e.actor, e.reason) for e in events] == [("alice", "court order 2027/17")]
    assert result.manifest["unmask"]["audit_seq"] == events[0].seq
    report = verify_export(out)
    assert report.ok, report.problems
    # In an unmasked export the numbers themselves are proven: change one and it is named.
    out.write_text(out.read_text().replace("'+8613900139000", "'+8613700137000", 1))
    assert any(
        "callee does not match its commitment" in p.message for p in verify_export(out).problems
    )


def test_formula_injection_payloads_are_neutralised(db_path: Path, tmp_path: Path) -> None:
    fill(
        db_path,
        [
            answered(i, a_call_id=payload, tenant=payload, node=payload)
            for i, payload in enumerate(INJECTIONS)
        ],
    )
    connection = db.open_database(db_path)
    out = tmp_path / "cdrs.csv"
    export_records(connection, out, now=T0)
    connection.close()
    with out.open(newline="") as source:
        rows = list(csv.DictReader(source))
    for row, payload in zip(rows, INJECTIONS, strict=True):
        for column in ("a_call_id", "tenant", "node"):
            assert row[column] == "'" + payload
            assert row[column][0] not in "=+-@\t\r"
    report = verify_export(out)
    assert report.ok, report.problems


def test_filters_select_by_time_and_tenant(conn: sqlite3.Connection, tmp_path: Path) -> None:
    out = tmp_path / "cdrs.csv"
    result = export_records(
        conn, out, selection=ExportFilter(since=T0 + 3, until=T0 + 9, tenant="ride"), now=T0
    )
    manifest = result.manifest
    assert manifest["count"] == 4  # 4, 5, 7, 8: 3 and 6 are rejected calls of "default"
    assert manifest["contiguous"] is False
    assert verify_export(out).ok


def test_a_signed_manifest_verifies_only_with_its_key(
    conn: sqlite3.Connection, tmp_path: Path
) -> None:
    public_path, _ = generate_keypair(tmp_path / "cdr.key")
    key = load_signing_key(tmp_path / "cdr.key")
    take_checkpoint(conn, T0 + 100, key)
    out = tmp_path / "cdrs.csv"
    result = export_records(conn, out, now=T0, signing_key=key)
    assert result.manifest["checkpoint"]["seq"] == 20
    public = load_public_key(public_path)
    assert verify_export(out, public_key=public).ok
    manifest = json.loads(result.manifest_path.read_text())
    manifest["count"] = 19
    result.manifest_path.write_text(json.dumps(manifest))
    problems = verify_export(out, public_key=public).problems
    assert any("signature does not verify" in p.message for p in problems)


def test_parse_when_takes_dates_times_and_epochs() -> None:
    assert parse_when("2027-01-15") == 1_799_971_200.0
    assert parse_when("2027-01-15", end_of_day=True) == 1_799_971_200.0 + DAY
    assert parse_when("2027-01-15T08:00:00Z") == 1_799_971_200.0 + 8 * 3600
    assert parse_when("1799971200") == 1_799_971_200.0
    with pytest.raises(ExportError):
        parse_when("yesterday")


def test_masked_record_hides_numbers_in_the_a_call_id() -> None:
    from proxy.cdr.record import masked

    record = masked(replace(answered(1), a_call_id="13800138000///1-4242@127.0.0.1"))
    assert record.a_call_id == "138****8000///1-4242@127.0.0.1"
    assert record.caller == "138****8000" and record.callee == "139****9000"
    assert B not in repr(record)
