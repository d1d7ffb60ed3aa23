"""The SQL-rendered exports write the very bytes of the Python reference, and the writer's
fast chain encoding is ``chain.record_hash``'s (issue #5)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy import db
from proxy.cdr import export
from proxy.cdr.chain import GENESIS, commit, ms, record_hash
from proxy.cdr.export import export_records
from proxy.cdr.record import CallRecord, mask_call_id, mask_party
from proxy.cdr.verify import verify_export
from proxy.cdr.writer import _INSERT, chained_rows

T0 = 1_800_000_000.0

# Values an export must carry through unchanged or escape: CSV specials, formula payloads,
# JSON escapes, NUL, non-ASCII, IPv6, digit runs, purged tokens.
AWKWARD = [
    "",
    "plain",
    "a,b",
    'say "hi"',
    "line\nbreak",
    "cr\rhere",
    "=cmd|' /C calc'!A0",
    "+SUM(1,2)",
    "-2+3",
    "@sum",
    "\tlead",
    "'quoted",
    "nul\x00byte",
    "tab\tin",
    "back\\slash",
    "\x01\x1f\x7f",
    "北京-呼叫",
    "é",
    "😀",
    "[2001:db8::1]:5060",
    "13800138000///1-42@host",
    "+8613800138000@x",
    "call (010) 1234-5678 x",
    "h:" + "ab" * 16,
    "h:,=x",
]
NUMBERS = [
    "+8613800138000",
    "+14155550123",
    "+447911123456",
    "+79161234567",
    "+0861380013800",
    "+861380",
    "+86١٣٨٠٠١٣٨٠٠٠",
    "13800138000",
    "+86 138 0013 8000",
    "h:" + "cd" * 16,
    "sip:alice@example.com",
    "",
]

text = st.one_of(st.sampled_from(AWKWARD), st.text(max_size=12))
number = st.one_of(st.sampled_from(NUMBERS), st.text(max_size=16))
times = st.one_of(
    st.floats(min_value=1.0, max_value=4_000_000_000.0).map(lambda t: round(t, 3)),
    st.floats(min_value=-100.0, max_value=300_000_000_000.0),
    st.integers(min_value=0, max_value=4_000_000_000).map(lambda n: n / 1000 + 0.0005),
    # Ties: t * 1000 ends in exactly .5 (Python rounds them to even, SQLite away from 0).
    st.integers(min_value=8, max_value=2**35).map(lambda n: (2 * n + 1) / 16),
    st.sampled_from(
        [0.0, 0.5, 1.0, 0.0005, 1.0625, 1_800_000_000.0625, 1_800_000_000.4375, 253402300799.999]
    ),
)


@st.composite
def records(draw: st.DrawFn, n: int) -> CallRecord:
    invite = round(draw(st.floats(min_value=0.0, max_value=4_000_000_000.0)), 3)
    answered = draw(st.booleans())
    ring = (
        invite + draw(st.sampled_from([0.0, 0.0004, 1.5, 0.001])) if draw(st.booleans()) else None
    )
    answer = (ring or invite) + draw(st.sampled_from([0.0, 4.75, 0.1])) if answered else None
    end = (answer or ring or invite) + draw(st.sampled_from([0.0, 60.0, 66.25, 1e-3, 1e6]))
    return CallRecord(
        id=f"{draw(text)}#{n}",
        tenant=draw(text),
        binding_id=draw(st.none() | text),
        x=draw(st.sampled_from(["700123456789012", "=700", "700,1"])),
        caller=draw(number),
        callee=draw(st.none() | number),
        direction=draw(st.sampled_from([None, "a_to_b", "b_to_a"])),
        a_call_id=draw(st.none() | text),
        b_call_id=draw(st.none() | text),
        invite_at=invite,
        ring_at=ring,
        answer_at=answer,
        end_at=end,
        disposition="answered" if answered else "rejected",
        reject_reason=None if answered else "no_binding",
        sip_status=200 if answered else 404,
        q850_cause=draw(st.none() | st.integers(min_value=0, max_value=127)),
        released_by=draw(st.sampled_from([None, "caller", "callee", "proxy"])),
        node=draw(text),
    )


# Stored values no writer produces but a database may hold (by hand, by an older version):
# times off the millisecond or on a rounding tie, durations of times running backwards,
# values of the wrong type.
TAMPERING = [
    "UPDATE cdrs SET invite_at = ? WHERE seq = ?",
    "UPDATE cdrs SET end_at = ? WHERE seq = ?",
    "UPDATE cdrs SET answer_at = ? WHERE seq = ?",
    "UPDATE cdrs SET ring_at = ? WHERE seq = ?",
    "UPDATE cdrs SET sip_status = ? WHERE seq = ?",
    "UPDATE cdrs SET q850_cause = ? WHERE seq = ?",
    "UPDATE cdrs SET hash = ? WHERE seq = ?",
    # Times a fraction of a millisecond backwards: ring_s or talk_s is -0.0.
    "UPDATE cdrs SET end_at = coalesce(answer_at, invite_at) - ? WHERE seq = ?",
    "UPDATE cdrs SET answer_at = ring_at - ?, end_at = ring_at - ? * 2 WHERE seq = ?",
]
tamper_values = st.one_of(times, st.sampled_from(["abc", "1,5", "200", 404, -1, None]))


def awkward_record(n: int, value: str) -> CallRecord:
    """A refused call with ``value`` in every free-text column (``AWKWARD``, ``NUMBERS``)."""
    return CallRecord(
        id=f"r{n}",
        tenant=value or "t",
        binding_id=value,
        x="700123456789012",
        caller=value or "+8613800138000",
        callee=value,
        a_call_id=value,
        b_call_id=value,
        invite_at=T0 + n,
        end_at=T0 + n + 0.001,
        disposition="rejected",
        reject_reason="no_binding",
        sip_status=404,
        node=value or "n",
    )


def answered_record(n: int, *, a_call_id: str, start: float) -> CallRecord:
    """An answered call between the same two parties, invited at ``start``."""
    return CallRecord(
        id=f"c{n}",
        tenant="ride",
        binding_id="b1",
        x="700123456789012",
        caller="+8613800138000",
        callee="+8613900139000",
        direction="a_to_b",
        a_call_id=a_call_id,
        b_call_id=f"{n:032x}@privproxy",
        invite_at=start,
        ring_at=start + 1.5,
        answer_at=start + 6.25,
        end_at=start + 66.25,
        disposition="answered",
        sip_status=200,
        q850_cause=16,
        released_by="callee",
        node="n1",
    )


def _store(path: Path, batch: list[CallRecord]) -> sqlite3.Connection:
    conn = db.open_database(path)
    with db.transaction(conn):
        conn.executemany(_INSERT, chained_rows(batch, 0, GENESIS))
    return conn


def _exports(
    conn: sqlite3.Connection, tmp: Path, fmt: str, unmask: bool
) -> tuple[bytes | str, bytes | str]:
    """What each renderer writes, or the error it raises (a time past the year 9999 or a
    text status cannot be written by either)."""
    written: list[bytes | str] = []
    for renderer in ("python", "sql"):
        out = tmp / f"{renderer}.{fmt}"
        try:
            _export(conn, out, fmt, unmask, renderer)
        except (TypeError, ValueError, OverflowError) as exc:
            written.append(f"{type(exc).__name__}: {exc}")
            continue
        written.append(out.read_bytes())
    return written[0], written[1]


def _export(conn: sqlite3.Connection, out: Path, fmt: str, unmask: bool, renderer: str) -> None:
    export_records(
        conn,
        out,
        fmt=fmt,  # type: ignore[arg-type]
        unmask=unmask,
        reason="audit case 42" if unmask else None,
        now=T0,
        renderer=renderer,  # type: ignore[arg-type]
    )


@pytest.fixture
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("export")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.data(),
    size=st.integers(min_value=1, max_value=12),
    fmt=st.sampled_from(["csv", "jsonl"]),
    unmask=st.booleans(),
)
def test_sql_and_python_exports_are_byte_identical(
    workdir: Path, data: st.DataObject, size: int, fmt: str, unmask: bool
) -> None:
    batch = [data.draw(records(n)) for n in range(size)]
    path = workdir / f"cdr-{data.draw(st.integers(0, 10**9))}.db"
    conn = _store(path, batch)
    try:
        for _ in range(data.draw(st.integers(min_value=0, max_value=3))):
            statement = data.draw(st.sampled_from(TAMPERING))
            value = data.draw(tamper_values)
            seq = data.draw(st.integers(1, size))
            offset = data.draw(st.sampled_from([0.0001, 0.0004, 0.0006]))
            if statement.count("?") == 3:
                parameters: tuple[object, ...] = (offset, offset, seq)
            elif "coalesce" in statement:
                parameters = (offset, seq)
            else:
                parameters = (value, seq)
            with contextlib.suppress(sqlite3.IntegrityError):  # NULL in a NOT NULL column
                conn.execute(statement, parameters)
        reference, rendered = _exports(conn, workdir, fmt, unmask)
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    assert rendered == reference


def test_awkward_values_each_take_the_reference_path_and_stay_identical(tmp_path: Path) -> None:
    batch = [awkward_record(n, value) for n, value in enumerate(AWKWARD + NUMBERS)]
    conn = _store(tmp_path / "cdr.db", batch)
    for fmt in ("csv", "jsonl"):
        for unmask in (False, True):
            reference, rendered = _exports(conn, tmp_path, fmt, unmask)
            assert rendered == reference, (fmt, unmask)
            if fmt == "csv" and not unmask:
                # Formula payloads are neutralised and no real number is left.
                assert b"\r\n=cmd" not in rendered and b",=cmd" not in rendered
                assert isinstance(rendered, bytes)
                table = list(csv.DictReader(io.StringIO(rendered.decode(), newline="")))
                assert len(table) == len(batch)
                for row in table:
                    for column in ("caller", "callee", "a_call_id"):
                        assert "13800138000" not in row[column]
                        assert "3800138000" not in row[column]
    conn.close()


EDGE_CASES = [
    # Rounding ties of the millisecond: 1_800_000_000.0625 s is 1_800_000_000_062.5 ms.
    ("UPDATE cdrs SET end_at = ?", (T0 + 100.0625,)),
    ("UPDATE cdrs SET invite_at = ?", (T0 + 0.4375,)),
    ("UPDATE cdrs SET end_at = ?", (T0 + 100.0004,)),
    # -0.0 durations from times a fraction of a millisecond backwards.
    ("UPDATE cdrs SET answer_at = ring_at - 0.0002, end_at = ring_at - 0.0002", ()),
    ("UPDATE cdrs SET end_at = answer_at - 0.0002", ()),
    ("UPDATE cdrs SET answer_at = NULL, end_at = ring_at - 0.0002", ()),
    # Times the reference cannot format, or formats before 1970-01-01T00:00:01.
    ("UPDATE cdrs SET invite_at = 0.5, ring_at = 0.6, answer_at = 0.7, end_at = 0.8", ()),
    ("UPDATE cdrs SET sip_status = '1,5', q850_cause = 2.5", ()),
    # Numbers SQL must not mask itself: NUL, a leading 0, three-digit country codes.
    ("UPDATE cdrs SET caller = ?", ("+86138001380\x00000",)),
    ("UPDATE cdrs SET caller = ?, callee = ?", ("+0861380013800", "+3725123456789")),
    ("UPDATE cdrs SET caller = ?, callee = ?", ("+8801712345678", "+1 415 555 0123")),
    ("UPDATE cdrs SET a_call_id = ?", ("abc\x00 13800138000@h",)),
    ("UPDATE cdrs SET tenant = ?", (b"blob",)),
]


@pytest.mark.parametrize(("statement", "parameters"), EDGE_CASES)
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_edge_rows_render_as_the_reference_does(
    tmp_path: Path, statement: str, parameters: tuple[object, ...], fmt: str
) -> None:
    record = CallRecord(
        id="c1",
        tenant="ride",
        x="700123456789012",
        caller="+8613800138000",
        callee="+8613900139000",
        a_call_id="a1@softswitch",
        invite_at=T0,
        ring_at=T0 + 1.5,
        answer_at=T0 + 6.25,
        end_at=T0 + 66.25,
        disposition="answered",
        sip_status=200,
        node="n",
    )
    conn = _store(tmp_path / "cdr.db", [record])
    conn.execute(statement, parameters)
    reference, rendered = _exports(conn, tmp_path, fmt, False)
    assert rendered == reference
    conn.close()


def test_sql_export_of_writer_records_verifies(tmp_path: Path) -> None:
    batch = [
        answered_record(n, a_call_id=f"138{n:08d}///{n}@softswitch", start=T0 + n * 0.01)
        for n in range(50)
    ]
    conn = _store(tmp_path / "cdr.db", batch)
    for fmt in ("csv", "jsonl"):
        out = tmp_path / f"export.{fmt}"
        result = export_records(conn, out, fmt=fmt, now=T0)
        assert result.manifest["count"] == 50 and result.manifest["contiguous"]
        report = verify_export(out)
        assert report.ok, report.problems
        assert b"13800138000" not in out.read_bytes()
    conn.close()


# ── The writer's chain encoding ────────────────────────────────────────────────────────────


def _reference_hashes(rows: list[tuple[Any, ...]]) -> list[str]:
    """Each row's hash recomputed by ``chain.record_hash`` from the stored values."""
    hashes = []
    for row in rows:
        values = row[:19]
        seq, salt, caller_c, callee_c, a_call_id_c, prev_hash, _ = row[19:]
        assert caller_c == commit(salt, "caller", values[4])
        assert callee_c == commit(salt, "callee", values[5])
        assert a_call_id_c == commit(salt, "a_call_id", values[7])
        hashes.append(
            record_hash(
                (
                    seq,
                    *values[:4],
                    caller_c,
                    callee_c,
                    values[6],
                    a_call_id_c,
                    values[8],
                    *(ms(t) for t in values[9:13]),
                    *values[13:],
                    prev_hash,
                )
            )
        )
    return hashes


@settings(max_examples=100, deadline=None)
@given(
    batch=st.lists(st.integers(0, 10**6), min_size=1, max_size=8).flatmap(
        lambda ns: st.tuples(*(records(n) for n in ns))
    ),
    head=st.sampled_from([(0, GENESIS), (41, "f" * 64), (7, "é" * 3)]),
)
def test_writer_chain_equals_record_hash(
    batch: tuple[CallRecord, ...], head: tuple[int, str]
) -> None:
    rows = chained_rows(list(batch), *head)
    assert [row[-1] for row in rows] == _reference_hashes(rows)
    assert rows[0][-2] == head[1]
    assert [row[19] for row in rows] == list(range(head[0] + 1, head[0] + 1 + len(batch)))
    assert all(rows[i][-2] == rows[i - 1][-1] for i in range(1, len(rows)))


def test_writer_chain_falls_back_for_values_without_a_fast_form() -> None:
    base = CallRecord(
        id="c1",
        tenant="t",
        x="700123456789012",
        caller="+8613800138000",
        invite_at=T0,
        end_at=T0,
        disposition="rejected",
        reject_reason="no_binding",
        sip_status=404,
        node="n",
    )
    # An int where text is due has a canonical form (decimal); record_hash gives it.
    odd = CallRecord.__new__(CallRecord)
    for name in CallRecord.__slots__:
        object.__setattr__(odd, name, getattr(base, name))
    object.__setattr__(odd, "tenant", 42)
    rows = chained_rows([odd, base], 0, GENESIS)
    assert [row[-1] for row in rows] == _reference_hashes(rows)
    # A float status has none: the writer raises rather than chain a hash verify would refute.
    object.__setattr__(odd, "sip_status", 404.0)
    with pytest.raises(TypeError):
        chained_rows([odd], 0, GENESIS)


# ── The render loop's fast paths against the functions they stand for ──────────────────────

digits_text = st.text(alphabet="0123456789", min_size=0, max_size=18)
party_values = st.one_of(
    st.sampled_from(NUMBERS + AWKWARD),
    st.builds(lambda d: "+" + d, digits_text),
    st.builds(lambda d: d, digits_text),
    st.builds(lambda d: "+0" + d, digits_text),
    st.builds(lambda d: "+" + d + "\u0663", digits_text),  # a non-ASCII digit
    st.text(alphabet="+0123456789 ()-h:٣", max_size=18),
    st.text(max_size=16),
)
call_id_values = st.one_of(
    st.sampled_from(AWKWARD + NUMBERS),
    st.text(alphabet="0123456789 ().-+@/abh:x٣", max_size=40),
    st.builds(
        lambda lead, run, rest: lead + run + rest,
        st.text(alphabet="ab@/+ -", max_size=4),
        st.text(alphabet="0123456789", min_size=6, max_size=14),
        st.text(alphabet="0123456789 ().-/@x", max_size=16),
    ),
    st.text(max_size=30),
)


@settings(max_examples=2000, deadline=None)
@given(value=party_values)
def test_party_fast_path_is_mask_party(value: str) -> None:
    assert export._CellWriter(True).party(value) == mask_party(value)
    assert export._CellWriter(False).party_cell(value) == json.dumps(
        mask_party(value), ensure_ascii=False
    )


@settings(max_examples=2000, deadline=None)
@given(value=call_id_values)
def test_call_id_fast_path_is_mask_call_id(value: str) -> None:
    masked = mask_call_id(value)
    assert export._CellWriter(True).call_id(value) == masked
    # In CSV a masked Call-ID that starts like a formula goes to the reference.
    formula = masked[:1] in "=+-@\t\r'" and masked != ""
    assert export._CellWriter(True).call_id_cell(value) == (None if formula else masked)
    assert export._CellWriter(False).call_id_cell(value) == json.dumps(masked, ensure_ascii=False)


durations = st.one_of(
    st.none(),
    st.floats(allow_nan=False),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.sampled_from([0.0, -0.0, 0, 60, 60.0, 4.75, float("inf"), -float("inf"), 1e16, 1e-5]),
)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(durations, max_size=12))
def test_duration_cells_are_the_reference_in_any_order(values: list[object]) -> None:
    """The cache never answers -0.0 for 0.0 (they are equal keys) nor mixes up types."""
    for csv_format in (True, False):
        cells = export._CellWriter(csv_format)
        for value in values:
            if value is None:
                expected: str | None = "" if csv_format else "null"
            else:
                number = float(value)  # type: ignore[arg-type]
                finite = number - number == 0
                expected = repr(number) if csv_format or finite else None
            assert cells.durations[value] == expected, (value, csv_format)


FIRST_CHARACTERS = ["", " ", "!", "'", "+", "-", "/", "0", "9", ":", "<", "=", ">", "@", "A"]
FIRST_CHARACTERS += ["Z", "a", "\t", "\r", "\x01", "\x7f", "é", "北", "\x00"]


TEXT_COLUMNS = ("id", "tenant", "binding_id", "x", "callee", "direction", "a_call_id")
TEXT_COLUMNS += ("b_call_id", "disposition", "reject_reason", "released_by", "node")
TEXT_COLUMNS += ("caller_commit", "hash", "salt")


@pytest.mark.parametrize("column", TEXT_COLUMNS)
def test_every_first_character_of_every_text_column_renders_as_the_reference(
    tmp_path: Path, column: str
) -> None:
    """SQL finds formula-like cells by comparisons on their first character: each character
    around the bounds it uses, in each column, against the reference; and blobs, one of
    them not UTF-8."""
    batch = [
        answered_record(n, a_call_id=f"a{n}@softswitch", start=T0 + n)
        for n in range(len(FIRST_CHARACTERS) + 3)
    ]
    conn = _store(tmp_path / "cdr.db", batch)
    for seq, first in enumerate(FIRST_CHARACTERS, start=1):
        conn.execute(f"UPDATE cdrs SET {column} = ? || 'x,1' WHERE seq = ?", (first, seq))
    conn.execute(f"UPDATE cdrs SET {column} = ? WHERE seq = ?", (b"=blob", len(batch) - 2))
    conn.execute(f"UPDATE cdrs SET {column} = ? WHERE seq = ?", (b"\xff\xfe", len(batch) - 1))
    conn.execute(f"UPDATE cdrs SET {column} = '' WHERE seq = ?", (len(batch),))
    for fmt in ("csv", "jsonl"):
        for unmask in (False, True):
            reference, rendered = _exports(conn, tmp_path, fmt, unmask)
            assert rendered == reference, (fmt, unmask)
    conn.close()


def test_cells_that_need_quoting_anywhere_in_a_line_go_to_the_reference(tmp_path: Path) -> None:
    """The chunk check counts commas, CR, LF, quotes and NULs; a chain column of a
    tampered record may hold any of them."""
    batch = [
        CallRecord(
            id=f"c{n}",
            tenant="ride",
            x="700123456789012",
            caller="+8613800138000",
            invite_at=T0 + n,
            end_at=T0 + n,
            disposition="rejected",
            reject_reason="no_binding",
            sip_status=404,
            node="n1",
        )
        for n in range(8)
    ]
    conn = _store(tmp_path / "cdr.db", batch)
    for seq, value in enumerate(["a,b", 'q"q', "c\rr", "l\nf", "n\x00l", "ok"], start=1):
        conn.execute("UPDATE cdrs SET prev_hash = ?, node = ? WHERE seq = ?", (value, value, seq))
    for fmt in ("csv", "jsonl"):
        for unmask in (False, True):
            reference, rendered = _exports(conn, tmp_path, fmt, unmask)
            assert rendered == reference, (fmt, unmask)
    conn.close()
