"""Two-process exports (issue #5): a helper process renders the second half of the rows, and
the file, its SHA-256 and the manifest are the single-process export's byte for byte; a
helper that fails, cannot start or saw another snapshot leaves the export as it would be in
one process, the same error included; the helper is always reaped and its part deleted."""

from __future__ import annotations

import signal
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy import db
from proxy.cdr import export
from proxy.cdr.chain import GENESIS
from proxy.cdr.export import ExportFilter, export_records
from proxy.cdr.record import CallRecord
from proxy.cdr.verify import verify_export
from proxy.cdr.writer import _INSERT, chained_rows
from tests.unit.test_cdr_export import AWKWARD, EDGE_CASES, NUMBERS, awkward_record
from tests.unit.test_cdr_speedpaths import _record

T0 = 1_800_000_000.0


class _Spy:
    """Every helper an export starts, and whether its part was used."""

    def __init__(self) -> None:
        self.helpers: list[export._Helper] = []
        self.finished: list[bool] = []


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Spy]:
    seen = _Spy()

    class Recorded(export._Helper):
        def __init__(self, out: Path) -> None:
            super().__init__(out)
            seen.helpers.append(self)

        def append_while_running(self, handle: Any, progress: Any, expected: int) -> bool:
            done = super().append_while_running(handle, progress, expected)
            seen.finished.append(done)
            return done

    monkeypatch.setattr(export, "_Helper", Recorded)
    yield seen
    for helper in seen.helpers:
        # Reaped (Popen.wait has collected its status: no zombie) and its part deleted.
        assert helper.process.returncode is not None
        assert not helper.part.exists()


def _store(path: Path, batch: list[CallRecord]) -> sqlite3.Connection:
    conn = db.open_database(path)
    with db.transaction(conn):
        conn.executemany(_INSERT, chained_rows(batch, 0, GENESIS))
    return conn


def _export(
    conn: sqlite3.Connection, out: Path, fmt: str, parallel: bool | None, **options: Any
) -> tuple[bytes, dict[str, Any]]:
    result = export_records(conn, out, fmt=fmt, now=T0, parallel=parallel, **options)  # type: ignore[arg-type]
    manifest = dict(result.manifest)
    manifest["file"] = {k: v for k, v in manifest["file"].items() if k != "name"}
    if manifest["unmask"]:  # each unmasking export is its own audit event
        manifest["unmask"] = manifest["unmask"]["reason"]
    return out.read_bytes(), manifest


def _both(
    conn: sqlite3.Connection, tmp: Path, fmt: str, **options: Any
) -> tuple[tuple[bytes, dict[str, Any]], tuple[bytes, dict[str, Any]]]:
    single = _export(conn, tmp / f"single.{fmt}", fmt, False, **options)
    two = _export(conn, tmp / f"two.{fmt}", fmt, True, **options)
    return single, two


SELECTIONS = [
    ExportFilter(),
    # Not contiguous: the split is looked up through the filter (LIMIT 1 OFFSET).
    ExportFilter(tenant="ride"),
    ExportFilter(since=T0 + 0.5, until=T0 + 2.5),
    ExportFilter(since=T0 + 0.25, until=T0 + 2.5, tenant="ride"),
]


@pytest.mark.parametrize("selection", SELECTIONS)
@pytest.mark.parametrize("unmask", [False, True])
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_two_processes_write_the_single_process_bytes_and_manifest(
    tmp_path: Path, spy: _Spy, selection: ExportFilter, unmask: bool, fmt: str
) -> None:
    conn = _store(tmp_path / "cdr.db", [_record(n) for n in range(300)])
    options: dict[str, Any] = {"unmask": True, "reason": "case 7"} if unmask else {}
    single, two = _both(conn, tmp_path, fmt, selection=selection, **options)
    conn.close()
    assert two == single
    assert single[1]["count"] > 20
    assert spy.finished == [True]
    assert verify_export(tmp_path / f"two.{fmt}").ok


def test_awkward_values_on_both_sides_of_the_split(tmp_path: Path, spy: _Spy) -> None:
    values = AWKWARD + NUMBERS
    # Each value once in the first half and once in the second.
    batch = [awkward_record(n, value) for n, value in enumerate(values + values)]
    conn = _store(tmp_path / "cdr.db", batch)
    for fmt in ("csv", "jsonl"):
        for unmask in (False, True):
            options: dict[str, Any] = {"unmask": True, "reason": "case 7"} if unmask else {}
            single, two = _both(conn, tmp_path, fmt, **options)
            assert two == single, (fmt, unmask)
    conn.close()
    assert spy.finished == [True] * 4


def test_edge_rows_rendered_by_the_helper_are_the_single_process_rows(
    tmp_path: Path, spy: _Spy
) -> None:
    for case, (statement, parameters) in enumerate(EDGE_CASES):
        # Four answered calls; seqs 3 and 4 are the helper's, and take the edge case.
        conn = _store(tmp_path / f"cdr{case}.db", [_record(n) for n in (0, 1, 3, 4)])
        with db.transaction(conn):
            conn.execute(f"{statement} WHERE seq >= 3", parameters)
        for fmt in ("csv", "jsonl"):
            outcomes = []
            for parallel in (False, True):
                try:
                    outcomes.append(_export(conn, tmp_path / f"{parallel}.{fmt}", fmt, parallel))
                except (TypeError, ValueError, OverflowError) as exc:
                    outcomes.append((f"{type(exc).__name__}: {exc}".encode(), {}))
            assert outcomes[1] == outcomes[0], (statement, fmt)
        conn.close()
    assert len(spy.helpers) == 2 * len(EDGE_CASES)


def test_one_row_leaves_the_first_part_empty_and_no_row_starts_no_helper(
    tmp_path: Path, spy: _Spy
) -> None:
    conn = _store(tmp_path / "cdr.db", [_record(n) for n in range(50)])
    for fmt in ("csv", "jsonl"):
        one = ExportFilter(since=T0 + 0.1, until=T0 + 0.105)
        single, two = _both(conn, tmp_path, fmt, selection=one)
        assert two == single and single[1]["count"] == 1
        nothing = ExportFilter(tenant="nobody")
        single, two = _both(conn, tmp_path, fmt, selection=nothing)
        assert two == single and single[1]["count"] == 0
    conn.close()
    # The one-row exports ran the helper for its single row; the empty ones none.
    assert spy.finished == [True, True]


def test_the_helper_reports_progress_and_every_row_counts_once(tmp_path: Path, spy: _Spy) -> None:
    conn = _store(tmp_path / "cdr.db", [_record(n) for n in range(28_000)])
    ticks: list[int] = []
    export_records(conn, tmp_path / "two.csv", now=T0, parallel=True, progress=ticks.append)
    conn.close()
    assert sum(ticks) == 28_000
    # The helper's 14,000 rows, reported in two lines (after 12,288 and at its end).
    assert spy.helpers[0].reported == 14_000 and spy.finished == [True]


def test_automatic_takes_two_processes_from_the_threshold_two_cpus_and_a_free_one(
    tmp_path: Path, spy: _Spy, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = _store(tmp_path / "cdr.db", [_record(n) for n in range(40)])
    monkeypatch.setattr(export, "PARALLEL_MIN_ROWS", 40)
    processes = []
    for parallel, selection, cpus, free in (
        (None, ExportFilter(), 2, 1.0),  # 40 rows, two CPUs, one idle: two processes
        (None, ExportFilter(), 2, None),  # idle CPUs unknown: two
        (None, ExportFilter(tenant="ride"), 2, 1.0),  # fewer rows: one
        (None, ExportFilter(), 1, 1.0),  # one CPU: one
        (None, ExportFilter(), 2, 0.5),  # the other CPU half busy: one
        (False, ExportFilter(), 2, 1.0),  # forced off
        (True, ExportFilter(tenant="ride"), 1, 0.0),  # forced on
    ):
        monkeypatch.setattr(export, "available_cpus", lambda cpus=cpus: cpus)
        monkeypatch.setattr(export, "_free_cpus", lambda since, free=free: free)
        before = len(spy.helpers)
        result = export_records(
            conn, tmp_path / "out.csv", now=T0, parallel=parallel, selection=selection
        )
        assert len(spy.helpers) - before == result.processes - 1
        processes.append(result.processes)
    # The Python reference renders in one process whatever is asked.
    result = export_records(conn, tmp_path / "ref.csv", now=T0, parallel=True, renderer="python")
    processes.append(result.processes)
    conn.close()
    assert processes == [2, 2, 1, 1, 1, 1, 2, 1]


def test_free_cpus_are_the_idle_share_of_the_ticks_since_counting_began(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    idle, total = export._cpu_times() or (0, 1)
    assert 0 <= idle < total  # this machine's, as /proc/stat has them
    monkeypatch.setattr(export.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(export, "_cpu_times", lambda: (1_030, 2_100))
    # 30 of 100 ticks idle on two CPUs: 0.6 of a CPU.
    assert export._free_cpus((1_000, 2_000)) == pytest.approx(0.6)
    assert export._free_cpus((1_000, 2_090)) is None  # 10 ticks: too short to tell
    assert export._free_cpus(None) is None


def test_an_in_memory_database_exports_in_one_process(spy: _Spy, tmp_path: Path) -> None:
    conn = db.open_database(":memory:")
    with db.transaction(conn):
        conn.executemany(_INSERT, chained_rows([_record(n) for n in range(10)], 0, GENESIS))
    result = export_records(conn, tmp_path / "out.csv", now=T0, parallel=True)
    conn.close()
    assert result.manifest["count"] == 10 and spy.helpers == []


@pytest.mark.parametrize("bad_seq", [40, 160])
def test_a_bad_record_raises_the_single_process_error_on_either_side(
    tmp_path: Path, spy: _Spy, monkeypatch: pytest.MonkeyPatch, bad_seq: int
) -> None:
    monkeypatch.setattr(export, "_FETCH_ROWS", 37)
    conn = _store(tmp_path / "cdr.db", [_record(n) for n in range(200)])
    with db.transaction(conn):
        conn.execute("UPDATE cdrs SET invite_at = 'abc' WHERE seq = ?", (bad_seq,))
        conn.execute("UPDATE cdrs SET end_at = 3e11 WHERE seq = 190")
    errors = []
    for parallel in (False, True):
        with pytest.raises((TypeError, ValueError)) as caught:
            _export(conn, tmp_path / f"{parallel}.csv", "csv", parallel)
        errors.append(f"{type(caught.value).__name__}: {caught.value}")
    conn.close()
    assert errors[1] == errors[0] and "round" in errors[0]
    if bad_seq > 100:  # the helper's range: it failed, and this process raised the error
        assert spy.helpers[0].process.returncode == 1 and spy.finished == [False]
    else:  # this process's range: the helper was stopped before it could finish
        assert spy.finished == []


def test_a_helper_failing_after_reported_rows_leaves_the_rest_and_its_error_here(
    tmp_path: Path, spy: _Spy
) -> None:
    conn = _store(tmp_path / "cdr.db", [_record(n) for n in range(26_000)])
    # The helper renders seqs 13,001 to 26,000: 12,288 (three fetches) before the bad one.
    with db.transaction(conn):
        conn.execute("UPDATE cdrs SET invite_at = 'abc' WHERE seq = 25990")
    errors = []
    for parallel in (False, True):
        with pytest.raises(TypeError) as caught:
            export_records(conn, tmp_path / f"{parallel}.csv", now=T0, parallel=parallel)
        errors.append(str(caught.value))
    conn.close()
    assert errors[1] == errors[0]
    assert spy.finished == [False] and spy.helpers[0].reported == 12_288


def test_a_helper_still_running_when_this_process_fails_is_killed_and_reaped(
    tmp_path: Path, spy: _Spy, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper = "import signal; signal.pause()"
    monkeypatch.setattr(export, "_HELPER_COMMAND", (sys.executable, "-c", helper))
    conn = _store(tmp_path / "cdr.db", [_record(n) for n in range(20)])
    with db.transaction(conn):
        conn.execute("UPDATE cdrs SET invite_at = 'abc' WHERE seq = 2")
    with pytest.raises(TypeError):
        export_records(conn, tmp_path / "out.csv", now=T0, parallel=True)
    conn.close()
    # signal.pause() waits for a signal: the kill (SIGKILL) ends it.
    assert spy.helpers[0].process.returncode == -signal.SIGKILL


HELPERS_THAT_FAIL = {
    "exits 1": "import sys; sys.stdin.readline(); sys.exit(1)",
    # Renders and reports all but the last 5 rows of its range, then fails.
    "fails before its last rows": (
        "import json, sys; from proxy.cdr.export_part import _report;"
        " from proxy.cdr.export import render_part;"
        " job = json.loads(sys.stdin.readline()); job['seqs'][1] -= 5;"
        " render_part(job, _report); sys.exit(1)"
    ),
    "exits 0 without its rows": "import sys; sys.stdin.readline()",
    "reports nonsense": "import sys; sys.stdin.readline(); print('x 1'); print(3); print()",
    "reads no job": "pass",
}


@pytest.mark.parametrize("code", HELPERS_THAT_FAIL.values(), ids=HELPERS_THAT_FAIL.keys())
def test_a_failed_helper_has_its_range_rendered_here(
    tmp_path: Path, spy: _Spy, monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    conn = _store(tmp_path / "cdr.db", [_record(n) for n in range(60)])
    single = _export(conn, tmp_path / "single.jsonl", "jsonl", False)
    monkeypatch.setattr(export, "_HELPER_COMMAND", (sys.executable, "-c", code))
    ticks: list[int] = []
    two = _export(conn, tmp_path / "two.jsonl", "jsonl", True, progress=ticks.append)
    conn.close()
    assert two == single
    assert spy.finished == [False]
    # Rows the helper reported before it failed are appended and not rendered again.
    assert sum(ticks) == 60
    assert spy.helpers[0].reported == (25 if "json" in code else 0)


def test_a_helper_that_cannot_start_leaves_one_process(
    tmp_path: Path, spy: _Spy, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = _store(tmp_path / "cdr.db", [_record(n) for n in range(30)])
    single = _export(conn, tmp_path / "single.csv", "csv", False)
    monkeypatch.setattr(export, "_HELPER_COMMAND", (str(tmp_path / "no-such-python"),))
    two = _export(conn, tmp_path / "two.csv", "csv", True)
    conn.close()
    assert two == single and spy.helpers == []
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".part") == []


def test_a_helper_that_sees_a_later_purge_run_leaves_its_range_to_this_process(
    tmp_path: Path, spy: _Spy, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = _store(tmp_path / "cdr.db", [_record(n) for n in range(30)])
    single = _export(conn, tmp_path / "single.csv", "csv", False)
    # As if a purge run had committed between this process's snapshot and the helper's.
    monkeypatch.setattr(export, "snapshot_mark", lambda conn: -1)
    two = _export(conn, tmp_path / "two.csv", "csv", True)
    conn.close()
    assert two == single
    assert spy.helpers[0].process.returncode == export.PART_STALE
