"""Packet loss (issue #6 "Loss"): SIPp calls through ``privproxy serve`` with 5 % and 10 % of
the datagrams lost on both sides (SIPp ``-lost`` on caller and callee) complete through
retransmissions and leave correct records, and afterwards no transaction, dialog or call
is left behind (``/metrics`` reads zero once the timers have run).

What is asserted, call by call (SIPp's -trace_msg shows what really went on the wire:
a datagram SIPp "loses" on sending never appears as sent, one it loses on receiving still
appears as received, because SIPp traces it before dropping it):

- the proxy saw exactly the calls whose INVITE SIPp really sent, and wrote exactly one
  record for each (the record's A-leg Call-ID is SIPp's Call-ID);
- every call the proxy answered (SIPp received its 200 to the INVITE) has an ``answered``
  record with the right caller, callee, X and times, and there are no other answered
  records; SIPp's completed calls are among them;
- calls SIPp itself gave up on are allowed, and reported. The usual one: a SIPp callee that
  loses the very first INVITE of a call marks that Call-ID dead and ignores every
  retransmission of it, so the proxy's B leg times out (Timer B) and A gets 408: the record
  says ``failed``, 408, released by the proxy.

``run_lossy_calls`` is also the loss part of ``benchmarks/robustness.py``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bindings.sqlite_store import SqliteBindingStore
from proxy.cdr.record import CallRecord
from proxy.cdr.writer import read_records
from tests.e2e.proxy_process import ProxyProcess, start_proxy
from tests.e2e.sipp import SCENARIO_DIR, SippResult, free_port, require_sipp, run_sipp

pytestmark = pytest.mark.e2e

X: Final = "700123456789012"
#: RFC 3261 timers shortened so that transactions end within seconds (Timer B/F/H/J and the
#: 2xx retransmission wait are 64*T1 = 3.2 s); Timer D stays at least 32 s by the RFC, but
#: only a call refused by B with an error status starts it. SIPp retransmits on the same T1
#: and T2 as the proxy, as two ends of one network do: with SIPp's own 500 ms a BYE whose
#: 200 SIPp "lost" three times is retransmitted after the proxy's Timer J (3.2 s) has
#: rightly forgotten the transaction, and gets 481.
T1_MS: Final = 50
T2_MS: Final = 400
FAST_TIMERS: Final = f"t1 = {T1_MS / 1000}\nt2 = {T2_MS / 1000}\nt4 = 0.5\n"
#: Live state gauges that must read zero once every call and timer has ended.
LIVE_GAUGES: Final[tuple[tuple[str, dict[str, str]], ...]] = (
    ("privproxy_transactions", {"kind": "client"}),
    ("privproxy_transactions", {"kind": "server"}),
    ("privproxy_dialogs", {}),
    ("privproxy_active_calls", {}),
)
SETTLE_TIMEOUT_S: Final = 40.0


def parties(calls: int) -> list[tuple[str, str]]:
    """One (A, B) pair of national numbers per call: distinct callers, so that no per-caller
    limit plays a part in a test about loss."""
    return [(f"1380013{8000 + i:04d}", f"1390013{9000 + i:04d}") for i in range(calls)]


def _scenario(workdir: Path, name: str) -> Path:
    """A scenario of ``sipp_scenarios`` retransmitting on T1_MS, with the caller's number read
    per call from the injection file."""
    text = (SCENARIO_DIR / f"{name}.xml").read_text()
    path = workdir / f"{name}_t1.xml"
    path.write_text(
        text.replace("[caller]", "[field0]").replace('retrans="500"', f'retrans="{T1_MS}"')
    )
    return path


def _injection_file(workdir: Path, pairs: list[tuple[str, str]]) -> Path:
    path = workdir / "callers.csv"
    path.write_text("SEQUENTIAL\n" + "".join(f"{a};\n" for a, _ in pairs))
    return path


def bind_parties(db: Path, pairs: list[tuple[str, str]]) -> None:
    """Every pair bound through the one X (disjoint pairs may share it, the AXB reuse rule)."""
    store = SqliteBindingStore.open(db)
    try:
        now = time.time()
        for a, b in pairs:
            store.add("+86" + a, "+86" + b, X, now=now)
    finally:
        store.close()


def scrape(api_port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` by (name, sorted labels)."""
    response = httpx.get(f"http://127.0.0.1:{api_port}/metrics", timeout=5)
    response.raise_for_status()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def live_state(api_port: int) -> dict[str, float]:
    samples = scrape(api_port)
    return {
        name + "".join(f"{{{k}={v}}}" for k, v in labels.items()): samples.get(
            (name, tuple(sorted(labels.items()))), float("nan")
        )
        for name, labels in LIVE_GAUGES
    }


def wait_for_no_live_state(api_port: int, timeout: float = SETTLE_TIMEOUT_S) -> dict[str, float]:
    """Poll ``/metrics`` until every live gauge reads zero; the last reading either way."""
    deadline = time.monotonic() + timeout
    while True:
        state = live_state(api_port)
        if all(value == 0 for value in state.values()) or time.monotonic() > deadline:
            return state
        time.sleep(0.25)


def counter(samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    """The sum of every sample of one counter (all label sets)."""
    return sum(value for (sample, _), value in samples.items() if sample == name)


@dataclass
class LossRun:
    """One lossy run: SIPp's view, the proxy's records and metrics, the settled state."""

    loss_percent: int
    calls: int
    caller: SippResult
    callee: SippResult
    records: list[CallRecord]
    invites_sent: set[str]
    answered: set[str]
    settled: dict[str, float]
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)
    proxy_log: str = ""

    @property
    def retransmissions_seen(self) -> dict[str, int]:
        return {
            "caller (SIPp)": self.caller.retransmissions,
            "callee (SIPp)": self.callee.retransmissions,
            "proxy": int(counter(self.metrics, "privproxy_retransmissions_total")),
        }

    def figures(self) -> dict[str, object]:
        by_disposition: dict[str, int] = {}
        for record in self.records:
            by_disposition[record.disposition] = by_disposition.get(record.disposition, 0) + 1
        return {
            "loss on each SIPp side (%)": self.loss_percent,
            "calls attempted (SIPp)": self.calls,
            "calls completed (SIPp successful)": self.caller.successful_calls,
            "calls failed (SIPp gave up)": self.caller.failed_calls,
            "INVITEs that reached the proxy (distinct calls)": len(self.invites_sent),
            "records written": len(self.records),
            "records by disposition": by_disposition,
            "retransmissions": self.retransmissions_seen,
            "live state after the timers": self.settled,
        }


def run_lossy_calls(
    workdir: Path,
    *,
    loss_percent: int,
    calls: int = 30,
    rate: float = 10.0,
    talk_ms: int = 200,
) -> LossRun:
    """``calls`` calls at ``rate``/s through a fresh ``privproxy serve`` (short timers, the
    API on for ``/metrics``) with ``loss_percent`` % loss on both SIPp sides."""
    require_sipp()
    workdir.mkdir(parents=True, exist_ok=True)
    pairs = parties(calls)
    db = workdir / "privproxy.db"
    bind_parties(db, pairs)
    config = workdir / "timers.toml"
    config.write_text(FAST_TIMERS)
    trunk_port, api_port = free_port(), free_port()
    proxy: ProxyProcess = start_proxy(
        workdir,
        sip_port=free_port(),
        trunk_port=trunk_port,
        db=db,
        extra=("--config", str(config), "--api", f"127.0.0.1:{api_port}"),
    )
    lost = ("-lost", str(loss_percent), "-T2", str(T2_MS))
    injection = _injection_file(workdir, pairs)
    try:
        with run_sipp(
            str(_scenario(workdir, "uas_load")),
            None,
            background=True,
            local_port=trunk_port,
            calls=None,
            timeout_s=90,
            extra=lost,
            workdir=workdir,
        ) as callee_process:
            caller = run_sipp(
                str(_scenario(workdir, "uac_load")),
                f"127.0.0.1:{proxy.sip_port}",
                local_port=free_port(),
                calls=calls,
                rate=rate,
                timeout_s=90,
                extra=(*lost, "-d", str(talk_ms), "-inf", str(injection)),
                workdir=workdir,
            )
            settled = wait_for_no_live_state(api_port)
            callee = callee_process.stop()
        metrics = scrape(api_port)
    finally:
        proxy.stop()
    records = read_records(db, limit=10 * calls)
    sent = caller.sent()
    invites_sent = {m.header("call-id") or "" for m in sent if m.method == "INVITE"}
    answered = {
        m.header("call-id") or ""
        for m in caller.received()
        if m.status == 200 and m.cseq_method == "INVITE"
    }
    return LossRun(
        loss_percent=loss_percent,
        calls=calls,
        caller=caller,
        callee=callee,
        records=records,
        invites_sent=invites_sent,
        answered=answered,
        settled=settled,
        metrics=metrics,
        proxy_log=proxy.log_text(),
    )


@pytest.mark.parametrize("loss_percent", [5, 10])
def test_calls_complete_through_loss_and_leave_nothing_behind(
    tmp_path: Path, loss_percent: int
) -> None:
    run = run_lossy_calls(tmp_path, loss_percent=loss_percent)
    figures = run.figures()
    print(f"\nloss {loss_percent} %: {figures}")
    detail = f"{figures}\n{run.caller.describe()}\n{run.callee.describe()}"

    # Loss really happened and was repaired by retransmission.
    assert run.caller.retransmissions + run.callee.retransmissions > 0, detail
    # SIPp completes the great majority; only calls SIPp itself gave up on may fail.
    assert run.caller.successful_calls + run.caller.failed_calls == run.calls, detail
    assert run.caller.successful_calls >= run.calls * 0.8, detail
    assert len(run.answered) >= run.caller.successful_calls, detail

    # One record per call the proxy saw, and the proxy saw exactly what SIPp put on the wire.
    by_call_id: dict[str, list[CallRecord]] = {}
    for record in run.records:
        by_call_id.setdefault(record.a_call_id or "", []).append(record)
    duplicates = {call_id: len(rs) for call_id, rs in by_call_id.items() if len(rs) > 1}
    assert duplicates == {}, detail
    assert set(by_call_id) == run.invites_sent, detail
    assert counter(run.metrics, "privproxy_cdr_written_total") == len(run.records), detail
    assert counter(run.metrics, "privproxy_calls_total") == len(run.records), detail

    # Every call the proxy answered has its one correct record, and no other is answered.
    expected_parties = {"+86" + a: "+86" + b for a, b in parties(run.calls)}
    answered_records = [r for r in run.records if r.disposition == "answered"]
    assert len(answered_records) == len(run.answered), detail
    for call_id in run.answered:
        (record,) = by_call_id[call_id]
        assert record.disposition == "answered", (record, detail)
        assert (record.x, record.direction, record.sip_status) == (X, "a_to_b", 200), record
        assert record.callee == expected_parties[record.caller], record
        assert record.answer_at is not None
        assert record.invite_at <= record.answer_at <= record.end_at, record
    assert "internal error" not in run.proxy_log, run.proxy_log[-4000:]

    # Nothing is left behind once the timers have run.
    assert all(value == 0 for value in run.settled.values()), detail
