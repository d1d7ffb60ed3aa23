"""Parse benchmark: privproxy's SIP parser beside sipmessage, in one run.

Prints messages per second (median of RUNS runs of N iterations each) for
  parse            parse() alone (lazy: splits the head into header lines and their
                   keys; Header records and typed values wait until asked for)
  parse+typed      parse() then From/To URIs and tags, every Via branch, CSeq number and
                   method, Call-ID (each view read once on both sides)
  +R-URI           parse+typed and, on our side, the Request-URI too (sipmessage's parse()
                   always parses it; ours only when asked)
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

from proxy.sip.address import forget_parsed_values
from proxy.sip.message import Request, Response, parse

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "sip"
TARGET_RATIO = 4.0


def load(name: str) -> bytes:
    return (FIXTURES / f"{name}.sip").read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def ours_parse(data: bytes) -> object:
    forget_parsed_values()  # values never seen before: no help from earlier messages
    return parse(data)


# The typed work, the same on both sides: what a transaction-stateful element reads to
# decide on a message (RFC 3261 §17.1.3, §17.2.3, §12.2): the From and To addresses with
# their URIs and tags, the top Via's sent-by and branch, the CSeq number and method, the
# Call-ID. sipmessage's only Via accessor parses every Via value; ours parses the top one
# when only the top one is asked for (design.md §5), and the "+all Vias" row reads them
# all. sipmessage parses a value on each property read and caches nothing, so each view
# is read once and bound: reading ``message.cseq`` twice would parse CSeq twice on its
# side only.


def ours_views(message: Request | Response) -> object:
    from_, to, cseq, top = message.from_, message.to, message.cseq, message.top_via
    return (
        from_.uri,
        from_.tag,
        to.uri,
        to.tag,
        top.sent_by,
        top.branch,
        cseq.number,
        cseq.method,
        message.call_id,
    )


def ours_all_vias(data: bytes) -> object:
    forget_parsed_values()  # values never seen before: no help from earlier messages
    message = parse(data)
    return ours_views(message), [via.branch for via in message.vias]


def ours_typed(data: bytes) -> object:
    forget_parsed_values()  # values never seen before: no help from earlier messages
    return ours_views(parse(data))


def ours_typed_seen(data: bytes) -> object:
    """parse+typed when the values were parsed before (a dialog repeats its From, To,
    Call-ID; a transaction's responses repeat its Via and CSeq): the tables of parsed
    values answer. Shown apart, never as the headline figure."""
    return ours_views(parse(data))


def ours_typed_ruri(data: bytes) -> object:
    """parse+typed and the Request-URI: sipmessage's parse() always parses it, ours
    only when asked (design.md §5), so this row is the like-for-like one for requests."""
    forget_parsed_values()  # values never seen before: no help from earlier messages
    message = parse(data)
    assert isinstance(message, Request)
    return ours_views(message), message.request_uri


def ours_validate(data: bytes) -> object:
    forget_parsed_values()  # values never seen before: no help from earlier messages
    message = parse(data)
    message.validate()
    return message


def theirs_parse(data: bytes) -> object:
    return sipmessage.Message.parse(data)


def theirs_views(message: sipmessage.Request | sipmessage.Response) -> object:
    from_, to, cseq, top = message.from_address, message.to_address, message.cseq, message.via[0]
    return (
        from_.uri,
        from_.parameters.get("tag"),
        to.uri,
        to.parameters.get("tag"),
        (top.host, top.port),
        top.parameters.get("branch"),
        cseq.sequence,
        cseq.method,
        message.call_id,
    )


def theirs_typed(data: bytes) -> object:
    return theirs_views(sipmessage.Message.parse(data))


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
            ("+all Vias", partial(ours_all_vias, data), partial(theirs_typed, data)),
            ("typed, seen", partial(ours_typed_seen, data), partial(theirs_typed, data)),
        ]
        if isinstance(ours_message, Request):
            rows.append(("+R-URI", partial(ours_typed_ruri, data), partial(theirs_typed, data)))
        rows += [
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
