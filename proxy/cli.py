"""The ``privproxy`` command: bindings and call records from the shell.

Real numbers are masked (``138****8000``) in every output, tables and JSON alike, unless
``--unmasked`` is given (design.md §1 Records, §4). Every subcommand takes ``--db``
(default ``./privproxy.db``, or ``$PRIVPROXY_DB``).

Errors in arguments (a number that does not normalise, A equal to B, a binding that breaks
the AXB reuse rule) name the argument and exit with status 2, as other usage errors do.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final

import typer

from bindings.models import Binding, BindingConflict, BindingError, BindingStatus, Direction
from bindings.sqlite_store import SqliteBindingStore
from proxy.cdr.record import CallRecord, masked
from proxy.cdr.writer import read_records
from proxy.numbers import NumberError, NumberPlan, mask

app = typer.Typer(
    name="privproxy",
    help="Privacy-number (700 range) SIP B2BUA: bindings, call records, server.",
    no_args_is_help=True,
    add_completion=False,
)

DEFAULT_DB: Final = Path("privproxy.db")

DbOption = Annotated[
    Path,
    typer.Option(
        "--db",
        envvar="PRIVPROXY_DB",
        dir_okay=False,
        help="SQLite database file (created if missing).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
UnmaskedOption = Annotated[
    bool, typer.Option("--unmasked", help="Show real numbers in full (personal information).")
]


class DirectionChoice(StrEnum):
    both = "both"
    a_to_b = "a_to_b"
    b_to_a = "b_to_a"


class StatusChoice(StrEnum):
    active = "active"
    expired = "expired"
    released = "released"


_DIRECTIONS: Final[dict[DirectionChoice, Direction]] = {
    DirectionChoice.both: "both",
    DirectionChoice.a_to_b: "a_to_b",
    DirectionChoice.b_to_a: "b_to_a",
}
_STATUSES: Final[dict[StatusChoice, BindingStatus]] = {
    StatusChoice.active: "active",
    StatusChoice.expired: "expired",
    StatusChoice.released: "released",
}


@contextmanager
def _binding_store(db: Path) -> Iterator[SqliteBindingStore]:
    store = SqliteBindingStore.open(db)
    try:
        yield store
    finally:
        store.close()


def _normalise(kind: str, text: str, param_hint: str) -> str:
    plan = NumberPlan()
    try:
        return plan.real(text) if kind == "real" else plan.privacy(text)
    except NumberError as exc:
        raise typer.BadParameter(str(exc), param_hint=param_hint) from exc


def _iso(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _shown_binding(binding: Binding, unmasked: bool) -> Binding:
    if unmasked:
        return binding
    return dataclasses.replace(binding, a=mask(binding.a), b=mask(binding.b))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [headers, ["-" * w for w in widths], *rows]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, indent=2))


def _binding_detail(binding: Binding, now: float) -> str:
    pairs = [
        ("id", binding.id),
        ("tenant", binding.tenant),
        ("a", binding.a),
        ("b", binding.b),
        ("x", binding.x),
        ("direction", binding.direction),
        ("status", binding.effective_status(now)),
        ("created", _iso(binding.created_at)),
        ("expires", _iso(binding.expires_at)),
        ("ended", _iso(binding.ended_at)),
    ]
    optional = [
        ("max_call_s", binding.max_call_s),
        ("order_id", binding.order_id),
        ("scenario", binding.scenario),
    ]
    pairs += [(name, str(value)) for name, value in optional if value is not None]
    width = max(len(name) for name, _ in pairs)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in pairs)


@app.command()
def bind(
    a: Annotated[
        str, typer.Argument(metavar="A", help="Real number of party A.", show_default=False)
    ],
    b: Annotated[
        str, typer.Argument(metavar="B", help="Real number of party B.", show_default=False)
    ],
    x: Annotated[str, typer.Option("--x", help="Privacy number to bind them through.")],
    ttl: Annotated[
        int | None, typer.Option("--ttl", min=1, help="Seconds until the binding expires.")
    ] = None,
    direction: Annotated[
        DirectionChoice, typer.Option("--direction", help="Who may call whom.")
    ] = DirectionChoice.both,
    tenant: Annotated[str, typer.Option("--tenant", help="Business user.")] = "default",
    max_call_s: Annotated[
        int | None, typer.Option("--max-call-s", min=1, help="Cap on one call's length.")
    ] = None,
    order_id: Annotated[str | None, typer.Option("--order-id", help="Platform order.")] = None,
    scenario: Annotated[str | None, typer.Option("--scenario", help="Bound purpose.")] = None,
    json_output: JsonOption = False,
    unmasked: UnmaskedOption = False,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Bind real numbers A and B through privacy number X (AXB)."""
    real_a = _normalise("real", a, "'A'")
    real_b = _normalise("real", b, "'B'")
    privacy_x = _normalise("privacy", x, "'--x'")
    if real_a == real_b:
        raise typer.BadParameter("A and B are the same number", param_hint="'B'")
    now = time.time()
    with _binding_store(db) as store:
        try:
            binding = store.add(
                real_a,
                real_b,
                privacy_x,
                now=now,
                tenant=tenant,
                expires_at=None if ttl is None else now + ttl,
                direction=_DIRECTIONS[direction],
                max_call_s=max_call_s,
                order_id=order_id,
                scenario=scenario,
            )
        except BindingConflict as exc:
            raise typer.BadParameter(str(exc), param_hint=f"'{exc.role.upper()}'") from exc
        except BindingError as exc:
            raise typer.BadParameter(str(exc)) from exc
    shown = _shown_binding(binding, unmasked)
    if json_output:
        _echo_json(dataclasses.asdict(shown))
    else:
        typer.echo(_binding_detail(shown, now))


@app.command()
def unbind(
    binding_id: Annotated[str, typer.Argument(metavar="ID", help="Binding id (b_…).")],
    json_output: JsonOption = False,
    unmasked: UnmaskedOption = False,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Release a binding: calls through it stop at once."""
    now = time.time()
    with _binding_store(db) as store:
        before = store.get(binding_id)
        if before is None:
            raise typer.BadParameter(f"no binding {binding_id}", param_hint="'ID'")
        binding = store.release(binding_id, now)
    if before.status != "active":
        typer.echo(f"binding {binding_id} had already ended ({before.status})", err=True)
    shown = _shown_binding(binding, unmasked)
    if json_output:
        _echo_json(dataclasses.asdict(shown))
    else:
        typer.echo(_binding_detail(shown, now))


@app.command("bindings")
def list_bindings(
    party: Annotated[
        str | None, typer.Option("--party", help="Only bindings with this real number.")
    ] = None,
    x: Annotated[str | None, typer.Option("--x", help="Only bindings on this X.")] = None,
    status: Annotated[StatusChoice | None, typer.Option("--status")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 100,
    offset: Annotated[int, typer.Option("--offset", min=0)] = 0,
    json_output: JsonOption = False,
    unmasked: UnmaskedOption = False,
    db: DbOption = DEFAULT_DB,
) -> None:
    """List bindings, newest first."""
    real_party = None if party is None else _normalise("real", party, "'--party'")
    privacy_x = None if x is None else _normalise("privacy", x, "'--x'")
    wanted = None if status is None else _STATUSES[status]
    now = time.time()
    with _binding_store(db) as store:
        # Sweep first so that --status and the status column agree with what routing does.
        store.expire_due(now)
        found = store.list(party=real_party, x=privacy_x, status=wanted, limit=limit, offset=offset)
    shown = [_shown_binding(binding, unmasked) for binding in found]
    if json_output:
        _echo_json([dataclasses.asdict(binding) for binding in shown])
        return
    headers = ("ID", "TENANT", "A", "B", "X", "DIRECTION", "STATUS", "CREATED", "EXPIRES")
    rows = [
        (
            binding.id,
            binding.tenant,
            binding.a,
            binding.b,
            binding.x,
            binding.direction,
            binding.status,
            _iso(binding.created_at),
            _iso(binding.expires_at),
        )
        for binding in shown
    ]
    typer.echo(_table(headers, rows))


def _cdr_json(record: CallRecord) -> dict[str, Any]:
    fields = dataclasses.asdict(record)
    fields["ring_s"] = record.ring_s
    fields["talk_s"] = record.talk_s
    return fields


@app.command()
def cdrs(
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many records.")] = 50,
    tenant: Annotated[str | None, typer.Option("--tenant")] = None,
    x: Annotated[str | None, typer.Option("--x", help="Only calls to this X.")] = None,
    json_output: JsonOption = False,
    unmasked: UnmaskedOption = False,
    db: DbOption = DEFAULT_DB,
) -> None:
    """List the most recent call records, newest first."""
    privacy_x = None if x is None else _normalise("privacy", x, "'--x'")
    records = read_records(db, limit=limit, tenant=tenant, x=privacy_x)
    shown = records if unmasked else [masked(record) for record in records]
    if json_output:
        _echo_json([_cdr_json(record) for record in shown])
        return
    headers = (
        "INVITE",
        "X",
        "CALLER",
        "CALLEE",
        "DISPOSITION",
        "REASON",
        "SIP",
        "Q850",
        "TALK_S",
        "BINDING",
    )
    rows = [
        (
            _iso(record.invite_at),
            record.x,
            record.caller,
            record.callee or "-",
            record.disposition,
            record.reject_reason or "-",
            str(record.sip_status),
            "-" if record.q850_cause is None else str(record.q850_cause),
            f"{record.talk_s:.3f}",
            record.binding_id or "-",
        )
        for record in shown
    ]
    typer.echo(_table(headers, rows))


def main() -> None:
    """Console-script entry point (``privproxy``)."""
    app()


# ── serve ─────────────────────────────────────────────────────────────────────────────────
# `privproxy serve` lives in its own module, which registers itself on `app` (it needs `app`
# and `DbOption` defined above, hence the import at the bottom).
from proxy import serve_command  # noqa: E402, F401
