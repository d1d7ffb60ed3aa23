"""Exports of call records for auditors: CSV or JSON Lines plus a manifest (issue #5).

Records are written in ``seq`` (chain) order. Every export carries, beside the record fields,
the chain fields ``caller_commit``, ``callee_commit``, ``a_call_id_commit``, ``prev_hash`` and
``hash``, so that ``privproxy cdr verify FILE`` can recompute each record's hash from the file
alone (``proxy.cdr.chain``: the chain covers commitments, never the numbers themselves).

- **Masked** (the default): ``caller`` and ``callee`` as ``138****8000``, digit runs in
  ``a_call_id`` likewise; no ``salt`` column, so the commitments cannot be brute-forced.
- **Unmasked** (``unmask=True`` with a reason): real values plus each record's ``salt``, so
  that verify also proves the numbers themselves. Writes ``cdr.unmask`` to the audit log
  before a byte is written.

Times are ISO 8601 UTC with milliseconds (``2027-01-15T08:00:00.123Z``), exactly the
millisecond the chain hashes. In CSV an empty cell is NULL, and a text cell that starts with
``=``, ``+``, ``-``, ``@``, tab, carriage return or ``'`` gets a leading ``'`` (OWASP CSV
injection), which verify removes again; JSON Lines are written as stored.

The manifest ``FILE.manifest.json`` holds the filter, format, masked flag, count, first and
last seq, head hash (hash of the last exported record), whether the exported seqs are
contiguous, the file's SHA-256 and size, the creation time, the newest stored checkpoint
that falls inside the export, and, when a signing key is configured, an Ed25519 signature
over the manifest's canonical JSON (``sort_keys``, separators ``,`` and ``:``, UTF-8,
without the ``signature`` member).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import queue
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Final, Literal, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from proxy import audit
from proxy.cdr.checkpoint import latest_checkpoint, public_key_id

# The masks' own building blocks, so that the export's fast paths cannot drift from them.
from proxy.cdr.record import (
    NUMBER_RUN,
    PURGED_PREFIX,
    country_code_size,
    mask_call_id,
    mask_party,
)
from proxy.db import DEFAULT_BUSY_TIMEOUT_MS, transaction

ExportFormat = Literal["csv", "jsonl"]
MANIFEST_VERSION: Final = 1

RECORD_COLUMNS: Final[tuple[str, ...]] = (
    "seq",
    "id",
    "tenant",
    "binding_id",
    "x",
    "caller",
    "callee",
    "direction",
    "a_call_id",
    "b_call_id",
    "invite_at",
    "ring_at",
    "answer_at",
    "end_at",
    "ring_s",
    "talk_s",
    "disposition",
    "reject_reason",
    "sip_status",
    "q850_cause",
    "released_by",
    "node",
    "purged",
    "caller_commit",
    "callee_commit",
    "a_call_id_commit",
    "prev_hash",
    "hash",
)
UNMASKED_COLUMNS: Final = (*RECORD_COLUMNS, "salt")


_SELECT: Final = (
    "SELECT seq, id, tenant, binding_id, x, caller, callee, direction, a_call_id, b_call_id,"
    " invite_at, ring_at, answer_at, end_at, ring_s, talk_s, disposition, reject_reason,"
    " sip_status, q850_cause, released_by, node, redaction IS NOT NULL, caller_commit,"
    " callee_commit, a_call_id_commit, prev_hash, hash, salt FROM cdrs"
)
_TIME_INDEXES: Final = (10, 11, 12, 13)
_DURATION_INDEXES: Final = (14, 15)
# Columns whose text may come from outside (peers' Call-IDs, tenant names, numbers).
_FREE_TEXT: Final = (1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 20, 21)
_FORMULA_START: Final = frozenset("=+-@\t\r'")


class _TextSink(Protocol):
    """Where an export's text goes (``_HashingFile``)."""

    def write(self, text: str, /) -> int: ...


class _ByteSink(Protocol):
    """Where rendered UTF-8 lines go (``_HashingFile``; a helper's ``_PartFile``)."""

    def write_bytes(self, data: bytes, /) -> None: ...


class ExportError(ValueError):
    """An export that must not run (unmasking without a reason, a bad filter)."""


@dataclass(frozen=True, slots=True)
class ExportFilter:
    """``since <= invite_at < until`` (epoch seconds, either open) and an optional tenant."""

    since: float | None = None
    until: float | None = None
    tenant: str | None = None

    def where(self) -> tuple[str, list[object]]:
        clauses: list[str] = []
        params: list[object] = []
        if self.since is not None:
            clauses.append("invite_at >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append("invite_at < ?")
            params.append(self.until)
        if self.tenant is not None:
            clauses.append("tenant = ?")
            params.append(self.tenant)
        return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), params

    def as_json(self) -> dict[str, object]:
        return {
            "since": None if self.since is None else iso_time(self.since),
            "until": None if self.until is None else iso_time(self.until),
            "tenant": self.tenant,
        }


def parse_when(text: str, *, end_of_day: bool = False) -> float:
    """A CLI/API time: ``YYYY-MM-DD`` (UTC; with ``end_of_day`` the start of the next day, so
    ``--until 2027-01-31`` includes the 31st), an ISO 8601 time (UTC unless it has an
    offset), or epoch seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            if end_of_day:
                day += timedelta(days=1)
            return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ExportError(f"not a date or time: {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


_SECOND_CACHE: dict[int, str] = {}


def iso_ms(milliseconds: int) -> str:
    """``2027-01-15T08:00:00.123Z`` from epoch milliseconds."""
    seconds, rest = divmod(milliseconds, 1000)
    head = _SECOND_CACHE.get(seconds)
    if head is None:
        if len(_SECOND_CACHE) > 100_000:
            _SECOND_CACHE.clear()
        head = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _SECOND_CACHE[seconds] = head
    return f"{head}.{rest:03d}Z"


def iso_time(t: float) -> str:
    return iso_ms(round(t * 1000))


def parse_iso_ms(text: str) -> int:
    """Epoch milliseconds from ``iso_ms`` output (exact, no float rounding)."""
    if not text.endswith("Z") or len(text) != 24 or text[19] != ".":
        raise ValueError(f"not a record time: {text!r}")
    seconds = datetime.fromisoformat(text[:19] + "+00:00").timestamp()
    return int(seconds) * 1000 + int(text[20:23])


def csv_cell(value: str) -> str:
    """A text cell a spreadsheet will not run as a formula (reversed by ``csv_value``)."""
    return "'" + value if value and value[0] in _FORMULA_START else value


def csv_value(cell: str) -> str:
    return cell[1:] if cell.startswith("'") else cell


@dataclass(frozen=True, slots=True)
class ExportResult:
    path: Path
    manifest_path: Path
    manifest: dict[str, Any]
    processes: int = 1
    """Processes that rendered the file: 2 when a helper's part was used."""


def count_matching(conn: sqlite3.Connection, selection: ExportFilter) -> int:
    where, params = selection.where()
    return int(conn.execute(f"SELECT COUNT(*) FROM cdrs{where}", params).fetchone()[0])


def _where(selection: ExportFilter, seqs: tuple[int, int] | None) -> tuple[str, list[object]]:
    """``selection``'s WHERE clause, narrowed to ``first <= seq <= last`` by ``seqs``."""
    where, params = selection.where()
    if seqs is None:
        return where, params
    narrowed = f"{where} AND seq BETWEEN ? AND ?" if where else " WHERE seq BETWEEN ? AND ?"
    return narrowed, [*params, *seqs]


def _rows(
    conn: sqlite3.Connection, selection: ExportFilter, unmask: bool, for_csv: bool
) -> Iterator[list[Any]]:
    where, params = selection.where()
    return _formatted(conn.execute(f"{_SELECT}{where} ORDER BY seq", params), unmask, for_csv)


def _formatted(cursor: sqlite3.Cursor, unmask: bool, for_csv: bool) -> Iterator[list[Any]]:
    """The reference formatting of each ``_SELECT`` row, before CSV or JSON encoding."""
    cache: dict[int, str] = {}
    while chunk := cursor.fetchmany(5000):
        if len(cache) > 100_000:
            cache.clear()
        for row in chunk:
            values = list(row)
            for i in _TIME_INDEXES:
                t = values[i]
                if t is not None:
                    seconds, rest = divmod(round(t * 1000), 1000)
                    head = cache.get(seconds)
                    if head is None:
                        head = cache[seconds] = iso_ms(seconds * 1000)[:19]
                    values[i] = f"{head}.{rest:03d}Z"
            for i in _DURATION_INDEXES:
                # ring_s and talk_s are REAL, but a whole value that went through a sorter
                # (ORDER BY seq over an index on tenant or time) comes back as an int.
                if type(values[i]) is int:
                    values[i] = float(values[i])
            if not unmask:
                values[5] = mask_party(values[5])
                if values[6] is not None:
                    values[6] = mask_party(values[6])
                if values[8] is not None:
                    values[8] = mask_call_id(values[8])
                del values[28]
            if for_csv:
                for i in _FREE_TEXT:
                    value = values[i]
                    if value and value[0] in _FORMULA_START:
                        values[i] = "'" + value
                values[22] = "true" if values[22] else "false"
            else:
                values[22] = bool(values[22])
            yield values


def _write_csv(
    out: _TextSink, columns: tuple[str, ...], rows: Iterator[list[Any]]
) -> Iterator[list[Any]]:
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    writerow = writer.writerow
    for row in rows:
        writerow(row)
        yield row


def _write_jsonl(
    out: _TextSink, columns: tuple[str, ...], rows: Iterator[list[Any]]
) -> Iterator[list[Any]]:
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    write = out.write
    for row in rows:
        write(dumps(dict(zip(columns, row, strict=True))))
        write("\n")
        yield row


# ── Rendering in SQLite ─────────────────────────────────────────────────────────────────────
#
# ``_rows`` with ``_write_csv``/``_write_jsonl`` format each row in Python (~20 µs a row): the
# reference. ``_LineSql`` has SQLite render the plain text of each line instead (integers,
# text cells by concatenation, json_quote in JSON), and ``_masked_lines``/``_unmasked_lines``
# fill in the cells that need Python with the reference's own code or a fast path tested
# against it: the masks (``mask_party``, ``mask_call_id``; ``_CellWriter``), the times
# (``round(t * 1000)``, ``iso_ms``) and the durations (``repr``). SQL renders a row's text
# only where it is known to equal the reference's: no blob in a text column, integer
# statuses, and in CSV no free-text cell starting like a formula; for any other row it
# returns the row's ``seq`` (or a NULL segment) and the reference renders that row, as it
# does a row whose duration is not a float, and a whole chunk in which a value makes the
# reference's code raise (so that the same error comes first). CSV quoting is checked over
# whole chunks: a chunk with exactly one separator per cell boundary and no quote, CR, LF or
# NUL inside a cell needs no cell quoted (``_csv_unquoted``); a line that fails goes to the
# reference. tests/unit/test_cdr_export.py and test_cdr_speedpaths.py hold both paths to
# the same bytes.
#
# Measured with benchmarks/cdr.py on the shared 2-CPU machine: SQLite's part (the scan, the
# virtual durations, the concatenations and checks) is about a third of the CPU time, the
# sqlite3 module's row tuples a sixth, the render loop a third. A second thread rendering
# does not pay: the render loop holds the GIL, and sqlite3 releases it around every row's
# step, so another Python thread would take turns with it row by row. What overlaps in one
# process is hashing and writing, which ``_HashingFile`` does in a thread of its own on
# whole blocks; what uses a second core is a helper process rendering the second half of
# the rows (see "Two processes" below).

_TIME_COLUMNS: Final = frozenset(RECORD_COLUMNS[i] for i in _TIME_INDEXES)
_FREE_TEXT_COLUMNS: Final = frozenset(RECORD_COLUMNS[i] for i in _FREE_TEXT)
_TEXT_COLUMNS: Final = tuple(
    c
    for c in UNMASKED_COLUMNS
    if c not in _TIME_COLUMNS
    and c not in ("seq", "ring_s", "talk_s", "purged", "sip_status", "q850_cause")
)


class _LineSql:
    """The ``SELECT`` that has SQLite render the plain text of each record's line, leaving
    the *Python cells* (the times, the durations, and in a masked export ``caller``,
    ``callee`` and ``a_call_id``) to ``_masked_lines``/``_unmasked_lines``.

    Per record it returns the text segments between the Python cells that hold a stored
    value, and each Python cell's stored value; a segment that is only a separator (and in
    JSON a key) is the same on every line, so it is kept in ``constants`` instead. The first
    segment is the record's ``seq`` where SQLite cannot render the record's text cells as
    the reference does (``_needs_reference``); any later segment is NULL where one of its
    cells holds a blob (json_quote would raise, and the text of a blob need not be UTF-8)."""

    def __init__(self, fmt: ExportFormat, unmask: bool) -> None:
        self.csv = fmt == "csv"
        self.unmask = unmask
        self.columns = UNMASKED_COLUMNS if unmask else RECORD_COLUMNS
        self.null = "''" if self.csv else "'null'"
        python_cells = tuple(
            c
            for c in self.columns
            if c in _TIME_COLUMNS or c in _DURATIONS or (not unmask and c in _MASKED)
        )
        self.python_cells = python_cells
        segments: list[list[str]] = [[]]
        leads: list[str] = []
        self.sql_columns: list[str] = []
        self.head_columns: list[str] = []
        for i, column in enumerate(self.columns):
            lead = self._lead(i, column)
            if column in python_cells:
                if segments[-1]:
                    segments[-1].append(f"'{lead}'")
                    leads.append("")
                else:
                    leads.append(lead)
                segments.append([])
            else:
                segments[-1] += (f"'{lead}'", self._cell(column, guarded=len(segments) > 1))
                self.sql_columns.append(column)
                if len(segments) == 1:
                    self.head_columns.append(column)
        segments[-1].append("char(13, 10)" if self.csv else "'}' || char(10)")
        self.segments = [_concatenation(pieces) for pieces in segments]
        self.constants = leads
        """Per Python cell, the constant text before it ("" when a segment is fetched)."""

    def _lead(self, index: int, column: str) -> str:
        """What comes before a cell: the separator, and in JSON the member's key."""
        if self.csv:
            return "," if index else ""
        return f"{'{' if index == 0 else ','}{json.dumps(column)}:"

    def select(self, where: str) -> str:
        fetched = [f"CASE WHEN {self._needs_reference()} THEN seq ELSE {self.segments[0]} END"]
        for cell, segment in zip(self.python_cells, self.segments[1:], strict=True):
            fetched.append(cell)
            if segment:
                fetched.append(segment)
        return f"SELECT {', '.join(fetched)} FROM cdrs{where} ORDER BY seq"

    def _needs_reference(self) -> str:
        """True where SQLite cannot render the row as the reference does: a blob in a text
        column of the first segment (in a later one ``_cell`` makes the segment NULL), a
        status that is not an integer, and in CSV a free-text cell that starts like a
        formula (the reference writes it with a leading ``'``).

        Comparisons, not function calls, as they cost one step of SQLite's machine each (NULL
        for NULL, and CASE takes NULL as false): a blob sorts after every number and text,
        so ``column >= x''`` holds for a blob alone; the formula starts (tab, CR, ``'``,
        ``+``, ``-`` below ``'0'``, ``=`` and ``@`` between ``'='`` and ``'A'``) are found by
        the byte order of the cell's first character, with a few other rare first
        characters that send their line to the reference for nothing."""
        blobs = [f"{c} >= x''" for c in self.head_columns if c in _TEXT_COLUMNS]
        formulas = [
            f"{c} < 'A' AND ({c} < '0' AND {c} <> '' OR {c} >= '=')"
            for c in self.sql_columns
            if self.csv and c in _FREE_TEXT_COLUMNS
        ]
        return " OR ".join(
            (
                *blobs,
                *formulas,
                "typeof(sip_status) <> 'integer'",
                "typeof(q850_cause) NOT IN ('integer', 'null')",
            )
        )

    def _cell(self, column: str, *, guarded: bool) -> str:
        """A cell's SQL; ``guarded`` (outside the first segment) NULL for a blob, so that
        its segment is NULL: a blob sorts after every number and text."""
        if column == "seq":
            return "seq"
        if column == "purged":
            return "iif(redaction IS NULL, 'false', 'true')"
        if column in ("sip_status", "q850_cause"):
            if guarded:
                return _unless_blob(column, column, self.null)
            return f"coalesce({column}, {self.null})"
        # CSV: a cell that needs quoting sends its line to the reference (``_csv_unquoted``),
        # as does one that starts like a formula (``_needs_reference``).
        if self.csv:
            return _unless_blob(column, column, "''") if guarded else f"coalesce({column}, '')"
        if guarded:
            return f"CASE WHEN {column} < x'' OR {column} IS NULL THEN json_quote({column}) END"
        return f"json_quote({column})"


def _unless_blob(column: str, value: str, null: str) -> str:
    """``value`` where ``column`` holds a number or text, ``null`` where NULL, else NULL."""
    return f"CASE WHEN {column} < x'' THEN {value} WHEN {column} IS NULL THEN {null} END"


def _concatenation(pieces: list[str]) -> str:
    """``pieces`` joined by ``||`` as a balanced tree: each ``||`` copies both operands into
    a new string, so a chain would copy the growing line again at every cell."""
    if len(pieces) <= 2:
        return " || ".join(pieces)
    middle = len(pieces) // 2
    return f"({_concatenation(pieces[:middle])}) || ({_concatenation(pieces[middle:])})"


_MASKED: Final = frozenset({"caller", "callee", "a_call_id"})
_DURATIONS: Final = frozenset({"ring_s", "talk_s"})


def _write_lines_sql(
    conn: sqlite3.Connection,
    out: _ByteSink,
    selection: ExportFilter,
    fmt: ExportFormat,
    unmask: bool,
    progress: Callable[[int], None] | None,
    seqs: tuple[int, int] | None = None,
) -> int:
    """Write the lines of the selected records (those with ``first <= seq <= last`` when
    ``seqs`` is given) as ``_LineSql`` and ``_masked_lines`` or ``_unmasked_lines`` render
    them (see above); return how many."""
    columns = UNMASKED_COLUMNS if unmask else RECORD_COLUMNS
    where, params = _where(selection, seqs)
    csv_format = fmt == "csv"
    separators = len(columns) - 1
    written = 0
    line_sql = _LineSql(fmt, unmask)
    cursor = conn.execute(line_sql.select(where), params)
    render = _unmasked_lines if unmask else _masked_lines
    cells = _CellWriter(csv_format)
    constants = line_sql.constants
    tick = 0
    while chunk := cursor.fetchmany(_FETCH_ROWS):
        try:
            lines = render(chunk, constants, cells)
        except (TypeError, ValueError, OverflowError, AttributeError, OSError):
            # A value the reference cannot write either: the reference renders the whole
            # chunk, so that the error raised is the one of the first such record.
            lines = [head if type(head) is int else _seq_of(head, csv_format) for head, *_ in chunk]
        try:
            data: bytes | None = "".join(lines).encode()
        except TypeError:  # a seq in place of a line
            data = None
        if data is None or (csv_format and not _csv_unquoted(data, len(lines), separators)):
            data = "".join(_with_reference_lines(conn, lines, fmt, unmask, separators)).encode()
        out.write_bytes(data)
        written += len(chunk)
        tick += len(chunk)
        if progress is not None and tick >= _PROGRESS_ROWS:
            progress(tick)
            tick = 0
    if progress is not None and tick:
        progress(tick)
    return written


class _Moments(dict[int, str]):
    """Epoch second -> the start of its time cell (``2027-01-15T08:00:00``, quoted in JSON),
    made by ``iso_ms`` on first use."""

    def __init__(self, quote: str) -> None:
        super().__init__()
        self.quote = quote

    def __missing__(self, seconds: int) -> str:
        if len(self) > _CACHED_CELLS:
            self.clear()
        moment = self[seconds] = self.quote + iso_ms(seconds * 1000)[:19]
        return moment


class _Durations(dict[object, str | None]):
    """A stored duration -> its cell as the reference writes it (``repr`` of the float;
    ``null``/empty for NULL), or None where the reference must render it: neither a float
    nor NULL, or in JSON not finite. Zero is never kept, since -0.0 == 0.0 and the two are
    written apart; an int is a whole REAL that went through a sorter (see ``_formatted``),
    equal to its float and written as it."""

    def __init__(self, csv_format: bool, null: str) -> None:
        super().__init__({None: null})
        self.csv_format = csv_format

    def __missing__(self, duration: object) -> str | None:
        if type(duration) is int:
            duration = float(duration)
        if type(duration) is not float or not (self.csv_format or duration - duration == 0):
            return None
        text = repr(duration)
        if duration:
            if len(self) > _CACHED_CELLS:
                self.clear()
                self[None] = "" if self.csv_format else "null"
            self[duration] = text
        return text


class _NationalStarts(dict[str, int]):
    """The first three digits of an E.164 number -> where its national number starts in
    ``+CC…`` (1 + the country code's length, ``mask_party``'s own lookup)."""

    def __missing__(self, digits: str) -> int:
        start = self[digits] = 1 + country_code_size(digits)
        return start


_CACHED_CELLS: Final = 100_000


class _CellWriter:
    """The cells a ``_LineSql`` line leaves to Python, written as the reference (``_formatted``
    and its encoders) writes them: times, durations, and the masks of a masked export.

    The masks take a fast path for the common forms and call the reference's own function
    for any other: an E.164 ``caller``/``callee`` of ASCII digits with a national number of 8
    digits or more (``mask_party``'s fast path), and an ``a_call_id`` whose digit runs
    (``NUMBER_RUN``) are none, or one run of 8 digits or more (``mask_call_id``)."""

    def __init__(self, csv_format: bool) -> None:
        self.csv_format = csv_format
        self.null = "" if csv_format else "null"
        quote = "" if csv_format else '"'
        self.millis = tuple(f".{n:03d}Z{quote}" for n in range(1000))
        self.moments = _Moments(quote)
        self.durations = _Durations(csv_format, self.null)
        self.national_starts = _NationalStarts()
        self.party_cell: Callable[[str], str] = self.party if csv_format else self.party_json

    def party(self, value: str) -> str:
        if _e164_digits(value) is not None:
            start = self.national_starts[value[1:4]]
            if len(value) - start >= 8:
                return f"{value[start : start + 3]}****{value[-4:]}"
        return mask_party(value)

    def party_json(self, value: str) -> str:
        return _JSON_STRING(self.party(value))

    def call_id_cell(self, value: str) -> str | None:
        """The masked A-leg Call-ID as a cell; None in CSV where it starts like a formula
        (the reference writes it with a leading ``'``)."""
        masked = self.call_id(value)
        if self.csv_format:
            return None if masked[:1] in _FORMULA_START else masked
        return _JSON_STRING(masked)

    def call_id(self, value: str) -> str:
        found = _number_run(value)
        if found is None:
            return value
        run = found.group()
        end = found.end()
        if (
            len(run) >= 8
            and run.isdigit()
            and value[:2] != PURGED_PREFIX
            and _number_run_after(value, end) is None
        ):
            return f"{value[: found.start()]}{run[:3]}****{run[-4:]}{value[end:]}"
        return mask_call_id(value)


_number_run: Final = NUMBER_RUN.search
# Whether a run follows: ``NUMBER_RUN`` matches exactly where this does (its ``\+?`` is
# optional), and without that optional start the regex engine can skip ahead to a digit.
_number_run_after: Final = re.compile("[0-9][0-9 ().-]{5,}[0-9]").search
# "+" and ASCII digits only (``mask_party`` asks str.isdigit, which these all pass).
_e164_digits: Final = re.compile("\\+[0-9]{4,}").fullmatch


def _masked_lines(chunk: list[Any], constants: list[str], cells: _CellWriter) -> list[Any]:
    """Lines from ``_LineSql`` rows of a masked export: numbers masked as ``mask_party``,
    the A leg's Call-ID as ``mask_call_id``, times and durations as the reference
    (``_formatted``) writes them; a row's ``seq`` where the reference must render it.

    A time cell is the reference's ``round(t * 1000)`` split into its second (the cached
    start of the cell) and its millisecond (one of 1000 endings), written inline: this loop
    runs once per exported record."""
    lines: list[Any] = []
    append = lines.append
    to_callee = constants[1]
    to_ring, to_answer, to_end, to_ring_s, to_talk_s = constants[4:]
    csv_format = cells.csv_format
    null = cells.null
    party, call_id_cell = cells.party_cell, cells.call_id_cell
    moments, millis, durations = cells.moments, cells.millis, cells.durations
    for (
        head,
        caller,
        callee,
        to_call_id,
        a_call_id,
        to_invite,
        invite_at,
        ring_at,
        answer_at,
        end_at,
        ring_s,
        talk_s,
        tail,
    ) in chunk:
        if type(head) is int:
            append(head)
            continue
        ring_s_text = durations[ring_s]
        talk_s_text = durations[talk_s]
        call_id_text = null if a_call_id is None else call_id_cell(a_call_id)
        if (
            ring_s_text is None
            or talk_s_text is None
            or call_id_text is None
            or to_call_id is None
            or to_invite is None
            or tail is None
        ):
            append(_seq_of(head, csv_format))
            continue
        invite = round(invite_at * 1000)
        end = round(end_at * 1000)
        if ring_at is None:
            ring_text = null
        else:
            ring = round(ring_at * 1000)
            ring_text = f"{moments[ring // 1000]}{millis[ring % 1000]}"
        if answer_at is None:
            answer_text = null
        else:
            answer = round(answer_at * 1000)
            answer_text = f"{moments[answer // 1000]}{millis[answer % 1000]}"
        append(
            f"{head}{party(caller)}{to_callee}"
            f"{null if callee is None else party(callee)}{to_call_id}{call_id_text}{to_invite}"
            f"{moments[invite // 1000]}{millis[invite % 1000]}{to_ring}{ring_text}"
            f"{to_answer}{answer_text}{to_end}{moments[end // 1000]}{millis[end % 1000]}"
            f"{to_ring_s}{ring_s_text}{to_talk_s}{talk_s_text}{tail}"
        )
    return lines


def _seq_of(head: str, csv_format: bool) -> int:
    """The ``seq`` that starts a line's first segment."""
    return int(head[: head.index(",")] if csv_format else head[7 : head.index(",")])


def _unmasked_lines(chunk: list[Any], constants: list[str], cells: _CellWriter) -> list[Any]:
    """Lines from ``_LineSql`` rows of an unmasked export: as ``_masked_lines``, with every
    text cell rendered by SQLite."""
    lines: list[Any] = []
    append = lines.append
    to_ring, to_answer, to_end, to_ring_s, to_talk_s = constants[1:]
    csv_format = cells.csv_format
    null = cells.null
    moments, millis, durations = cells.moments, cells.millis, cells.durations
    for head, invite_at, ring_at, answer_at, end_at, ring_s, talk_s, tail in chunk:
        if type(head) is int:
            append(head)
            continue
        ring_s_text = durations[ring_s]
        talk_s_text = durations[talk_s]
        if ring_s_text is None or talk_s_text is None or tail is None:
            append(_seq_of(head, csv_format))
            continue
        invite = round(invite_at * 1000)
        end = round(end_at * 1000)
        if ring_at is None:
            ring_text = null
        else:
            ring = round(ring_at * 1000)
            ring_text = f"{moments[ring // 1000]}{millis[ring % 1000]}"
        if answer_at is None:
            answer_text = null
        else:
            answer = round(answer_at * 1000)
            answer_text = f"{moments[answer // 1000]}{millis[answer % 1000]}"
        append(
            f"{head}{moments[invite // 1000]}{millis[invite % 1000]}{to_ring}{ring_text}"
            f"{to_answer}{answer_text}{to_end}{moments[end // 1000]}{millis[end % 1000]}"
            f"{to_ring_s}{ring_s_text}{to_talk_s}{talk_s_text}{tail}"
        )
    return lines


def _csv_plain(text: str, lines: int, separators: int) -> bool:
    """Whether ``lines`` CSV lines joined in ``text`` hold no cell that needs quoting nor
    one that starts like a formula (which the reference writes with a leading ``'``)."""
    return (
        text.count(",") == separators * lines
        and text.count("\n") == lines
        and text.count("\r") == lines
        and '"' not in text
        and "\0" not in text
        and _FORMULA_CELL.search(text) is None
    )


def _csv_unquoted(data: bytes, lines: int, separators: int) -> bool:
    """Whether ``lines`` CSV lines joined in ``data`` (UTF-8) hold no cell that needs quoting:
    each line has its ``separators`` commas and its CR LF, and no cell adds a comma, CR, LF,
    quote or NUL, so deleting those leaves exactly that many bytes fewer (one pass in C).
    Formula-like cells are found before: by SQL (``_LineSql``) and ``_CellWriter``."""
    return len(data) - len(data.translate(None, _CSV_SPECIALS)) == lines * (separators + 2)


_CSV_SPECIALS: Final = b',\r\n"\0'


# A free-text cell is never a line's first (that is seq), so in a plain text (``_csv_plain``'s
# counts hold) it starts right after a comma; \r cannot start one there.
_FORMULA_CELL: Final = re.compile(",[=+\\-@\t']")


def _with_reference_lines(
    conn: sqlite3.Connection,
    lines: list[Any],
    fmt: ExportFormat,
    unmask: bool,
    separators: int,
) -> list[str]:
    """``lines`` with each seq, and each CSV line that needs quoting, rendered instead by the
    reference."""
    redo: dict[int, int] = {}
    for index, line in enumerate(lines):
        if type(line) is int:
            redo[line] = index
        elif fmt == "csv" and not _csv_plain(line, 1, separators):
            redo[int(line[: line.index(",")])] = index
    if not redo:
        return lines
    marks = ", ".join("?" for _ in redo)
    cursor = conn.execute(f"{_SELECT} WHERE seq IN ({marks}) ORDER BY seq", list(redo))
    columns = UNMASKED_COLUMNS if unmask else RECORD_COLUMNS
    rendered = io.StringIO()
    rows = list(_formatted(cursor, unmask, fmt == "csv"))
    if fmt == "csv":
        writer = csv.writer(rendered, lineterminator="\r\n")
        for row in rows:
            rendered.seek(0)
            rendered.truncate()
            writer.writerow(row)
            lines[redo[row[0]]] = rendered.getvalue()
    else:
        for row in rows:
            lines[redo[row[0]]] = _JSON_LINE(dict(zip(columns, row, strict=True))) + "\n"
    return lines


_JSON_LINE: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# What that encoder writes for a string (``ensure_ascii=False``).
_JSON_STRING: Final[Callable[[str], str]] = json.encoder.encode_basestring
_FETCH_ROWS: Final = 4096
_PROGRESS_ROWS: Final = 10_000


class _HashingFile:
    """A text sink writing UTF-8 to a binary file and hashing it on the way, in blocks of
    about ``_BLOCK_CHARS``: the manifest gets the file's SHA-256 and size without reading
    the file back.

    A thread of its own hashes and writes the blocks: both release the GIL (hashlib for any
    block of 2 KiB or more), so on a second core they overlap the rendering of the next
    block. Used as a context manager: leaving it writes what is pending and waits for the
    thread; an error of the thread is raised in the exporting one."""

    def __init__(self, binary: BinaryIO) -> None:
        self._binary = binary
        self._digest = hashlib.sha256()
        self._pending: list[str] = []
        self._pending_chars = 0
        self.size = 0
        self._blocks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._room = threading.Semaphore(_BLOCKS_IN_FLIGHT)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="cdr-export-writer")

    def __enter__(self) -> _HashingFile:
        self._thread.start()
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        try:
            if kind is None:
                self.flush()
        finally:
            self._blocks.put(None)
            self._thread.join()
        if kind is None and self._error is not None:
            raise self._error

    def _drain(self) -> None:
        while (block := self._blocks.get()) is not None:
            try:
                if self._error is None:
                    self._digest.update(block)
                    self._binary.write(block)
            except BaseException as exc:  # raised in the exporting thread
                self._error = exc
            finally:
                self._room.release()

    def write(self, text: str, /) -> int:
        self._pending.append(text)
        self._pending_chars += len(text)
        if self._pending_chars >= _BLOCK_CHARS:
            self.flush()
        return len(text)

    def flush(self) -> None:
        data = "".join(self._pending).encode()
        self._pending = []
        self._pending_chars = 0
        self._hand_over(data)

    def write_bytes(self, data: bytes) -> None:
        """Append UTF-8 ``data`` after any text written before it."""
        if self._pending:
            self.flush()
        self._hand_over(data)

    def _hand_over(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self.size += len(data)
        self._room.acquire()
        self._blocks.put(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


_BLOCK_CHARS: Final = 1 << 20
_BLOCKS_IN_FLIGHT: Final = 4


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def canonical_manifest(manifest: dict[str, Any]) -> bytes:
    """The bytes a manifest signature covers: the manifest without ``signature``."""
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _summary(
    conn: sqlite3.Connection, selection: ExportFilter
) -> tuple[int, int | None, int | None, str | None, str | None]:
    """count, first and last seq, the first record's prev_hash and the last one's hash."""
    where, params = selection.where()
    count, first_seq, last_seq = conn.execute(
        f"SELECT count(*), min(seq), max(seq) FROM cdrs{where}", params
    ).fetchone()
    if not count:
        return 0, None, None, None, None
    first_prev_hash = conn.execute(
        "SELECT prev_hash FROM cdrs WHERE seq = ?", (first_seq,)
    ).fetchone()[0]
    head_hash = conn.execute("SELECT hash FROM cdrs WHERE seq = ?", (last_seq,)).fetchone()[0]
    return int(count), first_seq, last_seq, first_prev_hash, head_hash


def _write_lines_python(
    handle: _TextSink,
    columns: tuple[str, ...],
    conn: sqlite3.Connection,
    selection: ExportFilter,
    fmt: ExportFormat,
    unmask: bool,
    progress: Callable[[int], None] | None,
) -> None:
    """The reference renderer: each row formatted in Python."""
    write = _write_csv if fmt == "csv" else _write_jsonl
    tick = 0
    for _ in write(handle, columns, _rows(conn, selection, unmask, fmt == "csv")):
        tick += 1
        if progress is not None and tick == _PROGRESS_ROWS:
            progress(tick)
            tick = 0
    if progress is not None and tick:
        progress(tick)


# ── Two processes ───────────────────────────────────────────────────────────────────────────
#
# On a machine with two free cores a large export renders in two processes: this one renders
# the first half of the selected rows (by seq) straight into the output, as a single-process
# export does, while a helper (``python -m proxy.cdr.export_part``, a fresh interpreter: no
# fork with an open sqlite3 connection) opens the database read-only and renders the second
# half with the same code (``_write_lines_sql``) into a private temporary file next to the
# output. This process then appends that file through ``_HashingFile`` (from its own part's
# end on, following the helper while it still writes), so the file and its SHA-256 are those
# of a single-process export.
#
# The helper is started before the split is looked up, so that its interpreter start-up
# (about 0.1 s) overlaps the query. It reads its job as one JSON line on stdin, reports on
# stdout after each block it has written the rows since its last report and its part's size
# (``ROWS BYTES``, every ``_PROGRESS_ROWS`` rows or so), and exits 0 when its part is
# complete. Its snapshot is its own: it checks that no purge run committed since this
# process's snapshot (``snapshot_mark``), and this process checks that it rendered exactly
# the rows expected; rows committed later have higher seqs and are outside both ranges.
# Whenever the helper fails (a record the reference cannot write, a purge in between, a
# helper that cannot start), this process renders the rest of its range itself, after the
# rows the helper reported written: the bytes written, or the error raised, are the
# single-process export's.
#
# Progress: this process passes on the helper's reports with its own (every
# ``_PROGRESS_ROWS`` of its rows), and the rest as it appends the part.
#
# What it costs: the helper's half is written twice (part file, then output), about 1.5 µs
# of CPU a row more than one process (benchmarks/cdr.py), and what the helper has written
# when this process's own half is done is appended after it, a serial tail. With both
# cores free it pays from about 30,000 rows; with the second core busy it does not (hence
# ``FREE_CPUS_NEEDED``, and ``--jobs 1`` beside a proxy).

PARALLEL_MIN_ROWS: Final = 50_000
"""Below this many rows an automatic export stays in one process: the helper's start-up
(about 0.1 s) and the copy of its part cost more than its half of the rendering saves.
Measured on the shared 2-CPU machine with its second core free, masked CSV, one process
against two: 10,000 rows 132 against 212 ms, 30,000 rows 351 against 336 ms, 60,000 rows 726
against 501 ms, 100,000 rows 1.21 against 0.76 s."""

_HELPER_COMMAND: Final = (sys.executable, "-m", "proxy.cdr.export_part")
_PART_BLOCK: Final = 1 << 22
_FIRST_SHARE: Final = 0.5
"""This process's share of the rows; it also hashes the whole file and appends the part."""

_log = logging.getLogger(__name__)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def snapshot_mark(conn: sqlite3.Connection) -> int:
    """The newest purge run: the only writes that change committed records (seq, tenant and
    times never change), each in one transaction with its ``cdr_redactions`` row."""
    return int(conn.execute("SELECT coalesce(max(seq), 0) FROM cdr_redactions").fetchone()[0])


def _database_file(conn: sqlite3.Connection) -> str | None:
    """The main database's file, None for an in-memory or temporary one."""
    for _, name, file in conn.execute("PRAGMA database_list").fetchall():
        if name == "main":
            return str(file) or None
    return None


def _split_seq(
    conn: sqlite3.Connection,
    selection: ExportFilter,
    first_rows: int,
    summary: tuple[int, int, int],
) -> int:
    """The seq of the first row after the first ``first_rows`` selected ones; a contiguous
    selection (every seq from the first to the last: seq is the primary key) needs no
    query."""
    count, first_seq, last_seq = summary
    if last_seq - first_seq + 1 == count:
        return first_seq + first_rows
    where, params = selection.where()
    row = conn.execute(
        f"SELECT seq FROM cdrs{where} ORDER BY seq LIMIT 1 OFFSET ?", [*params, first_rows]
    ).fetchone()
    return int(row[0])


class _Helper:
    """The helper process and its part file; used as a context manager: leaving it kills a
    helper still running, reaps it and deletes the part file."""

    def __init__(self, out: Path) -> None:
        descriptor, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
        os.close(descriptor)
        self.part = Path(name)
        self.reported = 0
        """Rows the helper has reported rendered."""
        self.written = 0
        """The part file's size the helper has reported, after its ``reported`` rows."""
        self._appended = 0
        self._pending = b""
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed by __exit__)
        root = str(Path(__file__).resolve().parent.parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (root, env.get("PYTHONPATH"))))
        try:
            self.process = subprocess.Popen(
                _HELPER_COMMAND,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._errors,
                env=env,
            )
        except BaseException:
            self._errors.close()
            self.part.unlink(missing_ok=True)
            raise
        assert self.process.stdout is not None
        self._stdout = self.process.stdout.fileno()
        os.set_blocking(self._stdout, False)

    def __enter__(self) -> _Helper:
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        try:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
        finally:
            for stream in (self.process.stdin, self.process.stdout, self._errors):
                if stream is not None:
                    stream.close()
            self.part.unlink(missing_ok=True)

    def send(self, job: dict[str, object]) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        try:
            stdin.write(json.dumps(job).encode() + b"\n")
            stdin.close()
        except BrokenPipeError:  # it ended early: ``append_while_running`` says it failed
            pass

    def poll(self) -> int:
        """Rows reported since the last call, without waiting."""
        try:
            data = os.read(self._stdout, 1 << 16)
        except BlockingIOError:
            return 0
        return self._count(data)

    def _count(self, data: bytes) -> int:
        """Rows in the report lines of ``data`` (``ROWS BYTES``: rows rendered since the last
        line, and the part file's size once they are written)."""
        lines = (self._pending + data).split(b"\n")
        self._pending = lines.pop()
        rows = 0
        for line in lines:
            fields = line.split()
            if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
                rows += int(fields[0])
                self.written = max(self.written, int(fields[1]))
        self.reported += rows
        return rows

    def append_while_running(
        self, handle: _HashingFile, progress: Callable[[int], None] | None, expected: int
    ) -> bool:
        """Append the part to ``handle`` as the helper reports it written, until the helper
        ends; whether it rendered its whole part (``expected`` rows). When it did not, the
        part appended ends after ``reported`` whole rows."""
        os.set_blocking(self._stdout, True)
        with self.part.open("rb") as part:
            while data := os.read(self._stdout, 1 << 16):
                rows = self._count(data)
                if progress is not None and rows:
                    progress(rows)
                self._append(part, handle, self.written)
            # Lines ``poll`` read: the part they report is appended too.
            self._append(part, handle, self.written)
            code = self.process.wait()
            if code == 0 and self.reported == expected:
                self._append(part, handle, None)
                return True
        self._errors.seek(0)
        tail = self._errors.read()[-2000:].decode(errors="replace").strip()
        _log.info(
            "export helper exited %s after %d of %d rows; rendering the rest here%s",
            code,
            self.reported,
            expected,
            f": {tail}" if tail else "",
        )
        return False

    def _append(self, part: BinaryIO, handle: _HashingFile, end: int | None) -> None:
        """Append the part file from where the last call stopped to ``end`` (its end)."""
        while end is None or self._appended < end:
            size = _PART_BLOCK if end is None else min(_PART_BLOCK, end - self._appended)
            block = part.read(size)
            if not block:
                return
            handle.write_bytes(block)
            self._appended += len(block)


class _PartFile:
    """A helper's sink: its part file, written as rendered (no hash: the exporting process
    hashes the part as it appends it)."""

    def __init__(self, binary: BinaryIO) -> None:
        self._binary = binary
        self.size = 0

    def write_bytes(self, data: bytes, /) -> None:
        self._binary.write(data)
        self.size += len(data)

    def flush(self) -> None:
        self._binary.flush()


def _start_helper(out: Path) -> _Helper | None:
    """A helper process, None where none can start (the export then runs in one)."""
    try:
        return _Helper(out)
    except OSError as exc:
        _log.info("export helper could not start (%s); exporting in one process", exc)
        return None


def _helper_wanted(parallel: bool | None, count: int, free_cpus: float | None) -> bool:
    if count < 1 or parallel is False:
        return False
    return parallel is True or (
        count >= PARALLEL_MIN_ROWS
        and available_cpus() >= 2
        and (free_cpus is None or free_cpus >= FREE_CPUS_NEEDED)
    )


FREE_CPUS_NEEDED: Final = 0.75
"""CPUs an automatic export needs idle beside its own to start a helper: with the second
core busy (another process, the proxy) a helper does not pay, since its half is written
twice (benchmarks/cdr.py under a load of 2.5: 84,500 against 88,900 rows/s, masked CSV)."""


def _cpu_times() -> tuple[int, int] | None:
    """Idle (with I/O wait) and total CPU ticks of the machine since boot (Linux
    ``/proc/stat``); None where there is no such file."""
    try:
        with open("/proc/stat", "rb") as stat:
            ticks = [int(field) for field in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return ticks[3] + ticks[4], sum(ticks)


def _free_cpus(since: tuple[int, int] | None) -> float | None:
    """CPUs idle on average since ``since`` (``_cpu_times``), while this process counted the
    rows (so about one CPU less than a machine at rest has); None when unknown or too short
    a time to tell."""
    now = _cpu_times()
    if since is None or now is None or now[1] - since[1] < _CPU_TICKS_TO_TELL:
        return None
    return (now[0] - since[0]) / (now[1] - since[1]) * (os.cpu_count() or 1)


_CPU_TICKS_TO_TELL: Final = 20


def _write_lines_two_processes(
    conn: sqlite3.Connection,
    handle: _HashingFile,
    helper: _Helper,
    database: str,
    selection: ExportFilter,
    fmt: ExportFormat,
    unmask: bool,
    progress: Callable[[int], None] | None,
    summary: tuple[int, int, int],
) -> bool:
    """The selected rows, the first part rendered here and the rest by ``helper``; whether
    the helper rendered all of the rest."""
    count, first_seq, last_seq = summary
    first_rows = int(count * _FIRST_SHARE)
    split = _split_seq(conn, selection, first_rows, summary)
    helper.send(
        {
            "database": database,
            "part": str(helper.part),
            "since": selection.since,
            "until": selection.until,
            "tenant": selection.tenant,
            "format": fmt,
            "unmask": unmask,
            "seqs": [split, last_seq],
            "mark": snapshot_mark(conn),
        }
    )
    own_progress = None
    if progress is not None:
        report = progress

        def own_progress(rows: int) -> None:
            report(rows + helper.poll())

    _write_lines_sql(conn, handle, selection, fmt, unmask, own_progress, (first_seq, split - 1))
    if helper.append_while_running(handle, progress, count - first_rows):
        return True
    # The rows after those the helper wrote (and this process appended) are rendered here.
    where, params = _where(selection, (split, last_seq))
    rest = conn.execute(
        f"SELECT seq FROM cdrs{where} ORDER BY seq LIMIT 1 OFFSET ?", [*params, helper.reported]
    ).fetchone()
    if rest is not None:
        _write_lines_sql(conn, handle, selection, fmt, unmask, progress, (rest[0], last_seq))
    return False


def render_part(job: dict[str, Any], report: Callable[[int, int], None]) -> int:
    """The helper's side (``python -m proxy.cdr.export_part``): render ``job``'s seq range
    into its part file; return the exit status (0 done, ``PART_STALE`` when a purge run
    committed after the exporting process's snapshot). A record that cannot be written
    raises, as in the exporting process, which then renders the rest of the range itself.
    ``report(rows, size)`` after each block written: rows since the last report, and the
    part file's size."""
    uri = f"{Path(job['database']).as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {DEFAULT_BUSY_TIMEOUT_MS}")
        conn.execute("BEGIN")
        if snapshot_mark(conn) != job["mark"]:
            return PART_STALE
        selection = ExportFilter(job["since"], job["until"], job["tenant"])
        first, last = job["seqs"]
        with open(job["part"], "wb") as binary:
            part = _PartFile(binary)

            def written(rows: int) -> None:
                part.flush()
                report(rows, part.size)

            _write_lines_sql(
                conn, part, selection, job["format"], job["unmask"], written, (first, last)
            )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return 0


PART_STALE: Final = 3


def export_records(
    conn: sqlite3.Connection,
    out: Path,
    *,
    selection: ExportFilter = ExportFilter(),
    fmt: ExportFormat = "csv",
    unmask: bool = False,
    reason: str | None = None,
    actor: str = "cli",
    now: float | None = None,
    signing_key: Ed25519PrivateKey | None = None,
    progress: Callable[[int], None] | None = None,
    renderer: Literal["auto", "sql", "python"] = "auto",
    parallel: bool | None = None,
) -> ExportResult:
    """Write ``out`` and ``out.manifest.json``; see the module docstring.

    ``renderer``: ``"sql"`` has SQLite render the lines' plain text (see "Rendering in
    SQLite"), ``"python"`` runs the row-by-row reference; both write the same bytes.
    ``"auto"`` takes the faster one as measured on benchmarks/cdr.py: SQL.
    ``parallel`` (SQL renderer, database in a file): ``True`` renders the second half of the
    rows in a helper process (see "Two processes"), ``False`` never, ``None`` when it pays:
    ``PARALLEL_MIN_ROWS`` rows or more, two CPUs or more, and ``FREE_CPUS_NEEDED`` of them
    idle while the rows were counted. The bytes are the same; ``ExportResult.processes``
    says which way it went.
    The file is hashed while it is written (``_HashingFile``), so nothing reads it back.
    """
    if renderer == "auto":
        renderer = "sql"
    now = time.time() if now is None else now
    audit_seq: int | None = None
    if unmask:
        if reason is None or len(reason.strip()) < 3:
            raise ExportError("unmasking needs a reason (--reason TEXT)")
        with transaction(conn):
            audit_seq = audit.append(
                conn,
                at=round(now, 3),
                actor=actor,
                action="cdr.unmask",
                subject=f"export:{out.name}",
                after={"filter": selection.as_json(), "format": fmt, "file": str(out)},
                reason=reason.strip(),
            )
    columns = UNMASKED_COLUMNS if unmask else RECORD_COLUMNS
    # A read transaction: the export is one consistent snapshot while the writer commits.
    processes = 1
    conn.execute("BEGIN")
    try:
        cpu_times = _cpu_times()
        count, first_seq, last_seq, first_prev_hash, head_hash = _summary(conn, selection)
        free_cpus = _free_cpus(cpu_times)
        with out.open("wb") as binary, _HashingFile(binary) as handle:
            if renderer == "sql":
                if fmt == "csv":
                    handle.write(",".join(columns) + "\r\n")
                database = _database_file(conn)
                helper = None
                if database is not None and _helper_wanted(parallel, count, free_cpus):
                    helper = _start_helper(out)
                if helper is None:
                    _write_lines_sql(conn, handle, selection, fmt, unmask, progress)
                else:
                    assert database is not None and first_seq is not None
                    assert last_seq is not None
                    with helper:
                        whole = _write_lines_two_processes(
                            conn,
                            handle,
                            helper,
                            database,
                            selection,
                            fmt,
                            unmask,
                            progress,
                            (count, first_seq, last_seq),
                        )
                    processes = 2 if whole else 1
            else:
                _write_lines_python(handle, columns, conn, selection, fmt, unmask, progress)
        checkpoint = None if last_seq is None else latest_checkpoint(conn, at_most_seq=last_seq)
    finally:
        conn.execute("COMMIT")
    # seq is the integer primary key: distinct, so contiguous exactly when it fills the range.
    contiguous = last_seq is None or count == last_seq - first_seq + 1  # type: ignore[operator]
    if checkpoint is not None and first_seq is not None and checkpoint.seq < first_seq:
        checkpoint = None
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "generator": "privproxy cdr export",
        "created_at": iso_time(now),
        "filter": selection.as_json(),
        "format": fmt,
        "masked": not unmask,
        "columns": list(columns),
        "count": count,
        "first_seq": first_seq,
        "last_seq": last_seq,
        "first_prev_hash": first_prev_hash,
        "head_hash": head_hash,
        "contiguous": contiguous,
        "file": {"name": out.name, "sha256": handle.hexdigest(), "bytes": handle.size},
        "checkpoint": None if checkpoint is None else checkpoint.as_json(),
        "unmask": None if audit_seq is None else {"audit_seq": audit_seq, "reason": reason},
        "chain": "proxy/cdr/chain.py: privproxy-cdr-v1, SHA-256 over netstrings",
    }
    if signing_key is not None:
        manifest["signature"] = {
            "algorithm": "ed25519",
            "key_id": public_key_id(signing_key.public_key()),
            "value": signing_key.sign(canonical_manifest(manifest)).hex(),
        }
    manifest_path = manifest_path_for(out)
    manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return ExportResult(out, manifest_path, manifest, processes)


def manifest_path_for(path: Path) -> Path:
    return path.with_name(path.name + ".manifest.json")
