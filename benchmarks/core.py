"""CPU cost of the pure call path: whole calls through the B2BUA core, no sockets.

    python benchmarks/core.py [CALLS] [RUNS] [STEP] [IDLE_MS]

A scripted caller and callee exchange the datagrams of a full call (INVITE/100/180/200/
ACK/BYE/200 on both legs) with the core in memory; only the time spent inside the core
(receive, route_call, advance) and the leak guard is counted. Prints µs per call (median of
RUNS) and the core's share of a call's datagrams. Each call has its own numbers, as in
production, so per-call caches (leak guards, number parsing) are exercised cold.

Without STEP (or with 0) the clock moves 0.01 s per call and the core is advanced every
100 calls, so a run of 2000 calls never reaches the 5-32 s timers that end each call's transactions
(Timers K, J, L, M). With STEP (seconds between call starts, ``Bench.step``) the core is
advanced before every call: each call also pays for the expiry of earlier calls'
transactions, as in a long-running ``privproxy serve``.

With IDLE_MS the benchmark sleeps that long before each datagram (outside the time
counted), in runs that alternate with runs that do not: a proxy at 100 calls/s sleeps
between datagrams too, and what the same work costs after the CPU has been idle (caches
and predictors cold, the core possibly lent to another tenant) is printed beside the hot
figure.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bindings.models import Binding
from proxy.b2bua.b2bua import B2BUA
from proxy.b2bua.context import B2buaSettings
from proxy.b2bua.events import LookupBinding
from proxy.b2bua.leak_guard import guard_for
from proxy.server import tune_gc
from proxy.sip.message import Request, Response, parse
from proxy.sip.transaction import Address, Send

X = "700123456789012"
CALLER = Address("udp", "127.0.0.1", 5070)
TRUNK = Address("udp", "127.0.0.1", 5080)
SDP = (
    "v=0\r\no=- 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\nm=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
)


def invite(n: int, a: str) -> bytes:
    return (
        f"INVITE sip:{X}@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{n}-1\r\n"
        f'From: "{a}" <sip:{a}@127.0.0.1:5070>;tag={n}SIPpTag001\r\n'
        f"To: <sip:{X}@127.0.0.1:5060>\r\nCall-ID: {n}-{a}@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:{a}@127.0.0.1:5070>\r\nMax-Forwards: 70\r\n"
        f"P-Asserted-Identity: <sip:{a}@127.0.0.1>\r\nAllow: INVITE, ACK, BYE, CANCEL\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n{SDP}"
    ).encode()


def in_dialog(method: str, n: int, a: str, to_tag: str, cseq: int) -> bytes:
    return (
        f"{method} sip:{X}@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{n}-{cseq}{method}\r\n"
        f'From: "{a}" <sip:{a}@127.0.0.1:5070>;tag={n}SIPpTag001\r\n'
        f"To: <sip:{X}@127.0.0.1:5060>;tag={to_tag}\r\nCall-ID: {n}-{a}@127.0.0.1\r\n"
        f"CSeq: {1 if method == 'ACK' else cseq} {method}\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def answer(request: Request, status: int, b: str, *, sdp: bool = False) -> bytes:
    """The callee's reply, copying the dialog headers as RFC 3261 §8.2.6 says."""
    head = [f"SIP/2.0 {status} X"]
    for header in request.headers:
        if header.key in ("via", "from", "call-id", "cseq"):
            head.append(f"{header.name}: {header.value}")
        elif header.key == "to":
            tag = "" if status == 100 or ";tag=" in header.value else ";tag=callee1"
            head.append(f"To: {header.value}{tag}")
    body = SDP if sdp else ""
    if status > 100 and request.method == "INVITE":
        head.append(f"Contact: <sip:{b}@127.0.0.1:5080>")
    if body:
        head.append("Content-Type: application/sdp")
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n" + body).encode()


class Bench:
    def __init__(self) -> None:
        settings = B2buaSettings(
            advertise_host="127.0.0.1", advertise_port=5060, trunk=TRUNK, trunk_host="127.0.0.1"
        )
        self.core = B2BUA(settings, seed="bench")
        self.spent = 0.0
        self.now = 1_000_000.0

    #: seconds between call starts with the core advanced before each call; None: 0.01 s
    #: and advanced every 100 calls (the figures quoted before STEP existed)
    step: float | None = None
    #: seconds slept before each datagram, outside the time counted
    idle: float = 0.0

    def core_call(self, fn, *args):  # type: ignore[no-untyped-def]
        if self.idle:
            time.sleep(self.idle)
        start = time.perf_counter()
        outputs = fn(*args)
        sends: list[Send] = []
        pending = list(outputs)
        while pending:
            item = pending.pop(0)
            if isinstance(item, Send):
                if item.guard:
                    guard_for(item.guard).find(item.data)
                sends.append(item)
            elif isinstance(item, LookupBinding):
                a = item.attempt.caller
                binding = Binding(id="b1", a=a, b=self.b, x=X, created_at=0.0)
                pending += self.core.route_call(item.call_ref, binding, self.now)
        self.spent += time.perf_counter() - start
        return sends

    def call(self, n: int) -> None:
        a = f"138{n:08d}"
        b = f"139{n:08d}"
        self.b = "+86" + b
        if self.step is None:
            self.now += 0.01
        else:
            self.now += self.step
            self.core_call(self.core.advance, self.now)
        sends = self.core_call(self.core.receive, invite(n, a), CALLER, self.now)
        b_invite = next(
            parse(s.data) for s in sends if s.destination == TRUNK and s.data.startswith(b"INVITE")
        )
        assert isinstance(b_invite, Request)
        for status in (100, 180):
            self.core_call(self.core.receive, answer(b_invite, status, b), TRUNK, self.now)
        sends = self.core_call(
            self.core.receive, answer(b_invite, 200, b, sdp=True), TRUNK, self.now
        )
        ok = next(parse(s.data) for s in sends if s.data.startswith(b"SIP/2.0 200"))
        assert isinstance(ok, Response)
        to_tag = ok.to.tag or ""
        self.core_call(self.core.receive, in_dialog("ACK", n, a, to_tag, 1), CALLER, self.now)
        sends = self.core_call(
            self.core.receive, in_dialog("BYE", n, a, to_tag, 2), CALLER, self.now
        )
        b_bye = next(parse(s.data) for s in sends if s.data.startswith(b"BYE"))
        assert isinstance(b_bye, Request)
        self.core_call(self.core.receive, answer(b_bye, 200, b), TRUNK, self.now)
        if self.step is None and n % 100 == 0:
            self.core_call(self.core.advance, self.now)


def run_once(calls: int, first: int, idle: float) -> float:
    """µs of core time per call over ``calls`` calls numbered from ``first``."""
    bench = Bench()
    bench.idle = idle
    for n in range(calls):
        bench.call(first + n)
    return bench.spent / calls * 1e6


def main() -> None:
    tune_gc()  # as privproxy serve does
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    if len(sys.argv) > 3 and float(sys.argv[3]) > 0:
        Bench.step = float(sys.argv[3])
    idle = float(sys.argv[4]) / 1000 if len(sys.argv) > 4 else 0.0
    hot: list[float] = []
    cold: list[float] = []
    for run in range(runs):
        hot.append(run_once(calls, 2 * run * calls, 0.0))
        if idle:
            cold.append(run_once(calls, (2 * run + 1) * calls, idle))
    setting = "8 datagrams in, ~10 out" + (
        f"; {Bench.step} s apart, timers fired before each call" if Bench.step else ""
    )
    for label, results in (("", hot), (f" after {idle * 1000:g} ms idle", cold)):
        if results:
            print(
                f"core CPU per call{label}: median {statistics.median(results):.0f} µs "
                f"(runs: {', '.join(f'{r:.0f}' for r in results)}; {calls} calls each, "
                f"{setting})"
            )


if __name__ == "__main__":
    main()
