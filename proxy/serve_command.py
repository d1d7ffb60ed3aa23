"""``privproxy serve``: run the proxy (flags override ``--config``, which overrides defaults)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from proxy.cli import app
from proxy.config import ConfigError, load_config
from proxy.logs import configure_logging


@app.command()
def serve(
    sip: Annotated[
        list[str] | None,
        typer.Option("--sip", help="Listener udp:HOST:PORT or tcp:HOST:PORT (repeatable)."),
    ] = None,
    trunk: Annotated[
        str | None, typer.Option(help="Where B legs go, e.g. 'sip:127.0.0.1:5080;transport=udp'.")
    ] = None,
    db: Annotated[
        Path | None,
        typer.Option(
            "--db",
            envvar="PRIVPROXY_DB",
            dir_okay=False,
            help="SQLite database (default ./privproxy.db).",
        ),
    ] = None,
    advertise: Annotated[
        str | None,
        typer.Option(help="HOST[:PORT] written in Via/Contact/From (default: first --sip)."),
    ] = None,
    trusted: Annotated[
        list[str] | None,
        typer.Option("--trusted", help="CIDR whose P-Asserted-Identity is believed (repeatable)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="TOML file with the same settings.", dir_okay=False),
    ] = None,
    ring_timeout: Annotated[
        float | None, typer.Option(help="Seconds B may ring (default 60).")
    ] = None,
    grace: Annotated[
        float | None, typer.Option(help="Seconds calls may go on after SIGTERM (default 30).")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
    log_format: Annotated[
        str | None, typer.Option(help="text (default) or json: one JSON object a line.")
    ] = None,
    api: Annotated[
        str | None,
        typer.Option("--api", help="HOST:PORT of the HTTP API (default 127.0.0.1:8080), or off."),
    ] = None,
) -> None:
    """Run the privacy-number B2BUA until SIGTERM or SIGINT."""
    from proxy.server import serve as run

    try:
        settings = load_config(
            str(config) if config else None,
            {
                "sip": sip,
                "trunk": trunk,
                "db": str(db) if db else None,
                "advertise": advertise,
                "trusted": trusted,
                "ring_timeout": ring_timeout,
                "grace": grace,
                "log_level": log_level,
                "log_format": log_format,
                "api": api,
            },
        )
    except ConfigError as error:
        typer.echo(f"privproxy serve: {error}", err=True)
        raise typer.Exit(2) from None
    configure_logging(
        settings.log_level,
        settings.log_format,
        privacy_prefix=settings.privacy_prefix,
        privacy_length=settings.privacy_length,
    )
    try:
        run(settings)
    except ConfigError as error:
        typer.echo(f"privproxy serve: {error}", err=True)
        raise typer.Exit(2) from None
