"""Fuzzing: random and mutated messages, whole as datagrams and byte by byte on a stream.

Only ``RemoteProtocolError`` may escape; nothing may hang (pytest-timeout guards).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtc64.errors import RemoteProtocolError
from rtc64.sip.edit import Edit
from rtc64.sip.framing import CLOSED, NEED_DATA, StreamFramer, parse_datagram
from rtc64.sip.headers import validate
from rtc64.sip.lint import check, describe
from rtc64.sip.message import Request
from rtc64.sip.serializer import serialize

from .helpers import INVITE, RESPONSE

CORPUS = Path(__file__).parents[2] / "conformance" / "corpus"
SEEDS = [p.read_bytes() for p in sorted(CORPUS.glob("rfc*/*.dat"))] + [INVITE, RESPONSE]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "splice", "insert", "delete"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "splice":
            other = draw(st.sampled_from(SEEDS))
            start = draw(st.integers(0, len(other)))
            data[pos:] = other[start:]
        elif kind == "insert":
            data[pos:pos] = draw(
                st.sampled_from(
                    [
                        b"\r\n",
                        b" ",
                        b",",
                        b";",
                        b'"',
                        b"<",
                        b">",
                        b"%",
                        b":",
                        b"\r\n ",
                        b"\x00",
                        b"[",
                    ]
                )
            )
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
    return bytes(data)


def _exercise_datagram(data: bytes) -> None:
    try:
        msg = parse_datagram(data)
    except RemoteProtocolError:
        return
    # A message that parsed must serialise, re-parse equal and survive every extra use.
    again = parse_datagram(serialize(msg))
    assert parse_datagram(serialize(again)) == again
    with contextlib.suppress(RemoteProtocolError):
        validate(msg)
    describe(msg)
    if isinstance(msg, Request) and msg.max_forwards != 0:
        edited = (
            Edit(msg).decrement_max_forwards().prepend_via(b"SIP/2.0/UDP [::1];branch=z9hG4bKf")
        )
        parse_datagram(edited.to_bytes())


def _exercise_stream(data: bytes) -> None:
    framer = StreamFramer(max_size=4096)
    try:
        for i in range(len(data)):
            framer.receive_data(data[i : i + 1])
            while True:
                try:
                    ev = framer.next_event()
                except RemoteProtocolError:
                    if framer.broken:
                        return
                    continue
                if ev is NEED_DATA or ev is CLOSED:
                    break
        framer.receive_data(b"")
        framer.next_event()
    except RemoteProtocolError:
        return


@pytest.mark.timeout(120)
@SETTINGS
@given(st.binary(max_size=512))
def test_random_bytes(data: bytes) -> None:
    _exercise_datagram(data)
    result = check(data)
    assert result.valid == (result.message is not None)


@pytest.mark.timeout(120)
@SETTINGS
@given(mutated())
def test_mutated_datagrams(data: bytes) -> None:
    _exercise_datagram(data)
    check(data)


@pytest.mark.timeout(120)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated())
def test_mutated_stream_byte_by_byte(data: bytes) -> None:
    _exercise_stream(data[:1500])


def test_corpus_byte_by_byte() -> None:
    for seed in SEEDS:
        _exercise_stream(seed)
