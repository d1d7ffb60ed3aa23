"""Where SIP messages come from and go to: transport addresses, the response address
(symmetric, RFC 3581 §4, for every request) and Via branch identifiers (RFC 3261 §8.1.1.7).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Final

from proxy.sip.message import Request

#: The magic cookie that marks an RFC 3261 branch (§8.1.1.7); without it a request is
#: matched by the RFC 2543 rules of §17.2.3.
MAGIC_COOKIE: Final = "z9hG4bK"
DEFAULT_SIP_PORT: Final = 5060
#: Transports without their own delivery guarantee (RFC 3261 §17.1.1.2: "unreliable").
UNRELIABLE_TRANSPORTS: Final = frozenset({"udp"})


@dataclass(frozen=True, slots=True)
class Address:
    """A transport address: where a message came from or goes to.

    ``transport`` is lower-case ("udp" or "tcp"); ``host`` is an IP address as the socket
    layer writes it (IPv6 without brackets).
    """

    transport: str
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        """True for stream transports, where RFC 3261 §17 drops the retransmission timers
        and sets the wait timers D, I, J, K to zero."""
        return self.transport not in UNRELIABLE_TRANSPORTS


def _bare_host(host: str) -> str:
    """An IPv6 reference without brackets (RFC 5118 §4.5 allows both in ``received``)."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def response_destination(request: Request, source: Address) -> Address:
    """Where the responses to ``request`` go: always back to the address it came from.

    On a reliable transport that is the connection it came in on (RFC 3261 §18.2.2). On
    UDP it is symmetric response routing as RFC 3581 §4 does it for ``rport``, applied to
    every request whatever its top Via says. This departs from RFC 3261 §18.2.2 on
    purpose: a client-written ``received``, a numeric ``rport``, ``maddr`` and the sent-by
    port are ignored, because honouring them lets anybody aim our answers at a third
    address with one spoofed datagram (reflection and amplification). A softswitch sends
    from the address it listens on, and a client behind NAT needs exactly this.
    """
    return source


def stamp_received(request: Request, source: Address) -> None:
    """What the server transport writes into the top Via of a request it received
    (RFC 3261 §18.2.1, RFC 3581 §4): ``received`` with the source address when the
    sent-by host differs from it or when the client asked for ``rport``, and the source
    port in an empty ``rport``. The responses copy that Via, telling the client where
    its request came from (NAT)."""
    via = request.top_via
    wants_rport = via.rport == ""
    if _bare_host(via.host) == source.host and not wants_rport:
        return
    params = [(name, value) for name, value in via.params if name != "received"]
    if wants_rport:
        params = [(n, str(source.port) if n == "rport" else v) for n, v in params]
    host = f"[{source.host}]" if ":" in source.host else source.host
    params.append(("received", host))
    request.replace_top_via(str(replace(via, params=tuple(params))))


def make_branch(seed: str) -> str:
    """A Via branch for a new client transaction (RFC 3261 §8.1.1.7).

    The pure core has no randomness source, so the caller supplies a seed that is unique
    for the process (an instance id and a counter, say). The seed is hashed so that
    whatever it contains — a Call-ID, a counter — does not show in the Via, and so that
    the result is a plain token. Equal seeds give equal branches.
    """
    digest = hashlib.blake2b(seed.encode("utf-8", "surrogateescape"), digest_size=12)
    return MAGIC_COOKIE + digest.hexdigest()
