"""The one token-bucket module: ``Bucket`` (TURN bandwidth) and ``TokenBucket`` (per source
prefix; its table behaviour is covered in tests/unit/gateway/test_ratelimit.py)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtc64.errors import LocalProtocolError
from rtc64.gateway import ratelimit
from rtc64.net import tokenbucket
from rtc64.net.tokenbucket import Bucket, TokenBucket, refill, source_key


def test_bucket_refills_to_burst_only() -> None:
    bucket = Bucket(1000.0, 1000.0, now=0.0)
    assert bucket.take(1000, 0.0)
    assert not bucket.take(1000, 0.0)
    assert bucket.dropped == 1
    assert bucket.take(500, 0.5)  # half a second: half the rate back
    assert not bucket.take(1, 0.5)
    assert bucket.take(1000, 100.0)  # long idle: refilled to the burst, not beyond
    assert not bucket.take(1, 100.0)
    assert bucket.dropped == 3


def test_bucket_default_burst_is_a_second_and_at_least_4_kib() -> None:
    assert Bucket(100.0).burst == 4096.0
    assert Bucket(1e6).burst == 1e6


def test_a_clock_stepping_back_gives_no_tokens() -> None:
    bucket = Bucket(1000.0, 1000.0, now=50.0)
    assert bucket.take(1000, 50.0)
    assert not bucket.take(1, 10.0)  # earlier than the last take: nothing refilled
    assert not bucket.take(1, 50.0)  # and the stamp did not move back either
    assert bucket.take(1000, 51.0)


def test_charge_goes_into_debt_and_says_how_long_to_pause() -> None:
    bucket = Bucket(1000.0, 1000.0, now=0.0)
    assert bucket.charge(600, 0.0) == 0.0
    assert bucket.charge(900, 0.0) == pytest.approx(0.5)  # 500 bytes of debt at 1000/s
    assert not bucket.take(1, 0.25)  # still 250 in debt
    assert bucket.charge(0, 1.0) == 0.0  # paid back, 500 in hand
    assert bucket.take(500, 1.0)


@given(
    st.floats(0, 1e6),
    st.floats(-1e6, 1e6),
    st.floats(-1e6, 1e6),
    st.floats(0, 1e6),
    st.floats(1, 1e6),
)
def test_refill_never_exceeds_the_burst_nor_loses_tokens(
    tokens: float, last: float, now: float, rate: float, burst: float
) -> None:
    got = refill(min(tokens, burst), last, now, rate, burst)
    assert got <= burst or got == min(tokens, burst)
    assert got >= min(tokens, burst)


def test_the_gateway_limiter_is_the_shared_one() -> None:
    """One implementation: the SIP proxy's and the TURN 401 limiter's buckets are this
    module's (gateway.ratelimit re-exports it for its callers)."""
    assert ratelimit.TokenBucket is TokenBucket
    assert ratelimit.source_key is source_key
    assert ratelimit.Admission is tokenbucket.Admission


def test_source_key_prefixes() -> None:
    assert str(source_key(IPv6Address("2001:db8:1:2:3:4:5:6"))) == "2001:db8:1:2::/64"
    assert str(source_key(IPv6Address("::ffff:192.0.2.9"))) == "192.0.2.9/32"
    assert str(source_key(IPv4Address("192.0.2.9"), v4_prefix=24)) == "192.0.2.0/24"
    with pytest.raises(LocalProtocolError):
        TokenBucket(1.0, 1.0, v6_prefix=129)
