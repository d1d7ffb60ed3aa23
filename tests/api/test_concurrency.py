"""50 creations at once against a real uvicorn (``serve_api``) on a database file: the reuse
rule holds, every response is 201 or a 409 that says why, and ``request_id`` retries racing
each other make one binding."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from bindings.sqlite_store import SqliteBindingStore
from proxy.api.app import create_app, serve_api
from tests.api.conftest import bearer, make_keys
from tests.e2e.sipp import free_port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], dict[str, str], Path]]:
    db = tmp_path / "race.db"
    app = create_app(db)
    admin, acme, _ = make_keys(db)
    port = free_port()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(
        target=loop.run_until_complete, args=(serve_api(app, "127.0.0.1", port, stop),)
    )
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200:
                break
        except httpx.TransportError:
            threading.Event().wait(0.02)
    try:
        yield base, bearer(admin), bearer(acme), db
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        assert not thread.is_alive()
        loop.close()


def test_fifty_parallel_creates_never_break_the_reuse_rule(
    server: tuple[str, dict[str, str], dict[str, str], Path],
) -> None:
    base, admin, acme, db = server
    pool = [f"70012345678{i:04d}" for i in range(4)]
    httpx.post(f"{base}/v1/pool", json={"numbers": pool}, headers=admin).raise_for_status()
    # 8 parties, every request among them: heavy contention on few numbers.
    parties = [f"+86138001380{i:02d}" for i in range(8)]
    bodies = [
        {"a": parties[i % 8], "b": parties[(i * 3 + 1) % 8]}
        for i in range(50)
        if i % 8 != (i * 3 + 1) % 8
    ]
    bodies += [{"a": parties[0], "b": parties[5], "request_id": "same"}] * (50 - len(bodies))

    def create(body: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{base}/v1/bindings", json=body, headers=acme, timeout=30)

    with ThreadPoolExecutor(max_workers=50) as workers:
        responses = list(workers.map(create, bodies))
    codes = {response.status_code for response in responses}
    assert codes <= {200, 201, 409}, [r.text for r in responses if r.status_code >= 400]
    assert 201 in codes
    for response in responses:
        if response.status_code == 409:
            assert "no free privacy number" in response.json()["detail"]
    store = SqliteBindingStore.open(db)
    live = store.list(status="active", limit=1000)
    store.close()
    created = {r.json()["id"] for r in responses if r.status_code in (200, 201)}
    assert created == {binding.id for binding in live}
    for x in pool:
        members = [p for binding in live if binding.x == x for p in (binding.a, binding.b)]
        assert len(members) == len(set(members)), f"reuse rule broken on {x}"
    assert sum(1 for binding in live if binding.request_id == "same") <= 1


def test_api_workers_share_one_port_and_the_reuse_rule(tmp_path: Path) -> None:
    db = tmp_path / "workers.db"
    admin, acme, _ = make_keys(db)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    privproxy = str(Path(sys.executable).with_name("privproxy"))
    server = subprocess.Popen(
        [privproxy, "api", "--listen", f"127.0.0.1:{port}", "--db", str(db), "--workers", "2"]
    )
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                threading.Event().wait(0.05)
        workers = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        assert len(workers) == 2
        pool = [f"70012345678{i:04d}" for i in range(3)]
        httpx.post(
            f"{base}/v1/pool", json={"numbers": pool}, headers=bearer(admin)
        ).raise_for_status()
        parties = [f"+86138001380{i:02d}" for i in range(6)]
        bodies = [{"a": parties[i % 6], "b": parties[(i + 1 + i // 6) % 6]} for i in range(30)]
        bodies = [body for body in bodies if body["a"] != body["b"]]

        def create(body: dict[str, str]) -> httpx.Response:
            # A fresh connection each: the kernel spreads them over both workers.
            return httpx.post(f"{base}/v1/bindings", json=body, headers=bearer(acme), timeout=30)

        with ThreadPoolExecutor(max_workers=len(bodies)) as pool_threads:
            responses = list(pool_threads.map(create, bodies))
        assert {response.status_code for response in responses} <= {201, 409}
        assert any(response.status_code == 201 for response in responses)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            assert server.wait(15) == 0
        finally:
            if server.poll() is None:
                server.kill()
                server.wait(5)
    assert not any(Path(f"/proc/{worker}").exists() for worker in workers)
    store = SqliteBindingStore.open(db)
    live = store.list(status="active", limit=1000)
    store.close()
    assert {r.json()["id"] for r in responses if r.status_code == 201} == {b.id for b in live}
    for x in pool:
        members = [p for binding in live if binding.x == x for p in (binding.a, binding.b)]
        assert len(members) == len(set(members)), f"reuse rule broken on {x}"
