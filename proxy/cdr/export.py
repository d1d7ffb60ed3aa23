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
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from proxy import audit
from proxy.cdr.checkpoint import latest_checkpoint, public_key_id
from proxy.cdr.record import mask_call_id, mask_party
from proxy.db import transaction

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
# Columns whose text may come from outside (peers' Call-IDs, tenant names, numbers).
_FREE_TEXT: Final = (1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 20, 21)
_FORMULA_START: Final = frozenset("=+-@\t\r'")


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


def count_matching(conn: sqlite3.Connection, selection: ExportFilter) -> int:
    where, params = selection.where()
    return int(conn.execute(f"SELECT COUNT(*) FROM cdrs{where}", params).fetchone()[0])


def _rows(
    conn: sqlite3.Connection, selection: ExportFilter, unmask: bool, for_csv: bool
) -> Iterator[list[Any]]:
    where, params = selection.where()
    cursor = conn.execute(f"{_SELECT}{where} ORDER BY seq", params)
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
    out: IO[str], columns: tuple[str, ...], rows: Iterator[list[Any]]
) -> Iterator[list[Any]]:
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    writerow = writer.writerow
    for row in rows:
        writerow(row)
        yield row


def _write_jsonl(
    out: IO[str], columns: tuple[str, ...], rows: Iterator[list[Any]]
) -> Iterator[list[Any]]:
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    write = out.write
    for row in rows:
        write(dumps(dict(zip(columns, row, strict=True))))
        write("\n")
        yield row


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
) -> ExportResult:
    """Write ``out`` and ``out.manifest.json``; see the module docstring."""
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
    write = _write_csv if fmt == "csv" else _write_jsonl
    count = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head_hash: str | None = None
    first_prev_hash: str | None = None
    contiguous = True
    tick = 0
    # A read transaction: the export is one consistent snapshot while the writer commits.
    conn.execute("BEGIN")
    try:
        with out.open("w", encoding="utf-8", newline="") as handle:
            for row in write(handle, columns, _rows(conn, selection, unmask, fmt == "csv")):
                seq = row[0]
                if first_seq is None:
                    first_seq = seq
                    first_prev_hash = row[26]
                elif seq != last_seq + 1:  # type: ignore[operator]
                    contiguous = False
                last_seq = seq
                head_hash = row[27]
                count += 1
                tick += 1
                if progress is not None and tick == 10_000:
                    progress(tick)
                    tick = 0
        checkpoint = None if last_seq is None else latest_checkpoint(conn, at_most_seq=last_seq)
    finally:
        conn.execute("COMMIT")
    if progress is not None and tick:
        progress(tick)
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
        "file": {"name": out.name, "sha256": file_sha256(out), "bytes": out.stat().st_size},
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
    return ExportResult(out, manifest_path, manifest)


def manifest_path_for(path: Path) -> Path:
    return path.with_name(path.name + ".manifest.json")
