"""The API server embedded in ``privproxy serve`` (``serve_api``): it answers with a Date
header, wakes about once a second rather than uvicorn's ten times, and stops promptly
when ``stop`` is set."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import uvicorn

from proxy.api.app import create_app, serve_api
from tests.e2e.sipp import free_port


def test_the_embedded_api_ticks_once_a_second_and_stops_at_once(tmp_path: Path) -> None:
    ticks: list[float] = []
    original = uvicorn.Server.on_tick

    async def counted(self: uvicorn.Server, counter: int) -> bool:
        ticks.append(time.monotonic())
        return await original(self, counter)

    async def scenario() -> tuple[int, str | None, float]:
        port = free_port()
        stop = asyncio.Event()
        app = create_app(tmp_path / "api.db")
        task = asyncio.create_task(serve_api(app, "127.0.0.1", port, stop))
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                try:
                    response = await client.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.02)
        await asyncio.sleep(2.1)
        stopped_at = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, 5)
        return response.status_code, response.headers.get("date"), time.monotonic() - stopped_at

    uvicorn.Server.on_tick = counted  # type: ignore[method-assign]
    try:
        status, date, stop_s = asyncio.run(scenario())
    finally:
        uvicorn.Server.on_tick = original  # type: ignore[method-assign]
    assert status == 200 and date is not None and date.endswith(" GMT")
    assert stop_s < 0.5
    span = ticks[-1] - ticks[0]
    assert len(ticks) <= span + 2, ticks  # about one a second (uvicorn's own: ten)
