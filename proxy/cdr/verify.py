"""Verification of the CDR hash chain: in the database, and in an export on its own.

``verify_db`` (``privproxy cdr verify --db``) proves, for the whole table:

- seqs run 1, 2, 3 … with no gap (a deleted record leaves one);
- each ``prev_hash`` is the previous record's ``hash`` (genesis: 64 zeros);
- each ``hash`` recomputes from the record's fields (a changed field, or two records
  swapped, no longer hash to their stored value);
- each live record's personal fields match their commitments under its salt;
- each purged record belongs to a redaction record whose digest recomputes;
- each checkpoint's head is in the chain with that hash and count (records cut from the
  end), and, given a public key, each checkpoint and redaction signature verifies.

``verify_export`` (``privproxy cdr verify FILE``) proves, from the file and its manifest:

- the file's SHA-256 and size are those in the manifest, and count, first/last seq and head
  hash agree with the records;
- each record's hash recomputes from the exported fields (masked exports carry the
  commitments, so this holds for them too), and consecutive seqs link by ``prev_hash``;
  a manifest that says the export is contiguous makes a gap a failure;
- in an unmasked export, each real number matches its commitment under the exported salt;
  in a masked one, no ``caller``/``callee`` is unmasked;
- given a public key: the manifest signature, and the checkpoint the manifest carries, whose
  head record, when exported, must have that hash.

What a masked export cannot prove alone: that the masked numbers are those committed to
(the salt is withheld on purpose), nor that the chain in the file is the operator's chain
rather than a rebuilt one — for that, a signed manifest or checkpoint, or ``--db``.

Problems name the record: ``seq 42 (id …)`` in the database, ``line 7 (seq 42)`` in a file.
"""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from proxy.cdr.chain import CHAINED_FIELDS, GENESIS, PERSONAL_FIELDS, commit, ms, record_hash
from proxy.cdr.checkpoint import Checkpoint, checkpoints, public_key_id, signature_valid
from proxy.cdr.export import (
    canonical_manifest,
    csv_value,
    file_sha256,
    manifest_path_for,
    parse_iso_ms,
)
from proxy.cdr.retention import redaction_digest, redaction_message


@dataclass(frozen=True, slots=True)
class Problem:
    where: str
    message: str
    seq: int | None = None

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class VerifyReport:
    """The outcome: ``ok`` when no problem was found; ``notes`` say what was checked."""

    source: str
    records: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "ok": self.ok,
            "records": self.records,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "problems": [
                {"where": p.where, "message": p.message, "seq": p.seq} for p in self.problems
            ],
            "notes": self.notes,
        }


_DB_SELECT: Final = (
    "SELECT seq, id, tenant, binding_id, x, caller_commit, callee_commit, direction,"
    " a_call_id_commit, b_call_id, invite_at, ring_at, answer_at, end_at, disposition,"
    " reject_reason, sip_status, q850_cause, released_by, node, prev_hash, hash,"
    " salt, caller, callee, a_call_id, redaction FROM cdrs ORDER BY seq"
)
_MAX_PROBLEMS: Final = 1000


def _add(report: VerifyReport, problem: Problem) -> None:
    if len(report.problems) < _MAX_PROBLEMS:
        report.problems.append(problem)


def verify_db(
    conn: sqlite3.Connection,
    *,
    public_key: Ed25519PublicKey | None = None,
    progress: Callable[[int], None] | None = None,
    require_signed: bool = False,
) -> VerifyReport:
    """Recompute the whole chain in ``conn``; see the module docstring. ``require_signed``
    (with a public key) turns an unsigned checkpoint from a note into a problem: someone
    who can write the database could replace signed checkpoints by unsigned ones."""
    report = VerifyReport(source="database")
    pins: dict[int, list[Checkpoint]] = {}
    stored_checkpoints = checkpoints(conn)
    for checkpoint in stored_checkpoints:
        pins.setdefault(checkpoint.seq, []).append(checkpoint)
    redacted: dict[int, list[tuple[int, str | None, str | None, str | None]]] = {}
    expected_seq = 1
    prev_hash = GENESIS
    tick = 0
    conn.execute("BEGIN")
    try:
        cursor = conn.execute(_DB_SELECT)
        while chunk := cursor.fetchmany(5000):
            for row in chunk:
                seq = row[0]
                where = f"seq {seq} (id {row[1]})"
                if seq != expected_seq:
                    missing = (
                        f"seq {expected_seq}"
                        if seq == expected_seq + 1
                        else f"seqs {expected_seq}..{seq - 1}"
                    )
                    _add(report, Problem(where, f"{missing} missing before it (deleted?)", seq))
                elif row[20] != prev_hash:
                    _add(
                        report,
                        Problem(
                            where,
                            "prev_hash is not the hash of the record before it"
                            " (a record before it was changed, replaced or reordered)",
                            seq,
                        ),
                    )
                salt = row[22]
                if salt is not None:
                    for offset, name in enumerate(PERSONAL_FIELDS):
                        if commit(salt, name, row[23 + offset]) != row[(5, 6, 8)[offset]]:
                            _add(
                                report,
                                Problem(where, f"{name} does not match its commitment", seq),
                            )
                elif row[26] is None:
                    _add(report, Problem(where, "no salt and no redaction record", seq))
                else:
                    redacted.setdefault(row[26], []).append((seq, row[23], row[24], row[25]))
                values = list(row[:21])
                for i in (10, 11, 12, 13):
                    values[i] = ms(values[i])
                try:
                    digest = record_hash(values)
                except (TypeError, ValueError) as exc:
                    digest = f"unencodable: {exc}"
                if row[21] is None:
                    _add(report, Problem(where, "no hash (not chained)", seq))
                elif digest != row[21]:
                    _add(
                        report,
                        Problem(where, "hash does not match the record's fields (changed?)", seq),
                    )
                report.records += 1
                for checkpoint in pins.pop(seq, ()):
                    _check_pin(report, checkpoint, row[21], report.records)
                prev_hash = row[21] or digest
                expected_seq = seq + 1
                report.head_seq, report.head_hash = seq, prev_hash
                tick += 1
                if progress is not None and tick == 10_000:
                    progress(tick)
                    tick = 0
        redactions = conn.execute(
            "SELECT seq, at, cutoff, first_seq, last_seq, count, digest, key_id, signer,"
            " signature FROM cdr_redactions ORDER BY seq"
        ).fetchall()
    finally:
        conn.execute("COMMIT")
    if progress is not None and tick:
        progress(tick)
    for seq_list in pins.values():
        for checkpoint in seq_list:
            if checkpoint.seq == 0 and checkpoint.count == 0:
                continue
            _add(
                report,
                Problem(
                    f"checkpoint {checkpoint.day}",
                    f"pins seq {checkpoint.seq} with {checkpoint.count} records, but the chain"
                    f" ends at seq {report.head_seq} (records removed from the end?)",
                    checkpoint.seq,
                ),
            )
    _check_redactions(report, redactions, redacted, public_key)
    _check_signatures(report, stored_checkpoints, public_key, require_signed)
    report.notes.insert(
        0,
        f"{report.records} records recomputed; {len(stored_checkpoints)} checkpoints;"
        f" {len(redactions)} redaction records",
    )
    return report


def _check_pin(
    report: VerifyReport, checkpoint: Checkpoint, stored: str | None, count: int
) -> None:
    where = f"checkpoint {checkpoint.day}"
    if stored != checkpoint.head_hash:
        _add(
            report,
            Problem(
                where, f"head seq {checkpoint.seq} no longer has the pinned hash", checkpoint.seq
            ),
        )
    if count != checkpoint.count:
        _add(
            report,
            Problem(
                where,
                f"pinned {checkpoint.count} records up to seq {checkpoint.seq}, found {count}",
                checkpoint.seq,
            ),
        )


def _check_redactions(
    report: VerifyReport,
    redactions: list[tuple[Any, ...]],
    redacted: dict[int, list[tuple[int, str | None, str | None, str | None]]],
    public_key: Ed25519PublicKey | None,
) -> None:
    for seq, at, cutoff, first_seq, last_seq, count, digest, kid, signer, signature in redactions:
        where = f"redaction {seq}"
        rows = redacted.pop(seq, [])
        if len(rows) != count:
            _add(report, Problem(where, f"covers {count} records, {len(rows)} point to it"))
        if redaction_digest(rows) != digest:
            first = rows[0][0] if rows else None
            _add(
                report,
                Problem(
                    where,
                    f"digest of the purged records (seq {first_seq}..{last_seq}) does not"
                    " match: a purged value was changed",
                    first,
                ),
            )
        if public_key is not None and signature is not None:
            message = redaction_message(seq, at, cutoff, first_seq, last_seq, count, digest, kid)
            if signer != public_key_id(public_key):
                _add(report, Problem(where, f"signed by key {signer}, not the key given"))
            elif not signature_valid(public_key, message, signature):
                _add(report, Problem(where, "signature does not verify"))
    for redaction, rows in redacted.items():
        _add(
            report,
            Problem(f"seq {rows[0][0]}", f"points to redaction {redaction}, which is missing"),
        )


def _check_signatures(
    report: VerifyReport,
    stored: list[Checkpoint],
    public_key: Ed25519PublicKey | None,
    require_signed: bool,
) -> None:
    if public_key is None:
        if any(c.signature for c in stored):
            report.notes.append("checkpoint signatures not checked (no public key given)")
        return
    wanted = public_key_id(public_key)
    valid = 0
    for checkpoint in stored:
        where = f"checkpoint {checkpoint.day}"
        if checkpoint.signature is None:
            if require_signed:
                _add(report, Problem(where, "not signed"))
            else:
                report.notes.append(f"{where} is not signed")
        elif checkpoint.key_id != wanted:
            _add(report, Problem(where, f"signed by key {checkpoint.key_id}, not {wanted}"))
        elif not signature_valid(public_key, checkpoint.message(), checkpoint.signature):
            _add(report, Problem(where, "signature does not verify (checkpoint changed?)"))
        else:
            valid += 1
    report.notes.append(f"{valid} checkpoint signatures valid (key {wanted})")


# ── exports ──────────────────────────────────────────────────────────────────────────────

_INT_COLUMNS: Final = frozenset({"seq", "sip_status", "q850_cause"})
_TIME_COLUMNS: Final = ("invite_at", "ring_at", "answer_at", "end_at")
_UNMASKED_NUMBER: Final = re.compile(r"[0-9]{7,}")


def _csv_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8", newline="") as source:
        reader = csv.DictReader(source)
        for line, row in enumerate(reader, start=2):
            yield line, {k: (None if v == "" else csv_value(v)) for k, v in row.items()}


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as source:
        for line, text in enumerate(source, start=1):
            if text.strip():
                value = json.loads(text)
                if not isinstance(value, dict):
                    raise ValueError("not a JSON object")
                yield line, value


def _chained(record: dict[str, Any]) -> list[object]:
    values: list[object] = []
    for name in CHAINED_FIELDS:
        value = record.get(name)
        if value is not None and name in _INT_COLUMNS:
            value = int(value)
        elif value is not None and name in _TIME_COLUMNS:
            value = parse_iso_ms(str(value))
        values.append(value)
    return values


def verify_export(
    path: Path,
    *,
    manifest_path: Path | None = None,
    public_key: Ed25519PublicKey | None = None,
) -> VerifyReport:
    """Check an export and its manifest on their own; see the module docstring."""
    report = VerifyReport(source=str(path))
    manifest_path = manifest_path or manifest_path_for(path)
    manifest: dict[str, Any] = {}
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        _add(report, Problem("manifest", f"{manifest_path.name} is missing"))
    except ValueError as exc:
        _add(report, Problem("manifest", f"unreadable: {exc}"))
    file_info = manifest.get("file") or {}
    if manifest and file_sha256(path) != file_info.get("sha256"):
        _add(report, Problem("file", "SHA-256 differs from the manifest (changed after export)"))
    fmt = manifest.get("format") or ("jsonl" if path.suffix == ".jsonl" else "csv")
    masked = bool(manifest.get("masked", True))
    contiguous = bool(manifest.get("contiguous", True))
    records = _csv_records(path) if fmt == "csv" else _jsonl_records(path)
    first_seq: int | None = None
    last_seq: int | None = None
    prev_hash: str | None = None
    hashes: dict[int, str] = {}
    pinned = manifest.get("checkpoint") or None
    pinned_seq = pinned.get("seq") if isinstance(pinned, dict) else None
    line = 0
    try:
        for line, record in records:
            try:
                values = _chained(record)
            except (TypeError, ValueError) as exc:
                _add(report, Problem(f"line {line}", f"unreadable record: {exc}"))
                continue
            seq = values[0]
            assert isinstance(seq, int)
            where = f"line {line} (seq {seq})"
            if last_seq is not None:
                if seq <= last_seq:
                    _add(report, Problem(where, f"out of order: after seq {last_seq}", seq))
                elif seq == last_seq + 1:
                    if values[-1] != prev_hash:
                        _add(
                            report,
                            Problem(
                                where,
                                "prev_hash is not the hash of the line before it"
                                " (a record before it was changed, removed or reordered)",
                                seq,
                            ),
                        )
                elif contiguous:
                    _add(report, Problem(where, f"seqs {last_seq + 1}..{seq - 1} missing", seq))
            elif values[-1] != manifest.get("first_prev_hash", values[-1]):
                _add(report, Problem(where, "prev_hash differs from the manifest", seq))
            stored = record.get("hash")
            try:
                digest = record_hash(values)
            except (TypeError, ValueError) as exc:
                digest = f"unencodable: {exc}"
            if digest != stored:
                _add(
                    report,
                    Problem(where, "hash does not match the record's fields (changed?)", seq),
                )
            _check_personal(report, where, seq, record, masked)
            if seq == pinned_seq:
                hashes[seq] = str(stored)
            first_seq = seq if first_seq is None else first_seq
            last_seq = seq
            prev_hash = str(stored)
            report.records += 1
    except (ValueError, csv.Error) as exc:
        _add(report, Problem(f"line {line + 1}", f"unreadable: {exc}"))
    report.head_seq = last_seq or 0
    report.head_hash = prev_hash or GENESIS
    if manifest:
        _check_manifest(report, manifest, first_seq, last_seq, prev_hash, public_key, hashes)
    report.notes.insert(
        0, f"{report.records} records recomputed ({'masked' if masked else 'unmasked'})"
    )
    return report


def _check_personal(
    report: VerifyReport, where: str, seq: int, record: dict[str, Any], masked: bool
) -> None:
    salt = record.get("salt")
    if masked:
        if salt:
            _add(report, Problem(where, "a masked export carries a salt", seq))
        for name in ("caller", "callee"):
            value = record.get(name) or ""
            if not value.startswith("h:") and _UNMASKED_NUMBER.search(value):
                _add(report, Problem(where, f"{name} is not masked", seq))
        return
    if salt is None:
        if record.get("purged") not in (True, "true"):
            _add(report, Problem(where, "no salt in an unmasked export", seq))
        return
    for name in PERSONAL_FIELDS:
        if commit(salt, name, record.get(name)) != record.get(f"{name}_commit"):
            _add(report, Problem(where, f"{name} does not match its commitment", seq))


def _check_manifest(
    report: VerifyReport,
    manifest: dict[str, Any],
    first_seq: int | None,
    last_seq: int | None,
    head_hash: str | None,
    public_key: Ed25519PublicKey | None,
    hashes: dict[int, str],
) -> None:
    expected = {
        "count": report.records,
        "first_seq": first_seq,
        "last_seq": last_seq,
        "head_hash": head_hash,
    }
    for key, value in expected.items():
        if manifest.get(key) != value:
            _add(
                report,
                Problem("manifest", f"{key} is {manifest.get(key)!r}, the file has {value!r}"),
            )
    pinned = manifest.get("checkpoint")
    signature = manifest.get("signature")
    if public_key is None:
        if signature or pinned:
            report.notes.append("manifest and checkpoint signatures not checked (no public key)")
        return
    wanted = public_key_id(public_key)
    if not isinstance(signature, dict):
        _add(report, Problem("manifest", "not signed"))
    elif signature.get("key_id") != wanted:
        _add(report, Problem("manifest", f"signed by key {signature.get('key_id')}, not {wanted}"))
    elif not signature_valid(public_key, canonical_manifest(manifest), str(signature.get("value"))):
        _add(report, Problem("manifest", "signature does not verify (manifest changed?)"))
    else:
        report.notes.append(f"manifest signature valid (key {wanted})")
    if isinstance(pinned, dict) and pinned.get("signature"):
        checkpoint = Checkpoint(
            str(pinned["day"]),
            int(pinned["seq"]),
            int(pinned["count"]),
            str(pinned["head_hash"]),
            float(pinned["created_at"]),
            pinned.get("key_id"),
            pinned.get("signature"),
        )
        where = f"checkpoint {checkpoint.day}"
        if checkpoint.key_id != wanted or not signature_valid(
            public_key, checkpoint.message(), str(checkpoint.signature)
        ):
            _add(report, Problem(where, "signature does not verify with the key given"))
        elif checkpoint.seq in hashes and hashes[checkpoint.seq] != checkpoint.head_hash:
            _add(
                report,
                Problem(
                    where,
                    f"seq {checkpoint.seq} in the file is not the signed head",
                    checkpoint.seq,
                ),
            )
        else:
            report.notes.append(f"{where} signature valid, pins seq {checkpoint.seq}")
