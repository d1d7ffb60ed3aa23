"""The HTTP admin API (FastAPI): bindings, the number pool, the blocklist, call records,
health and metrics.

``create_app`` builds the application on a database file; ``serve_api`` runs it with
uvicorn inside an already running event loop (the SIP server's, design.md §3), until an
``asyncio.Event`` is set. Errors are JSON ``{"detail": ...}``: 401 without a valid key, 403
for a key that may not do this, 404 for what the caller cannot see, 409 when the state
refuses a valid request (reuse rule, quarantine, no free number, number in use), 422 with
``detail[].loc`` naming the field for malformed input.

No access log: request lines carry query strings, and ``?party=`` is a real number
(design.md §4).

Observability needs no key: ``GET /metrics`` (Prometheus text format), ``GET /healthz``
(the process and its database answer) and ``GET /readyz`` (the process takes calls; 503
with the reason otherwise). ``privproxy serve`` passes its own metrics and readiness;
``privproxy api`` alone serves the process's default Prometheus registry and counts itself
ready while its database answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Final

import uvicorn
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse, Response
from prometheus_client import REGISTRY, generate_latest

from bindings.models import (
    BindingError,
    BindingNotFound,
    BindingRefused,
    PoolError,
    PoolNumberInUse,
    PoolNumberNotFound,
)
from proxy.api import bindings, blocklist, pool
from proxy.api.deps import AllocationWriter, ApiSettings, ConnectionPool
from proxy.db import open_database
from proxy.numbers import NumberPlan

DEFAULT_LISTEN: Final = ("127.0.0.1", 8080)
_SHUTDOWN_POLL_S: Final = 0.1
_WORKER_STOP_S: Final = 10.0
_BACKLOG: Final = 2048
#: The Prometheus text exposition format that ``generate_latest`` writes.
METRICS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

MetricsSource = Callable[[], bytes]
ReadinessProbe = Callable[[], tuple[bool, str]]


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
    metrics: MetricsSource | None = None,
    ready: ReadinessProbe | None = None,
    routing_changed: Callable[[], None] | None = None,
) -> FastAPI:
    """The API on the database at ``db_path`` (created or migrated now).

    ``metrics`` renders ``/metrics`` (default: the process's default Prometheus registry);
    ``ready`` answers ``/readyz`` with (ready, reason) (default: the database answers).
    Both run on the event loop thread, the thread that owns what a server reads in them.
    ``routing_changed`` is called after a release, a binding change or a blocklist change
    commits (from a worker thread), so that routing in the same process sees it at once.
    """
    open_database(db_path).close()
    defaults = ApiSettings()
    app = FastAPI(
        title="privproxy",
        summary="Privacy-number (700 range) bindings, number pool and call records.",
        version="1",
    )
    settings = ApiSettings(
        plan=plan or defaults.plan,
        quarantine_s=defaults.quarantine_s if quarantine_s is None else quarantine_s,
        max_per_x=defaults.max_per_x if max_per_x is None else max_per_x,
    )
    app.state.db_pool = ConnectionPool(db_path)
    app.state.allocation_writer = AllocationWriter(
        db_path, quarantine_s=settings.quarantine_s, max_per_x=settings.max_per_x
    )
    app.state.settings = settings
    app.state.clock = clock
    app.state.routing_changed = routing_changed or _nothing
    # Most specific first: Starlette picks the handler by walking the exception's MRO.
    app.add_exception_handler(BindingRefused, _refused)
    app.add_exception_handler(BindingError, _malformed_binding)
    app.add_exception_handler(BindingNotFound, _not_found)
    app.add_exception_handler(PoolNumberNotFound, _not_found)
    app.add_exception_handler(PoolError, _pool_error)
    app.include_router(bindings.router)
    app.add_middleware(bindings.CreateFastPath)
    app.include_router(pool.router)
    app.include_router(blocklist.router)
    if find_spec("proxy.api.cdrs") is not None:
        from proxy.api.cdrs import router as cdr_router

        app.include_router(cdr_router)

    def database_answers() -> tuple[bool, str]:
        db_pool: ConnectionPool = app.state.db_pool
        try:
            with db_pool.connection() as conn:
                conn.execute("SELECT 1").fetchone()
        except Exception as error:
            return False, f"database: {error}"
        return True, "ok"

    render_metrics = metrics or (lambda: generate_latest(REGISTRY))
    readiness = ready or database_answers

    @app.get("/healthz", tags=["health"], responses={503: {"description": "database down"}})
    def healthz() -> JSONResponse:
        """Liveness and database reachability (no key needed)."""
        alive, reason = database_answers()
        if not alive:
            return JSONResponse({"status": "error", "detail": reason}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", tags=["health"], responses={503: {"description": "not ready"}})
    async def readyz() -> JSONResponse:
        """Whether this process takes calls now (no key needed): 200 ``{"ready": true}``,
        else 503 with the reason (starting, draining, database unreachable)."""
        try:
            is_ready, reason = readiness()
        except Exception as error:
            is_ready, reason = False, f"readiness check failed: {error}"
        if is_ready:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False, "reason": reason}, status_code=503)

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def prometheus_metrics() -> Response:
        """Prometheus metrics in the text exposition format (no key needed)."""
        return Response(render_metrics(), media_type=METRICS_CONTENT_TYPE)

    return app


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) as a host and a port; ValueError otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def _nothing() -> None:
    """No routing in this process to tell (``privproxy api``)."""


class _EmbeddedServer(uvicorn.Server):
    """Uvicorn without its signal handlers: the process's signals belong to the SIP server
    (graceful drain), which tells the API to stop through ``stop``."""

    def __init__(self, config: uvicorn.Config, stop: asyncio.Event) -> None:
        super().__init__(config)
        self.stop = stop

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        """Uvicorn's loop wakes ten times a second to refresh its Date header (one-second
        resolution) and to look for ``should_exit``. Here it wakes once a second, or at
        once when ``stop`` is set: a SIP server that sleeps between datagrams pays
        ~0.2 ms of CPU for each wake-up."""
        counter = 0  # on_tick refreshes the Date header when counter % 10 == 0
        while not await self.on_tick(counter):
            counter += 10
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 1.0)
            self.should_exit = self.should_exit or self.stop.is_set()


async def serve_api(
    app: FastAPI,
    host: str,
    port: int,
    stop: asyncio.Event,
    *,
    sock: socket.socket | None = None,
) -> None:
    """Serve ``app`` on ``host:port`` in the running event loop until ``stop`` is set.

    A port that cannot be bound raises ``OSError``. Uvicorn installs no signal handlers
    here: the caller owns the process's signals and sets ``stop``; requests in flight then
    finish before this returns. ``sock``, an already listening socket (one of several
    worker processes'), replaces binding ``host:port``.
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
    server = _EmbeddedServer(config, stop)
    try:
        await server.serve(sockets=None if sock is None else [sock])
    except SystemExit:
        # uvicorn exits the process when it cannot bind; here that is the caller's call.
        raise OSError(f"HTTP API cannot listen on {host}:{port}") from None
    finally:
        close_app(app)


def close_app(app: FastAPI) -> None:
    """Finish queued binding creations and close the app's database connections."""
    writer: AllocationWriter = app.state.allocation_writer
    writer.close()
    pool_: ConnectionPool = app.state.db_pool
    pool_.close()


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` sockets listening on ``host:port`` with ``SO_REUSEPORT``: the kernel spreads
    incoming connections over them, one per worker process. Bound here, before any worker
    starts, so that a port in use is one clear ``OSError``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(_BACKLOG)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise OSError(f"HTTP API cannot listen on {host}:{port}: {exc.strerror}") from None
    return sockets


def _api_worker(
    db_path: str, host: str, port: int, sock: socket.socket, others: list[socket.socket]
) -> None:
    """One worker process of ``run_api_workers``: the whole API on its own socket until
    SIGTERM or SIGINT."""
    import signal

    from proxy.server import install_event_loop

    for other in others:
        other.close()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve_api(create_app(db_path), host, port, stop, sock=sock)

    install_event_loop()
    asyncio.run(run())


def run_api_workers(db_path: str | Path, host: str, port: int, workers: int) -> int:
    """Serve the API from ``workers`` processes on one port until SIGTERM or SIGINT; return
    the exit status (1 when a worker died on its own).

    One process is one core's worth of Python; several share the database file as any
    writers do (WAL; ``BEGIN IMMEDIATE`` serialises their allocations, so the reuse rule
    holds across them). SIGTERM or SIGINT stops every worker gracefully.
    """
    import multiprocessing
    import signal
    from multiprocessing.connection import wait

    open_database(db_path).close()  # migrate once, before the workers race to
    sockets = listening_sockets(host, port, workers)
    # fork: no thread runs yet in this process, and each worker inherits its socket.
    context = multiprocessing.get_context("fork")
    processes = [
        context.Process(
            target=_api_worker,
            args=(
                str(db_path),
                host,
                port,
                sock,
                [other for other in sockets if other is not sock],
            ),
            name=f"privproxy-api-{index}",
        )
        for index, sock in enumerate(sockets)
    ]
    stopping: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for process in processes:
            process.start()
        for sock in sockets:
            sock.close()
        while not stopping:
            if wait([process.sentinel for process in processes], timeout=_SHUTDOWN_POLL_S):
                break
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(_WORKER_STOP_S)
            if process.is_alive():
                process.kill()
                process.join()
    return 0 if stopping and all(p.exitcode == 0 for p in processes) else 1
