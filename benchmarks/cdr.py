"""Call-record throughput: the batched writer (hash chain included) and exports.

What it measures, and prints:

- **writer**: records/s through ``CdrWriter`` — whole ``CallRecord``s handed to the public
  ``submit``, from the first submit until ``close`` returns with every record committed:
  salts, commitments and the hash chain computed, rows inserted into the ``cdrs`` table with
  all its indexes (``--writer-rows`` records, ``--repeat`` runs; target ≥ 50,000/s), and the
  CPU time per record of this process (all its threads);
- **export**: rows/s of a full masked export of ``--export-rows`` records (default
  1,000,000) written by ``export_records`` to a file with its manifest (file SHA-256
  included), for CSV and JSON Lines (target ≥ 100,000/s), each run two ways: the default
  (SQL renderer; its writer thread hashes and writes while the next lines are rendered) and
  the row-by-row Python reference. Wall-clock medians of ``--repeat`` runs, the CPU time per
  row of this process (all its threads), and whether both ways wrote the same bytes;
- rows/s of ``verify`` of the CSV export and of ``verify --db`` over the same table.

The machine's load average is printed beside the figures, since this machine is shared: a
wall-clock rate is only as good as the cores that were free.

Run: .venv/bin/python -m benchmarks.cdr [--writer-rows N] [--export-rows N] [--repeat N]
(run as a script it works too: the repository root goes first on sys.path, so that
benchmarks/bindings.py does not shadow the bindings package)
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.cdr.export import export_records
from proxy.cdr.record import CallRecord
from proxy.cdr.verify import verify_db, verify_export
from proxy.cdr.writer import CdrWriter
from proxy.db import open_database

T0 = 1_800_000_000.0


def make_record(n: int) -> CallRecord:
    if n % 5 == 4:
        return CallRecord(
            id=f"r{n:09d}",
            tenant="default",
            x="700123456789012",
            caller=f"+86138{n % 100_000_000:08d}",
            invite_at=T0 + n * 0.01,
            end_at=T0 + n * 0.01,
            disposition="rejected",
            reject_reason="no_binding",
            sip_status=404,
            q850_cause=1,
            released_by="proxy",
            node="bench",
        )
    return CallRecord(
        id=f"c{n:09d}",
        tenant="ride",
        binding_id=f"b_{n % 10_000:020d}",
        x="700123456789012",
        caller=f"+86138{n % 100_000_000:08d}",
        callee=f"+86139{(n * 7) % 100_000_000:08d}",
        direction="a_to_b",
        a_call_id=f"138{n:08d}///{n}@softswitch",
        b_call_id=f"{n:032x}@privproxy",
        invite_at=T0 + n * 0.01,
        ring_at=T0 + n * 0.01 + 1.5,
        answer_at=T0 + n * 0.01 + 6.25,
        end_at=T0 + n * 0.01 + 66.25,
        disposition="answered",
        sip_status=200,
        q850_cause=16,
        released_by="callee",
        node="bench",
    )


def fill(path: Path, rows: int) -> tuple[float, float]:
    """Push ``rows`` records through a writer; return records/s (submit to last commit) and
    the process CPU seconds per record."""
    records = [make_record(n) for n in range(rows)]
    # A million long-lived records would make every young-generation collection walk them;
    # the server freezes its start-up heap the same way (proxy.server.tune_gc).
    gc.collect()
    gc.freeze()
    writer = CdrWriter(path, batch_rows=2000, batch_ms=200)
    writer.start()
    start = time.perf_counter()
    cpu = time.process_time()
    for record in records:
        writer.submit(record)
    assert writer.close(timeout=600)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    assert writer.written == rows, (writer.written, rows)
    del records
    gc.unfreeze()
    gc.collect()
    return rows / elapsed, cpu / rows


def cpu_seconds() -> float:
    """CPU time of this process, all its threads."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writer-rows", type=int, default=200_000)
    parser.add_argument("--export-rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, {load()}")
    with tempfile.TemporaryDirectory(prefix="cdr-bench-") as tmp:
        work = Path(tmp)
        rates = []
        for run in range(args.repeat):
            rate, cpu = fill(work / f"writer{run}.db", args.writer_rows)
            rates.append(rate)
            print(f"  writer run {run + 1}: {rate:,.0f} records/s, {cpu * 1e6:.1f} µs CPU/record")
        print(
            f"writer: {statistics.median(rates):,.0f} records/s median"
            f" ({args.writer_rows:,} records, chain included; target 50,000) — {load()}"
        )
        db_path = work / "export.db"
        rate, cpu = fill(db_path, args.export_rows)
        print(f"writer: {rate:,.0f} records/s ({args.export_rows:,} records) — {load()}")
        conn = open_database(db_path)
        ways: dict[str, Literal["python", "sql"]] = {
            "default": "sql",
            "python reference": "python",
        }
        for fmt in ("csv", "jsonl"):
            results: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
            digests: dict[str, str] = {}
            count = 0
            for _ in range(args.repeat):
                for way, renderer in ways.items():
                    out = work / f"export-{renderer}.{fmt}"
                    start = time.perf_counter()
                    cpu = cpu_seconds()
                    result = export_records(
                        conn,
                        out,
                        fmt=fmt,
                        renderer=renderer,
                        now=T0,
                    )
                    elapsed = time.perf_counter() - start
                    cpu = cpu_seconds() - cpu
                    count = result.manifest["count"]
                    results[way].append((count / elapsed, cpu / count))
                    digests[way] = result.manifest["file"]["sha256"]
            size = (work / f"export-sql.{fmt}").stat().st_size / 1e6
            for way, runs in results.items():
                wall = statistics.median(r for r, _ in runs)
                per_row = statistics.median(c for _, c in runs)
                print(
                    f"export {fmt} (masked, {way}): {wall:,.0f} rows/s median"
                    f" (runs: {', '.join(f'{r:,.0f}' for r, _ in runs)}),"
                    f" {per_row * 1e6:.1f} µs CPU/row ({count:,} rows, {size:.0f} MB) — {load()}"
                )
            same = len(set(digests.values())) == 1
            print(f"  {fmt}: both ways wrote the same bytes: {same}")
        start = time.perf_counter()
        report = verify_export(work / "export-sql.csv")
        elapsed = time.perf_counter() - start
        print(f"verify FILE: {report.records / elapsed:,.0f} rows/s (ok={report.ok})")
        start = time.perf_counter()
        report = verify_db(conn)
        elapsed = time.perf_counter() - start
        print(f"verify --db: {report.records / elapsed:,.0f} rows/s (ok={report.ok})")
        conn.close()


if __name__ == "__main__":
    main()
