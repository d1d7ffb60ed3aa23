"""The pure call policy: access control, token buckets, the dial-pattern guard (issue #6)."""

from __future__ import annotations

import ipaddress

import pytest

from proxy.b2bua.policy import (
    BINDING_BUSY,
    BLOCKED,
    UNTRUSTED,
    UNTRUSTED_DROPPED,
    CallPolicy,
    DialPatternGuard,
    PolicySettings,
    Refusal,
    TokenBuckets,
    rate_limited,
)

T0 = 1_000_000.0


# -- access control ---------------------------------------------------------------------


def test_default_trusted_networks_are_loopback_only() -> None:
    policy = CallPolicy()
    assert policy.may_call("127.0.0.1")
    assert policy.may_call("127.8.9.10")
    assert policy.may_call("::1")
    assert policy.may_call("[::1]")
    assert not policy.may_call("10.0.0.1")
    assert not policy.may_call("::2")
    assert not policy.may_call("not-an-address")


def test_untrusted_peer_is_rejected_with_403() -> None:
    policy = CallPolicy()
    refusal = policy.admit_peer("192.0.2.7", T0)
    assert refusal is UNTRUSTED
    assert (refusal.status, refusal.cause, refusal.drop) == (403, "untrusted_peer", False)
    assert policy.admit_peer("127.0.0.1", T0) is None


def test_untrusted_peer_is_dropped_when_configured() -> None:
    policy = CallPolicy(PolicySettings(untrusted_calls="drop"))
    refusal = policy.admit_peer("192.0.2.7", T0)
    assert refusal is UNTRUSTED_DROPPED
    assert refusal.drop and refusal.cause == "untrusted_peer"


def test_configured_networks_replace_loopback() -> None:
    networks = (ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("2001:db8::/32"))
    policy = CallPolicy(PolicySettings(peers=networks))
    assert policy.admit_peer("10.1.200.3", T0) is None
    assert policy.admit_peer("2001:db8::5", T0) is None
    assert policy.admit_peer("127.0.0.1", T0) is UNTRUSTED


@pytest.mark.parametrize(
    "bad",
    [
        {"untrusted_calls": "ignore"},
        {"caller_rate": -1.0},
        {"fraud_window_s": float("nan")},
        {"max_calls_per_binding": -1},
        {"max_tracked": 0},
    ],
)
def test_settings_refuse_nonsense(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PolicySettings(**bad)  # type: ignore[arg-type]


# -- token buckets ----------------------------------------------------------------------


def test_bucket_allows_burst_then_refuses_with_the_wait() -> None:
    buckets = TokenBuckets(rate=2.0, burst=3.0)
    assert [buckets.take("k", T0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k", T0) == pytest.approx(0.5)
    assert buckets.take("k", T0 + 0.25) == pytest.approx(0.25)
    assert buckets.take("k", T0 + 0.5) == 0.0
    assert buckets.take("k", T0 + 0.5) == pytest.approx(0.5)


def test_refused_take_spends_nothing() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1.0)
    assert buckets.take("k", T0) == 0.0
    for step in range(10):
        assert buckets.take("k", T0 + step * 0.09) > 0
    assert buckets.take("k", T0 + 1.0) == 0.0


def test_buckets_are_per_key() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1.0)
    assert buckets.take("a", T0) == 0.0
    assert buckets.take("a", T0) > 0
    assert buckets.take("b", T0) == 0.0


def test_bucket_refills_no_further_than_burst() -> None:
    buckets = TokenBuckets(rate=10.0, burst=2.0)
    assert buckets.take("k", T0) == 0.0
    taken = [buckets.take("k", T0 + 3600) for _ in range(3)]
    assert taken[:2] == [0.0, 0.0] and taken[2] > 0


def test_zero_rate_never_limits_and_keeps_nothing() -> None:
    buckets = TokenBuckets(rate=0.0, burst=1.0)
    assert all(buckets.take("k", T0) == 0.0 for _ in range(100))
    assert len(buckets) == 0


def test_idle_buckets_are_evicted() -> None:
    buckets = TokenBuckets(rate=1.0, burst=5.0)
    for n in range(1000):
        buckets.take(f"k{n}", T0)
    assert len(buckets) == 1000
    buckets.take("late", T0 + 5.0)
    assert len(buckets) == 1


def test_bucket_table_is_bounded_under_a_flood_of_keys() -> None:
    buckets = TokenBuckets(rate=1.0, burst=5.0, max_keys=100)
    for n in range(10_000):
        buckets.take(f"spoofed{n}", T0 + n * 1e-6)
    assert len(buckets) == 100
    # The most recent keys are kept: a recent key's bucket is still partly spent.
    for _ in range(4):
        assert buckets.take("spoofed9999", T0 + 0.01) == 0.0
    assert buckets.take("spoofed9999", T0 + 0.01) > 0


# -- the dial pattern -------------------------------------------------------------------


def test_distinct_numbers_within_window_block_the_caller() -> None:
    guard = DialPatternGuard(threshold=5, window_s=60.0, block_s=3600.0)
    verdicts = [guard.dial("+8613800138000", f"70010001234567{n}", T0 + n) for n in range(5)]
    assert verdicts == [False, False, False, False, True]
    assert guard.blocked_until("+8613800138000", T0 + 10) == T0 + 4 + 3600
    # Blocked for anything, even the first number, until the block ends.
    assert guard.dial("+8613800138000", "700100012345670", T0 + 3000)
    assert not guard.dial("+8613800138000", "700100012345670", T0 + 4 + 3600)
    assert guard.blocked_until("+8613800138000", T0 + 4 + 3600) is None


def test_redialling_the_same_number_is_not_a_sweep() -> None:
    guard = DialPatternGuard(threshold=3, window_s=60.0, block_s=3600.0)
    for n in range(100):
        assert not guard.dial("+8613800138000", "700100012345678", T0 + n)
    assert not guard.dial("+8613800138000", "700100012345679", T0 + 100)


def test_numbers_outside_the_window_do_not_count() -> None:
    guard = DialPatternGuard(threshold=3, window_s=60.0, block_s=3600.0)
    assert not guard.dial("c", "x1", T0)
    assert not guard.dial("c", "x2", T0 + 30)
    assert not guard.dial("c", "x3", T0 + 61)  # x1 has left the window
    assert guard.dial("c", "x4", T0 + 62)


def test_each_caller_is_counted_alone() -> None:
    guard = DialPatternGuard(threshold=2, window_s=60.0, block_s=60.0)
    assert not guard.dial("c1", "x1", T0)
    assert not guard.dial("c2", "x2", T0)
    assert guard.dial("c1", "x3", T0)
    assert not guard.dial("c2", "x2", T0)


def test_threshold_zero_switches_the_guard_off() -> None:
    guard = DialPatternGuard(threshold=0, window_s=60.0, block_s=60.0)
    assert not any(guard.dial("c", f"x{n}", T0) for n in range(50))


def test_dial_pattern_memory_is_bounded() -> None:
    guard = DialPatternGuard(threshold=2, window_s=60.0, block_s=60.0, max_keys=50)
    for n in range(5000):
        guard.dial(f"c{n}", "x1", T0)
        guard.dial(f"b{n}", "x1", T0)
        guard.dial(f"b{n}", "x2", T0)
    assert len(guard) <= 100
    guard.dial("fresh", "x1", T0 + 61)
    assert len(guard) == 1


# -- the whole policy -------------------------------------------------------------------


def test_source_rate_limit_gives_503_with_retry_after() -> None:
    policy = CallPolicy(PolicySettings(source_rate=1.0, source_burst=2.0))
    assert policy.admit_peer("127.0.0.1", T0) is None
    assert policy.admit_peer("127.0.0.1", T0) is None
    refusal = policy.admit_peer("127.0.0.1", T0)
    assert refusal == Refusal(503, "Service Unavailable", "rate_limited", retry_after=1)
    assert refusal.headers == (("Retry-After", "1"),)
    assert policy.admit_peer("127.0.0.2", T0) is None


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    assert rate_limited(0.01).retry_after == 1
    assert rate_limited(9.2).retry_after == 10
    assert rate_limited(0.5).headers == (("Retry-After", "1"),)


def test_caller_rate_limit() -> None:
    policy = CallPolicy(PolicySettings(caller_rate=0.1, caller_burst=2.0))
    assert policy.admit_caller("+8613800138000", "700100012345678", T0) is None
    assert policy.admit_caller("+8613800138000", "700100012345678", T0) is None
    refusal = policy.admit_caller("+8613800138000", "700100012345678", T0)
    assert refusal is not None
    assert (refusal.status, refusal.cause, refusal.retry_after) == (503, "rate_limited", 10)
    assert policy.admit_caller("+8613800138000", "700100012345678", T0 + 10) is None


def test_marketing_sweep_is_blocked_before_the_rate_limit() -> None:
    policy = CallPolicy(PolicySettings(caller_rate=100.0, caller_burst=100.0))
    verdicts = [policy.admit_caller("c", f"70010001234567{n}", T0 + n) for n in range(6)]
    assert verdicts == [None, None, None, None, BLOCKED, BLOCKED]
    assert (BLOCKED.status, BLOCKED.cause) == (403, "blocked")


def test_binding_cap() -> None:
    policy = CallPolicy(PolicySettings(max_calls_per_binding=2))
    assert policy.admit_binding(0) is None
    assert policy.admit_binding(1) is None
    assert policy.admit_binding(2) is BINDING_BUSY
    assert (BINDING_BUSY.status, BINDING_BUSY.cause) == (486, "rate_limited")
    assert CallPolicy(PolicySettings(max_calls_per_binding=0)).admit_binding(1000) is None
