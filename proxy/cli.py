"""The ``privproxy`` command: bindings, the number pool, API keys, call records and the
HTTP API, for operators working on the database directly.

Real numbers are masked (``138****8000``) in every output, tables and JSON alike, unless
``--unmasked`` is given (design.md §1 Records, §4). Every subcommand takes ``--db``
(default ``./privproxy.db``, or ``$PRIVPROXY_DB``). Changes are audited with actor ``cli``.

Errors in arguments (a number that does not normalise, A equal to B, a binding that breaks
the AXB reuse rule, no free number) name the argument and exit with status 2, as other
usage errors do.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final

import typer

from bindings import blocklist
from bindings.blocklist import BlockedNumber, BlocklistError, NotBlocked
from bindings.keys import ApiKey, ApiKeyNotFound, create_api_key, list_api_keys, revoke_api_key
from bindings.models import (
    Binding,
    BindingConflict,
    BindingError,
    BindingStatus,
    Direction,
    NumberQuarantined,
    PoolError,
    PoolNumber,
    PoolNumberNotFound,
    expand_range,
)
from bindings.sqlite_store import SqliteBindingStore
from proxy.cdr.record import CallRecord, masked
from proxy.cdr.writer import read_records
from proxy.db import open_database
from proxy.numbers import NumberError, NumberPlan, mask

app = typer.Typer(
    name="privproxy",
    help="Privacy-number (700 range) SIP B2BUA: bindings, call records, server.",
    no_args_is_help=True,
    add_completion=False,
)

DEFAULT_DB: Final = Path("privproxy.db")
CLI_ACTOR: Final = "cli"
_BIND_HINTS: Final = {
    "a": "'A'",
    "b": "'B'",
    "x": "'--x'",
    "request_id": "'--request-id'",
    "tenant": "'--tenant'",
}

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
    x: Annotated[
        str | None,
        typer.Option("--x", help="Privacy number to bind them through (default: allocate)."),
    ] = None,
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
    city: Annotated[
        str | None, typer.Option("--city", help="Preferred pool city when allocating.")
    ] = None,
    request_id: Annotated[
        str | None, typer.Option("--request-id", help="Idempotency key (per tenant).")
    ] = None,
    json_output: JsonOption = False,
    unmasked: UnmaskedOption = False,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Bind real numbers A and B through privacy number X (AXB).

    Without --x the allocator picks the first pool number open to the tenant that neither
    party uses (nor left less than the quarantine ago). With --x the operator may name a
    number outside the pool; the reuse rule and the quarantine still apply.
    """
    real_a = _normalise("real", a, "'A'")
    real_b = _normalise("real", b, "'B'")
    privacy_x = None if x is None else _normalise("privacy", x, "'--x'")
    if real_a == real_b:
        raise typer.BadParameter("A and B are the same number", param_hint="'B'")
    now = time.time()
    with _binding_store(db) as store:
        try:
            binding = store.allocate(
                real_a,
                real_b,
                now=now,
                x=privacy_x,
                tenant=tenant,
                city=city,
                request_id=request_id,
                expires_at=None if ttl is None else now + ttl,
                direction=_DIRECTIONS[direction],
                max_call_s=max_call_s,
                order_id=order_id,
                scenario=scenario,
                strict_pool=False,
                actor=CLI_ACTOR,
            ).binding
        except BindingConflict as exc:
            raise typer.BadParameter(str(exc), param_hint=f"'{exc.role.upper()}'") from exc
        except NumberQuarantined as exc:
            raise typer.BadParameter(str(exc), param_hint="'--x'") from exc
        except BindingError as exc:
            hint = None if exc.field is None else _BIND_HINTS.get(exc.field)
            raise typer.BadParameter(str(exc), param_hint=hint) from exc
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
        binding = store.release(binding_id, now, actor=CLI_ACTOR)
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
        store.expire_due(now, actor=CLI_ACTOR)
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


# ── the number pool ───────────────────────────────────────────────────────────────────────

pool_app = typer.Typer(help="The operator's privacy numbers.", no_args_is_help=True)
app.add_typer(pool_app, name="pool")

#: Numbers one `pool add` may add, ranges included.
MAX_POOL_ADD: Final = 1_000_000


@pool_app.command("add")
def pool_add(
    numbers: Annotated[
        list[str] | None, typer.Argument(metavar="[NUMBER]...", help="Privacy numbers.")
    ] = None,
    ranges: Annotated[
        list[str] | None,
        typer.Option("--range", help="FIRST-LAST, both included (repeatable)."),
    ] = None,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Owner (default: the shared pool).")
    ] = None,
    city: Annotated[str | None, typer.Option("--city", help="City or area tag.")] = None,
    json_output: JsonOption = False,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Add privacy numbers to the pool, one by one or as ranges."""
    plan = NumberPlan()
    wanted = [_normalise("privacy", text, "'NUMBER'") for text in numbers or ()]
    for text in ranges or ():
        try:
            wanted += expand_range(
                text,
                prefix=plan.privacy_prefix,
                length=plan.privacy_length,
                limit=MAX_POOL_ADD,
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--range'") from exc
    if not wanted:
        raise typer.BadParameter("give at least one NUMBER or --range", param_hint="'NUMBER'")
    with _binding_store(db) as store:
        try:
            result = store.add_numbers(
                wanted, now=time.time(), tenant=tenant, city=city, actor=CLI_ACTOR
            )
        except BindingError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--tenant'") from exc
    if json_output:
        _echo_json(dataclasses.asdict(result))
    else:
        typer.echo(f"added {result.added}, already in the pool {result.already_present}")


@pool_app.command("rm")
def pool_rm(
    number: Annotated[str, typer.Argument(metavar="NUMBER", help="Privacy number.")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Take a number out of the pool (only when no live binding uses it)."""
    x = _normalise("privacy", number, "'NUMBER'")
    with _binding_store(db) as store:
        try:
            store.remove_number(x, now=time.time(), actor=CLI_ACTOR)
        except (PoolError, PoolNumberNotFound) as exc:
            raise typer.BadParameter(str(exc).strip("'\""), param_hint="'NUMBER'") from exc
    typer.echo(f"removed {x}")


def _pool_json(number: PoolNumber) -> dict[str, Any]:
    return dataclasses.asdict(number)


@pool_app.command("list")
def pool_list(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only numbers this tenant may use.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 1000,
    offset: Annotated[int, typer.Option("--offset", min=0)] = 0,
    json_output: JsonOption = False,
    db: DbOption = DEFAULT_DB,
) -> None:
    """List pool numbers with their owner, city and live bindings."""
    with _binding_store(db) as store:
        store.expire_due(time.time(), actor=CLI_ACTOR)
        found = store.list_pool(tenant, limit=limit, offset=offset)
    if json_output:
        _echo_json([_pool_json(number) for number in found])
        return
    rows = [
        (
            number.x,
            number.tenant or "(shared)",
            number.city or "-",
            str(number.live_bindings),
            _iso(number.added_at),
        )
        for number in found
    ]
    typer.echo(_table(("X", "TENANT", "CITY", "LIVE", "ADDED"), rows))


@pool_app.command("stats")
def pool_stats(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="The numbers this tenant may use.")
    ] = None,
    json_output: JsonOption = False,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Numbers, live bindings per number and free capacity."""
    with _binding_store(db) as store:
        stats = store.pool_stats(time.time(), tenant)
    values = dataclasses.asdict(stats)
    values["mean_bindings_per_number"] = round(stats.mean_bindings_per_number, 3)
    if json_output:
        _echo_json(values)
        return
    width = max(len(name) for name in values)
    typer.echo("\n".join(f"{name.ljust(width)}  {value}" for name, value in values.items()))


# ── API keys ──────────────────────────────────────────────────────────────────────────────

apikey_app = typer.Typer(help="API keys of tenants and operators.", no_args_is_help=True)
app.add_typer(apikey_app, name="apikey")


def _key_json(key: ApiKey) -> dict[str, Any]:
    return dataclasses.asdict(key)


@apikey_app.command("create")
def apikey_create(
    tenant: Annotated[str, typer.Option("--tenant", help="Business user the key acts for.")],
    admin: Annotated[
        bool, typer.Option("--admin", help="Operator key: manages the pool, sees all tenants.")
    ] = False,
    label: Annotated[str | None, typer.Option("--label", help="A note for humans.")] = None,
    json_output: JsonOption = False,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Create a key and print it once; only its hash is stored."""
    conn = open_database(db)
    try:
        key, token = create_api_key(
            conn, tenant=tenant, admin=admin, now=time.time(), actor=CLI_ACTOR, label=label
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--tenant'") from exc
    finally:
        conn.close()
    if json_output:
        _echo_json({**_key_json(key), "key": token})
        return
    typer.echo(token)
    typer.echo(
        f"key {key.id} for tenant {key.tenant}{' (admin)' if key.admin else ''}:"
        " store it now, it is not shown again",
        err=True,
    )


@apikey_app.command("list")
def apikey_list(
    tenant: Annotated[str | None, typer.Option("--tenant")] = None,
    json_output: JsonOption = False,
    db: DbOption = DEFAULT_DB,
) -> None:
    """List keys (never their secrets), revoked ones included."""
    conn = open_database(db)
    try:
        keys = list_api_keys(conn, tenant)
    finally:
        conn.close()
    if json_output:
        _echo_json([_key_json(key) for key in keys])
        return
    rows = [
        (
            key.id,
            key.tenant,
            "yes" if key.admin else "no",
            key.label or "-",
            _iso(key.created_at),
            _iso(key.revoked_at),
        )
        for key in keys
    ]
    typer.echo(_table(("ID", "TENANT", "ADMIN", "LABEL", "CREATED", "REVOKED"), rows))


@apikey_app.command("revoke")
def apikey_revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="Key id (k_…).")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Revoke a key: requests with it are refused at once."""
    conn = open_database(db)
    try:
        key = revoke_api_key(conn, key_id, now=time.time(), actor=CLI_ACTOR)
    except ApiKeyNotFound as exc:
        raise typer.BadParameter(str(exc).strip("'\""), param_hint="'ID'") from exc
    finally:
        conn.close()
    typer.echo(f"revoked {key.id} (tenant {key.tenant})")


# ── the number blocklist ──────────────────────────────────────────────────────────────────

block_app = typer.Typer(
    help="Real numbers that may neither call nor be called through any privacy number.",
    no_args_is_help=True,
)
app.add_typer(block_app, name="block")


@contextmanager
def _database(db: Path) -> Iterator[sqlite3.Connection]:
    conn = open_database(db)
    try:
        yield conn
    finally:
        conn.close()


def _block_json(entry: BlockedNumber, unmasked: bool) -> dict[str, Any]:
    values = dataclasses.asdict(entry)
    if not unmasked:
        values["number"] = mask(entry.number)
    return values


@block_app.command("add")
def block_add(
    number: Annotated[str, typer.Argument(metavar="NUMBER", help="Real number, any usual form.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (shown to operators, audited).")],
    ttl: Annotated[
        int | None, typer.Option("--ttl", min=1, help="Seconds until the block lapses.")
    ] = None,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Block a number; blocking it again replaces its reason and expiry."""
    real = _normalise("real", number, "'NUMBER'")
    now = time.time()
    with _database(db) as conn:
        try:
            entry = blocklist.block(
                conn,
                real,
                reason=reason,
                actor=CLI_ACTOR,
                now=now,
                expires_at=None if ttl is None else now + ttl,
            )
        except BlocklistError as exc:
            raise typer.BadParameter(str(exc), param_hint=f"'--{exc.field}'") from exc
    until = "until removed" if entry.expires_at is None else f"until {_iso(entry.expires_at)}"
    typer.echo(f"blocked {mask(entry.number)} {until}")


@block_app.command("rm")
def block_rm(
    number: Annotated[str, typer.Argument(metavar="NUMBER", help="Real number, any usual form.")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Unblock a number."""
    real = _normalise("real", number, "'NUMBER'")
    with _database(db) as conn:
        try:
            blocklist.unblock(conn, real, actor=CLI_ACTOR, now=time.time())
        except NotBlocked as exc:
            raise typer.BadParameter(str(exc).strip("'\""), param_hint="'NUMBER'") from exc
    typer.echo(f"unblocked {mask(real)}")


@block_app.command("list")
def block_list(
    include_expired: Annotated[
        bool, typer.Option("--include-expired", help="Lapsed entries too.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 1000,
    offset: Annotated[int, typer.Option("--offset", min=0)] = 0,
    json_output: JsonOption = False,
    unmasked: Annotated[
        bool,
        typer.Option("--unmasked", help="Show numbers in full (audited as blocklist.unmask)."),
    ] = False,
    db: DbOption = DEFAULT_DB,
) -> None:
    """List blocked numbers, newest first (masked unless --unmasked)."""
    now = time.time()
    with _database(db) as conn:
        entries = blocklist.blocked(
            conn, now=now, include_expired=include_expired, limit=limit, offset=offset
        )
        if unmasked:
            blocklist.audit_unmasked_listing(conn, actor=CLI_ACTOR, now=now, shown=len(entries))
    if json_output:
        _echo_json([_block_json(entry, unmasked) for entry in entries])
        return
    rows = [
        (
            entry.number if unmasked else mask(entry.number),
            entry.reason,
            entry.created_by,
            _iso(entry.created_at),
            _iso(entry.expires_at) if entry.active(now) else f"{_iso(entry.expires_at)} (lapsed)",
        )
        for entry in entries
    ]
    typer.echo(_table(("NUMBER", "REASON", "BY", "CREATED", "EXPIRES"), rows))


# ── the HTTP API alone ────────────────────────────────────────────────────────────────────


@app.command()
def api(
    listen: Annotated[
        str, typer.Option("--listen", help="HOST:PORT of the HTTP API.")
    ] = "127.0.0.1:8080",
    db: DbOption = DEFAULT_DB,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Processes serving the port (one core each); they share the database.",
        ),
    ] = 1,
) -> None:
    """Serve the HTTP API (bindings, pool, call records) without the SIP proxy."""
    import asyncio
    import signal

    from proxy.api.app import create_app, parse_listen, run_api_workers, serve_api
    from proxy.server import install_event_loop

    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--listen'") from exc
    if workers > 1:
        try:
            status = run_api_workers(db, host, port, workers)
        except OSError as exc:
            typer.echo(f"privproxy api: {exc}", err=True)
            raise typer.Exit(1) from None
        raise typer.Exit(status)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve_api(create_app(db), host, port, stop)

    install_event_loop()
    try:
        asyncio.run(run())
    except OSError as exc:
        typer.echo(f"privproxy api: {exc}", err=True)
        raise typer.Exit(1) from None


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
from proxy.cdr_cli import audit_app, cdr_app  # noqa: E402

app.add_typer(cdr_app, name="cdr", help="Call records: export, verify, purge, checkpoints, keys.")
app.add_typer(audit_app, name="audit", help="Audit report for auditors (HTML, offline).")
