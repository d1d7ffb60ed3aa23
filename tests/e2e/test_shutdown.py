"""SIGTERM while a call is up: new calls are refused, the call may go on for the grace
period, then the proxy sends BYE on both legs, writes the record and exits 0."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from proxy.cdr.writer import read_records
from tests.e2e.proxy_process import options_ping, start_proxy
from tests.e2e.sipp import free_port, require_sipp, run_sipp
from tests.e2e.test_call_path import X

pytestmark = pytest.mark.e2e

A, B = "13800138011", "13900139011"


def test_sigterm_ends_calls_in_progress_with_bye_on_both_legs(tmp_path: Path) -> None:
    require_sipp()
    trunk_port = free_port()
    proxy = start_proxy(
        tmp_path, sip_port=free_port(), trunk_port=trunk_port, extra=("--grace", "1")
    )
    try:
        from bindings.sqlite_store import SqliteBindingStore

        store = SqliteBindingStore.open(proxy.db)
        store.add("+86" + A, "+86" + B, X, now=time.time())
        store.close()
        keys = {"caller": A, "callee": B, "dialed": X}
        with run_sipp(
            "uas_answer.xml", None, background=True, local_port=trunk_port, keys=keys,
            timeout_s=20, workdir=tmp_path,
        ) as callee, run_sipp(
            "uac_wait_bye.xml", f"127.0.0.1:{proxy.sip_port}", background=True,
            local_port=free_port(), keys=keys, timeout_s=20, workdir=tmp_path,
        ) as caller:  # fmt: skip
            deadline = time.monotonic() + 10
            while not any(m.method == "ACK" for m in callee.received_messages()):
                assert time.monotonic() < deadline, "the call was never answered"
                time.sleep(0.1)
            stopped_at = time.monotonic()
            proxy.process.terminate()
            time.sleep(0.3)
            refused = options_ping(proxy.sip_port)  # still answering while draining
            caller_result = caller.wait(timeout=15)
            callee_result = callee.wait(timeout=15)
        assert proxy.process.wait(15) == 0, proxy.log_text()
        assert time.monotonic() - stopped_at >= 1.0  # the grace period was granted
    finally:
        proxy.stop()
    caller_result.assert_clean(1)
    callee_result.assert_clean(1)
    assert caller_result.received_requests("BYE") and callee_result.received_requests("BYE")
    assert refused is not None and refused.startswith(b"SIP/2.0 200")
    records = read_records(proxy.db)
    assert [(r.disposition, r.released_by) for r in records] == [("answered", "proxy")]
