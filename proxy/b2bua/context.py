"""What every leg and call of one B2BUA shares: settings, the transaction layer, ids."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field

from proxy.b2bua.digest import DigestSettings
from proxy.b2bua.policy import PolicySettings
from proxy.numbers import NumberPlan
from proxy.sip.transaction import Address, TransactionLayer

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class B2buaSettings:
    """Call-control configuration (see ``proxy.config`` for where it comes from).

    ``advertise_host``/``advertise_port`` are what we write in Via, Contact, From and
    P-Asserted-Identity; ``trunk`` is where B legs are sent and ``trunk_host`` the host
    written in their Request-URI and To. ``trusted`` is the RFC 3325 trust domain (whose
    P-Asserted-Identity is believed); who may start calls at all, and how many, is
    ``policy``; ``digest`` names the peers that must authenticate (RFC 3261 §22).
    """

    advertise_host: str
    advertise_port: int
    trunk: Address
    trunk_host: str
    trunk_port: int | None = None
    plan: NumberPlan = field(default_factory=NumberPlan)
    ring_timeout: float = 60.0
    trusted: tuple[IPNetwork, ...] = ()
    user_agent: str = "privproxy"
    allow: str = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO"
    policy: PolicySettings = field(default_factory=PolicySettings)
    digest: DigestSettings = field(default_factory=DigestSettings)

    def is_trusted(self, host: str) -> bool:
        """Whether a peer's assertions (P-Asserted-Identity) are believed (RFC 3325 §2.3)."""
        return bool(self.trusted) and _in_networks(host, self.trusted)


@functools.lru_cache(maxsize=4096)
def _in_networks(host: str, networks: tuple[IPNetwork, ...]) -> bool:
    """Cached: a softswitch sends from a handful of addresses, and parsing one costs µs."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return any(address in network for network in networks)


class Ids:
    """Unique tags, Call-IDs and branches from a seed the adapter draws at start-up.

    The pure core has no randomness of its own; a random seed plus a counter is unique
    across restarts and reveals nothing about the parties.
    """

    __slots__ = ("_counter", "_seed")

    def __init__(self, seed: str) -> None:
        self._seed = seed
        self._counter = 0

    def _next(self) -> str:
        self._counter += 1
        return f"{self._seed}{self._counter:x}"

    def tag(self) -> str:
        return self._next()

    def call_id(self) -> str:
        return f"{self._next()}-pp"

    def branch(self) -> str:
        """RFC 3261 §8.1.1.7: starts with the magic cookie."""
        return f"z9hG4bK{self._next()}"

    def ref(self) -> int:
        self._counter += 1
        return self._counter


@dataclass(slots=True)
class Context:
    """The shared state handed to calls and legs."""

    settings: B2buaSettings
    layer: TransactionLayer
    ids: Ids
    #: transport → the Via we write up to its branch value (the same for every request).
    _via_heads: dict[str, str] = field(init=False, default_factory=dict)

    def via(self, transport: str, branch: str) -> str:
        """Our Via (RFC 3261 §8.1.1.7, with ``rport``, RFC 3581 §3) for a new branch."""
        head = self._via_heads.get(transport)
        if head is None:
            s = self.settings
            head = f"SIP/2.0/{transport.upper()} {s.advertise_host}:{s.advertise_port};branch="
            self._via_heads[transport] = head
        return f"{head}{branch};rport"

    def contact(self, x: str, transport: str) -> str:
        s = self.settings
        suffix = "" if transport == "udp" else f";transport={transport}"
        return f"<sip:{x}@{s.advertise_host}:{s.advertise_port}{suffix}>"

    def identity(self, x: str) -> str:
        """How we present X: From and P-Asserted-Identity of the far leg."""
        return f"<sip:{x}@{self.settings.advertise_host}>"
