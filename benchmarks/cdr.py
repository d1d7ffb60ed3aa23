"""Call-record throughput: the batched writer (hash chain included) and exports.

What it measures, and prints:

- **writer**: records/s through ``CdrWriter`` — whole ``CallRecord``s handed to the public
  ``submit``, from the first submit until ``close`` returns with every record committed:
  salts, commitments and the hash chain computed, rows inserted into the ``cdrs`` table with
  all its indexes (``--writer-rows`` records, ``--repeat`` runs; target ≥ 50,000/s), and the
  CPU time per record of this process (all its threads);
- **export**: rows/s of a full masked export of ``--export-rows`` records (default
  1,000,000) written by ``export_records`` to a file with its manifest (file SHA-256
  included), for CSV and JSON Lines (target ≥ 100,000/s), each run side by side, alternating
  run by run: the automatic path (``parallel=None``: two processes on two CPUs or more when
  one is idle, the helper rendering the second half of the rows; the processes each run
  used are printed), two processes whatever the load (``parallel=True``) and the
  single-process path
  (``parallel=False``; SQL renderer, its writer thread hashing and writing while the next
  lines are rendered); with ``--reference`` also the row-by-row Python reference.
  Wall-clock medians of ``--repeat`` runs, the CPU time per row of this process (all its
  threads) and of its helper (``RUSAGE_CHILDREN``, counted once the helper is reaped), and
  whether every way wrote the same bytes;
- rows/s of ``verify`` of the CSV export and of ``verify --db`` over the same table.

The machine's load average is printed beside the figures, since this machine is shared: a
wall-clock rate is only as good as the cores that were free.

Run: .venv/bin/python -m benchmarks.cdr [--writer-rows N] [--export-rows N] [--repeat N]
[--skip-writer] [--reference] [--db FILE]
(``--skip-writer`` skips the writer runs but the one that fills the export table;
``--db FILE`` keeps that table in FILE and reuses it when it already holds the rows)
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

from proxy.cdr.export import available_cpus, export_records
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
    """CPU time of this process, all its threads, and of its reaped children (the export's
    helper process)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def export_table(work: Path, db: Path | None, rows: int) -> Path:
    """A database holding ``rows`` benchmark records: ``db`` when it already does, else
    filled through the writer (and kept when ``db`` is given)."""
    path = db or work / "export.db"
    if path.exists():
        conn = open_database(path)
        held = conn.execute("SELECT count(*) FROM cdrs").fetchone()[0]
        conn.close()
        if held == rows:
            print(f"export table: {rows:,} records in {path}")
            return path
        raise SystemExit(f"{path} holds {held:,} records, not {rows:,}")
    rate, _ = fill(path, rows)
    print(f"writer: {rate:,.0f} records/s ({rows:,} records) — {load()}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writer-rows", type=int, default=200_000)
    parser.add_argument("--export-rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-writer", action="store_true", help="no writer runs")
    parser.add_argument("--reference", action="store_true", help="also the Python reference")
    parser.add_argument("--db", type=Path, help="keep (or reuse) the export table here")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs ({available_cpus()} available), {load()}")
    with tempfile.TemporaryDirectory(prefix="cdr-bench-") as tmp:
        work = Path(tmp)
        rates = []
        for run in range(0 if args.skip_writer else args.repeat):
            rate, cpu = fill(work / f"writer{run}.db", args.writer_rows)
            rates.append(rate)
            print(f"  writer run {run + 1}: {rate:,.0f} records/s, {cpu * 1e6:.1f} µs CPU/record")
        if rates:
            print(
                f"writer: {statistics.median(rates):,.0f} records/s median"
                f" ({args.writer_rows:,} records, chain included; target 50,000) — {load()}"
            )
        db_path = export_table(work, args.db, args.export_rows)
        conn = open_database(db_path)
        automatic = "automatic"
        ways: dict[str, tuple[Literal["sql", "python"], bool | None]] = {
            automatic: ("sql", None),
            "two processes": ("sql", True),
            "single process": ("sql", False),
        }
        if args.reference:
            ways["python reference"] = ("python", False)
        for fmt in ("csv", "jsonl"):
            results: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
            processes: dict[str, list[int]] = {way: [] for way in ways}
            digests: dict[str, str] = {}
            count = 0
            for _ in range(args.repeat):
                for n, (way, (renderer, parallel)) in enumerate(ways.items()):
                    out = work / f"export-{n}.{fmt}"
                    start = time.perf_counter()
                    cpu = cpu_seconds()
                    result = export_records(
                        conn, out, fmt=fmt, renderer=renderer, parallel=parallel, now=T0
                    )
                    elapsed = time.perf_counter() - start
                    cpu = cpu_seconds() - cpu
                    count = result.manifest["count"]
                    results[way].append((count / elapsed, cpu / count))
                    digests[way] = result.manifest["file"]["sha256"]
                    processes[way].append(result.processes)
            size = (work / f"export-0.{fmt}").stat().st_size / 1e6
            for way, runs in results.items():
                wall = statistics.median(r for r, _ in runs)
                per_row = statistics.median(c for _, c in runs)
                how = "".join("12"[n - 1] for n in processes[way])
                print(
                    f"export {fmt} (masked, {way}): {wall:,.0f} rows/s median"
                    f" (runs: {', '.join(f'{r:,.0f}' for r, _ in runs)};"
                    f" processes per run: {how}),"
                    f" {per_row * 1e6:.1f} µs CPU/row ({count:,} rows, {size:.0f} MB) — {load()}"
                )
            same = len(set(digests.values())) == 1
            print(f"  {fmt}: every way wrote the same bytes: {same}")
        start = time.perf_counter()
        report = verify_export(work / "export-0.csv")
        elapsed = time.perf_counter() - start
        print(f"verify FILE: {report.records / elapsed:,.0f} rows/s (ok={report.ok})")
        start = time.perf_counter()
        report = verify_db(conn)
        elapsed = time.perf_counter() - start
        print(f"verify --db: {report.records / elapsed:,.0f} rows/s (ok={report.ok})")
        conn.close()


if __name__ == "__main__":
    main()
