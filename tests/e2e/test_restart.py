"""Restart (issue #6): SIGTERM while SIPp keeps placing calls. Calls already up may go on for
the grace period, then the proxy sends BYE on both legs of each; calls arriving meanwhile
are refused (503); every call that was up has exactly one record; the process exits 0 soon
after the grace period. A new ``privproxy serve`` on the same database then routes the next
calls through the same bindings.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Final

import pytest

from bindings.sqlite_store import SqliteBindingStore
from proxy.cdr.record import CallRecord
from proxy.cdr.writer import read_records
from tests.e2e.proxy_process import start_proxy
from tests.e2e.sipp import SCENARIO_DIR, SippMessage, free_port, require_sipp, run_sipp
from tests.e2e.test_loss import X, bind_parties, parties

pytestmark = pytest.mark.e2e

CALLS: Final = 20
RATE: Final = 10.0
GRACE_S: Final = 3.0
#: SIGTERM once this many calls are answered: the rest of the load is still arriving.
ANSWERED_BEFORE_SIGTERM: Final = 6
#: After the grace period the proxy waits at most 2 s for its BYEs to be answered; the rest
#: is room for a loaded CI machine.
EXIT_SLACK_S: Final = 6.0
CALLS_AFTER_RESTART: Final = 5


def _injected(workdir: Path, scenario: str) -> Path:
    """A scenario with the caller's number read per call from the injection file."""
    path = workdir / f"{scenario}_injected.xml"
    path.write_text((SCENARIO_DIR / f"{scenario}.xml").read_text().replace("[caller]", "[field0]"))
    return path


def _callers(workdir: Path, name: str, callers: list[str]) -> Path:
    path = workdir / name
    path.write_text("SEQUENTIAL\n" + "".join(f"{number};\n" for number in callers))
    return path


def _call_ids(messages: list[SippMessage], predicate: Callable[[SippMessage], bool]) -> set[str]:
    return {m.header("call-id") or "" for m in messages if predicate(m)}


def test_sigterm_under_load_ends_calls_cleanly_and_a_restart_keeps_routing(
    tmp_path: Path,
) -> None:
    require_sipp()
    pairs = parties(CALLS)
    db = tmp_path / "privproxy.db"
    bind_parties(db, pairs)
    store = SqliteBindingStore.open(db)
    bindings_before = {"+86" + a: store.find_for_call(X, "+86" + a, time.time()) for a, _ in pairs}
    store.close()

    trunk_port = free_port()
    proxy = start_proxy(
        tmp_path, sip_port=free_port(), trunk_port=trunk_port, db=db,
        extra=("--grace", str(GRACE_S)),
    )  # fmt: skip
    try:
        with run_sipp(
            "uas_answer", None, background=True, local_port=trunk_port, calls=None,
            timeout_s=60, workdir=tmp_path,
        ) as callee_process, run_sipp(
            str(_injected(tmp_path, "uac_wait_bye")), f"127.0.0.1:{proxy.sip_port}",
            background=True, local_port=free_port(), calls=CALLS, rate=RATE, timeout_s=60,
            extra=("-inf", str(_callers(tmp_path, "load.csv", [a for a, _ in pairs]))),
            workdir=tmp_path,
        ) as caller_process:  # fmt: skip
            deadline = time.monotonic() + 20
            while sum(m.method == "ACK" for m in callee_process.received_messages()) < (
                ANSWERED_BEFORE_SIGTERM
            ):
                assert time.monotonic() < deadline, "the calls were never answered"
                time.sleep(0.05)
            proxy.process.terminate()
            terminated_at = time.monotonic()
            exit_status = proxy.process.wait(GRACE_S + EXIT_SLACK_S + 10)
            stopped_after = time.monotonic() - terminated_at
            caller = caller_process.wait(timeout=20)
            callee = callee_process.stop()
    finally:
        proxy.stop()

    detail = f"{caller.describe()}\n{callee.describe()}\n{proxy.log_text()[-3000:]}"
    assert exit_status == 0, detail
    assert GRACE_S <= stopped_after <= GRACE_S + EXIT_SLACK_S, (stopped_after, detail)

    # Every call that was up got a BYE from the proxy on both legs, and answered it.
    answered = _call_ids(caller.received(), lambda m: m.status == 200 and m.cseq_method == "INVITE")
    got_bye_a = _call_ids(caller.received(), lambda m: m.method == "BYE")
    answered_bye_a = _call_ids(caller.sent(), lambda m: m.status == 200 and m.cseq_method == "BYE")
    assert len(answered) >= ANSWERED_BEFORE_SIGTERM, detail
    assert got_bye_a == answered == answered_bye_a, detail
    up_b = _call_ids(callee.received(), lambda m: m.method == "ACK")
    got_bye_b = _call_ids(callee.received(), lambda m: m.method == "BYE")
    assert got_bye_b == up_b and len(up_b) == len(answered), detail
    assert caller.successful_calls == len(answered), detail

    # The rest of the load was refused while draining, and nothing was left unanswered.
    refused = _call_ids(caller.received(), lambda m: m.status == 503)
    invited = _call_ids(caller.sent(), lambda m: m.method == "INVITE")
    assert invited == answered | refused, detail
    assert caller.successful_calls + caller.failed_calls == CALLS, detail

    # Exactly one record per call that was up, answered and ended by the proxy. An INVITE
    # refused with 503 while draining never became a call (no binding was looked up); it
    # may have a record but never two.
    records = read_records(db, limit=10 * CALLS)
    per_call = Counter(record.a_call_id for record in records)
    assert answered <= set(per_call) <= invited, (per_call, detail)
    assert set(per_call.values()) == {1}, (per_call, detail)
    by_call: dict[str, CallRecord] = {record.a_call_id or "": record for record in records}
    for call_id in answered:
        record = by_call[call_id]
        assert (record.disposition, record.released_by) == ("answered", "proxy"), record
        assert record.binding_id == bindings_before[record.caller].id  # type: ignore[union-attr]
    for call_id in refused & set(by_call):
        assert by_call[call_id].sip_status == 503, by_call[call_id]

    # The same database after a restart: the next calls route through the same bindings.
    again = [a for a, _ in pairs[:CALLS_AFTER_RESTART]]
    restarted = start_proxy(tmp_path, sip_port=free_port(), trunk_port=trunk_port, db=db)
    try:
        with run_sipp(
            "uas_load", None, background=True, local_port=trunk_port, calls=None,
            timeout_s=30, workdir=tmp_path,
        ) as callee_process:  # fmt: skip
            after = run_sipp(
                str(_injected(tmp_path, "uac_load")), f"127.0.0.1:{restarted.sip_port}",
                local_port=free_port(), calls=CALLS_AFTER_RESTART, rate=RATE, timeout_s=30,
                extra=("-d", "100", "-inf", str(_callers(tmp_path, "again.csv", again))),
                workdir=tmp_path,
            )  # fmt: skip
            callee_process.stop()
    finally:
        assert restarted.stop() == 0, restarted.log_text()
    after.assert_ok(CALLS_AFTER_RESTART)
    new_records = [
        record for record in read_records(db, limit=10 * CALLS) if record.a_call_id not in invited
    ]
    assert len(new_records) == CALLS_AFTER_RESTART, new_records
    expected = {"+86" + a: "+86" + b for a, b in pairs}
    for record in new_records:
        binding = bindings_before[record.caller]
        assert binding is not None
        assert (record.disposition, record.x, record.binding_id) == ("answered", X, binding.id)
        assert record.callee == expected[record.caller]
