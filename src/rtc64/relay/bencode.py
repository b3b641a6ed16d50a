# Rules (BitTorrent BEP 3 "bencoding", as rtpengine's ng protocol uses it):
# - four types: byte strings ``<len>:<bytes>``, integers ``i<n>e``, lists ``l...e`` and
#   dictionaries ``d...e`` whose keys are byte strings.
# - Encoding is canonical: dictionary keys sorted by their raw bytes, no duplicates,
#   integers without leading zeros, no ``-0``.
# - Decoding is strict about syntax (no leading zeros in lengths or integers, no ``-0``,
#   no trailing bytes, non-string keys refused, duplicate keys refused) but accepts keys in
#   any order: Kamailio's and OpenSIPS' rtpengine modules write them in insertion order.
# - Limits: input size, nesting depth and digit counts are bounded; any violation raises
#   ``BencodeError`` (a ``RemoteProtocolError``) naming the byte offset. Nothing else escapes.
"""Bencode codec: strict, bounded decoder and canonical encoder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

from rtc64.errors import LocalProtocolError, RemoteProtocolError

Value: TypeAlias = bytes | int | list["Value"] | dict[bytes, "Value"]
"""A decoded bencode value."""

Encodable: TypeAlias = (
    bytes
    | bytearray
    | memoryview
    | str
    | int
    | Sequence["Encodable"]
    | Mapping[bytes, "Encodable"]
    | Mapping[str, "Encodable"]
)
"""What ``encode`` accepts: ``str`` is written as UTF-8, tuples as lists."""

MAX_SIZE = 1 << 20
"""Default largest input ``decode`` accepts (an ng datagram is at most 64 KiB)."""
MAX_DEPTH = 32
"""Default deepest nesting of lists and dictionaries."""
_MAX_INT_DIGITS = 20  # int64 range and a little more; bounds int() work
_MAX_LEN_DIGITS = 10


class BencodeError(RemoteProtocolError):
    """Malformed bencode; ``offset`` is where in the input the problem was found."""

    def __init__(self, what: str, offset: int) -> None:
        super().__init__(f"bencode: {what} at offset {offset}")
        self.what = what
        self.offset = offset


# --- encoding ---


def encode(value: Encodable) -> bytes:
    """The canonical bencoding of ``value``; ``LocalProtocolError`` for unencodable values."""
    out: list[bytes] = []
    _encode(value, out, 0)
    return b"".join(out)


def _encode(value: Encodable, out: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise LocalProtocolError(f"bencode: nesting deeper than {MAX_DEPTH}")
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        out.append(b"%d:" % len(raw))
        out.append(raw)
    elif isinstance(value, str):
        raw = value.encode()
        out.append(b"%d:" % len(raw))
        out.append(raw)
    elif isinstance(value, bool):
        raise LocalProtocolError("bencode: booleans have no encoding (use 0/1 or a flag)")
    elif isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, Mapping):
        items: dict[bytes, Encodable] = {}
        for key, item in value.items():
            raw_key = key.encode() if isinstance(key, str) else key
            if not isinstance(raw_key, bytes):
                raise LocalProtocolError(f"bencode: dictionary key {key!r} is not a string")
            if raw_key in items:
                raise LocalProtocolError(f"bencode: duplicate dictionary key {raw_key!r}")
            items[raw_key] = item
        out.append(b"d")
        for raw_key in sorted(items):
            out.append(b"%d:" % len(raw_key))
            out.append(raw_key)
            _encode(items[raw_key], out, depth + 1)
        out.append(b"e")
    elif isinstance(value, Sequence):
        out.append(b"l")
        for item in value:
            _encode(item, out, depth + 1)
        out.append(b"e")
    else:
        raise LocalProtocolError(f"bencode: cannot encode {type(value).__name__}")


# --- decoding ---


def decode(data: bytes, *, max_size: int = MAX_SIZE, max_depth: int = MAX_DEPTH) -> Value:
    """Decode exactly one value filling all of ``data``; raises ``BencodeError``."""
    if len(data) > max_size:
        raise BencodeError(f"input of {len(data)} bytes exceeds {max_size}", max_size)
    decoder = _Decoder(bytes(data), max_depth)
    value = decoder.value(0)
    if decoder.pos != len(data):
        raise BencodeError("trailing data after the value", decoder.pos)
    return value


class _Decoder:
    __slots__ = ("data", "max_depth", "pos")

    def __init__(self, data: bytes, max_depth: int) -> None:
        self.data = data
        self.pos = 0
        self.max_depth = max_depth

    def value(self, depth: int) -> Value:
        data, pos = self.data, self.pos
        if pos >= len(data):
            raise BencodeError("unexpected end of input", pos)
        lead = data[pos]
        if lead == 0x69:  # i
            return self.integer()
        if 0x30 <= lead <= 0x39:
            return self.string()
        if lead in (0x6C, 0x64):  # l, d
            if depth >= self.max_depth:
                raise BencodeError(f"nesting deeper than {self.max_depth}", pos)
            return self.list(depth) if lead == 0x6C else self.dict(depth)
        raise BencodeError(f"unexpected byte {bytes([lead])!r}", pos)

    def integer(self) -> int:
        start = self.pos + 1
        end = self.data.find(b"e", start, start + _MAX_INT_DIGITS + 2)
        if end < 0:
            if len(self.data) - start > _MAX_INT_DIGITS + 1:
                raise BencodeError("integer too long", start)
            raise BencodeError("unterminated integer", start)
        text = self.data[start:end]
        digits = text[1:] if text[:1] == b"-" else text
        if not digits or not digits.isdigit():
            raise BencodeError(f"bad integer {text!r}", start)
        if digits[:1] == b"0" and (len(digits) > 1 or text[:1] == b"-"):
            raise BencodeError(f"non-canonical integer {text!r}", start)
        self.pos = end + 1
        return int(text)

    def string(self) -> bytes:
        start = self.pos
        colon = self.data.find(b":", start, start + _MAX_LEN_DIGITS + 1)
        if colon < 0:
            raise BencodeError("bad string length", start)
        digits = self.data[start:colon]
        if not digits.isdigit():
            raise BencodeError(f"bad string length {digits!r}", start)
        if digits[:1] == b"0" and len(digits) > 1:
            raise BencodeError(f"non-canonical string length {digits!r}", start)
        length = int(digits)
        begin = colon + 1
        if begin + length > len(self.data):
            raise BencodeError(f"string of {length} bytes runs past the end", start)
        self.pos = begin + length
        return self.data[begin : self.pos]

    def list(self, depth: int) -> list[Value]:
        self.pos += 1
        items: list[Value] = []
        while True:
            if self.pos >= len(self.data):
                raise BencodeError("unterminated list", self.pos)
            if self.data[self.pos] == 0x65:  # e
                self.pos += 1
                return items
            items.append(self.value(depth + 1))

    def dict(self, depth: int) -> dict[bytes, Value]:
        self.pos += 1
        items: dict[bytes, Value] = {}
        while True:
            pos = self.pos
            if pos >= len(self.data):
                raise BencodeError("unterminated dictionary", pos)
            lead = self.data[pos]
            if lead == 0x65:  # e
                self.pos += 1
                return items
            if not 0x30 <= lead <= 0x39:
                raise BencodeError("dictionary key is not a string", pos)
            key = self.string()
            if key in items:
                raise BencodeError(f"duplicate dictionary key {key[:40]!r}", pos)
            items[key] = self.value(depth + 1)
