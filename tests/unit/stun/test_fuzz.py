"""Fuzzing: random, mutated and truncated input raises only StunError, from decoding through
every typed accessor, the integrity and fingerprint checks and ChannelData framing."""

from __future__ import annotations

import contextlib
import random
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtc64.stun import StunError
from rtc64.stun import attributes as a
from rtc64.stun.channeldata import frame_length, parse
from rtc64.stun.message import (
    Class,
    Message,
    Method,
    build,
    check_fingerprint,
    check_integrity,
    decode,
    encode,
    read_send_indication,
)
from tests.unit.stun import vectors as v

KEY = b"0123456789abcdef"
SEEDS = (
    *v.VECTORS_WITH_SHA256,
    v.unhex("00 01 00 00 21 12 a4 42") + bytes(12),
    v.unhex("40 00 00 05 68 65 6c 6c 6f 00 00 00"),  # ChannelData
)


def exercise(data: bytes) -> Message | None:
    """Everything a server does with untrusted bytes; returns the message if it decoded."""
    for step in (frame_length, parse):
        with contextlib.suppress(StunError):
            step(data)
    try:
        msg = decode(data)
    except StunError:
        assert read_send_indication(data) is None
        return None
    read_send_indication(data)
    msg.unknown_required()
    check_integrity(msg, KEY)
    check_fingerprint(msg)
    for type_, _ in msg.attributes:
        attr = a.TABLE.get(type_)
        if attr is None:
            continue
        try:
            msg.get_all(attr)
        except StunError as exc:
            assert 400 <= exc.status <= 499
    with contextlib.suppress(StunError):
        msg.error()
    return msg


def fix_length(data: bytes) -> bytes:
    """``data`` cut to a multiple of 4 with its STUN length field made consistent."""
    out = bytearray(data[: 20 + (len(data) - 20) // 4 * 4] if len(data) >= 20 else data)
    if len(out) >= 20:
        struct.pack_into("!H", out, 2, len(out) - 20)
    return bytes(out)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    exercise(data)
    exercise(fix_length(b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12) + data))


@settings(max_examples=2000, deadline=None)
@given(
    seed=st.sampled_from(SEEDS),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["set", "insert", "delete"]), st.integers(0, 200), st.integers(0, 255)
        ),
        min_size=1,
        max_size=8,
    ),
    fix=st.booleans(),
)
def test_mutated_vectors(seed: bytes, edits: list[tuple[str, int, int]], fix: bool) -> None:
    data = bytearray(seed)
    for op, where, byte in edits:
        i = where % (len(data) + 1)
        if op == "insert":
            data.insert(i, byte)
        elif data and i < len(data):
            if op == "set":
                data[i] = byte
            else:
                del data[i]
    exercise(fix_length(bytes(data)) if fix else bytes(data))


@pytest.mark.parametrize("seed", SEEDS)
def test_truncation_byte_by_byte(seed: bytes) -> None:
    for n in range(len(seed)):
        assert exercise(seed[:n]) is None  # the length field no longer matches
        exercise(fix_length(seed[:n]))


@pytest.mark.parametrize("seed", v.VECTORS_WITH_SHA256)
def test_attribute_length_fields_lying(seed: bytes) -> None:
    """Every attribute length field set to every interesting value."""
    msg = decode(seed)
    for offset in msg.offsets:
        for length in (0, 1, 2, 3, 4, 5, 19, 20, 21, 31, 32, 33, 0x7FFF, 0xFFFF):
            bad = bytearray(seed)
            struct.pack_into("!H", bad, offset + 2, length)
            exercise(bytes(bad))


def test_seeded_random_mutations_of_typed_messages() -> None:
    """Messages with every attribute type, then random bit flips (fixed seed: reproducible)."""
    rng = random.Random(10)
    tid = bytes(range(12))
    attributes = tuple((t, rng.randbytes(rng.choice((0, 1, 4, 8, 20, 32)))) for t in a.TABLE)
    base = encode(Message(1, Class.REQUEST, tid, attributes), key=KEY, fingerprint=True)
    for _ in range(3000):
        bad = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)
        exercise(bytes(bad))


@settings(max_examples=1000, deadline=None)
@given(
    tid=st.binary(min_size=12, max_size=12),
    peer=st.tuples(
        st.one_of(
            st.ip_addresses(v=4),
            st.ip_addresses(v=6),
        ),
        st.integers(0, 0xFFFF),
    ),
    payload=st.binary(max_size=64),
    edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
)
def test_send_indication_fast_path_agrees_with_decode(
    tid: bytes, peer: tuple[Any, int], payload: bytes, edits: list[tuple[int, int]]
) -> None:
    data = bytearray(
        encode(build(Method.SEND, Class.INDICATION, tid, a.XOR_PEER_ADDRESS(peer), a.DATA(payload)))
    )
    for where, byte in edits:
        data[where % len(data)] = byte
    got = read_send_indication(bytes(data))
    if got is None:
        return
    msg = decode(bytes(data))
    assert (msg.method, msg.cls) == (Method.SEND, Class.INDICATION)
    assert msg.unknown_required() == ()
    assert got[0] == msg.get(a.XOR_PEER_ADDRESS)
    assert bytes(got[1]) == msg.get(a.DATA)
