"""Digest authentication of the peers that start calls (RFC 3261 §22, RFC 7616).

We answer INVITEs as a UAS, so the challenge is 401 with WWW-Authenticate (RFC 3261
§22.2), not a proxy's 407. Nonces are issued without state: the timestamp and a unique
value from the core's ids, sealed with an HMAC of a secret from the settings and the peer's
address, so a nonce is verified without remembering it and is good only for the peer it
was given to and only for ``nonce_lifetime_s``.

Replays are refused with state kept only for nonces that were *used*: the highest nonce
count accepted with each (RFC 7616 §3.4: a count that does not grow is a replay), and a
nonce used without ``qop`` (RFC 2069 style, no count) is spent by its first use. The
credentials must also be for this request: their ``uri`` must name the Request-URI's number
(RFC 7616 §3.4.6), or a response captured for one privacy number would place calls to
another.
The table is bounded; a nonce dropped from it while still fresh is answered with a stale
challenge from then on, never accepted again.

Pure: the secret comes from the settings, time from ``now``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from proxy.sip.errors import SipError
from proxy.sip.uri import SipUri, parse_uri

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Used nonces whose counts are kept (about 200 bytes each); beyond it the oldest are
#: dropped and their peers re-challenged.
MAX_TRACKED_NONCES: Final = 16_384

#: RFC 7616 §3.2, the algorithms and their hash functions.
ALGORITHMS: Final[dict[str, Callable[[bytes], str]]] = {
    "MD5": lambda data: hashlib.md5(data, usedforsecurity=False).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
}


@dataclass(frozen=True, slots=True)
class DigestPeer:
    """Calls from ``network`` must authenticate as ``username``/``password``."""

    network: IPNetwork
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class DigestSettings:
    realm: str = "privproxy"
    secret: bytes = b""
    peers: tuple[DigestPeer, ...] = ()
    algorithm: str = "MD5"
    nonce_lifetime_s: float = 300.0

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"digest algorithm must be one of {', '.join(ALGORITHMS)}")
        if self.peers and len(self.secret) < 16:
            raise ValueError("digest authentication needs a secret of at least 16 bytes")

    def peer_for(self, host: str) -> DigestPeer | None:
        """The entry that covers ``host``, None when it need not authenticate."""
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return None
        for peer in self.peers:
            if address in peer.network:
                return peer
        return None


@dataclass(frozen=True, slots=True)
class Challenge:
    """Answer 401 with this WWW-Authenticate (``stale``: the password was right)."""

    header: str


@dataclass(frozen=True, slots=True)
class Mismatch:
    """Credentials computed for another resource (number): answer 400 (RFC 7616 §3.4.6)."""

    reason: str


def parse_credentials(text: str) -> dict[str, str] | None:
    """The auth-params of a ``Digest`` Authorization value (RFC 3261 §25.1
    digest-response), names lower-cased; None when it is not Digest or is malformed."""
    scheme, _, rest = text.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t,":
            i += 1
        if i >= n:
            break
        eq = rest.find("=", i)
        if eq < 0:
            return None
        name = rest[i:eq].strip().lower()
        i = eq + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            value, i = _quoted(rest, i + 1)
            if value is None:
                return None
        else:
            end = rest.find(",", i)
            end = n if end < 0 else end
            value, i = rest[i:end].strip(), end
        params[name] = value
    return params


def _quoted(text: str, i: int) -> tuple[str | None, int]:
    chars: list[str] = []
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            chars.append(text[i + 1])
            i += 2
        elif char == '"':
            return "".join(chars), i + 1
        else:
            chars.append(char)
            i += 1
    return None, i


class DigestAuthenticator:
    """Challenges and checks the peers of ``settings.peers``."""

    __slots__ = ("_counts", "_forgotten_until", "settings")

    def __init__(self, settings: DigestSettings) -> None:
        self.settings = settings
        #: used nonce → the highest nonce count accepted with it (0: used without qop,
        #: spent); in order of first use
        self._counts: OrderedDict[str, int] = OrderedDict()
        #: issue time of the newest nonce dropped from ``_counts`` while still fresh:
        #: a nonce issued until then that is not in the table may have been used
        self._forgotten_until = -1

    def _seal(self, timestamp: str, unique: str, host: str) -> str:
        message = f"{timestamp}:{unique}:{host}".encode()
        return hmac.new(self.settings.secret, message, hashlib.sha256).hexdigest()[:32]

    def nonce(self, unique: str, host: str, now: float) -> str:
        timestamp = f"{int(now):x}"
        return f"{timestamp}.{unique}.{self._seal(timestamp, unique, host)}"

    def nonce_state(self, nonce: str, host: str, now: float) -> str:
        """ "fresh", "stale" (ours but too old) or "forged"."""
        parts = nonce.split(".")
        if len(parts) != 3:
            return "forged"
        timestamp, unique, seal = parts
        if not hmac.compare_digest(seal, self._seal(timestamp, unique, host)):
            return "forged"
        try:
            issued = int(timestamp, 16)
        except ValueError:
            return "forged"
        return "fresh" if 0 <= now - issued <= self.settings.nonce_lifetime_s else "stale"

    def challenge(self, unique: str, host: str, now: float, *, stale: bool = False) -> Challenge:
        """RFC 7616 §3.3: realm, nonce, algorithm, qop=auth (and stale=true)."""
        s = self.settings
        header = (
            f'Digest realm="{s.realm}", nonce="{self.nonce(unique, host, now)}", '
            f'algorithm={s.algorithm}, qop="auth"'
        )
        return Challenge(header + (", stale=true" if stale else ""))

    def check(
        self,
        method: str,
        uri: str,
        authorization: str | None,
        host: str,
        unique: str,
        now: float,
    ) -> Challenge | Mismatch | bool:
        """True: authenticated. False: wrong credentials (refuse). A ``Challenge``: none, a
        stale nonce or a replayed one (send it with 401). A ``Mismatch``: credentials whose
        ``uri`` names another number than the Request-URI ``uri`` (answer 400)."""
        peer = self.settings.peer_for(host)
        if peer is None:
            return True
        params = parse_credentials(authorization) if authorization else None
        if params is None or params.get("realm") != self.settings.realm:
            return self.challenge(unique, host, now)
        nonce = params.get("nonce", "")
        state = self.nonce_state(nonce, host, now)
        if state == "forged":
            return self.challenge(unique, host, now)
        if params.get("username") != peer.username or not self._response_ok(method, params, peer):
            return False
        if not _same_resource(params.get("uri", ""), uri):
            return Mismatch("Digest uri does not match the Request-URI")
        # Without qop the response does not cover nc: the nonce is then good for one use.
        nc = params.get("nc") if params.get("qop") == "auth" else None
        if state == "stale" or not self._first_use(nonce, nc, now):
            return self.challenge(unique, host, now, stale=True)
        return True

    def _first_use(self, nonce: str, nc: str | None, now: float) -> bool:
        """Record this use of a fresh, sealed ``nonce`` with count ``nc`` (None without
        qop); False when it is a replay, or may be one."""
        counts = self._counts
        count = int(nc, 16) if nc is not None else 0
        previous = counts.get(nonce)
        if previous is None:
            if _issued(nonce) <= self._forgotten_until:
                return False
        elif nc is None or count <= previous:
            return False
        counts[nonce] = count
        oldest = now - self.settings.nonce_lifetime_s
        while counts:
            first = next(iter(counts))
            issued = _issued(first)
            if issued >= oldest and len(counts) <= MAX_TRACKED_NONCES:
                break
            del counts[first]
            if issued >= oldest:
                self._forgotten_until = max(self._forgotten_until, issued)
        return True

    def _response_ok(self, method: str, params: dict[str, str], peer: DigestPeer) -> bool:
        """RFC 7616 §3.4.1 (qop=auth) and RFC 2617 §3.2.2.1 (no qop, RFC 2069 style)."""
        algorithm = params.get("algorithm", "MD5").upper()
        if algorithm != self.settings.algorithm:
            return False
        h = ALGORITHMS[algorithm]
        ha1 = h(f"{peer.username}:{self.settings.realm}:{peer.password}".encode())
        ha2 = h(f"{method}:{params.get('uri', '')}".encode())
        nonce = params.get("nonce", "")
        qop = params.get("qop")
        if qop is None:
            expected = h(f"{ha1}:{nonce}:{ha2}".encode())
        elif qop == "auth":
            nc, cnonce = params.get("nc", ""), params.get("cnonce", "")
            if not _is_nonce_count(nc) or not cnonce:
                return False
            expected = h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())
        else:
            return False
        return hmac.compare_digest(expected, params.get("response", "").lower())


def _is_nonce_count(text: str) -> bool:
    """nc-value = 8LHEX (RFC 7616 §3.4)."""
    return len(text) == 8 and all(char in "0123456789abcdefABCDEF" for char in text)


def _issued(nonce: str) -> int:
    """The issue time sealed into one of our nonces (``nonce_state`` has checked it)."""
    return int(nonce.partition(".")[0], 16)


def _same_resource(digest_uri: str, request_uri: str) -> bool:
    """Whether the ``uri`` of the credentials names the Request-URI's resource: for SIP the
    same scheme and user (the number dialled), for other URIs equivalence (RFC 3966 §4).
    Hosts and parameters may differ: a proxy on the way may rewrite the Request-URI, which
    is why credentials carry their own copy (RFC 2617 §3.2.2.5); the number may not."""
    if digest_uri == request_uri:
        return True
    try:
        ours, theirs = parse_uri(request_uri), parse_uri(digest_uri)
    except SipError:
        return False
    if isinstance(ours, SipUri):
        return (
            isinstance(theirs, SipUri)
            and ours.scheme == theirs.scheme
            and ours.user is not None
            and ours.user_unescaped == theirs.user_unescaped
        )
    return ours.matches(theirs)
