"""Rate limiting and authentication failure blocking, driven by a fake clock."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

import pytest

from rtc64.errors import LocalProtocolError
from rtc64.gateway.ratelimit import (
    PREFIX_CACHE,
    AuthFailureTracker,
    BlockEvent,
    TokenBucket,
    source_key,
)

A = IPv4Address("192.0.2.10")
B = IPv4Address("198.51.100.7")
V6 = IPv6Address("2001:db8:1:2::10")


# --- keys ----------------------------------------------------------------------------------


def test_source_key_prefixes() -> None:
    assert source_key(A) == IPv4Network("192.0.2.10/32")
    assert source_key(V6) == IPv6Network("2001:db8:1:2::/64")
    assert source_key(IPv6Address("2001:db8:1:2:ffff:ffff:ffff:ffff")) == source_key(V6)
    assert source_key(IPv6Address("2001:db8:1:3::10")) != source_key(V6)
    assert source_key(IPv6Address("::ffff:192.0.2.10")) == source_key(A)
    assert source_key(A, v4_prefix=24) == IPv4Network("192.0.2.0/24")
    assert source_key(V6, v6_prefix=48) == IPv6Network("2001:db8:1::/48")
    assert source_key(V6, v6_prefix=128) == IPv6Network("2001:db8:1:2::10/128")


# --- token bucket --------------------------------------------------------------------------


def test_token_bucket_burst_then_rate() -> None:
    tb = TokenBucket(rate=10, burst=5)
    assert [tb.allow(A, 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert tb.retry_after(A, 0.0) == pytest.approx(0.1)
    assert tb.allow(B, 0.0)  # another source has its own bucket
    assert not tb.allow(A, 0.05)
    assert tb.allow(A, 0.1)
    assert not tb.allow(A, 0.1)
    assert (tb.allowed, tb.limited) == (7, 3)
    assert all(tb.allow(A, 10.0) for _ in range(5))  # refilled to burst, not beyond


def test_token_bucket_keys_ipv6_by_64() -> None:
    tb = TokenBucket(rate=1, burst=3)
    hosts = [ip_address(f"2001:db8:1:2::{i:x}") for i in range(1, 10)]
    results = [tb.allow(h, 0.0) for h in hosts]
    assert results == [True] * 3 + [False] * 6  # rotating inside the /64 does not help
    assert tb.allow(IPv6Address("2001:db8:1:3::1"), 0.0)  # the next /64 is someone else
    assert len(tb) == 2


def test_token_bucket_off_and_clock_steps_back() -> None:
    off = TokenBucket(rate=0, burst=1)
    assert all(off.allow(A, 0.0) for _ in range(1000))
    assert len(off) == 0
    tb = TokenBucket(rate=1, burst=1)
    assert tb.allow(A, 100.0)
    assert not tb.allow(A, 50.0)  # time going back gives no tokens
    with pytest.raises(LocalProtocolError):
        TokenBucket(rate=-1, burst=1)
    with pytest.raises(LocalProtocolError):
        TokenBucket(rate=1, burst=1, v6_prefix=129)


def test_token_bucket_memory_bound() -> None:
    tb = TokenBucket(rate=1, burst=2, max_keys=1000)
    for i in range(20000):
        tb.allow(IPv6Address((0x20010DB8 << 96) | (i << 64)), 0.0)
        assert len(tb) <= 1000
    assert tb.evictions == 19000
    # Idle (refilled) buckets are forgotten as time passes.
    tb.allow(A, 10.0)
    assert len(tb) == 1


# --- authentication failures: the "300 tries" scenario ------------------------------------


def test_password_guessing_blocks_source_and_user() -> None:
    events: list[BlockEvent] = []
    t = AuthFailureTracker(max_failures=5, window=60, block_seconds=300, on_block=events.append)
    attacker = IPv6Address("2001:db8:bad::1")
    now = 0.0
    for _ in range(4):
        assert t.check(attacker, "300", now) is None
        assert t.record_failure(attacker, now) is None
        assert t.record_failure(("300", attacker), now) is None
        now += 1
    src = t.record_failure(attacker, now)
    usr = t.record_failure(("300", attacker), now)
    assert src is not None and usr is not None
    assert src.key == IPv6Network("2001:db8:bad::/64") and src.failures == 5
    assert str(src) == "blocked source 2001:db8:bad::/64 for 300 s after 5 failures"
    assert str(usr) == "blocked user '300' from source 2001:db8:bad::/64 for 300 s after 5 failures"
    assert events == [src, usr]
    assert t.pop_events() == [src, usr] and t.pop_events() == []
    assert t.is_blocked(attacker, now) == 300
    assert t.is_blocked(("300", attacker), now + 100) == 200
    # Another address in the same /64 is the same source.
    assert t.is_blocked(IPv6Address("2001:db8:bad::beef"), now) == 300
    assert t.check(IPv6Address("2001:db8:bad::beef"), "alice", now) == 300
    # A different source may still try the same user: never a user blocked everywhere.
    other = IPv4Address("203.0.113.9")
    assert t.is_blocked(other, now) is None
    assert t.check(other, "300", now + 1) is None
    assert (t.failures, t.blocks, t.blocked_count(now)) == (10, 2, 2)
    # Blocking expires by itself.
    assert t.is_blocked(attacker, now + 299.9) is not None
    assert t.is_blocked(attacker, now + 300) is None
    assert t.check(attacker, "300", now + 300) is None
    assert t.blocked_count(now + 300) == 0
    # And the count starts again from zero.
    assert t.record_failure(attacker, now + 301) is None


def test_failures_outside_the_window_do_not_add_up() -> None:
    t = AuthFailureTracker(max_failures=3, window=10, block_seconds=60)
    for i in range(30):
        assert t.record_failure(A, i * 6.0) is None  # one every 6 s: at most 2 per 10 s
    assert t.record_failure(A, 175.0) is not None  # 168, 174, 175: 3 within 10 s


def test_success_clears_failures_but_not_a_block() -> None:
    t = AuthFailureTracker(max_failures=3, window=60, block_seconds=60)
    t.record_failure("alice", 0)
    t.record_failure("alice", 1)
    t.record_success("alice", 2)
    assert t.record_failure("alice", 3) is None
    assert t.record_failure("alice", 4) is None
    assert t.record_failure("alice", 5) is not None
    t.record_success("alice", 6)
    assert t.is_blocked("alice", 6) == 59
    # Failures while blocked are counted but do not extend the block.
    assert t.record_failure("alice", 30) is None
    assert t.is_blocked("alice", 30) == 35
    assert t.failures == 6


def test_tracker_prefix_is_configurable() -> None:
    t = AuthFailureTracker(2, 60, 60, v4_prefix=24, v6_prefix=48)
    t.record_failure(IPv4Address("192.0.2.1"), 0)
    t.record_failure(IPv4Address("192.0.2.200"), 0)
    assert t.is_blocked(IPv4Address("192.0.2.77"), 0) == 60
    assert t.is_blocked(IPv4Address("192.0.3.1"), 0) is None
    t.record_failure(IPv6Address("2001:db8:1:1::1"), 0)
    t.record_failure(IPv6Address("2001:db8:1:ffff::1"), 0)
    assert t.is_blocked(IPv6Address("2001:db8:1:abcd::9"), 0) == 60
    # Default: /32 for IPv4, so a neighbour is not blocked.
    d = AuthFailureTracker(1, 60, 60)
    d.record_failure(IPv4Address("192.0.2.1"), 0)
    assert d.is_blocked(IPv4Address("192.0.2.2"), 0) is None
    assert d.is_blocked(IPv6Address("::ffff:192.0.2.1"), 0) == 60


def test_tracker_memory_bound_and_blocks_survive_a_flood() -> None:
    t = AuthFailureTracker(max_failures=3, window=60, block_seconds=600, max_keys=500)
    for _ in range(3):
        t.record_failure("victim-attacker", 0)
    assert t.is_blocked("victim-attacker", 0) == 600
    # Flood with single failures from many /64s and random user names.
    for i in range(20000):
        t.record_failure(IPv6Address((0x20010DB8 << 96) | (i << 64)), 1.0)
        t.record_failure(f"user{i}", 1.0)
        assert len(t) <= 1000
    assert t.evictions > 0
    assert t.is_blocked("victim-attacker", 2.0) == 598  # not flushed out
    # Idle failure histories are dropped once they leave the window.
    t.record_failure("late", 580.0)
    assert len(t) == 2  # "late" and the block
    assert t.blocked_count(601.0) == 0
    assert len(t) == 1


def test_tracker_block_table_bound() -> None:
    t = AuthFailureTracker(max_failures=1, window=60, block_seconds=600, max_keys=10)
    for i in range(100):
        t.record_failure(f"u{i}", float(i))
    assert t.blocked_count(100.0) == 10
    assert t.is_blocked("u99", 100.0) is not None
    assert t.is_blocked("u0", 100.0) is None  # the soonest to end went first
    assert len(t.pop_events()) == 100


def test_tracker_event_queue_is_bounded() -> None:
    t = AuthFailureTracker(1, 60, 60, max_events=3)
    for i in range(10):
        t.record_failure(f"u{i}", 0)
    assert [e.key for e in t.pop_events()] == ["u7", "u8", "u9"]


def test_tracker_rejects_bad_settings() -> None:
    with pytest.raises(LocalProtocolError):
        AuthFailureTracker(0, 60, 60)
    with pytest.raises(LocalProtocolError):
        AuthFailureTracker(1, 0, 60)
    with pytest.raises(LocalProtocolError):
        AuthFailureTracker(1, 60, 60, v4_prefix=33)


def test_failure_tracker_prefix_cache_is_bounded_and_exact() -> None:
    """Each REGISTER asks for its source's prefix several times: the tracker remembers
    them, at most ``PREFIX_CACHE``, and gives what ``source_key`` gives."""
    tracker = AuthFailureTracker(3, window=60.0, block_seconds=60.0, v4_prefix=24, v6_prefix=56)
    addresses = [IPv4Address(0x0A000000 + n) for n in range(PREFIX_CACHE + 10)]
    addresses += [IPv6Address((0x20010DB8 << 96) + (n << 64) + 7) for n in range(20)]
    for address in addresses:
        assert tracker.key(address) == source_key(address, v4_prefix=24, v6_prefix=56)
        assert tracker.key(("bob", address)) == (
            "bob",
            source_key(address, v4_prefix=24, v6_prefix=56),
        )
        assert len(tracker._prefixes) <= PREFIX_CACHE
