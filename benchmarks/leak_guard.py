"""Leak guard micro benchmark: µs to scan one ~1 KB B-leg INVITE for two real numbers.

The guard runs on every outgoing message (design §4), so its cost is per message, not per
call. Prints the median of several runs for: a clean message (the normal case), a message
with the number at the end (the worst case for a hit), compiling a guard (once per call), a
message with a %-escape (the prefilter unescapes), a clean message whose privacy number holds
A's digits (the prefilter passes, the regex scans it: the cost of any hit), and
a naive regex (lookbehind first, one alternative per spelling) to show why the trie layout.

Run: .venv/bin/python benchmarks/leak_guard.py
"""

from __future__ import annotations

import re
import statistics
import timeit
from collections.abc import Callable

from proxy.b2bua.leak_guard import LeakGuard, _spellings, guard_for

NUMBERS = frozenset({"+8613800138000", "+861012345678"})

INVITE = (
    b"INVITE sip:13900139000@10.0.0.20:5080;transport=udp SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.10:5060;branch=z9hG4bK-9f3a61c2e7d04b58-1742;rport\r\n"
    b"Max-Forwards: 69\r\n"
    b'From: "700520131488467" <sip:700520131488467@10.0.0.10>;tag=84a1c3f0-1\r\n'
    b"To: <sip:13900139000@10.0.0.20>\r\n"
    b"Call-ID: 5f1c7e2a9b4d4c8e8f0a1b2c3d4e5f60@10.0.0.10\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:700520131488467@10.0.0.10:5060;transport=udp>\r\n"
    b"P-Asserted-Identity: <sip:700520131488467@10.0.0.10>\r\n"
    b"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, UPDATE\r\n"
    b"Supported: timer, replaces\r\n"
    b"Session-Expires: 1800;refresher=uac\r\n"
    b"Min-SE: 90\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 331\r\n"
    b"\r\n"
    b"v=0\r\n"
    b"o=privproxy 1742991234 1742991234 IN IP4 10.0.0.10\r\n"
    b"s=privproxy\r\n"
    b"c=IN IP4 10.0.0.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 40000 RTP/AVP 8 0 18 101\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:18 G729/8000\r\n"
    b"a=fmtp:18 annexb=no\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=maxptime:150\r\n"
    b"a=sendrecv\r\n"
    b"a=rtcp:40001 IN IP4 10.0.0.10\r\n"
    b"a=ssrc:1742991234 cname:5f1c7e2a9b4d4c8e\r\n"
    b"a=ssrc:1742991234 msid:privproxy-stream privproxy-audio-0\r\n"
)
#: The same message with a %-escape in the Request-URI: the prefilter unescapes first.
ESCAPED = INVITE.replace(b"sip:13900139000@", b"sip:%31%33900139000@", 1)
#: Clean, but a privacy number whose digits hold A's NSN: the prefilter passes, the regex runs.
COINCIDENCE = INVITE.replace(b"700520131488467", b"700138001380001")
LEAKY = INVITE + b"a=x-note:+86 138-0013-8000\r\n"


def median_us(statement: Callable[[], object], number: int, repeat: int = 7) -> float:
    runs = timeit.repeat(statement, number=number, repeat=repeat)
    return statistics.median(runs) / number * 1e6


def naive_regex(numbers: frozenset[str]) -> re.Pattern[bytes]:
    """Lookbehind first, one alternative per spelling: correct but tries every offset."""
    separators = rb"(?:[ \-.()]|%2[0dDeE89])*"

    def spell(text: str) -> bytes:
        tokens = [
            rb"(?:\+|%2[bB])" if c == "+" else b"(?:%s|%%3%s)" % (c.encode(), c.encode())
            for c in text
        ]
        return separators.join(tokens)

    spellings = sorted({s for n in numbers for s in _spellings(n, "CN")[1]})
    body = b"|".join(spell(s) for s in spellings)
    return re.compile(rb"(?<![0-9])(?<!%3[0-9])(?:" + body + rb")(?![0-9]|%3[0-9])")


def main() -> None:
    guard = guard_for(NUMBERS)
    assert guard.find(INVITE) is None, "benchmark message must be clean"
    assert guard.find(LEAKY) == "138****8000"
    assert guard.find(ESCAPED) is None
    assert guard.find(COINCIDENCE) is None
    naive = naive_regex(NUMBERS)
    assert naive.search(INVITE) is None and naive.search(LEAKY) is not None

    print(f"message: {len(INVITE)} bytes clean, {len(LEAKY)} bytes with a leak at the end")
    cases: list[tuple[str, Callable[[], object], int]] = [
        ("guard.find, clean message", lambda: guard.find(INVITE), 20000),
        ("guard.find, clean with %-escape", lambda: guard.find(ESCAPED), 20000),
        ("guard.find, clean, regex runs", lambda: guard.find(COINCIDENCE), 5000),
        ("guard.find, leak at the end", lambda: guard.find(LEAKY), 5000),
        ("naive regex, clean message", lambda: naive.search(INVITE), 1000),
        ("guard_for, cache hit", lambda: guard_for(NUMBERS), 100000),
        ("LeakGuard(...), build + compile", lambda: LeakGuard(NUMBERS), 20),
    ]
    for label, statement, number in cases:
        print(f"{label:<34}: {median_us(statement, number):8.2f} µs (median of 7 runs)")


if __name__ == "__main__":
    main()
