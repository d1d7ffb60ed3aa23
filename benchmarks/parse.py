"""Parse benchmark: privproxy's SIP parser beside sipmessage, in one run.

Prints messages per second (median of RUNS runs over N messages each, our runs and
sipmessage's alternating, or taking turns every TURN messages within a run) for
  parse            parse() alone (lazy: splits the head into header lines and their
                   keys; Header records and typed values wait until asked for)
  parse+typed      parse() then From/To URIs and tags, the top Via's sent-by and branch,
                   CSeq number and method, Call-ID (each view read once on both sides)
  +all Vias        parse+typed and every Via's branch
  typed, seen      parse+typed of one message over and over: the tables of values
                   parsed before answer (what a dialog's repeated From/To/Call-ID and a
                   transaction's repeated Via/CSeq cost); shown apart, never the headline
  +R-URI           parse+typed and, on our side, the Request-URI too (sipmessage's parse()
                   always parses it; ours only when asked)
  parse+validate   parse() then validate() (what the proxy does to every request)
  serialize        to_bytes() of a parsed message
on a ~950-byte INVITE with SDP and a ~390-byte 200 OK (tests/fixtures/sip), and the
ratio to sipmessage for the rows both can do: the median of the runs' ratios, with their
range. Except where it says "seen", each of the N
messages is a copy with its own branch, tags, Call-ID and CSeq number (``fresh_copies``):
both parsers see values never seen before, as in new calls, and both get the same bytes.
design.md §3 target: parse+typed at least 4x sipmessage's rate.

Usage: .venv/bin/python benchmarks/parse.py [N] [RUNS] [TURN]
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import sipmessage

from proxy.sip.message import Request, Response, parse

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "sip"
TARGET_RATIO = 4.0


def load(name: str) -> bytes:
    return (FIXTURES / f"{name}.sip").read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


# The values a parser must work out afresh in every new transaction and dialog: Via
# branches, From/To tags, the Call-ID and the CSeq number.
_FRESH_VALUES: Final = re.compile(rb"(branch=z9hG4bK|;tag=|Call-ID: |CSeq: )([0-9A-Za-z]+)")


def fresh_copies(data: bytes, count: int) -> list[bytes]:
    """``count`` copies of ``data``, each with values no other copy has (the branch,
    tags, Call-ID and CSeq number rewritten, same length, digits where there were
    digits), so that no table of parsed values answers for a copy: every view is parsed
    from text never seen before, as in a new call. Sizes stay those of ``data``."""

    def copy(index: int) -> bytes:
        def renumber(match: re.Match[bytes]) -> bytes:
            width = len(match[2])
            if match[2].isdigit():
                value = str(10 ** (width - 1) + index % (9 * 10 ** (width - 1)))
            else:  # an odd multiplier permutes the residues: distinct for each index
                value = format(index * 2654435761 % 16**width, f"0{width}x")
            return match[1] + value.encode()

        return _FRESH_VALUES.sub(renumber, data)

    return [copy(index) for index in range(count)]


def ours_parse(data: bytes) -> object:
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
    message = parse(data)
    return ours_views(message), [via.branch for via in message.vias]


def ours_typed(data: bytes) -> object:
    return ours_views(parse(data))


def ours_typed_ruri(data: bytes) -> object:
    """parse+typed and the Request-URI: sipmessage's parse() always parses it, ours
    only when asked (design.md §5), so this row is the like-for-like one for requests."""
    message = parse(data)
    assert isinstance(message, Request)
    return ours_views(message), message.request_uri


def ours_validate(data: bytes) -> object:
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


def serializer(to_bytes: Callable[[], bytes]) -> Callable[[bytes], object]:
    """Serialization of one parsed message, in the shape ``rate`` takes."""
    return lambda _: to_bytes()


def timed(work: Callable[[bytes], object], messages: list[bytes]) -> float:
    """Seconds of one pass of ``work`` over ``messages``."""
    start = time.perf_counter()
    for message in messages:
        work(message)
    return time.perf_counter() - start


def timed_rate(work: Callable[[bytes], object], messages: list[bytes]) -> float:
    """Messages per second of one pass of ``work`` over ``messages``."""
    return len(messages) / timed(work, messages)


def run_rates(
    workers: list[Callable[[bytes], object]],
    messages: list[bytes],
    runs: int,
    turn: int | None = None,
) -> list[list[float]]:
    """Messages per second of each of ``workers`` over ``messages`` in each of ``runs``
    runs. Within a run the workers take turns, ``turn`` messages each (all of them when
    None: one turn each per run); each worker sees every message once, the same ones in
    the same order, and its rate is its messages over the sum of its own turns' times.
    Short turns put a spell of load on this shared machine on both sides alike, but
    each side then finds the CPU caches full of the other's data more often (with 100,
    the 200 OK's ratio reads ~10% lower than with whole runs)."""
    for work in workers:
        work(messages[0])
    samples: list[list[float]] = [[] for _ in workers]
    size = turn or len(messages)
    chunks = [messages[start : start + size] for start in range(0, len(messages), size)]
    for _ in range(runs):
        elapsed = [0.0 for _ in workers]
        for chunk in chunks:
            for index, work in enumerate(workers):
                elapsed[index] += timed(work, chunk)
        for sample, seconds in zip(samples, elapsed, strict=True):
            sample.append(len(messages) / seconds)
    return samples


def rates(
    workers: list[Callable[[bytes], object]], messages: list[bytes], runs: int
) -> list[float]:
    """Median messages per second of each of ``workers`` over ``messages`` (run_rates,
    one turn each per run)."""
    return [statistics.median(sample) for sample in run_rates(workers, messages, runs)]


def main() -> int:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 9
    turn = int(sys.argv[3]) if len(sys.argv) > 3 else None
    print(
        f"median of {runs} runs x {iterations} messages, ours and sipmessage's taking turns"
        f" every {turn or iterations}; messages per second, ratio (range of the runs' ratios)\n"
    )
    print(f"{'message':<18}{'operation':<16}{'privproxy':>12}{'sipmessage':>12}{'ratio':>8}")
    below_target = False
    for name in ("invite", "ok200"):
        data = load(name)
        fresh = fresh_copies(data, iterations)
        same = [data] * iterations
        ours_message = parse(data)
        theirs_message = sipmessage.Message.parse(data)
        Row = tuple[str, list[bytes], Callable[[bytes], object], Callable[[bytes], object] | None]
        rows: list[Row] = [
            ("parse", fresh, ours_parse, theirs_parse),
            ("parse+typed", fresh, ours_typed, theirs_typed),
            ("+all Vias", fresh, ours_all_vias, theirs_typed),
            ("typed, seen", same, ours_typed, theirs_typed),
        ]
        if isinstance(ours_message, Request):
            rows.append(("+R-URI", fresh, ours_typed_ruri, theirs_typed))
        rows += [
            ("parse+validate", fresh, ours_validate, None),
            (
                "serialize",
                same,
                serializer(ours_message.to_bytes),
                serializer(theirs_message.__bytes__),
            ),
        ]
        label = f"{name} ({len(data)} B)"
        for operation, messages, ours, theirs in rows:
            if theirs is None:
                (ours_rate,) = rates([ours], messages, runs)
                print(f"{label:<18}{operation:<16}{ours_rate:>12,.0f}{'-':>12}{'-':>8}")
                continue
            ours_runs, theirs_runs = run_rates([ours, theirs], messages, runs, turn)
            ours_rate, theirs_rate = statistics.median(ours_runs), statistics.median(theirs_runs)
            # The ratio of each run (both sides timed in the same turns), their median and
            # range: what load on the machine did to the comparison.
            run_ratios = sorted(o / t for o, t in zip(ours_runs, theirs_runs, strict=True))
            ratio = statistics.median(run_ratios)
            print(
                f"{label:<18}{operation:<16}{ours_rate:>12,.0f}{theirs_rate:>12,.0f}{ratio:>7.1f}x"
                f"  ({run_ratios[0]:.1f}-{run_ratios[-1]:.1f})"
            )
            if operation == "parse+typed" and ratio < TARGET_RATIO:
                below_target = True
    verdict = "BELOW" if below_target else "meets"
    print(f"\nparse+typed {verdict} the target of {TARGET_RATIO:.0f}x sipmessage")
    return 0


if __name__ == "__main__":
    sys.exit(main())
