"""Hostile SIP traffic for robustness tests: a seeded generator of bad datagrams, the
RFC 4475/5118 torture corpus, and a small UDP harness that sends each message from its own
socket and keeps decoy and trunk sockets open to see where the proxy's answers go.

Nothing here imports the proxy: the checks (number forms, status lines) are written
independently of the code under test, so that a bug in the proxy's parser or leak guard
cannot hide itself.

Placeholders in generated messages, filled in per send by ``HostileCase.render``:

- ``LPORT`` — the port of the socket the message is sent from (five digits, so that a
  message built to an exact size keeps it);
"""

from __future__ import annotations

import csv
import random
import re
import select
import socket
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

LOOPBACK = "127.0.0.1"
#: A second loopback address: a decoy there catches replies steered by a spoofed
#: ``received`` or ``maddr`` (Linux answers on all of 127.0.0.0/8).
LOOPBACK_OTHER = "127.0.0.2"
#: The largest UDP payload IPv4 can carry (65,535 − 20 IP − 8 UDP): anything bigger than
#: the proxy's 65,535-byte limit can only arrive over TCP.
MAX_UDP_PAYLOAD = 65_507
MAX_MESSAGE = 65_535
LOCAL_PORT = b"LPORT"
#: Put into injected headers and display names: it must never reach the trunk.
MARKER = "HOSTILEMARK"

TORTURE_DIR = Path("/work/shared/sip-torture")

# -- the parties ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Parties:
    """Real numbers (national, mainland China) and privacy numbers of the test bindings.

    ``(a, b, x)`` is bound and reachable by calling X from A or B; ``(a2, b2, x2)`` is bound
    too but no generated message may legitimately reach it (only spoofed identities
    point at it); ``stranger`` is in no binding; ``x_free`` is a 700 number bound to no one.
    """

    a: str = "13800138000"
    b: str = "13900139000"
    x: str = "700123456789012"
    a2: str = "13600136000"
    b2: str = "13500135000"
    x2: str = "700987654321098"
    stranger: str = "13700137000"
    x_free: str = "700555555555555"

    @property
    def real_numbers(self) -> tuple[str, ...]:
        return (self.a, self.b, self.a2, self.b2)


def e164(national: str) -> str:
    return "+86" + national


def number_pattern(national: str) -> re.Pattern[str]:
    """Any spelling of a real number: national, ``+86`` / ``0086`` / ``86``, visual
    separators (RFC 3966 §5.1.1) between the digits, digit boundaries on both sides."""
    separators = r"[-. ()/]*"
    body = separators.join(national)
    return re.compile(rf"(?<![0-9])(?:(?:\+|00)?86{separators})?{body}(?![0-9])")


def numbers_in(data: bytes, numbers: Iterable[str]) -> set[str]:
    """The real numbers of ``numbers`` that appear in ``data``, %-escapes undone."""
    text = unquote(data.decode("latin-1"), encoding="latin-1")
    return {number for number in numbers if number_pattern(number).search(text)}


# -- cases ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostileCase:
    """One hostile message.

    ``must_reject``: a 2xx answer is a failure. ``routes_to``: a national number this
    INVITE may legitimately reach through the trunk (the caller is a bound party).
    ``expect_status``: the status the issue fixes for it (REGISTER → 405). ``transport``:
    "udp" or "tcp".
    """

    name: str
    category: str
    data: bytes
    must_reject: bool = True
    routes_to: str | None = None
    expect_status: int | None = None
    require_allow: bool = False
    transport: str = "udp"

    def render(self, local_port: int) -> bytes:
        return self.data.replace(LOCAL_PORT, f"{local_port:05d}".encode())


@dataclass(frozen=True, slots=True)
class Decoys:
    """Ports of sockets nobody should write to, one per way of naming another address."""

    via_port: int  # top Via sent-by port, no rport (RFC 3261 §18.2.2 would answer there)
    rport_value: int  # a client-chosen rport value (RFC 3581 §4: the client sends it empty)
    received: int  # on LOOPBACK_OTHER: a client-written received= parameter
    maddr: int  # on LOOPBACK_OTHER: maddr= in the top Via
    contact: int  # Contact, Record-Route of requests
    route: int  # Route: <sip:…;lr> of initial requests
    injected: int  # a Via smuggled in through a display name, folding or a bare CR/LF

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class Target:
    proxy_port: int
    decoys: Decoys
    parties: Parties = field(default_factory=Parties)


def sip_request(
    method: str,
    ruri: str,
    *,
    target: Target,
    from_: str | None = None,
    to: str | None = None,
    via: str | None = None,
    call_id: str | None = None,
    cseq: int = 1,
    extra: Sequence[str] = (),
    body: bytes = b"",
    content_type: str = "application/sdp",
    content_length: str | None = None,
    max_forwards: str = "70",
    rng: random.Random | None = None,
) -> bytes:
    """A well-formed request (unless the arguments make it otherwise) from 127.0.0.1:LPORT."""
    tag = f"{(rng or random).getrandbits(32):08x}"
    branch = f"z9hG4bK{(rng or random).getrandbits(64):016x}"
    lines = [
        f"{method} {ruri} SIP/2.0",
        via if via is not None else f"Via: SIP/2.0/UDP {LOOPBACK}:LPORT;branch={branch};rport",
        f"Max-Forwards: {max_forwards}",
        from_ if from_ is not None else f"From: <sip:scanner@{LOOPBACK}:LPORT>;tag={tag}",
        to if to is not None else f"To: <{ruri}>",
        f"Call-ID: {call_id or branch[7:]}@hostile",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:scanner@{LOOPBACK}:LPORT>",
        *extra,
    ]
    if body:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body) if content_length is None else content_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


def sdp(rng: random.Random) -> bytes:
    session = rng.getrandbits(32)
    return (
        f"v=0\r\no=- {session} {session} IN IP4 127.0.0.1\r\ns=-\r\n"
        "c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
    ).encode()


def generate_hostile(seed: int, target: Target) -> list[HostileCase]:
    """The seeded hostile set (at least 200 messages), the same bytes for the same seed."""
    rng = random.Random(seed)
    cases: list[HostileCase] = []
    for family in (framing, oversized, garbage, injection, spoofed, scanners, reflection):
        cases.extend(family(rng, target))
    return cases


def _proxy_uri(target: Target, user: str | None = None) -> str:
    host = f"{LOOPBACK}:{target.proxy_port}"
    return f"sip:{user}@{host}" if user else f"sip:{host}"


def framing(rng: random.Random, target: Target) -> Iterator[HostileCase]:
    """Broken framing (RFC 3261 §7.5, §18.3, §20.14): every one must not be accepted."""
    ruri = _proxy_uri(target)

    def options(**kwargs: object) -> bytes:
        return sip_request("OPTIONS", ruri, target=target, rng=rng, **kwargs)  # type: ignore[arg-type]

    body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"
    for index in range(4):
        whole = options(body=body)
        yield HostileCase(f"no-blank-line-{index}", "framing", whole.split(b"\r\n\r\n")[0])
        yield HostileCase(
            f"head-ends-with-one-crlf-{index}", "framing", whole.split(b"\r\n\r\n")[0] + b"\r\n"
        )
    for _ in range(8):
        whole = options(body=body)
        cut = rng.randrange(12, len(whole) - 2)
        yield HostileCase(f"truncated-at-{cut}", "framing", whole[:cut])
    for value in ("9999", "65536", "4294967296", "18446744073709551617", "1" + "0" * 40):
        yield HostileCase(
            f"huge-content-length-{value[:12]}", "framing", options(body=body, content_length=value)
        )
    for value in ("-1", "-999", "-0x10", "five", "0x20", "1e3", "+10", "", "3 3", "\t"):
        yield HostileCase(
            f"bad-content-length-{value!r}", "framing", options(body=body, content_length=value)
        )
    for first, second in (("0", str(len(body))), (str(len(body)), "0"), ("0", "1")):
        message = options(body=body, content_length=first)
        message = message.replace(
            f"Content-Length: {first}\r\n".encode(),
            f"Content-Length: {first}\r\nl: {second}\r\n".encode(),
        )
        yield HostileCase(f"duplicate-content-length-{first}-{second}", "framing", message)
    lf_only = options().replace(b"\r\n", b"\n")
    yield HostileCase("lf-only", "framing", lf_only, must_reject=False)
    yield HostileCase("cr-only", "framing", options().replace(b"\r\n", b"\r"))
    mixed = bytearray(options())
    for position in sorted(rng.sample(range(len(mixed)), 5), reverse=True):
        mixed[position : position + 1] = b"\r"
    yield HostileCase("stray-bare-cr", "framing", bytes(mixed))
    for place in ("method", "request-uri", "header-name", "version"):
        message = options()
        anchors = {
            "method": (b"OPTIONS ", b"OPT\x00IONS "),
            "request-uri": (b"sip:127", b"sip:\x00127"),
            "header-name": (b"Call-ID:", b"Call\x00ID:"),
            "version": (b" SIP/2.0\r\n", b" SIP/2\x00.0\r\n"),
        }
        old, new = anchors[place]
        yield HostileCase(f"nul-in-{place}", "framing", message.replace(old, new, 1))
    yield HostileCase("nul-prefix", "framing", b"\x00" * 16 + options())
    yield HostileCase("only-crlfs", "framing", b"\r\n" * 64)
    yield HostileCase("start-line-only", "framing", f"OPTIONS {ruri} SIP/2.0\r\n\r\n".encode())
    yield HostileCase("empty-header-name", "framing", options(extra=[": value"]))
    yield HostileCase("no-colon-header", "framing", options(extra=["Just some words"]))
    yield HostileCase(
        "folded-first-line", "framing", options().replace(b" SIP/2.0\r\n", b"\r\n SIP/2.0\r\n", 1)
    )


def oversized(rng: random.Random, target: Target) -> Iterator[HostileCase]:
    """Messages at and past the size limit: the largest UDP payload (accepted), and over
    TCP exactly 65,535 bytes (accepted) and more (513 or dropped: RFC 3261 §21.5.14)."""
    ruri = _proxy_uri(target)

    def padded(size: int) -> bytes:
        base = sip_request("OPTIONS", ruri, target=target, rng=rng, extra=["X-Pad: "])
        missing = size - len(base)
        return base.replace(b"X-Pad: ", b"X-Pad: " + b"p" * missing, 1)

    yield HostileCase("largest-udp-datagram", "oversized", padded(MAX_UDP_PAYLOAD), False)
    yield HostileCase("udp-32k", "oversized", padded(32_768), must_reject=False)
    yield HostileCase(
        "tcp-exactly-at-limit", "oversized", padded(MAX_MESSAGE), False, transport="tcp"
    )
    yield HostileCase("tcp-one-past-limit", "oversized", padded(MAX_MESSAGE + 1), transport="tcp")
    yield HostileCase("tcp-200k", "oversized", padded(200_000), transport="tcp")
    huge_body = b"a" * 60_000
    yield HostileCase(
        "udp-60k-body",
        "oversized",
        sip_request(
            "OPTIONS", ruri, target=target, rng=rng, body=huge_body, content_type="text/plain"
        ),
        must_reject=False,
    )
    many = [f"X-H{index}: {index}" for index in range(3_000)]
    yield HostileCase(
        "3000-headers",
        "oversized",
        sip_request("OPTIONS", ruri, target=target, rng=rng, extra=many),
        must_reject=False,
    )
    vias = [f"Via: SIP/2.0/UDP 10.0.{i // 250}.{i % 250};branch=z9hG4bKv{i}" for i in range(1000)]
    yield HostileCase(
        "1000-vias",
        "oversized",
        sip_request("OPTIONS", ruri, target=target, rng=rng, extra=vias),
        must_reject=False,
    )
    commas = "Route: " + ",".join(f"<sip:10.0.0.{i % 250};lr>" for i in range(2_000))
    yield HostileCase(
        "2000-route-values",
        "oversized",
        sip_request("OPTIONS", ruri, target=target, rng=rng, extra=[commas]),
        must_reject=False,
    )
    yield HostileCase(
        "huge-call-id",
        "oversized",
        sip_request("OPTIONS", ruri, target=target, rng=rng, call_id="c" * 50_000),
        must_reject=False,
    )


def garbage(rng: random.Random, target: Target) -> Iterator[HostileCase]:
    """Non-SIP bytes and other protocols aimed at the SIP port: never a 2xx."""
    for index in range(24):
        size = rng.choice((1, 2, 3, 4, 8, 16, 100, 512, 1400, 4000))
        yield HostileCase(f"random-{index}-{size}", "garbage", rng.randbytes(size))
    for index in range(6):
        text = "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randrange(10, 600)))
        yield HostileCase(f"printable-{index}", "garbage", text.encode())
    yield HostileCase("zeros", "garbage", bytes(1000))
    yield HostileCase("ones", "garbage", b"\xff" * 1000)
    yield HostileCase("one-space", "garbage", b" ")
    yield HostileCase("keepalive-crlf", "garbage", b"\r\n\r\n")
    yield HostileCase(
        "http-get", "garbage", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl\r\n\r\n"
    )
    yield HostileCase(
        "http-post",
        "garbage",
        b"POST /v1/bindings HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    )
    yield HostileCase("http-connect", "garbage", b"CONNECT 127.0.0.1:22 HTTP/1.0\r\n\r\n")
    dns = struct.pack(">HHHHHH", rng.getrandbits(16), 0x0100, 1, 0, 0, 0)
    dns += b"\x07example\x03com\x00" + struct.pack(">HH", 1, 1)
    yield HostileCase("dns-query", "garbage", dns)
    stun = struct.pack(">HHI", 0x0001, 0, 0x2112A442) + rng.randbytes(12)
    yield HostileCase("stun-binding-request", "garbage", stun)
    yield HostileCase(
        "stun-with-attributes",
        "garbage",
        struct.pack(">HHI", 0x0001, 8, 0x2112A442) + rng.randbytes(12) + b"\x80\x22\x00\x04abcd",
    )
    client_hello = (
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"
        + rng.randbytes(32)
        + b"\x00\x00\x20"
        + rng.randbytes(32)
        + b"\x01\x00\x00\x58"
        + rng.randbytes(88)
    )
    yield HostileCase("tls-client-hello", "garbage", client_hello)
    yield HostileCase("dtls-client-hello", "garbage", b"\x16\xfe\xff" + rng.randbytes(120))
    for index in range(6):
        header = struct.pack(
            ">BBHII", 0x80, rng.choice((0, 8, 0x80, 18)), index, index * 160, 0xDEADBEEF
        )
        yield HostileCase(f"rtp-{index}", "garbage", header + rng.randbytes(160))
    yield HostileCase("rtcp-sr", "garbage", b"\x80\xc8\x00\x06" + rng.randbytes(24))
    yield HostileCase(
        "response-no-transaction",
        "garbage",
        (
            "SIP/2.0 200 OK\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:LPORT;branch=z9hG4bKnotours\r\n"
            "From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: stray@hostile\r\n"
            "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        ).encode(),
    )
    yield HostileCase(
        "sip-looking-http-hybrid",
        "garbage",
        f"OPTIONS {_proxy_uri(target)} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    )
    yield HostileCase("utf8-noise", "garbage", ("☎" * 300).encode())


def injection(rng: random.Random, target: Target) -> Iterator[HostileCase]:
    """Header injection through display names, folding and bare CR/LF (RFC 3261 §7.3.1,
    §25.1): a smuggled Via points at the ``injected`` decoy, a smuggled header carries
    MARKER; neither may take effect."""
    parties = target.parties
    decoy = target.decoys.injected
    smuggled_via = f"Via: SIP/2.0/UDP {LOOPBACK}:{decoy};branch=z9hG4bK{MARKER}"
    smuggled = (smuggled_via, f"X-{MARKER}: 1", f"P-Asserted-Identity: <sip:{parties.a2}@h>")
    breaks = ("\r\n", "\n", "\r", "\r\n ", "\r\n\t")
    ruri_options = _proxy_uri(target)
    ruri_invite = _proxy_uri(target, parties.x)
    index = 0
    for method in ("OPTIONS", "INVITE"):
        ruri = ruri_options if method == "OPTIONS" else ruri_invite
        caller = parties.a if method == "INVITE" else "scanner"
        for line_break in breaks:
            for header in smuggled:
                index += 1
                tag = f"{rng.getrandbits(32):x}"
                display = f'"x{line_break}{header}"'
                placement = rng.choice(("from", "to", "contact"))
                from_ = f"From: <sip:{caller}@{LOOPBACK}:LPORT>;tag={tag}"
                to = f"To: <{ruri}>"
                extra: list[str] = []
                if placement == "from":
                    from_ = f"From: {display} <sip:{caller}@{LOOPBACK}:LPORT>;tag={tag}"
                elif placement == "to":
                    to = f"To: {display} <{ruri}>"
                else:
                    extra.append(f"Contact: {display} <sip:{caller}@{LOOPBACK}:LPORT>")
                # A folded continuation ("\r\n " or "\r\n\t") is legal LWS (§7.3.1): the
                # message may be accepted, but the smuggled text stays inside the value.
                folded = line_break.startswith("\r\n") and len(line_break) == 3
                body = sdp(rng) if method == "INVITE" else b""
                yield HostileCase(
                    f"{method.lower()}-display-name-{placement}-{index}",
                    "injection",
                    sip_request(
                        method,
                        ruri,
                        target=target,
                        rng=rng,
                        from_=from_,
                        to=to,
                        extra=extra,
                        body=body,
                    ),
                    must_reject=method == "INVITE" or not folded,
                    routes_to=parties.b if method == "INVITE" and placement != "from" else None,
                )
    for line_break in ("\r\n ", "\r\n\t", "\r\n   \t "):
        for header in smuggled:
            index += 1
            yield HostileCase(
                f"folded-subject-{index}",
                "injection",
                sip_request(
                    "OPTIONS",
                    ruri_options,
                    target=target,
                    rng=rng,
                    extra=[f"Subject: hello{line_break}{header}"],
                ),
                must_reject=False,
            )
    for header in smuggled:
        index += 1
        yield HostileCase(
            f"uri-header-injection-{index}",
            "injection",
            sip_request(
                "OPTIONS",
                ruri_options,
                target=target,
                rng=rng,
                extra=[f"Contact: <sip:x@{LOOPBACK}:LPORT?{header.replace(': ', '=')}>"],
            ),
            must_reject=False,
        )
    index += 1
    yield HostileCase(
        f"escaped-crlf-display-{index}",
        "injection",
        sip_request(
            "INVITE",
            ruri_invite,
            target=target,
            rng=rng,
            from_=f'From: "x%0d%0a{smuggled_via}" <sip:{parties.a}@h>;tag=1',
            body=sdp(rng),
        ),
        routes_to=parties.b,
    )


def spoofed(rng: random.Random, target: Target) -> Iterator[HostileCase]:
    """Spoofed identities (RFC 3325 §9.1: only a trusted peer's P-Asserted-Identity is
    believed). Only the INVITEs from A or B to X may reach the trunk."""
    parties = target.parties
    ruri_x2 = _proxy_uri(target, parties.x2)
    ruri_x = _proxy_uri(target, parties.x)

    def invite(ruri: str, from_user: str, extra: Sequence[str] = (), **kw: object) -> bytes:
        return sip_request(
            "INVITE",
            ruri,
            target=target,
            rng=rng,
            from_=f"From: <sip:{from_user}@{LOOPBACK}>;tag={rng.getrandbits(32):x}",
            extra=extra,
            body=sdp(rng),
            **kw,  # type: ignore[arg-type]
        )

    identity_headers = (
        "P-Asserted-Identity: <sip:{n}@127.0.0.1;user=phone>",
        "P-Asserted-Identity: <tel:{e}>",
        "P-Preferred-Identity: <sip:{n}@127.0.0.1>",
        'Remote-Party-ID: "A" <sip:{n}@127.0.0.1>;party=calling;privacy=off;screen=yes',
        "P-Asserted-Identity: <sip:{n}@127.0.0.1>, <tel:{e}>",
    )
    for claimed in (parties.a2, parties.b2):
        for template in identity_headers:
            header = template.format(n=claimed, e=e164(claimed))
            yield HostileCase(
                f"untrusted-identity-{claimed[-4:]}-{header.split(':')[0]}",
                "spoof",
                invite(ruri_x2, parties.stranger, [header]),
            )
    for from_user in (parties.a, parties.b, e164(parties.a)):
        yield HostileCase(f"from-{from_user[-4:]}-to-x2", "spoof", invite(ruri_x2, from_user))
    yield HostileCase("from-a2-to-x", "spoof", invite(ruri_x, parties.a2))
    yield HostileCase("from-stranger-to-x", "spoof", invite(ruri_x, parties.stranger))
    yield HostileCase(
        "stranger-with-a-in-to",
        "spoof",
        invite(ruri_x, parties.stranger, to=f"To: <sip:{parties.a}@h>"),
    )
    yield HostileCase(
        "stranger-with-a-in-display-name",
        "spoof",
        sip_request(
            "INVITE",
            ruri_x,
            target=target,
            rng=rng,
            from_=f'From: "{parties.a}" <sip:{parties.stranger}@{LOOPBACK}>;tag=1',
            body=sdp(rng),
        ),
    )
    # The bound parties themselves (From is all an untrusted peer has, §9.1): these may
    # reach the trunk, and their answers must not show the other party.
    for from_user, callee in (
        (parties.a, parties.b),
        (e164(parties.a), parties.b),
        (f"00{e164(parties.a)[1:]}", parties.b),
        (parties.b, parties.a),
    ):
        yield HostileCase(
            f"bound-{from_user}-calls-x", "spoof", invite(ruri_x, from_user), routes_to=callee
        )
    yield HostileCase(
        "bound-a-tel-from",
        "spoof",
        sip_request(
            "INVITE",
            f"tel:{parties.x}",
            target=target,
            rng=rng,
            from_=f"From: <tel:+86-138-0013-8000>;tag={rng.getrandbits(32):x}",
            body=sdp(rng),
        ),
        routes_to=parties.b,
    )


SCANNER_AGENTS = (
    "friendly-scanner",
    "sipvicious",
    "sipcli/v1.8",
    "VaxSIPUserAgent/3.1",
    "pplsip",
    "sundayddr",
    "Asterisk PBX",
    "SIPScan",
    "sip-scan",
    "iWar",
)


def scanners(rng: random.Random, target: Target) -> Iterator[HostileCase]:
    """What sipvicious (svmap, svwar, svcrack) and friends send: OPTIONS and REGISTER
    sweeps over extensions, INVITEs to random numbers, other methods outside a dialog."""
    parties = target.parties
    for index in range(20):
        agent = rng.choice(SCANNER_AGENTS)
        user = str(rng.randrange(100, 10_000))
        yield HostileCase(
            f"options-sweep-{index}",
            "scanner",
            sip_request(
                "OPTIONS",
                _proxy_uri(target, user),
                target=target,
                rng=rng,
                extra=[f"User-Agent: {agent}", "Accept: application/sdp"],
            ),
            must_reject=False,
        )
    for index in range(20):
        agent = rng.choice(SCANNER_AGENTS)
        user = str(rng.randrange(100, 10_000))
        extra = [f"User-Agent: {agent}", "Expires: 3600"]
        if index % 3 == 0:
            extra.append(
                f'Authorization: Digest username="{user}",realm="x",nonce="n",'
                f'uri="sip:{LOOPBACK}",response="{rng.getrandbits(128):032x}"'
            )
        yield HostileCase(
            f"register-sweep-{index}",
            "scanner",
            sip_request(
                "REGISTER",
                f"sip:{LOOPBACK}:{target.proxy_port}",
                target=target,
                rng=rng,
                from_=f"From: <sip:{user}@{LOOPBACK}>;tag={rng.getrandbits(32):x}",
                to=f"To: <sip:{user}@{LOOPBACK}>",
                extra=extra,
            ),
            expect_status=405,
            require_allow=True,
        )
    bound = {parties.x, parties.x2}
    for index in range(15):
        x = "700" + "".join(str(rng.randrange(10)) for _ in range(12))
        if x in bound:
            continue
        yield HostileCase(
            f"invite-random-700-{index}",
            "scanner",
            sip_request(
                "INVITE",
                _proxy_uri(target, x),
                target=target,
                rng=rng,
                from_=f"From: <sip:{parties.stranger}@{LOOPBACK}>;tag={index}",
                extra=[f"User-Agent: {rng.choice(SCANNER_AGENTS)}"],
                body=sdp(rng),
            ),
        )
    for index, user in enumerate(
        (
            "100",
            "0011972592",
            "9011441234567",
            "00972",
            "+13125550100",
            parties.b,
            "1000",
            "70012345678901",
            "7001234567890123",
            "800123456789012",
            parties.x_free,
        )
    ):
        yield HostileCase(
            f"invite-non-privacy-{index}",
            "scanner",
            sip_request(
                "INVITE",
                _proxy_uri(target, user),
                target=target,
                rng=rng,
                from_=f"From: <sip:{rng.randrange(100, 999)}@{LOOPBACK}>;tag={index}",
                extra=["User-Agent: friendly-scanner"],
                body=sdp(rng),
            ),
        )
    for method in ("SUBSCRIBE", "NOTIFY", "MESSAGE", "REFER", "PUBLISH", "PRACK", "FOO"):
        yield HostileCase(
            f"out-of-dialog-{method.lower()}",
            "scanner",
            sip_request(
                method,
                _proxy_uri(target, "100"),
                target=target,
                rng=rng,
                extra=["User-Agent: sipvicious", "Event: presence"],
            ),
            require_allow=True,
        )
    for method in ("BYE", "CANCEL", "ACK"):
        yield HostileCase(
            f"stray-{method.lower()}",
            "scanner",
            sip_request(method, _proxy_uri(target, parties.x), target=target, rng=rng),
        )


def reflection(rng: random.Random, target: Target) -> Iterator[HostileCase]:
    """Requests that name another address for the answer. Per the issue, the proxy
    answers only the address the request came from; each way has its own decoy."""
    decoys = target.decoys
    ruri = _proxy_uri(target)
    ruri_x = _proxy_uri(target, target.parties.x)

    def branch() -> str:
        return f"z9hG4bK{rng.getrandbits(48):x}"

    vias = {
        "via_port": f"Via: SIP/2.0/UDP {LOOPBACK}:{decoys.via_port};branch={{b}}",
        "rport_value": f"Via: SIP/2.0/UDP {LOOPBACK}:LPORT;branch={{b}};rport={decoys.rport_value}",
        "received": (
            f"Via: SIP/2.0/UDP {LOOPBACK}:{decoys.received};branch={{b}};received={LOOPBACK_OTHER}"
        ),
        "maddr": (
            f"Via: SIP/2.0/UDP {LOOPBACK}:{decoys.maddr};branch={{b}};maddr={LOOPBACK_OTHER}"
        ),
    }
    for name, via in vias.items():
        for method in ("OPTIONS", "INVITE", "REGISTER"):
            uri = ruri_x if method == "INVITE" else ruri
            yield HostileCase(
                f"reflect-{name}-{method.lower()}",
                "reflection",
                sip_request(
                    method,
                    uri,
                    target=target,
                    rng=rng,
                    via=via.format(b=branch()),
                    from_=f"From: <sip:{target.parties.stranger}@{LOOPBACK}>;tag=r",
                    body=sdp(rng) if method == "INVITE" else b"",
                ),
                must_reject=method != "OPTIONS",
            )
    elsewhere = [
        f"Contact: <sip:{LOOPBACK}:{decoys.contact}>",
        f"Record-Route: <sip:{LOOPBACK}:{decoys.contact};lr>",
        f"Route: <sip:{LOOPBACK}:{decoys.route};lr>",
        f"Reply-To: <sip:{LOOPBACK}:{decoys.contact}>",
    ]
    for from_user, routes_to in ((target.parties.a, target.parties.b), ("scanner", None)):
        for method in ("OPTIONS", "INVITE"):
            message = sip_request(
                method,
                ruri_x if method == "INVITE" else ruri,
                target=target,
                rng=rng,
                from_=f"From: <sip:{from_user}@{LOOPBACK}>;tag=c",
                extra=elsewhere,
                body=sdp(rng) if method == "INVITE" else b"",
            ).replace(f"Contact: <sip:scanner@{LOOPBACK}:LPORT>\r\n".encode(), b"", 1)
            yield HostileCase(
                f"reflect-contact-route-{method.lower()}-{from_user}",
                "reflection",
                message,
                must_reject=method == "INVITE",
                routes_to=routes_to if method == "INVITE" else None,
            )


# -- the torture corpus -----------------------------------------------------------------


def torture_cases(directory: Path = TORTURE_DIR) -> list[HostileCase]:
    """Every file of the RFC 4475/5118 corpus, with ``must_reject`` from index.tsv."""
    cases = []
    with (directory / "index.tsv").open(newline="") as index:
        for row in csv.DictReader(index, delimiter="\t"):
            path = directory / row["class"] / f"{row['name']}.sip"
            cases.append(
                HostileCase(
                    f"{row['class']}/{row['name']}",
                    "torture",
                    path.read_bytes(),
                    must_reject=row["no2xx"] == "yes",
                )
            )
    return cases


def torture_via_ports(cases: Iterable[HostileCase]) -> set[int]:
    """Ports that the torture files' top Vias name on a host that is not ours: a strict
    RFC 3261 §18.2.2 element answers there (5060 when no port is written)."""
    ports = set()
    for case in cases:
        match = re.search(
            rb"^(?:Via|v)\s*:\s*SIP\s*/\s*2\.0\s*/\s*UDP\s+(\S+?)(?:;|\r|\s)",
            case.data,
            re.IGNORECASE | re.MULTILINE,
        )
        if match is None:
            continue
        host = match.group(1).decode("latin-1")
        port_match = re.search(r"(?:\]|^[^:\[]*):(\d+)$", host)
        ports.add(int(port_match.group(1)) if port_match else 5060)
    return ports


# -- the UDP harness --------------------------------------------------------------------

STATUS_LINE = re.compile(rb"^SIP/2\.0 (\d{3}) ")


def status_of(data: bytes) -> int | None:
    match = STATUS_LINE.match(data)
    return int(match.group(1)) if match else None


def header_values(data: bytes, name: str, compact: str | None = None) -> list[str]:
    """Values of a header in a reply (the proxy's own output is well formed)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    names = {name.lower(), (compact or name).lower()}
    values = []
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() in names:
            values.append(value.strip())
    return values


def bind_udp(host: str = LOOPBACK, port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


@dataclass
class Received:
    """A datagram one of our sockets got, and when (monotonic)."""

    data: bytes
    source: tuple[str, int]
    at: float


@dataclass
class SocketSet:
    """Many sockets read together: each keeps what it received."""

    sockets: dict[str, socket.socket] = field(default_factory=dict)
    inbox: dict[str, list[Received]] = field(default_factory=dict)
    on_receive: dict[str, Callable[[socket.socket, Received], None]] = field(default_factory=dict)

    def add(self, name: str, sock: socket.socket) -> socket.socket:
        self.sockets[name] = sock
        self.inbox[name] = []
        return sock

    def port(self, name: str) -> int:
        port: int = self.sockets[name].getsockname()[1]
        return port

    def poll(self, timeout: float) -> int:
        """Read whatever arrives within ``timeout`` seconds; the number of datagrams."""
        by_fd = {sock.fileno(): name for name, sock in self.sockets.items()}
        count = 0
        deadline = time.monotonic() + timeout
        poller = select.poll()
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        while True:
            remaining = deadline - time.monotonic()
            events = poller.poll(max(0.0, remaining) * 1000)
            if not events and remaining <= 0:
                return count
            for fd, _ in events:
                name = by_fd[fd]
                sock = self.sockets[name]
                while True:
                    try:
                        data, source = sock.recvfrom(1 << 17)
                    except (BlockingIOError, InterruptedError):
                        break
                    except ConnectionRefusedError:
                        continue
                    item = Received(data, source, time.monotonic())
                    self.inbox[name].append(item)
                    count += 1
                    handler = self.on_receive.get(name)
                    if handler is not None:
                        handler(sock, item)
            if remaining <= 0:
                return count

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()


def send_tcp(port: int, data: bytes, timeout: float = 2.0) -> bytes:
    """Send ``data`` on a fresh TCP connection and return what came back before the
    proxy closed it or ``timeout`` passed (a reset counts as closed)."""
    received = b""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return received
        sock.settimeout(0.2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(1 << 16)
            except TimeoutError:
                if received:
                    break
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    return received


def split_stream(data: bytes) -> list[bytes]:
    """SIP messages in a TCP byte stream (heads end at a blank line; bodies by CL)."""
    messages = []
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            messages.append(data)
            break
        head = data[: end + 4]
        lengths = header_values(head, "Content-Length", "l")
        length = int(lengths[0]) if lengths and lengths[0].isdigit() else 0
        messages.append(data[: end + 4 + length])
        data = data[end + 4 + length :]
    return messages


def rss_kib(pid: int) -> int:
    """Resident set size of a process (``VmRSS`` in /proc/PID/status), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def options_bytes(proxy_port: int, local_port: int, serial: int) -> bytes:
    """A minimal, valid keepalive OPTIONS (new branch and Call-ID each time)."""
    return (
        f"OPTIONS sip:{LOOPBACK}:{proxy_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOOPBACK}:{local_port};branch=z9hG4bK-mem-{serial};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:mem@{LOOPBACK}:{local_port}>;tag=m{serial}\r\n"
        f"To: <sip:{LOOPBACK}:{proxy_port}>\r\n"
        f"Call-ID: mem-{serial}@{LOOPBACK}\r\n"
        f"CSeq: {serial % 2_000_000_000 + 1} OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


@dataclass(frozen=True, slots=True)
class FloodResult:
    sent_options: int
    answered_options: int
    ok_options: int
    sent_garbage: int
    answered_garbage: int
    seconds: float


def flood(
    proxy_port: int,
    *,
    options: int,
    garbage_datagrams: int,
    seed: int,
    window: int = 64,
    senders: int = 4,
    reply_timeout: float = 2.0,
    rate: float | None = None,
) -> FloodResult:
    """Send ``options`` OPTIONS (at most ``window`` unanswered at a time, so no socket
    buffer overflows) interleaved with ``garbage_datagrams`` random datagrams from
    ``senders`` sockets, at most ``rate`` OPTIONS a second; count the replies.

    The rate matters for memory: every OPTIONS transaction lives Timer J (64·T1) after
    its answer, so the number alive, and with it the heap's high-water mark, is
    rate × Timer J."""
    rng = random.Random(seed)
    option_socks = [bind_udp() for _ in range(senders)]
    garbage_sock = bind_udp()
    ports = [sock.getsockname()[1] for sock in option_socks]
    poller = select.poll()
    for sock in option_socks:
        poller.register(sock.fileno(), select.POLLIN)
    by_fd = {sock.fileno(): sock for sock in option_socks}
    garbage_every = max(1, options // garbage_datagrams) if garbage_datagrams else 0
    sent = answered = ok = garbage_sent = 0
    outstanding = 0
    started = time.monotonic()
    last_progress = started
    try:
        while sent < options or outstanding > 0:
            while sent < options and outstanding < window:
                if rate is not None and sent / rate > time.monotonic() - started:
                    break
                index = sent % senders
                option_socks[index].sendto(
                    options_bytes(proxy_port, ports[index], sent), (LOOPBACK, proxy_port)
                )
                sent += 1
                outstanding += 1
                if garbage_every and sent % garbage_every == 0 and garbage_sent < garbage_datagrams:
                    garbage_sock.sendto(
                        rng.randbytes(rng.randrange(1, 1200)), (LOOPBACK, proxy_port)
                    )
                    garbage_sent += 1
            events = poller.poll(5 if rate is not None else 50)
            for fd, _ in events:
                while True:
                    try:
                        data = by_fd[fd].recv(1 << 16)
                    except BlockingIOError:
                        break
                    answered += 1
                    outstanding -= 1
                    ok += data.startswith(b"SIP/2.0 200 ")
                    last_progress = time.monotonic()
            if not events and time.monotonic() - last_progress > reply_timeout:
                outstanding = 0  # lost: stop waiting for them, keep sending
                last_progress = time.monotonic()
        while garbage_sent < garbage_datagrams:
            garbage_sock.sendto(rng.randbytes(rng.randrange(1, 1200)), (LOOPBACK, proxy_port))
            garbage_sent += 1
            if garbage_sent % window == 0:
                time.sleep(0.001)
        # Anything the garbage drew back (nothing is expected) arrives now.
        time.sleep(0.2)
        garbage_answers = 0
        while True:
            try:
                garbage_sock.recv(1 << 16)
            except BlockingIOError:
                break
            garbage_answers += 1
    finally:
        for sock in (*option_socks, garbage_sock):
            sock.close()
    return FloodResult(
        sent, answered, ok, garbage_sent, garbage_answers, time.monotonic() - started
    )


def as_mapping(result: FloodResult) -> Mapping[str, float]:
    return {name: getattr(result, name) for name in result.__slots__}


# -- the barrage --------------------------------------------------------------------------


def busy_answer(request: bytes, identity: str) -> bytes:
    """A 486 from the trunk to a B-leg INVITE, carrying the callee's real number in every
    identity header (the proxy must strip it before the caller sees the answer)."""
    head = request.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    copied = [
        line
        for line in head[1:]
        if line.split(":", 1)[0].strip().lower()
        in ("via", "v", "from", "f", "call-id", "i", "cseq")
    ]
    to = next(line for line in head[1:] if line.split(":", 1)[0].strip().lower() in ("to", "t"))
    lines = [
        "SIP/2.0 486 Busy Here",
        *copied,
        f"{to};tag=trunk{abs(hash(request)) % 10**8}",
        f'Contact: "{identity}" <sip:{identity}@{LOOPBACK}>',
        f"P-Asserted-Identity: <sip:{identity}@{LOOPBACK};user=phone>, <tel:+86{identity}>",
        f"Remote-Party-ID: <sip:+86{identity}@{LOOPBACK}>;party=called",
        f'Warning: 399 {LOOPBACK} "{identity} is busy"',
        f"Server: phone-{identity}",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def request_user(request: bytes) -> str | None:
    """The user part of a request's Request-URI."""
    line = request.split(b"\r\n", 1)[0].decode("latin-1")
    match = re.match(r"^[A-Z]+ (?:sips?|tel):(?:\+?86)?([^@;> ]+)", line)
    return match.group(1) if match else None


@dataclass
class Outcome:
    case: HostileCase
    sent: bytes
    replies: list[bytes]


@dataclass
class Barrage:
    """What a run of hostile cases drew back, and what reached sockets nobody wrote to."""

    outcomes: list[Outcome]
    decoys: dict[str, list[Received]]
    trunk: list[Received]
    unavailable_decoys: list[int]

    @property
    def sent(self) -> int:
        return len(self.outcomes)

    @property
    def answered(self) -> int:
        return sum(1 for outcome in self.outcomes if outcome.replies)


def open_decoys() -> tuple[SocketSet, Decoys]:
    sockets = SocketSet()
    names = Decoys.__slots__
    ports = {}
    for name in names:
        host = LOOPBACK_OTHER if name in ("received", "maddr") else LOOPBACK
        ports[name] = sockets.add(f"decoy:{name}", bind_udp(host)).getsockname()[1]
    return sockets, Decoys(**ports)


def run_barrage(
    target: Target,
    cases: Sequence[HostileCase],
    sockets: SocketSet,
    *,
    trunk_identity: str,
    extra_decoy_ports: Iterable[int] = (),
    pace_s: float = 0.003,
    settle_s: float = 1.5,
) -> Barrage:
    """Send every case from its own socket (UDP) or connection (TCP), answering B-leg
    INVITEs that reach the ``trunk`` socket with a 486; collect everything."""
    unavailable = []
    for port in sorted(set(extra_decoy_ports)):
        if f"decoy:{port}" in sockets.sockets:
            continue
        try:
            sockets.add(f"decoy:{port}", bind_udp(LOOPBACK, port))
        except OSError:
            unavailable.append(port)
    trunk = sockets.sockets["trunk"]
    trunk_peer: dict[str, tuple[str, int]] = {}

    def answer(sock: socket.socket, item: Received) -> None:
        if item.data.startswith(b"INVITE "):
            trunk_peer["last"] = item.source
            sock.sendto(busy_answer(item.data, trunk_identity), item.source)

    sockets.on_receive["trunk"] = answer
    outcomes: list[Outcome] = []
    tcp_replies: dict[int, list[bytes]] = {}
    for index, case in enumerate(cases):
        if case.transport == "tcp":
            data = case.render(0)
            outcomes.append(Outcome(case, data, []))
            tcp_replies[index] = split_stream(send_tcp(target.proxy_port, data))
        else:
            sock = sockets.add(f"case:{index}", bind_udp())
            data = case.render(sock.getsockname()[1])
            outcomes.append(Outcome(case, data, []))
            try:
                sock.sendto(data, (LOOPBACK, target.proxy_port))
            except OSError as error:
                raise AssertionError(f"cannot send {case.name}: {error}") from None
        sockets.poll(pace_s)
    sockets.poll(settle_s)
    for index, outcome in enumerate(outcomes):
        if index in tcp_replies:
            outcome.replies = tcp_replies[index]
        else:
            outcome.replies = [item.data for item in sockets.inbox[f"case:{index}"]]
    del trunk
    return Barrage(
        outcomes,
        {name: items for name, items in sockets.inbox.items() if name.startswith("decoy:")},
        sockets.inbox["trunk"],
        unavailable,
    )


def transaction_key(data: bytes) -> tuple[str, str] | None:
    """(Call-ID, CSeq) of a message, to tie a reply that went elsewhere to its request."""
    call_ids = header_values(data, "Call-ID", "i")
    cseqs = header_values(data, "CSeq")
    if not call_ids or not cseqs:
        return None
    return call_ids[0], " ".join(cseqs[0].split())


def attribute(barrage: Barrage, items: Iterable[Received]) -> list[tuple[Received, list[Outcome]]]:
    """Each datagram with the sent messages it answers (by Call-ID and CSeq)."""
    by_key: dict[tuple[str, str], list[Outcome]] = {}
    for outcome in barrage.outcomes:
        key = transaction_key(outcome.sent)
        if key is not None:
            by_key.setdefault(key, []).append(outcome)
    result = []
    for item in items:
        key = transaction_key(item.data)
        result.append((item, by_key.get(key, []) if key else []))
    return result


def first_line(data: bytes) -> bytes:
    return data.split(b"\r\n", 1)[0]
