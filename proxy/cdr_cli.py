"""``privproxy cdr …`` and ``privproxy audit …``: call records for auditors (issue #5).

- ``cdr export``: masked CSV/JSONL and a manifest; ``--unmask --reason`` is audited;
- ``cdr verify FILE`` / ``cdr verify --db``: recompute the chain, name the first break,
  exit 1 on tampering;
- ``cdr purge --older-than DAYS``: retention (numbers → keyed tokens, chain intact);
- ``cdr checkpoint``, ``cdr keygen``: signed chain checkpoints;
- ``cdr stats``; ``audit report``: one self-contained HTML page.

Keys: ``--signing-key`` (``$PRIVPROXY_CDR_SIGNING_KEY``) is the Ed25519 private key that
signs checkpoints, redaction records and manifests; ``--public-key`` checks them;
``--retention-key`` (``$PRIVPROXY_CDR_RETENTION_KEY``) the HMAC key of purge tokens.
"""

from __future__ import annotations

import getpass
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Final

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from proxy.cdr.checkpoint import (
    generate_keypair,
    load_public_key,
    load_signing_key,
    take_checkpoint,
)
from proxy.cdr.export import ExportError, ExportFilter, count_matching, export_records, parse_when
from proxy.cdr.report import build_report
from proxy.cdr.retention import load_retention_key, purge_older_than
from proxy.cdr.stats import cdr_stats
from proxy.cdr.verify import VerifyReport, verify_db, verify_export
from proxy.db import open_database

cdr_app = typer.Typer(
    help="Call records: export, verify, purge, checkpoints, statistics.",
    no_args_is_help=True,
    add_completion=False,
)
audit_app = typer.Typer(help="Audit: the HTML audit report.", no_args_is_help=True)

DbOption = Annotated[
    Path,
    typer.Option("--db", envvar="PRIVPROXY_DB", dir_okay=False, help="SQLite database file."),
]
SigningKeyOption = Annotated[
    Path | None,
    typer.Option(
        "--signing-key",
        envvar="PRIVPROXY_CDR_SIGNING_KEY",
        dir_okay=False,
        help="Ed25519 private key (PEM) that signs checkpoints, redactions and manifests.",
    ),
]
PublicKeyOption = Annotated[
    Path | None,
    typer.Option(
        "--public-key", dir_okay=False, help="Ed25519 public key (PEM) to check signatures."
    ),
]
RetentionKeyOption = Annotated[
    Path,
    typer.Option(
        "--retention-key",
        envvar="PRIVPROXY_CDR_RETENTION_KEY",
        dir_okay=False,
        help="HMAC key file of purge tokens (32 random bytes, created if missing).",
    ),
]
DEFAULT_DB: Final = Path("privproxy.db")


class Format(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(code)


def _signing_key(path: Path | None) -> Ed25519PrivateKey | None:
    if path is None:
        return None
    try:
        return load_signing_key(path)
    except (OSError, ValueError) as exc:
        raise _fail(f"signing key {path}: {exc}") from exc


def _public_key(path: Path | None) -> Ed25519PublicKey | None:
    if path is None:
        return None
    try:
        return load_public_key(path)
    except (OSError, ValueError) as exc:
        raise _fail(f"public key {path}: {exc}") from exc


def _when(text: str | None, *, end_of_day: bool = False) -> float | None:
    if text is None:
        return None
    try:
        return parse_when(text, end_of_day=end_of_day)
    except ExportError as exc:
        raise _fail(str(exc)) from exc


@contextmanager
def _progress(label: str, total: int) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on a terminal (stderr), nothing when piped or small."""
    if not sys.stderr.isatty() or total < 50_000:
        yield None
        return
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@cdr_app.command("export")
def export_command(
    since: Annotated[str | None, typer.Option(help="From this date/time (UTC), inclusive.")] = None,
    until: Annotated[
        str | None, typer.Option(help="Until this time, exclusive; a date is included whole.")
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="One tenant only.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="csv or jsonl.")] = Format.csv,
    out: Annotated[Path | None, typer.Option("--out", dir_okay=False, help="Output file.")] = None,
    unmask: Annotated[
        bool, typer.Option("--unmask", help="Real numbers in full (audited; needs --reason).")
    ] = False,
    reason: Annotated[str | None, typer.Option(help="Why numbers are unmasked.")] = None,
    db: DbOption = DEFAULT_DB,
    signing_key: SigningKeyOption = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            min=1,
            max=2,
            help="Processes that render: 1 (leaves a core to a proxy on this machine) or 2;"
            " default: 2 for large exports on two CPUs or more.",
        ),
    ] = None,
) -> None:
    """Export call records (masked by default) with FILE.manifest.json."""
    if unmask and not (reason and reason.strip()):
        raise _fail("--unmask needs --reason TEXT (it is written to the audit log)")
    if reason and not unmask:
        raise _fail("--reason is only for --unmask")
    selection = ExportFilter(_when(since), _when(until, end_of_day=True), tenant)
    path = out or Path(f"cdrs-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.{fmt.value}")
    key = _signing_key(signing_key)
    conn = open_database(db)
    try:
        total = count_matching(conn, selection)
        with _progress("exporting", total) as advance:
            result = export_records(
                conn,
                path,
                selection=selection,
                fmt=fmt.value,
                unmask=unmask,
                reason=reason,
                actor=_actor(),
                signing_key=key,
                progress=advance,
                parallel=None if jobs is None else jobs == 2,
            )
    except ExportError as exc:
        raise _fail(str(exc)) from exc
    finally:
        conn.close()
    manifest = result.manifest
    typer.echo(
        f"{manifest['count']} records ({'masked' if manifest['masked'] else 'UNMASKED'}) → "
        f"{result.path}\nmanifest → {result.manifest_path}\nhead hash {manifest['head_hash']}"
    )


def _print_report(report: VerifyReport, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2))
        return
    for note in report.notes:
        typer.echo(note)
    if report.ok:
        typer.echo(f"OK: {report.records} records, head seq {report.head_seq} {report.head_hash}")
        return
    first = report.first_problem
    record = next((p for p in report.problems if p.seq is not None), None)
    typer.echo(f"TAMPERED: {first}", err=True)
    if record is not None:
        typer.echo(f"first broken record: {record}", err=True)
    for problem in report.problems[1:20]:
        typer.echo(f"  also {problem}", err=True)
    if len(report.problems) > 20:
        typer.echo(f"  … {len(report.problems) - 20} more", err=True)


@cdr_app.command("verify")
def verify_command(
    file: Annotated[
        Path | None,
        typer.Argument(dir_okay=False, help="An export (FILE.manifest.json beside it)."),
    ] = None,
    db: DbOption = DEFAULT_DB,
    manifest: Annotated[Path | None, typer.Option(dir_okay=False, help="Manifest path.")] = None,
    public_key: PublicKeyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    require_signed: Annotated[
        bool,
        typer.Option(
            "--require-signed", help="With --public-key: an unsigned checkpoint is a failure."
        ),
    ] = False,
) -> None:
    """Verify an export FILE, or the database (--db) when no FILE is given; exit 1 on tampering.

    Names the first record that breaks the chain."""
    key = _public_key(public_key)
    if file is not None:
        if not file.exists():
            raise _fail(f"{file} does not exist")
        report = verify_export(file, manifest_path=manifest, public_key=key)
    else:
        if not db.exists():
            raise _fail(f"database {db} does not exist")
        conn = open_database(db)
        try:
            total = int(conn.execute("SELECT COUNT(*) FROM cdrs").fetchone()[0])
            with _progress("verifying", total) as advance:
                report = verify_db(
                    conn, public_key=key, progress=advance, require_signed=require_signed
                )
        finally:
            conn.close()
    _print_report(report, as_json)
    if not report.ok:
        raise typer.Exit(1)


@cdr_app.command("purge")
def purge_command(
    older_than: Annotated[float, typer.Option("--older-than", min=0, help="Age in days.")],
    db: DbOption = DEFAULT_DB,
    retention_key: RetentionKeyOption = Path("privproxy-retention.key"),
    signing_key: SigningKeyOption = None,
) -> None:
    """Replace the real numbers of records older than DAYS by keyed tokens (audited)."""
    key = load_retention_key(retention_key)
    signer = _signing_key(signing_key)
    conn = open_database(db)
    try:
        purged = purge_older_than(
            conn, older_than, time.time(), key, actor=_actor(), signing_key=signer
        )
    finally:
        conn.close()
    typer.echo(f"{purged} records purged (older than {older_than:g} days)")


@cdr_app.command("checkpoint")
def checkpoint_command(db: DbOption = DEFAULT_DB, signing_key: SigningKeyOption = None) -> None:
    """Store today's checkpoint of the chain head (signed with --signing-key)."""
    conn = open_database(db)
    try:
        checkpoint = take_checkpoint(conn, time.time(), _signing_key(signing_key))
    finally:
        conn.close()
    signed = f"signed by {checkpoint.key_id}" if checkpoint.key_id else "unsigned"
    typer.echo(
        f"checkpoint {checkpoint.day}: seq {checkpoint.seq}, {checkpoint.count} records, "
        f"head {checkpoint.head_hash}, {signed}"
    )


@cdr_app.command("keygen")
def keygen_command(
    out: Annotated[Path, typer.Option("--out", dir_okay=False, help="Private key file.")] = Path(
        "privproxy-cdr.key"
    ),
) -> None:
    """Create an Ed25519 key pair: OUT (private, 0600) and OUT.pub (give it to auditors)."""
    try:
        public_path, kid = generate_keypair(out)
    except FileExistsError as exc:
        raise _fail(f"{out} exists; refusing to overwrite a key") from exc
    typer.echo(f"private key → {out}\npublic key → {public_path}\nkey id {kid}")


@cdr_app.command("stats")
def stats_command(
    since: Annotated[str | None, typer.Option()] = None,
    until: Annotated[str | None, typer.Option()] = None,
    tenant: Annotated[str | None, typer.Option()] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Calls, answered, ASR, ACD, rejects by reason, per day (JSON)."""
    conn = open_database(db)
    try:
        stats = cdr_stats(
            conn, since=_when(since), until=_when(until, end_of_day=True), tenant=tenant
        )
    finally:
        conn.close()
    typer.echo(json.dumps(stats, indent=2))


@audit_app.command("report")
def report_command(
    out: Annotated[Path, typer.Option("--out", dir_okay=False, help="HTML file to write.")],
    since: Annotated[str | None, typer.Option()] = None,
    until: Annotated[str | None, typer.Option()] = None,
    db: DbOption = DEFAULT_DB,
    public_key: PublicKeyOption = None,
) -> None:
    """Write the self-contained HTML audit report."""
    key = _public_key(public_key)
    conn = open_database(db)
    try:
        page = build_report(
            conn,
            since=_when(since),
            until=_when(until, end_of_day=True),
            now=time.time(),
            public_key=key,
        )
    finally:
        conn.close()
    out.write_text(page, encoding="utf-8")
    typer.echo(f"report → {out}")
