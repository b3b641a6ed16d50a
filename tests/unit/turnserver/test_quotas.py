"""Per-source 401 limit: spotting 401s in raw bytes, token bucket per /64 or /32."""

from __future__ import annotations

import os
import struct
from ipaddress import IPv4Address, IPv6Address

from hypothesis import given
from hypothesis import strategies as st

from rtc64.gateway.ratelimit import source_key
from rtc64.turnserver.quotas import ChallengeLimiter, is_unauthorized

ALLOCATE_ERROR = 0x0113
ALLOCATE_SUCCESS = 0x0103
ALLOCATE_REQUEST = 0x0003
REALM = 0x0014
NONCE = 0x0015
ERROR_CODE = 0x0009


def attr(kind: int, value: bytes) -> bytes:
    pad = b"\x00" * (-len(value) % 4)
    return struct.pack("!HH", kind, len(value)) + value + pad


def error_code(code: int, reason: bytes = b"Unauthorized") -> bytes:
    return attr(ERROR_CODE, bytes([0, 0, code // 100, code % 100]) + reason)


def stun(msg_type: int, *attrs: bytes) -> bytes:
    body = b"".join(attrs)
    return struct.pack("!HHI", msg_type, len(body), 0x2112A442) + os.urandom(12) + body


CHALLENGE = stun(ALLOCATE_ERROR, attr(REALM, b"example.net"), error_code(401), attr(NONCE, b"n"))


def test_spots_401_wherever_the_attribute_is() -> None:
    assert is_unauthorized(CHALLENGE)
    assert is_unauthorized(stun(ALLOCATE_ERROR, error_code(401)))
    assert is_unauthorized(bytearray(CHALLENGE))
    assert is_unauthorized(memoryview(CHALLENGE))


def test_other_messages_are_not_401() -> None:
    assert not is_unauthorized(stun(ALLOCATE_ERROR, error_code(438, b"Stale Nonce")))
    assert not is_unauthorized(stun(ALLOCATE_ERROR, error_code(403)))
    assert not is_unauthorized(stun(ALLOCATE_ERROR, error_code(501)))
    assert not is_unauthorized(stun(ALLOCATE_SUCCESS, error_code(401)))
    assert not is_unauthorized(stun(ALLOCATE_REQUEST, error_code(401)))
    assert not is_unauthorized(b"\x40\x00\x00\x04data")  # ChannelData
    assert not is_unauthorized(b"")
    wrong_cookie = bytearray(CHALLENGE)
    wrong_cookie[4] ^= 1
    assert not is_unauthorized(bytes(wrong_cookie))


def test_truncated_and_lying_lengths_are_not_401() -> None:
    whole = stun(ALLOCATE_ERROR, error_code(401))
    for cut in range(len(whole)):
        assert not is_unauthorized(whole[:cut]) or cut >= 28
    # the header says the body is shorter than the ERROR-CODE attribute
    short = bytearray(whole)
    short[2:4] = (4).to_bytes(2, "big")
    assert not is_unauthorized(bytes(short))
    # the ERROR-CODE value is shorter than 4 bytes
    assert not is_unauthorized(stun(ALLOCATE_ERROR, attr(ERROR_CODE, b"\x00\x04")))


@given(st.binary(max_size=200))
def test_never_raises(data: bytes) -> None:
    assert is_unauthorized(data) in (True, False)


@given(st.binary(max_size=120))
def test_never_raises_on_stun_headed_garbage(body: bytes) -> None:
    data = struct.pack("!HHI", ALLOCATE_ERROR, len(body), 0x2112A442) + bytes(12) + body
    assert is_unauthorized(data) in (True, False)


def test_401_budget_per_source_prefix() -> None:
    limiter = ChallengeLimiter(rate=1.0, burst=3.0)
    victim = IPv4Address("198.51.100.9")
    sent = [limiter.admit(CHALLENGE, victim, 10.0) for _ in range(10)]
    assert sent == [True] * 3 + [False] * 7
    assert (limiter.challenges, limiter.dropped) == (3, 7)
    # other sources are not affected; other responses to the victim are not limited
    assert limiter.admit(CHALLENGE, IPv4Address("198.51.100.10"), 10.0)
    assert limiter.admit(stun(ALLOCATE_SUCCESS), victim, 10.0)
    # the budget refills
    assert limiter.admit(CHALLENGE, victim, 11.0)
    assert not limiter.admit(CHALLENGE, victim, 11.0)


def test_ipv6_counts_per_64_and_mapped_as_ipv4() -> None:
    limiter = ChallengeLimiter(rate=1.0, burst=2.0)
    assert limiter.allow(IPv6Address("2001:db8:1:2::1"), 0.0)
    assert limiter.allow(IPv6Address("2001:db8:1:2::ffff"), 0.0)
    assert not limiter.allow(IPv6Address("2001:db8:1:2:abcd::9"), 0.0)  # same /64
    assert limiter.allow(IPv6Address("2001:db8:1:3::1"), 0.0)
    assert limiter.allow(IPv4Address("192.0.2.1"), 0.0)
    assert limiter.allow(IPv6Address("::ffff:192.0.2.1"), 0.0)
    assert not limiter.allow(IPv4Address("192.0.2.1"), 0.0)


def test_table_is_bounded_under_a_spoofed_flood() -> None:
    limiter = ChallengeLimiter(rate=1.0, burst=1.0, max_keys=100)
    for i in range(5000):
        limiter.allow(IPv4Address(0x0A000000 + i), 0.0)
    assert len(limiter) <= 100


def test_rate_zero_turns_the_limit_off() -> None:
    limiter = ChallengeLimiter(rate=0.0)
    source = IPv4Address("192.0.2.1")
    assert all(limiter.admit(CHALLENGE, source, 0.0) for _ in range(1000))


@given(
    st.lists(
        st.one_of(
            st.integers(0, 2**32 - 1).map(IPv4Address),
            st.integers(0, 2**128 - 1).map(IPv6Address),
            st.integers(0, 2**32 - 1).map(lambda n: IPv6Address(0xFFFF00000000 | n)),
            st.integers(0, 2**16 - 1).map(lambda n: IPv6Address((0x20010DB8 << 96) | n << 48)),
        ),
        min_size=2,
        max_size=8,
    ),
    st.integers(0, 32),
    st.integers(0, 128),
)
def test_bucket_keys_group_sources_as_the_gateways_source_key(
    sources: list[IPv4Address | IPv6Address], v4: int, v6: int
) -> None:
    """The limiter's integer keys put two sources in one bucket exactly when
    ``gateway.ratelimit.source_key`` gives them the same prefix."""
    limiter = ChallengeLimiter(v4_prefix=v4, v6_prefix=v6)
    for a in sources:
        for b in sources:
            same = source_key(a, v4_prefix=v4, v6_prefix=v6) == source_key(
                b, v4_prefix=v4, v6_prefix=v6
            )
            assert (limiter.key(a) == limiter.key(b)) is same
