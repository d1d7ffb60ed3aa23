"""The product, end to end: ``privproxy serve`` as a real process between SIPp as A and B.

A call to X connects the two real parties over UDP and over TCP, and neither ever receives
the other's number in any form — although A's INVITE carries A's number in From (with a
display name), P-Asserted-Identity, P-Preferred-Identity, Remote-Party-ID, Contact, Call-ID,
Diversion, History-Info, an X- header and the SDP, and B's 180/200 carry B's in the same
places (``test_sipp_harness`` proves the scenarios really do). Every attempt leaves one call
record with the right disposition.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest

from proxy.cdr.record import CallRecord
from proxy.cdr.writer import read_records
from tests.e2e.proxy_process import PRIVPROXY, ProxyProcess, start_proxy
from tests.e2e.sipp import SippMessage, SippResult, free_port, require_sipp, run_sipp

pytestmark = pytest.mark.e2e

X = "700123456789012"
RING_TIMEOUT_S = 3


def number_forms(national: str) -> re.Pattern[str]:
    """Any spelling of a real number: national, +86 / 0086 / 86, visual separators between
    digits; digit boundaries on both sides (so X, which may contain the digits, is no hit).
    Matched against text with %-escapes undone. Independent of the proxy's own leak guard."""
    separators = r"[-. ()]*"
    body = separators.join(national)
    return re.compile(rf"(?<![0-9])(?:\+?86|0086)?{separators}{body}(?![0-9])")


def leaks(messages: list[SippMessage], national: str) -> list[str]:
    pattern = number_forms(national)
    return [m.start_line for m in messages if pattern.search(unquote(m.text, errors="replace"))]


@dataclass
class Proxy:
    process: ProxyProcess
    trunk_port: int
    transport: str
    workdir: Path

    def bind(self, a: str, b: str, *extra: str) -> None:
        self.process.bind(a, b, X, *extra)

    def call(
        self,
        uac: str,
        uas: str | None,
        *,
        caller: str,
        callee: str,
        uac_keys: dict[str, str] | None = None,
        timeout_s: float = 20,
    ) -> tuple[SippResult, SippResult | None]:
        keys = {"caller": caller, "callee": callee, "dialed": X}
        if uas is None:
            result = self._uac(uac, keys | (uac_keys or {}), timeout_s)
            return result, None
        with run_sipp(
            uas,
            None,
            background=True,
            local_port=self.trunk_port,
            transport=self.transport,  # type: ignore[arg-type]
            calls=1,
            keys=keys,
            timeout_s=timeout_s,
            workdir=self.workdir,
        ) as callee_process:
            caller_result = self._uac(uac, keys | (uac_keys or {}), timeout_s)
            callee_result = callee_process.wait(timeout=10)
        return caller_result, callee_result

    def _uac(self, scenario: str, keys: dict[str, str], timeout_s: float) -> SippResult:
        return run_sipp(
            scenario,
            f"127.0.0.1:{self.process.sip_port}",
            local_port=free_port(),
            transport=self.transport,  # type: ignore[arg-type]
            calls=1,
            keys=keys,
            timeout_s=timeout_s,
            workdir=self.workdir,
        )

    def record_for(self, caller: str, timeout: float = 5.0) -> CallRecord:
        """The one call record of the newest call from ``caller`` (written off the call
        path, so it may take a batch window to appear)."""
        deadline = time.monotonic() + timeout
        while True:
            records = [r for r in read_records(self.process.db) if r.caller == "+86" + caller]
            if records or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(records) == 1, f"expected one record for {caller}, got {records}"
        return records[0]


@pytest.fixture(scope="module", params=["udp", "tcp"])
def proxy(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    require_sipp()
    transport = request.param
    workdir = tmp_path_factory.mktemp(f"call-path-{transport}")
    trunk_port = free_port()
    process = start_proxy(
        workdir,
        sip_port=free_port(),
        trunk_port=trunk_port,
        transport=transport,
        extra=("--ring-timeout", str(RING_TIMEOUT_S)),
    )
    try:
        yield Proxy(process, trunk_port, transport, workdir)
    finally:
        assert process.stop() == 0, process.log_text()


def test_a_calls_x_and_reaches_b_seeing_only_x(proxy: Proxy) -> None:
    a, b = "13800138001", "13900139001"
    proxy.bind(a, b)
    caller, callee = proxy.call("uac_call.xml", "uas_answer.xml", caller=a, callee=b)
    assert callee is not None
    caller.assert_clean(1)
    callee.assert_clean(1)

    sent_invite = next(m for m in caller.sent() if m.method == "INVITE")
    for header in ("From", "P-Asserted-Identity", "P-Preferred-Identity", "Remote-Party-ID",
                   "Contact", "Call-ID", "Diversion", "History-Info", "X-Real-Caller"):  # fmt: skip
        assert a in (sent_invite.header(header) or ""), f"scenario lost A in {header}"
    assert f'"{a}"' in (sent_invite.header("From") or "")

    invite = callee.received_requests("INVITE")[0]
    assert invite.start_line.startswith(f"INVITE sip:{b}@")
    assert invite.header("From") is not None and invite.header("From").startswith(f"<sip:{X}@")
    assert f"<sip:{X}@" in (invite.header("P-Asserted-Identity") or "")
    assert f"sip:{b}@" in (invite.header("To") or "")
    assert leaks(callee.received(), a) == []
    assert leaks(caller.received(), b) == []

    record = proxy.record_for(a)
    assert (record.disposition, record.sip_status, record.released_by) == (
        "answered",
        200,
        "caller",
    )
    assert (record.x, record.callee, record.direction) == (X, "+86" + b, "a_to_b")
    assert record.answer_at is not None and record.invite_at <= record.answer_at <= record.end_at


def test_b_calls_x_and_reaches_a(proxy: Proxy) -> None:
    a, b = "13800138002", "13900139002"
    proxy.bind(a, b)
    caller, callee = proxy.call("uac_call.xml", "uas_answer.xml", caller=b, callee=a)
    assert callee is not None
    caller.assert_clean(1)
    callee.assert_clean(1)
    invite = callee.received_requests("INVITE")[0]
    assert invite.start_line.startswith(f"INVITE sip:{a}@")
    assert invite.header(
        "From",
    ).startswith(f"<sip:{X}@")  # type: ignore[union-attr]
    assert leaks(callee.received(), b) == []
    assert leaks(caller.received(), a) == []
    record = proxy.record_for(b)
    assert (record.disposition, record.direction, record.callee) == (
        "answered",
        "b_to_a",
        "+86" + a,
    )


def test_callee_hangs_up(proxy: Proxy) -> None:
    a, b = "13800138003", "13900139003"
    proxy.bind(a, b)
    caller, callee = proxy.call("uac_wait_bye.xml", "uas_callee_hangs_up.xml", caller=a, callee=b)
    assert callee is not None
    caller.assert_clean(1)
    callee.assert_clean(1)
    assert leaks(caller.received(), b) == []
    record = proxy.record_for(a)
    assert (record.disposition, record.released_by) == ("answered", "callee")


def test_caller_cancels_while_b_rings(proxy: Proxy) -> None:
    a, b = "13800138004", "13900139004"
    proxy.bind(a, b)
    caller, callee = proxy.call("uac_cancel.xml", "uas_ring_no_answer.xml", caller=a, callee=b)
    assert callee is not None
    caller.assert_clean(1)
    callee.assert_clean(1)
    assert caller.received_responses(487), caller.describe()
    assert callee.received_requests("CANCEL"), callee.describe()
    record = proxy.record_for(a)
    assert (record.disposition, record.sip_status, record.released_by) == (
        "cancelled",
        487,
        "caller",
    )


def test_busy_callee(proxy: Proxy) -> None:
    a, b = "13800138005", "13900139005"
    proxy.bind(a, b)
    caller, callee = proxy.call(
        "uac_expect_error.xml",
        "uas_busy.xml",
        caller=a,
        callee=b,
        uac_keys={"expected_status": "486"},
    )
    assert callee is not None
    caller.assert_clean(1)
    callee.assert_clean(1)
    assert leaks(caller.received(), b) == []
    record = proxy.record_for(a)
    assert (record.disposition, record.sip_status, record.q850_cause) == ("busy", 486, 17)


def test_no_answer_rings_out(proxy: Proxy) -> None:
    a, b = "13800138006", "13900139006"
    proxy.bind(a, b)
    caller, callee = proxy.call(
        "uac_expect_error.xml",
        "uas_ring_no_answer.xml",
        caller=a,
        callee=b,
        uac_keys={"expected_status": "480"},
    )
    assert callee is not None
    caller.assert_clean(1)
    callee.assert_clean(1)
    assert callee.received_requests("CANCEL"), callee.describe()
    record = proxy.record_for(a)
    assert (record.disposition, record.sip_status, record.released_by) == (
        "no_answer",
        480,
        "proxy",
    )
    assert record.ring_at is not None and record.end_at - record.invite_at >= RING_TIMEOUT_S - 0.5


def test_a_release_made_while_serving_stops_routing(proxy: Proxy) -> None:
    """Live bindings are routed from memory (bindings/live.py); ``privproxy unbind`` in
    another process reaches the proxy through the audit log within ``binding_refresh_s``
    (0.25 s by default), and the next call is refused."""
    a, b = "13800138009", "13900139009"
    proxy.bind(a, b)
    caller, callee = proxy.call("uac_call.xml", "uas_answer.xml", caller=a, callee=b)
    assert callee is not None
    caller.assert_clean(1)
    callee.assert_clean(1)
    listed = subprocess.run(
        [PRIVPROXY, "bindings", "--party", a, "--json", "--db", str(proxy.process.db)],
        check=True, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    [binding] = json.loads(listed.stdout)
    subprocess.run(
        [PRIVPROXY, "unbind", binding["id"], "--db", str(proxy.process.db)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    time.sleep(0.5)
    caller, _ = proxy.call(
        "uac_expect_error.xml", None, caller=a, callee=b, uac_keys={"expected_status": "404"}
    )
    caller.assert_clean(1)
    deadline = time.monotonic() + 5
    while len(records := [r for r in read_records(proxy.process.db) if r.caller == "+86" + a]) < 2:
        assert time.monotonic() < deadline, records
        time.sleep(0.1)
    records.sort(key=lambda record: record.invite_at)
    outcomes = [(record.disposition, record.reject_reason) for record in records]
    assert outcomes == [("answered", None), ("rejected", "expired")]


def test_unbound_caller_is_refused(proxy: Proxy) -> None:
    stranger = "13700137007"
    caller, _ = proxy.call(
        "uac_expect_error.xml", None, caller=stranger, callee="13900139007",
        uac_keys={"expected_status": "404"},
    )  # fmt: skip
    caller.assert_clean(1)
    record = proxy.record_for(stranger)
    assert (record.disposition, record.reject_reason, record.sip_status) == (
        "rejected",
        "no_binding",
        404,
    )
    assert record.callee is None
