"""Call-record throughput: the batched writer (hash chain included) and exports.

Prints:

- records/s through ``CdrWriter`` (submit → chained, committed rows), target ≥ 50,000/s;
- rows/s of a masked CSV export, a masked JSONL export and ``verify`` of the CSV, over
  ``--export-rows`` records (default 1,000,000), target ≥ 100,000/s for the exports;
- rows/s of ``verify --db`` over the same table.

Run: .venv/bin/python -m benchmarks.cdr [--writer-rows N] [--export-rows N]
(as a module: run as a script, benchmarks/bindings.py would shadow the bindings package)
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path

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


def fill(path: Path, rows: int) -> float:
    """Push ``rows`` records through a writer; return records/s (submit to last commit)."""
    records = [make_record(n) for n in range(rows)]
    # A million long-lived records would make every young-generation collection walk them;
    # the server freezes its start-up heap the same way (proxy.server.tune_gc).
    gc.collect()
    gc.freeze()
    writer = CdrWriter(path, batch_rows=2000, batch_ms=200)
    writer.start()
    start = time.perf_counter()
    for record in records:
        writer.submit(record)
    assert writer.close(timeout=600)
    elapsed = time.perf_counter() - start
    assert writer.written == rows, (writer.written, rows)
    del records
    gc.unfreeze()
    gc.collect()
    return rows / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writer-rows", type=int, default=200_000)
    parser.add_argument("--export-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cdr-bench-") as tmp:
        work = Path(tmp)
        rate = fill(work / "writer.db", args.writer_rows)
        print(f"writer: {rate:,.0f} records/s ({args.writer_rows:,} records, chain included)")
        db_path = work / "export.db"
        rate = fill(db_path, args.export_rows)
        print(f"writer: {rate:,.0f} records/s ({args.export_rows:,} records)")
        conn = open_database(db_path)
        for fmt in ("csv", "jsonl"):
            out = work / f"export.{fmt}"
            start = time.perf_counter()
            result = export_records(conn, out, fmt=fmt)  # type: ignore[arg-type]
            elapsed = time.perf_counter() - start
            count = result.manifest["count"]
            size = out.stat().st_size / 1e6
            rate = count / elapsed
            print(f"export {fmt} (masked): {rate:,.0f} rows/s ({count:,} rows, {size:.0f} MB)")
        start = time.perf_counter()
        report = verify_export(work / "export.csv")
        elapsed = time.perf_counter() - start
        print(f"verify FILE: {report.records / elapsed:,.0f} rows/s (ok={report.ok})")
        start = time.perf_counter()
        report = verify_db(conn)
        elapsed = time.perf_counter() - start
        print(f"verify --db: {report.records / elapsed:,.0f} rows/s (ok={report.ok})")
        conn.close()


if __name__ == "__main__":
    main()
