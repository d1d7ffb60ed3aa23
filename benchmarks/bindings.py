"""Binding figures: creations per second through the store and through the HTTP API, and the
(X, caller) routing lookup with 1,000,000 active bindings in SQLite. Prints; asserts nothing.

    python benchmarks/bindings.py [--active 1000000] [--creates 5000] [--workers 1,2]
                                  [--api-seconds 10] [--client wrk|python]

Targets (issue #4): lookup p99 ≤ 100 µs in the store; ≥ 1,000 creations/s through the API.

The API figure is a real ``privproxy api`` process (``--workers N`` processes on one port) on
127.0.0.1, so it includes HTTP parsing, auth, validation, number normalisation and JSON, not
just the store. The load generator is ``wrk`` (Debian: ``apt-get install -y wrk``) with a Lua
script that POSTs a fresh random pair of valid Chinese mobile numbers per request; it costs a
few µs of CPU per request, so the server, not the client, is what is measured. Without wrk
the benchmark says so and falls back to 16 Python threads (http.client, keep-alive), which
share the cores and the GIL and understate the server. Every API line also prints the
server's CPU per creation (all its processes, from /proc) and the load average, because on
a shared machine the rate alone says little; and it counts the bindings actually stored.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import random
import shutil
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
from bindings.live import LiveBindings
from bindings.models import AllocationRequest
from bindings.sqlite_store import SqliteBindingStore
from proxy.db import open_database, transaction
from proxy.server import tune_gc
from tests.e2e.sipp import free_port

PER_X = 5000
PRIVPROXY = str(Path(sys.executable).with_name("privproxy"))


def party(n: int) -> str:
    return f"+8613{n:09d}"


def pool_numbers(count: int, base: int = 0) -> list[str]:
    return [f"700123{base + n:09d}" for n in range(count)]


def store_creations(workdir: Path, creates: int, group: int = 1) -> float:
    """Creations/s through ``allocate`` (``group`` 1) or ``allocate_many`` in groups, as the
    API's writer thread commits them under load."""
    store = SqliteBindingStore.open(workdir / f"store{group}.db")
    store.add_numbers(pool_numbers(2000), now=time.time())
    rng = random.Random(1)
    pairs = [
        (party(rng.randrange(10**6)), party(10**6 + rng.randrange(10**6))) for _ in range(creates)
    ]
    start = time.perf_counter()
    if group == 1:
        for a, b in pairs:
            store.allocate(a, b, now=time.time())
    else:
        for first in range(0, creates, group):
            now = time.time()
            store.allocate_many(
                [AllocationRequest(a, b, now) for a, b in pairs[first : first + group]]
            )
    elapsed = time.perf_counter() - start
    store.close()
    return creates / elapsed


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the API's worker processes)."""
    tree = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            tree += _process_tree(int(child))
    return tree


def _tree_cpu_seconds(pids: list[int]) -> float:
    return sum(_cpu_seconds(pid) for pid in pids)


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


# One fresh pair per request from prefixes phonenumbers accepts as CN mobiles, so that no two
# requests collide and the reuse rule never refuses one.
_WRK_SCRIPT = """
local prefixes = {"130","131","132","133","135","136","137","138","139","150","151","152",
  "153","155","156","157","158","159","180","181","182","183","185","186","187","188","189"}
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
function init(args)
  math.randomseed(os.time() * 1000 + id)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. args[1]
end
local function mobile()
  return prefixes[math.random(#prefixes)] .. string.format("%08d", math.random(0, 99999999))
end
function request()
  return wrk.format(nil, "/v1/bindings", nil,
    '{"a":"' .. mobile() .. '","b":"' .. mobile() .. '","ttl_s":600}')
end
function done(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d\\n", summary.requests, summary.errors.status,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
"""


def api_creations(
    workdir: Path, workers: int, client: str, seconds: int, creates: int, clients: int
) -> None:
    """Start ``privproxy api --workers N`` on a fresh database, load it, print one line."""
    db = workdir / f"api{workers}.db"
    conn = open_database(db)
    _, admin = create_api_key(conn, tenant="ops", admin=True, now=time.time(), actor="bench")
    _, tenant = create_api_key(conn, tenant="acme", admin=False, now=time.time(), actor="bench")
    conn.close()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # Its own processes, as deployed: the load generator does not share the server's GIL.
    command = [PRIVPROXY, "api", "--listen", f"127.0.0.1:{port}", "--db", str(db)]
    server = subprocess.Popen(
        [*command, "--workers", str(workers)],
        stdout=subprocess.DEVNULL,
    )
    try:
        _setup_api(base, admin)
        pids = _process_tree(server.pid)
        if client == "wrk":
            _drive_wrk(workdir, base, tenant, seconds=1, clients=clients)  # warm up
            cpu_before = _tree_cpu_seconds(pids)
            done, failed, elapsed, p50, p99 = _drive_wrk(workdir, base, tenant, seconds, clients)
            latency = f", latency p50 {p50 / 1000:.1f} ms p99 {p99 / 1000:.1f} ms"
        else:
            _drive_python(base, tenant, 100, clients)  # warm up
            cpu_before = _tree_cpu_seconds(pids)
            done, failed, elapsed = _drive_python(base, tenant, creates, clients)
            latency = ""
        cpu = _tree_cpu_seconds(pids) - cpu_before
        load = _load()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
    conn = open_database(db)
    stored = conn.execute("SELECT count(*) FROM bindings").fetchone()[0]
    conn.close()
    print(
        f"API creations/s (POST /v1/bindings, {workers} worker{'s' if workers > 1 else ''},"
        f" {client} {clients} connections): {(done - failed) / elapsed:,.0f}{latency}"
    )
    print(
        f"  server CPU per creation {cpu / max(done, 1) * 1e6:,.0f} µs (all processes);"
        f" {failed} failed; {stored:,} bindings stored; load average {load}"
    )


def _setup_api(base: str, admin: str) -> None:
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


def _drive_wrk(
    workdir: Path, base: str, tenant: str, seconds: int, clients: int
) -> tuple[int, int, float, int, int]:
    """Requests, failed (status ≥ 400), seconds, latency p50 and p99 in µs."""
    script = workdir / "create.lua"
    script.write_text(_WRK_SCRIPT)
    result = subprocess.run(
        ["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "-s", str(script), base, "--", tenant],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT"))
    requests, failed, duration_us, p50, p99 = (int(value) for value in line.split()[1:])
    return requests, failed, duration_us / 1e6, p50, p99


def _drive_python(base: str, tenant: str, creates: int, clients: int) -> tuple[int, int, float]:
    rng = random.Random(time.time_ns())
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
        start = time.perf_counter()
        codes = list(workers.map(create, bodies))
        elapsed = time.perf_counter() - start
    return len(codes), sum(1 for code in codes if code >= 400), elapsed


def build_active(path: Path, active: int) -> None:
    """``active`` live bindings, PER_X on each X, inserted directly (fast) with executemany:
    binding ``n`` joins ``party(2n)`` and ``party(2n + 1)`` on X number ``n // PER_X``."""
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


def lookups(
    path: Path, active: int, rounds: int, per_round: int
) -> tuple[list[tuple[float, float]], float]:
    """(median, p99) in µs of each round of ``per_round`` hits on fresh random keys, and the
    p99 of misses.

    The process runs as ``privproxy serve`` does (``tune_gc``: start-up heap frozen, rarer
    young-generation passes); the collector stays on.
    """
    store = SqliteBindingStore.open(path)
    tune_gc()
    now = time.time()
    clock = time.perf_counter_ns
    rng = random.Random(time.time_ns())
    numbers = pool_numbers(active // PER_X + 1)

    def keys(count: int) -> list[tuple[str, str]]:
        drawn = (rng.randrange(active) for _ in range(count))
        return [(numbers[n // PER_X], party(2 * n + rng.randrange(2))) for n in drawn]

    for x, caller in keys(2000):
        store.find_for_call(x, caller, now)  # warm the connection's cache
    results = []
    for _ in range(rounds):
        timings = []
        for x, caller in keys(per_round):
            start = clock()
            found = store.find_for_call(x, caller, now)
            timings.append(clock() - start)
            assert found is not None
        timings.sort()
        results.append(
            (statistics.median(timings) / 1000, timings[len(timings) * 99 // 100] / 1000)
        )
    misses = []
    for x, caller in keys(20_000):
        start = clock()
        store.find_for_call(x, caller[:-1] + "x", now)
        misses.append(clock() - start)
    store.close()
    gc.collect()
    misses.sort()
    return results, misses[len(misses) * 99 // 100] / 1000


def _rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def live_table(path: Path, active: int, per_round: int) -> None:
    """``LiveBindings`` (what ``serve`` routes from) over the same file: load time, memory
    per live binding, and (X, caller) lookups from memory on random keys."""
    store = SqliteBindingStore.open(path)
    gc.collect()
    rss = _rss_bytes()
    started = time.perf_counter()
    live = LiveBindings(store, refresh_s=3600)
    live.load(time.time())
    loaded_s = time.perf_counter() - started
    gc.collect()
    per_binding = (_rss_bytes() - rss) / max(1, len(live))
    now = time.time()
    clock = time.perf_counter_ns
    rng = random.Random(time.time_ns())
    numbers = pool_numbers(active // PER_X + 1)
    timings = []
    for _ in range(per_round):
        n = rng.randrange(active)
        x, caller = numbers[n // PER_X], party(2 * n + rng.randrange(2))
        start = clock()
        found, _ = live.route_for_call(x, caller, now)
        timings.append(clock() - start)
        assert found is not None
    timings.sort()
    store.close()
    median, p99 = statistics.median(timings) / 1000, timings[len(timings) * 99 // 100] / 1000
    print(
        f"in memory (LiveBindings): {len(live):,} live bindings loaded in {loaded_s:.1f} s,"
        f" {per_binding:,.0f} bytes each (RSS); lookup median {median:.2f} µs, p99 {p99:.2f} µs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--active", type=int, default=1_000_000)
    parser.add_argument("--creates", type=int, default=5000)
    parser.add_argument(
        "--workers", default="1,2", help="API worker counts to run, comma-separated"
    )
    parser.add_argument("--api-seconds", type=int, default=10, help="wrk run length")
    parser.add_argument("--api-creates", type=int, default=3000, help="Python client requests")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--client", choices=("wrk", "python"), default=None)
    parser.add_argument("--rounds", type=int, default=3, help="lookup rounds of --per-round keys")
    parser.add_argument("--per-round", type=int, default=100_000)
    parser.add_argument("--skip-lookups", action="store_true")
    args = parser.parse_args()
    client = args.client or ("wrk" if shutil.which("wrk") else "python")
    if client == "wrk" and not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install -y wrk (or --client python)")
    if args.client is None and client == "python":
        print(
            "wrk not found (apt-get install -y wrk): falling back to Python client threads,"
            " which share the cores and the GIL and understate the server"
        )
    print(f"{os.cpu_count()} CPUs; load average {_load()} at start")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        store_rate = store_creations(workdir, args.creates)
        print(f"store creations/s (allocate, 2,000-number pool): {store_rate:,.0f}")
        grouped = store_creations(workdir, args.creates, group=16)
        print(f"store creations/s (allocate_many, groups of 16): {grouped:,.0f}")
        for workers in (int(count) for count in args.workers.split(",")):
            api_creations(
                workdir, workers, client, args.api_seconds, args.api_creates, args.clients
            )
        if args.skip_lookups:
            return
        started = time.perf_counter()
        build_active(workdir / "lookup.db", args.active)
        print(f"built {args.active:,} active bindings in {time.perf_counter() - started:.1f} s")
        rounds, miss_p99 = lookups(workdir / "lookup.db", args.active, args.rounds, args.per_round)
        every = "; ".join(f"{median:.1f}/{p99:.1f}" for median, p99 in rounds)
        medians = statistics.median(median for median, _ in rounds)
        p99s = statistics.median(p99 for _, p99 in rounds)
        print(f"lookup (X, caller) with {args.active:,} active, {args.rounds} rounds of"
              f" {args.per_round:,} random keys: median {medians:.1f} µs, p99 {p99s:.1f} µs"
              f" (median of rounds; each median/p99: {every}); miss p99 {miss_p99:.1f} µs"
              f"; load average {_load()}")  # fmt: skip
        live_table(workdir / "lookup.db", args.active, args.per_round)


if __name__ == "__main__":
    main()
