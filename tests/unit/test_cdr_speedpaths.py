"""The fast paths of the CDR writer and exports write what the slow ones do (issue #5):
exports rendered by SQLite chunk by chunk or by the reference are the same bytes with the
same manifest, and the writer's hashes are ``chain.record_hash``'s."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from proxy import db
from proxy.cdr import export
from proxy.cdr.chain import GENESIS, record_hash
from proxy.cdr.export import ExportFilter, export_records
from proxy.cdr.record import CallRecord
from proxy.cdr.verify import verify_export
from proxy.cdr.writer import _INSERT, chained_rows

T0 = 1_800_000_000.0


def _record(n: int) -> CallRecord:
    if n % 3 == 2:
        return CallRecord(
            id=f"r{n}",
            tenant="default" if n % 2 else "=cmd",
            x="700123456789012",
            caller=f"+86138{n:08d}",
            invite_at=T0 + n * 0.01,
            end_at=T0 + n * 0.01,
            disposition="rejected",
            reject_reason="no_binding",
            sip_status=404,
            node="n1",
        )
    return CallRecord(
        id=f"c{n}",
        tenant="ride",
        binding_id=f"b{n % 7}",
        x="700123456789012",
        caller=f"+86138{n:08d}",
        callee=f"+86139{n:08d}",
        direction="a_to_b",
        a_call_id=f"138{n:08d}///{n}@softswitch" if n % 5 else 'say "hi", 1',
        b_call_id=f"{n:032x}@privproxy",
        invite_at=T0 + n * 0.01,
        ring_at=T0 + n * 0.01 + 1.5,
        answer_at=T0 + n * 0.01 + 6.25,
        end_at=T0 + n * 0.01 + 66.25,
        disposition="answered",
        sip_status=200,
        q850_cause=16,
        released_by="callee",
        node="n1",
    )


def _store(path: Path, count: int) -> sqlite3.Connection:
    conn = db.open_database(path)
    with db.transaction(conn):
        conn.executemany(_INSERT, chained_rows([_record(n) for n in range(count)], 0, GENESIS))
    return conn


def _export(
    conn: sqlite3.Connection, out: Path, fmt: str, renderer: str, **options: object
) -> tuple[bytes, dict[str, object]]:
    result = export_records(
        conn,
        out,
        fmt=fmt,  # type: ignore[arg-type]
        now=T0,
        renderer=renderer,  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )
    manifest = dict(result.manifest)
    manifest["file"] = {k: v for k, v in manifest["file"].items() if k != "name"}
    if manifest["unmask"]:  # each unmasking export is its own audit event
        manifest["unmask"] = manifest["unmask"]["reason"]
    return out.read_bytes(), manifest


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("unmask", [False, True])
def test_sql_export_is_the_reference_byte_for_byte(tmp_path: Path, fmt: str, unmask: bool) -> None:
    conn = _store(tmp_path / "cdr.db", 300)
    options: dict[str, object] = {"unmask": True, "reason": "case 7"} if unmask else {}
    reference = _export(conn, tmp_path / f"ref.{fmt}", fmt, "python", **options)
    rendered = _export(conn, tmp_path / f"sql.{fmt}", fmt, "sql", **options)
    conn.close()
    assert rendered == reference
    assert verify_export(tmp_path / f"sql.{fmt}").ok


def test_export_with_a_filter_and_more_records_than_one_fetch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "_FETCH_ROWS", 16)
    conn = _store(tmp_path / "cdr.db", 400)
    selection = ExportFilter(since=T0 + 0.5, until=T0 + 3.5, tenant="ride")
    for fmt in ("csv", "jsonl"):
        reference = _export(conn, tmp_path / f"ref.{fmt}", fmt, "python", selection=selection)
        rendered = _export(conn, tmp_path / f"sql.{fmt}", fmt, "sql", selection=selection)
        assert rendered == reference
        assert reference[1]["count"] == 200
        # The index on (tenant, invite_at) and ORDER BY seq put the rows through a sorter,
        # which hands whole REAL durations back as ints; both write them as floats.
        assert b",60.0," in reference[0] or b'"talk_s":60.0,' in reference[0]
    conn.close()


def test_sql_export_raises_the_reference_error_of_the_first_bad_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "_FETCH_ROWS", 37)
    conn = _store(tmp_path / "cdr.db", 200)
    # A text time cannot be written; nor can a time past the year 9999, later on.
    conn.execute("UPDATE cdrs SET invite_at = 'abc', sip_status = 'x' WHERE seq = 90")
    conn.execute("UPDATE cdrs SET end_at = 3e11 WHERE seq = 150")
    errors = []
    for renderer in ("python", "sql"):
        with pytest.raises((TypeError, ValueError)) as caught:
            _export(conn, tmp_path / f"{renderer}.csv", "csv", renderer)
        errors.append(f"{type(caught.value).__name__}: {caught.value}")
    conn.close()
    assert errors[1] == errors[0]
    assert "round" in errors[0]


def test_formula_cells_and_quoting_found_per_chunk_go_to_the_reference(tmp_path: Path) -> None:
    conn = _store(tmp_path / "cdr.db", 30)
    reference = _export(conn, tmp_path / "ref.csv", "csv", "python")
    rendered = _export(conn, tmp_path / "sql.csv", "csv", "sql")
    conn.close()
    assert rendered == reference
    assert b",'=cmd," in rendered[0] and b'"say ""hi"", 1"' in rendered[0]


def test_writer_hashes_equal_record_hash_across_a_batch_and_its_head() -> None:
    records = [_record(n) for n in range(12)]
    rows = chained_rows(records, 41, "f" * 64)
    prev = "f" * 64
    for row in rows:
        values = row[:19]
        seq, _, caller_c, callee_c, call_id_c, prev_hash, digest = row[19:]
        assert prev_hash == prev
        times = [None if t is None else round(t * 1000) for t in values[9:13]]
        chained = [seq, *values[:4], caller_c, callee_c, values[6], call_id_c, values[8]]
        expected = record_hash([*chained, *times, *values[13:], prev_hash])
        assert digest == expected
        prev = digest
