"""Binding figures: creations per second through the store and through the HTTP API, and the
(X, caller) routing lookup with 1,000,000 active bindings in SQLite. Prints; asserts nothing.

    python benchmarks/bindings.py [--active 1000000] [--creates 5000] [--api-creates 3000]

Targets (issue #4): lookup p99 ≤ 100 µs in the store; ≥ 1,000 creations/s through the API.
The API figure is a real uvicorn (``serve_api``) on 127.0.0.1 with concurrent HTTP clients,
so it includes HTTP parsing, auth, validation and JSON, not just the store.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bindings.keys import create_api_key
from bindings.sqlite_store import SqliteBindingStore
from proxy.db import open_database, transaction
from tests.e2e.sipp import free_port

PER_X = 5000
PRIVPROXY = str(Path(sys.executable).with_name("privproxy"))


def party(n: int) -> str:
    return f"+8613{n:09d}"


def pool_numbers(count: int, base: int = 0) -> list[str]:
    return [f"700123{base + n:09d}" for n in range(count)]


def store_creations(workdir: Path, creates: int) -> float:
    store = SqliteBindingStore.open(workdir / "store.db")
    store.add_numbers(pool_numbers(2000), now=time.time())
    rng = random.Random(1)
    pairs = [
        (party(rng.randrange(10**6)), party(10**6 + rng.randrange(10**6))) for _ in range(creates)
    ]
    start = time.perf_counter()
    for a, b in pairs:
        store.allocate(a, b, now=time.time())
    elapsed = time.perf_counter() - start
    store.close()
    return creates / elapsed


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def api_creations(workdir: Path, creates: int, clients: int) -> float:
    db = workdir / "api.db"
    conn = open_database(db)
    _, admin = create_api_key(conn, tenant="ops", admin=True, now=time.time(), actor="bench")
    _, tenant = create_api_key(conn, tenant="acme", admin=False, now=time.time(), actor="bench")
    conn.close()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # Its own process, as deployed: clients in this one do not share the server's GIL.
    server = subprocess.Popen(
        [PRIVPROXY, "api", "--listen", f"127.0.0.1:{port}", "--db", str(db)],
        stdout=subprocess.DEVNULL,
    )
    try:
        cpu_before = _cpu_seconds(server.pid)
        rate = _drive_api(base, admin, tenant, creates, clients)
        cpu = _cpu_seconds(server.pid) - cpu_before
        print(f"  server CPU per API creation: {cpu / creates * 1e6:,.0f} µs")
        return rate
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


def _drive_api(base: str, admin: str, tenant: str, creates: int, clients: int) -> float:
    for _ in range(500):
        try:
            httpx.get(f"{base}/healthz", timeout=0.5)
            break
        except httpx.TransportError:
            time.sleep(0.02)
    httpx.post(
        f"{base}/v1/pool",
        json={"ranges": ["700123000000000-700123000001999"]},
        headers={"Authorization": f"Bearer {admin}"},
    ).raise_for_status()
    rng = random.Random(2)
    bodies = [
        {"a": party(rng.randrange(10**6)), "b": party(10**6 + rng.randrange(10**6)), "ttl_s": 600}
        for _ in range(creates)
    ]
    headers = {"Authorization": f"Bearer {tenant}", "Content-Type": "application/json"}
    host, port = base.removeprefix("http://").split(":")
    local = threading.local()

    def create(body: dict[str, object]) -> int:
        # http.client with keep-alive: httpx's own CPU per request would be the bottleneck.
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        local.conn.request("POST", "/v1/bindings", json.dumps(body), headers)
        response = local.conn.getresponse()
        response.read()
        return response.status

    with ThreadPoolExecutor(clients) as workers:
        list(workers.map(create, bodies[:100]))  # warm up connections and caches
        start = time.perf_counter()
        codes = list(workers.map(create, bodies[100:]))
        elapsed = time.perf_counter() - start
    failed = sum(1 for code in codes if code != 201)
    if failed:
        print(f"  ({failed} API creations failed)")
    return len(codes) / elapsed


def build_active(path: Path, active: int) -> list[tuple[str, str]]:
    """``active`` live bindings, PER_X on each X, inserted directly (fast) with executemany;
    returns a sample of (X, caller) pairs that hit."""
    conn = open_database(path)
    now = time.time()
    numbers = pool_numbers(active // PER_X + 1)
    rows = (
        (
            f"b_bench{n:014d}",
            "bench",
            "axb",
            party(2 * n),
            party(2 * n + 1),
            numbers[n // PER_X],
            now,
            None,
            "both",
            "active",
        )
        for n in range(active)
    )
    with transaction(conn):
        conn.executemany(
            "INSERT INTO bindings (id, tenant, model, a, b, x, created_at, expires_at,"
            " direction, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    conn.execute("ANALYZE")
    conn.close()
    rng = random.Random(3)
    sample = []
    for _ in range(100_000):
        n = rng.randrange(active)
        sample.append((numbers[n // PER_X], party(2 * n + rng.randrange(2))))
    return sample


def lookups(path: Path, sample: list[tuple[str, str]]) -> tuple[float, float, float]:
    store = SqliteBindingStore.open(path)
    now = time.time()
    timings = []
    clock = time.perf_counter_ns
    for x, caller in sample[:2000]:
        store.find_for_call(x, caller, now)  # warm the page cache
    for x, caller in sample:
        start = clock()
        found = store.find_for_call(x, caller, now)
        timings.append(clock() - start)
        assert found is not None
    misses = []
    for x, caller in sample[:20_000]:
        start = clock()
        store.find_for_call(x, caller[:-1] + "x", now)
        misses.append(clock() - start)
    store.close()
    timings.sort()
    return (
        statistics.median(timings) / 1000,
        timings[int(len(timings) * 0.99)] / 1000,
        sorted(misses)[int(len(misses) * 0.99)] / 1000,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--active", type=int, default=1_000_000)
    parser.add_argument("--creates", type=int, default=5000)
    parser.add_argument("--api-creates", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        store_rate = store_creations(workdir, args.creates)
        print(f"store creations/s (allocate, 2,000-number pool): {store_rate:,.0f}")
        rate = api_creations(workdir, args.api_creates, args.clients)
        print(f"API creations/s (POST /v1/bindings, {args.clients} clients): {rate:,.0f}")
        started = time.perf_counter()
        sample = build_active(workdir / "lookup.db", args.active)
        print(f"built {args.active:,} active bindings in {time.perf_counter() - started:.1f} s")
        median, p99, miss_p99 = lookups(workdir / "lookup.db", sample)
        print(f"lookup (X, caller) with {args.active:,} active: median {median:.1f} µs,"
              f" p99 {p99:.1f} µs; miss p99 {miss_p99:.1f} µs")  # fmt: skip


if __name__ == "__main__":
    main()
