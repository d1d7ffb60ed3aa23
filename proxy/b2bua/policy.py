"""Who may start calls and how many: access control, rate limits and anti-fraud (issue #6).

Pure: no clock, no I/O. Time comes in as ``now`` and every structure is bounded, so a
flood of spoofed sources or callers costs a fixed amount of memory.

Every refusal is a ``Refusal`` carrying the SIP answer it implies and the ``reject_reason``
its call record gets:

- an untrusted peer starting a call: 403 Forbidden (RFC 3261 §21.4.4: authorisation will
  not help), ``untrusted_peer`` — or, with ``untrusted_calls = "drop"``, no answer at all,
  so that a scanner learns nothing; the attempt is still recorded and counted;
- a token bucket (per source address, per caller) empty: 503 Service Unavailable with
  Retry-After (RFC 3261 §21.5.4: the server is *temporarily* unable to take the request,
  and Retry-After says when to try again), ``rate_limited``. Not 486: nobody was busy — the
  callee was never contacted, and a 486 would be recorded and billed as a busy callee;
- a caller dialling many distinct privacy numbers within a window (a marketing sweep, which
  700 numbers must never carry): 403, ``blocked``, and every call of that caller is refused
  the same way until the block ends;
- a number on the blocklist (the adapter looks it up): 403, ``blocked``;
- a binding already carrying its cap of concurrent calls: 486 Busy Here (RFC 3261
  §21.4.24: the end system "is not willing or able to take additional calls"; that is
  exactly a capacity limit, and a caller's UA treats it as busy, not as an error),
  ``rate_limited``: a limit on volume, not a verdict on the caller as ``blocked`` is.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Final, Literal

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
UntrustedCalls = Literal["reject", "drop"]

#: Loopback only: ``make run`` and the SIPp tests on 127.0.0.1 work out of the box, and a
#: deployment must name its softswitches before anybody else can start a call.
LOOPBACK: Final[tuple[IPNetwork, ...]] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)
UNTRUSTED_CALLS: Final = ("reject", "drop")
#: Peer addresses whose verdict ``CallPolicy.may_call`` keeps.
_PEER_VERDICTS_KEPT: Final = 4096


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """The knobs; a rate or a threshold of 0 switches that limit off.

    Rates are call starts per second, bursts the bucket size (calls accepted at once).
    """

    #: Who may start calls. Separate from the RFC 3325 trust domain (``B2buaSettings.trusted``,
    #: whose P-Asserted-Identity is believed): a peer may place calls without being trusted to
    #: assert who is calling.
    peers: tuple[IPNetwork, ...] = LOOPBACK
    untrusted_calls: UntrustedCalls = "reject"
    #: Off by default: a softswitch sends every call of its trunk from one address and one
    #: test number may place hundreds of calls a second in a load test. Suggested for a
    #: live trunk: source 200/s burst 400 (a flood guard, not a trunk limit), caller 0.1/s
    #: burst 5 (one real number rarely starts more than a call every ten seconds).
    source_rate: float = 0.0
    source_burst: float = 400.0
    caller_rate: float = 0.0
    caller_burst: float = 5.0
    #: On by default (700 numbers never carry marketing calls): ``fraud_distinct_x``
    #: distinct privacy numbers within ``fraud_window_s`` block the caller for
    #: ``fraud_block_s``.
    fraud_distinct_x: int = 5
    fraud_window_s: float = 60.0
    fraud_block_s: float = 3600.0
    #: Concurrent calls one binding may carry (0: no cap; a load test runs one binding).
    max_calls_per_binding: int = 0
    #: Most keys (sources, callers) each structure keeps; beyond, the idlest are forgotten.
    max_tracked: int = 100_000

    def __post_init__(self) -> None:
        if self.untrusted_calls not in UNTRUSTED_CALLS:
            raise ValueError(f"untrusted_calls must be one of {', '.join(UNTRUSTED_CALLS)}")
        numbers = (
            self.source_rate,
            self.source_burst,
            self.caller_rate,
            self.caller_burst,
            self.fraud_window_s,
            self.fraud_block_s,
        )
        if any(not math.isfinite(n) or n < 0 for n in numbers):
            raise ValueError("rates, bursts and times must be finite and not negative")
        if self.fraud_distinct_x < 0 or self.max_calls_per_binding < 0 or self.max_tracked < 1:
            raise ValueError("thresholds must not be negative and max_tracked positive")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Refuse a call: answer ``status`` (unless ``drop``) and record ``cause``."""

    status: int
    reason: str
    cause: str
    retry_after: int | None = None
    drop: bool = False

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """RFC 3261 §20.33: Retry-After in delta-seconds."""
        return () if self.retry_after is None else (("Retry-After", str(self.retry_after)),)


UNTRUSTED = Refusal(403, "Forbidden", "untrusted_peer")
UNTRUSTED_DROPPED = Refusal(403, "Forbidden", "untrusted_peer", drop=True)
BLOCKED = Refusal(403, "Forbidden", "blocked")
BINDING_BUSY = Refusal(486, "Busy Here", "rate_limited")


def rate_limited(wait_s: float) -> Refusal:
    """503 with the whole seconds until the bucket has a token again (at least 1)."""
    return Refusal(
        503, "Service Unavailable", "rate_limited", retry_after=max(1, math.ceil(wait_s))
    )


def in_networks(host: str, networks: tuple[IPNetwork, ...]) -> bool:
    """Whether ``host`` (an IP address, IPv6 with or without brackets) is in ``networks``."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return any(address in network for network in networks)


class TokenBuckets:
    """Keyed token buckets: ``rate`` tokens a second up to ``burst``, one per call start.

    Memory is bounded by ``max_keys``: buckets are kept least recently used first, a bucket
    that has refilled completely is the same as no bucket and is dropped from the front as
    time passes, and when the table is full the least recently used bucket goes (its key at
    worst gets a fresh burst, never less than its due).
    """

    __slots__ = ("_buckets", "_full_after", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: float, *, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.max_keys = max_keys
        #: key → (tokens, at); ordered by last use
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()
        self._full_after = self.burst / rate if rate > 0 else math.inf

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: Hashable, now: float) -> float:
        """Spend a token of ``key``'s bucket: 0.0 when there was one, otherwise the seconds
        until there will be one (nothing is spent). A rate of 0 never limits."""
        if self.rate <= 0:
            return 0.0
        self._evict_idle(now)
        entry = self._buckets.pop(key, None)
        if entry is None:
            tokens = self.burst
        else:
            stored, at = entry
            tokens = min(self.burst, stored + max(0.0, now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait

    def _evict_idle(self, now: float) -> None:
        """Drop buckets, oldest use first, that would be full by now."""
        buckets = self._buckets
        while buckets:
            key, (_, at) = next(iter(buckets.items()))
            if now - at < self._full_after:
                return
            del buckets[key]


class DialPatternGuard:
    """The marketing pattern: one caller dialling ``threshold`` distinct privacy numbers
    within ``window_s`` seconds is blocked for ``block_s`` seconds (design.md §1: 700
    numbers never carry marketing calls).

    Per caller it keeps at most ``threshold`` recent numbers; callers idle longer than the
    window are dropped, and at most ``max_keys`` callers and ``max_keys`` blocks are kept
    (least recently seen first; blocks, all of one length, end in the order they began).
    """

    __slots__ = ("_blocks", "_recent", "block_s", "max_keys", "threshold", "window_s")

    def __init__(
        self, threshold: int, window_s: float, block_s: float, *, max_keys: int = 100_000
    ) -> None:
        self.threshold = threshold
        self.window_s = window_s
        self.block_s = block_s
        self.max_keys = max_keys
        #: caller → {x: last dialled}; ordered by the caller's last call
        self._recent: OrderedDict[str, dict[str, float]] = OrderedDict()
        #: caller → blocked until; ordered by when the block began
        self._blocks: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._recent) + len(self._blocks)

    def blocked_until(self, caller: str, now: float) -> float | None:
        """The end of ``caller``'s block, None when not blocked at ``now``."""
        self._evict(now)
        until = self._blocks.get(caller)
        return until if until is not None and until > now else None

    def dial(self, caller: str, x: str, now: float) -> bool:
        """Note that ``caller`` dials ``x``; True when the caller is (now) blocked."""
        if self.threshold <= 0:
            return False
        if self.blocked_until(caller, now) is not None:
            return True
        recent = self._recent.pop(caller, None) or {}
        recent = {seen_x: at for seen_x, at in recent.items() if now - at < self.window_s}
        recent.pop(x, None)
        recent[x] = now
        if len(recent) >= self.threshold:
            self._blocks.pop(caller, None)
            self._blocks[caller] = now + self.block_s
            while len(self._blocks) > self.max_keys:
                self._blocks.popitem(last=False)
            return True
        self._recent[caller] = recent
        while len(self._recent) > self.max_keys:
            self._recent.popitem(last=False)
        return False

    def _evict(self, now: float) -> None:
        recent = self._recent
        while recent:
            caller, numbers = next(iter(recent.items()))
            if now - max(numbers.values()) < self.window_s:
                break
            del recent[caller]
        blocks = self._blocks
        while blocks:
            caller, until = next(iter(blocks.items()))
            if until > now:
                break
            del blocks[caller]


@dataclass(slots=True)
class CallPolicy:
    """The policy state of one B2BUA: ask it at each call start, in the order a call
    meets the checks (peer, source rate, caller)."""

    settings: PolicySettings = field(default_factory=PolicySettings)
    sources: TokenBuckets = field(init=False)
    callers: TokenBuckets = field(init=False)
    dial_pattern: DialPatternGuard = field(init=False)

    #: host → whether it may start calls: a softswitch sends from a handful of addresses,
    #: and reading an address costs microseconds at every call start.
    _peer_verdicts: dict[str, bool] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        s = self.settings
        self.sources = TokenBuckets(s.source_rate, s.source_burst, max_keys=s.max_tracked)
        self.callers = TokenBuckets(s.caller_rate, s.caller_burst, max_keys=s.max_tracked)
        self.dial_pattern = DialPatternGuard(
            s.fraud_distinct_x, s.fraud_window_s, s.fraud_block_s, max_keys=s.max_tracked
        )

    def may_call(self, host: str) -> bool:
        verdicts = self._peer_verdicts
        verdict = verdicts.get(host)
        if verdict is None:
            if len(verdicts) >= _PEER_VERDICTS_KEPT:
                verdicts.clear()  # a spoofed-source flood: bounded, and rebuilt cheaply
            verdict = verdicts[host] = in_networks(host, self.settings.peers)
        return verdict

    def admit_peer(self, host: str, now: float) -> Refusal | None:
        """Before anything of the INVITE is read: the peer may start calls, at this rate."""
        if not self.may_call(host):
            return UNTRUSTED_DROPPED if self.settings.untrusted_calls == "drop" else UNTRUSTED
        wait = self.sources.take(host, now)
        return rate_limited(wait) if wait else None

    def admit_caller(self, caller: str, x: str, now: float) -> Refusal | None:
        """Once the caller and X are known. The dial pattern is noted first: a caller being
        rate limited is still sweeping numbers."""
        if self.dial_pattern.dial(caller, x, now):
            return BLOCKED
        wait = self.callers.take(caller, now)
        return rate_limited(wait) if wait else None

    def admit_binding(self, active_calls: int) -> Refusal | None:
        """Once the binding is known: ``active_calls`` are already up on it."""
        cap = self.settings.max_calls_per_binding
        return BINDING_BUSY if cap and active_calls >= cap else None
