"""Bencode codec: vectors, canonical encoding, strict decoding with offsets, round-trips, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtc64.errors import LocalProtocolError, RemoteProtocolError
from rtc64.relay.bencode import BencodeError, Value, decode, encode

values: st.SearchStrategy[Value] = st.recursive(
    st.binary(max_size=40) | st.integers(min_value=-(2**63), max_value=2**63 - 1),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.binary(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (b"", b"0:"),
        (b"spam", b"4:spam"),
        (0, b"i0e"),
        (42, b"i42e"),
        (-7, b"i-7e"),
        ([], b"le"),
        ({}, b"de"),
        ([b"a", 1, [b"b"]], b"l1:ai1el1:bee"),
        ({b"command": b"ping"}, b"d7:command4:pinge"),
        ({b"b": 1, b"a": {b"x": []}}, b"d1:ad1:xlee1:bi1ee"),
    ],
)
def test_vectors(value: Value, wire: bytes) -> None:
    assert encode(value) == wire
    assert decode(wire) == value


def test_encode_sorts_keys_by_raw_bytes_and_accepts_str() -> None:
    assert encode({"result": "ok", "b": [1, "x"], "B": ()}) == b"d1:Ble1:bli1e1:xe6:result2:oke"
    assert encode({"é": "é"}) == "d2:é2:ée".encode()
    assert encode(bytearray(b"ab")) == b"2:ab"
    assert encode(memoryview(b"ab")) == b"2:ab"


@pytest.mark.parametrize(
    "bad",
    [True, 1.5, None, {1: b"x"}, {"a": 1, b"a": 2}, [object()]],
)
def test_encode_refuses(bad: object) -> None:
    with pytest.raises(LocalProtocolError):
        encode(bad)  # type: ignore[arg-type]


def test_encode_refuses_runaway_nesting() -> None:
    deep: list[object] = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(LocalProtocolError, match="nesting"):
        encode(deep)  # type: ignore[arg-type]


def test_decode_accepts_keys_in_any_order() -> None:
    # Kamailio's rtpengine module writes keys in insertion order.
    assert decode(b"d7:command5:offer4:call3:abce") == {b"command": b"offer", b"call": b"abc"}


@pytest.mark.parametrize(
    ("wire", "offset", "what"),
    [
        (b"", 0, "unexpected end"),
        (b"x", 0, "unexpected byte"),
        (b"i01e", 1, "non-canonical integer"),
        (b"i-0e", 1, "non-canonical integer"),
        (b"ie", 1, "bad integer"),
        (b"i-e", 1, "bad integer"),
        (b"i1x2e", 1, "bad integer"),
        (b"i12", 1, "unterminated integer"),
        (b"i" + b"1" * 30 + b"e", 1, "integer too long"),
        (b"01:a", 0, "non-canonical string length"),
        (b"5:abc", 0, "runs past the end"),
        (b"3x:abc", 0, "bad string length"),
        (b"99999999999:a", 0, "bad string length"),
        (b"l1:a", 4, "unterminated list"),
        (b"d1:a", 4, "unexpected end"),
        (b"d1:ai1e", 7, "unterminated dictionary"),
        (b"di1ei2ee", 1, "not a string"),
        (b"d1:ai1e1:ai2ee", 7, "duplicate dictionary key"),
        (b"i1ei2e", 3, "trailing data"),
        (b"4:spam ", 6, "trailing data"),
    ],
)
def test_decode_errors_name_the_offset(wire: bytes, offset: int, what: str) -> None:
    with pytest.raises(BencodeError, match=what) as info:
        decode(wire)
    assert info.value.offset == offset
    assert f"at offset {offset}" in str(info.value)
    assert isinstance(info.value, RemoteProtocolError)


def test_decode_depth_and_size_limits() -> None:
    assert decode(b"l" * 32 + b"e" * 32, max_depth=32) is not None
    with pytest.raises(BencodeError, match="nesting deeper than 32") as info:
        decode(b"l" * 33 + b"e" * 33)
    assert info.value.offset == 32
    with pytest.raises(BencodeError, match="deeper than 2"):
        decode(b"d1:ad1:bl1:xeee", max_depth=2)
    with pytest.raises(BencodeError, match="exceeds 10"):
        decode(b"20:" + b"x" * 20, max_size=10)
    # A million nested lists stays a clean error, not a RecursionError.
    with pytest.raises(BencodeError, match="nesting"):
        decode(b"l" * 1_000_000)


@given(values)
def test_round_trip(value: Value) -> None:
    wire = encode(value)
    assert decode(wire) == value
    # Canonical: re-encoding what was decoded gives the same bytes.
    assert encode(decode(wire)) == wire


@given(st.binary(max_size=200))
def test_fuzz_random_bytes_only_raise_bencode_error(data: bytes) -> None:
    try:
        value = decode(data)
    except BencodeError:
        return
    assert encode(value) == data


@settings(max_examples=300)
@given(values, st.data())
def test_fuzz_mutated_encodings(value: Value, data: st.DataObject) -> None:
    wire = bytearray(encode(value))
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(len(wire) - 1, 0)))
        if action == "flip" and wire:
            wire[pos] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del wire[pos:]
        else:
            wire[pos:pos] = data.draw(st.binary(min_size=1, max_size=3))
    try:
        decoded = decode(bytes(wire))
    except BencodeError as exc:
        assert 0 <= exc.offset <= len(wire)
        return
    assert isinstance(decoded, bytes | int | list | dict)


def test_byte_by_byte_prefixes_of_a_request_fail_cleanly() -> None:
    wire = encode({"command": "offer", "call-id": "c", "flags": ["trust-address"], "n": -5})
    for end in range(len(wire)):
        with pytest.raises(BencodeError):
            decode(wire[:end])
    assert decode(wire)[b"n"] == -5  # type: ignore[index]
