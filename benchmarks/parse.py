"""Parse benchmark: privproxy's SIP parser beside sipmessage, in one run.

Prints messages per second (median of RUNS runs of N iterations each) for
  parse            parse() alone (lazy: splits the head into raw header lines)
  parse+typed      parse() then From/To tags, Via branches, CSeq number and method, Call-ID
  parse+validate   parse() then validate() (what the proxy does to every request)
  serialize        to_bytes() of a parsed message
on a ~950-byte INVITE with SDP and a ~390-byte 200 OK (tests/fixtures/sip), and the
ratio to sipmessage for the rows both can do. design.md §3 target: parse+typed at
least 4x sipmessage's rate.

Usage: .venv/bin/python benchmarks/parse.py [N] [RUNS]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import sipmessage

from proxy.sip.message import parse

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "sip"
TARGET_RATIO = 4.0


def load(name: str) -> bytes:
    return (FIXTURES / f"{name}.sip").read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def ours_parse(data: bytes) -> object:
    return parse(data)


def ours_typed(data: bytes) -> object:
    message = parse(data)
    return (
        message.from_.tag,
        message.to.tag,
        [via.branch for via in message.vias],
        message.cseq.number,
        message.cseq.method,
        message.call_id,
    )


def ours_validate(data: bytes) -> object:
    message = parse(data)
    message.validate()
    return message


def theirs_parse(data: bytes) -> object:
    return sipmessage.Message.parse(data)


def theirs_typed(data: bytes) -> object:
    message = sipmessage.Message.parse(data)
    return (
        message.from_address.parameters.get("tag"),
        message.to_address.parameters.get("tag"),
        [via.parameters.get("branch") for via in message.via],
        message.cseq.sequence,
        message.cseq.method,
        message.call_id,
    )


def rate(work: Callable[[], object], iterations: int, runs: int) -> float:
    """Median messages per second over ``runs`` timed runs."""
    work()
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(iterations):
            work()
        rates.append(iterations / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> int:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    print(f"median of {runs} runs x {iterations} iterations; messages per second\n")
    print(f"{'message':<18}{'operation':<16}{'privproxy':>12}{'sipmessage':>12}{'ratio':>8}")
    below_target = False
    for name in ("invite", "ok200"):
        data = load(name)
        ours_message = parse(data)
        theirs_message = sipmessage.Message.parse(data)
        rows: list[tuple[str, Callable[[], object], Callable[[], object] | None]] = [
            ("parse", partial(ours_parse, data), partial(theirs_parse, data)),
            ("parse+typed", partial(ours_typed, data), partial(theirs_typed, data)),
            ("parse+validate", partial(ours_validate, data), None),
            ("serialize", ours_message.to_bytes, theirs_message.__bytes__),
        ]
        label = f"{name} ({len(data)} B)"
        for operation, ours, theirs in rows:
            ours_rate = rate(ours, iterations, runs)
            if theirs is None:
                print(f"{label:<18}{operation:<16}{ours_rate:>12,.0f}{'-':>12}{'-':>8}")
                continue
            theirs_rate = rate(theirs, iterations, runs)
            ratio = ours_rate / theirs_rate
            print(
                f"{label:<18}{operation:<16}{ours_rate:>12,.0f}{theirs_rate:>12,.0f}{ratio:>7.1f}x"
            )
            if operation == "parse+typed" and ratio < TARGET_RATIO:
                below_target = True
    verdict = "BELOW" if below_target else "meets"
    print(f"\nparse+typed {verdict} the target of {TARGET_RATIO:.0f}x sipmessage")
    return 0


if __name__ == "__main__":
    sys.exit(main())
