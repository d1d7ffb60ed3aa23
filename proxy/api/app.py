"""The HTTP admin API (FastAPI): bindings, the number pool, call records, health.

``create_app`` builds the application on a database file; ``serve_api`` runs it with
uvicorn inside an already running event loop (the SIP server's, design.md §3), until an
``asyncio.Event`` is set. Errors are JSON ``{"detail": ...}``: 401 without a valid key, 403
for a key that may not do this, 404 for what the caller cannot see, 409 when the state
refuses a valid request (reuse rule, quarantine, no free number, number in use), 422 with
``detail[].loc`` naming the field for malformed input.

No access log: request lines carry query strings, and ``?party=`` is a real number
(design.md §4).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Final

import uvicorn
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse

from bindings.models import (
    BindingError,
    BindingNotFound,
    BindingRefused,
    PoolError,
    PoolNumberInUse,
    PoolNumberNotFound,
)
from proxy.api import bindings, pool
from proxy.api.deps import ApiSettings, ConnectionPool
from proxy.db import open_database
from proxy.numbers import NumberPlan

DEFAULT_LISTEN: Final = ("127.0.0.1", 8080)
_SHUTDOWN_POLL_S: Final = 0.1


def _detail(status_code: int, detail: object) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status_code)


def _field_detail(location: str, field: str | None, message: str) -> list[dict[str, object]]:
    loc = [location] if field is None else [location, field]
    return [{"type": "value_error", "loc": loc, "msg": message}]


async def _refused(_: Request, error: Exception) -> JSONResponse:
    return _detail(status.HTTP_409_CONFLICT, str(error))


async def _malformed_binding(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, BindingError)
    return _detail(
        status.HTTP_422_UNPROCESSABLE_CONTENT, _field_detail("body", error.field, str(error))
    )


async def _pool_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, PoolError)
    code = (
        status.HTTP_409_CONFLICT
        if isinstance(error, PoolNumberInUse)
        else status.HTTP_422_UNPROCESSABLE_CONTENT
    )
    return _detail(code, str(error))


async def _not_found(_: Request, error: Exception) -> JSONResponse:
    return _detail(status.HTTP_404_NOT_FOUND, str(error))


def create_app(
    db_path: str | Path,
    *,
    plan: NumberPlan | None = None,
    quarantine_s: float | None = None,
    max_per_x: int | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The API on the database at ``db_path`` (created or migrated now)."""
    open_database(db_path).close()
    defaults = ApiSettings()
    app = FastAPI(
        title="privproxy",
        summary="Privacy-number (700 range) bindings, number pool and call records.",
        version="1",
    )
    app.state.db_pool = ConnectionPool(db_path)
    app.state.settings = ApiSettings(
        plan=plan or defaults.plan,
        quarantine_s=defaults.quarantine_s if quarantine_s is None else quarantine_s,
        max_per_x=defaults.max_per_x if max_per_x is None else max_per_x,
    )
    app.state.clock = clock
    # Most specific first: Starlette picks the handler by walking the exception's MRO.
    app.add_exception_handler(BindingRefused, _refused)
    app.add_exception_handler(BindingError, _malformed_binding)
    app.add_exception_handler(BindingNotFound, _not_found)
    app.add_exception_handler(PoolNumberNotFound, _not_found)
    app.add_exception_handler(PoolError, _pool_error)
    app.include_router(bindings.router)
    app.include_router(pool.router)
    if find_spec("proxy.api.cdrs") is not None:
        from proxy.api.cdrs import router as cdr_router

        app.include_router(cdr_router)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness and database reachability (no key needed)."""
        pool_: ConnectionPool = app.state.db_pool
        with pool_.connection() as conn:
            conn.execute("SELECT 1").fetchone()
        return {"status": "ok"}

    return app


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) as a host and a port; ValueError otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


class _EmbeddedServer(uvicorn.Server):
    """Uvicorn without its signal handlers: the process's signals belong to the SIP server
    (graceful drain), which tells the API to stop through ``stop``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_api(app: FastAPI, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve ``app`` on ``host:port`` in the running event loop until ``stop`` is set.

    A port that cannot be bound raises ``OSError``. Uvicorn installs no signal handlers
    here: the caller owns the process's signals and sets ``stop``; requests in flight then
    finish before this returns.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="none",
        lifespan="off",
        log_level="warning",
        access_log=False,
        server_header=False,
    )
    server = _EmbeddedServer(config)

    async def stop_when_asked() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(stop_when_asked())
    try:
        await server.serve()
    except SystemExit:
        # uvicorn exits the process when it cannot bind; here that is the caller's call.
        raise OSError(f"HTTP API cannot listen on {host}:{port}") from None
    finally:
        watcher.cancel()
        pool_: ConnectionPool = app.state.db_pool
        pool_.close()
