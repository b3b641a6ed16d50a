# STUN messages: header, attribute walk, encoding, integrity and fingerprint (RFC 8489 §5,
# §6.3, §14.5-14.7, §14.9; RFC 8656 §11.4 Data indications).
#
# Rules:
# - Header: the top two bits are 0, the magic cookie is 0x2112A442, the length counts the
#   attributes and is a multiple of 4, and the datagram holds exactly header + length bytes.
# - Attributes are kept raw, in wire order (duplicates too); typed values come from the
#   table (``msg.get(LIFETIME)``), decoded on access, so a malformed value raises
#   ``StunError`` when it is read. Padding bytes may hold any value on receipt; we send 0.
# - Attributes after MESSAGE-INTEGRITY are ignored except MESSAGE-INTEGRITY-SHA256 and
#   FINGERPRINT; after MESSAGE-INTEGRITY-SHA256 only FINGERPRINT counts; FINGERPRINT must
#   be last. Ignored attributes are checked for framing but left out of ``attributes``.
# - At most ``MAX_ATTRIBUTES`` attributes (ignored ones included): a 64 KiB datagram of
#   empty attributes would otherwise cost milliseconds to walk (a CPU flood). Real clients
#   send fewer than 20; a CreatePermission may list several XOR-PEER-ADDRESS.
# - ``decode`` raises only ``StunError`` (code 400). Unknown comprehension-required types
#   (< 0x8000) are listed by ``unknown_required()``; the caller answers 420.
# - Integrity covers the message up to the attribute, with the header length pointing just
#   past it. When both forms are present, MESSAGE-INTEGRITY-SHA256 is the one checked.
"""STUN message model, codec, integrity and fingerprint checks."""

from __future__ import annotations

import enum
import hmac
import struct
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Final, TypeVar

from rtc64.errors import LocalProtocolError
from rtc64.net.address import IPAddress
from rtc64.stun.attributes import (
    ERROR_CODE,
    FINGERPRINT,
    MAGIC_COOKIE,
    MESSAGE_INTEGRITY,
    MESSAGE_INTEGRITY_SHA256,
    TABLE,
    Attr,
    Field,
)
from rtc64.stun.integrity import fingerprint as _crc_fingerprint
from rtc64.stun.integrity import hmac_sha1, hmac_sha256
from rtc64.stun.reader import StunError

T = TypeVar("T")

HEADER: Final = struct.Struct("!HHI12s")
HEADER_LENGTH: Final = 20
MAX_LENGTH: Final = 0xFFFF
MAX_ATTRIBUTES: Final = 64
_ATTR_HEADER: Final = struct.Struct("!HH")
_MI: Final = MESSAGE_INTEGRITY.type
_MI256: Final = MESSAGE_INTEGRITY_SHA256.type
_FP: Final = FINGERPRINT.type


class Class(enum.IntEnum):
    """Message class (RFC 8489 §5): the C1 C0 bits."""

    REQUEST = 0
    INDICATION = 1
    SUCCESS = 2
    ERROR = 3


class Method(enum.IntEnum):
    """STUN and TURN methods (RFC 8489 §18.2, RFC 8656 §17, RFC 6062 §6.1)."""

    BINDING = 0x001
    ALLOCATE = 0x003
    REFRESH = 0x004
    SEND = 0x006
    DATA = 0x007
    CREATE_PERMISSION = 0x008
    CHANNEL_BIND = 0x009
    CONNECT = 0x00A
    CONNECTION_BIND = 0x00B
    CONNECTION_ATTEMPT = 0x00C


REASONS: dict[int, str] = {
    300: "Try Alternate",
    400: "Bad Request",
    401: "Unauthenticated",
    403: "Forbidden",
    405: "Mobility Forbidden",
    420: "Unknown Attribute",
    437: "Allocation Mismatch",
    438: "Stale Nonce",
    440: "Address Family not Supported",
    441: "Wrong Credentials",
    442: "Unsupported Transport Protocol",
    443: "Peer Address Family Mismatch",
    446: "Connection Already Exists",
    447: "Connection Timeout or Failure",
    486: "Allocation Quota Reached",
    500: "Server Error",
    508: "Insufficient Capacity",
}
"""The reason phrases of RFC 8489 §14.8, RFC 8656 §19 and RFC 6062 §6.3."""


def message_type(method: int, cls: int) -> int:
    """The 14-bit message type: M11-M7 C1 M6-M4 C0 M3-M0 (RFC 8489 §5)."""
    return (
        (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((cls & 1) << 4)
        | ((cls & 2) << 7)
    )


def split_type(value: int) -> tuple[int, Class]:
    """``(method, class)`` of a message type."""
    method = (value & 0x000F) | ((value & 0x00E0) >> 1) | ((value & 0x3E00) >> 2)
    return method, _CLASSES[((value >> 4) & 1) | ((value >> 7) & 2)]


_CLASSES: Final = tuple(Class)  # by value 0-3: indexing is cheaper than calling the enum


class Message:
    """A STUN message: raw attributes in wire order, typed through the attribute table.

    ``raw`` and ``offsets`` (the offset in ``raw`` of each attribute's header) are set by
    ``decode`` for the integrity and fingerprint checks; they take no part in equality.
    An immutable value (equal and hashed by method, class, transaction id, attributes); a
    plain class rather than a frozen dataclass so that the mypyc build constructs it
    natively (two or three per request): a dataclass's ``__init__`` is generated Python.
    """

    __slots__ = ("attributes", "cls", "method", "offsets", "raw", "transaction_id")

    def __init__(
        self,
        method: int,
        cls: Class,
        transaction_id: bytes,
        attributes: tuple[tuple[int, bytes], ...] = (),
        *,
        raw: bytes = b"",
        offsets: tuple[int, ...] = (),
    ) -> None:
        self.method: Final = method
        self.cls: Final = cls
        self.transaction_id: Final = transaction_id
        self.attributes: Final = attributes
        self.raw: Final = raw
        self.offsets: Final = offsets

    def _key(self) -> tuple[int, Class, bytes, tuple[tuple[int, bytes], ...]]:
        return (self.method, self.cls, self.transaction_id, self.attributes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"Message(method={self.method!r}, cls={self.cls!r}, "
            f"transaction_id={self.transaction_id!r}, attributes={self.attributes!r})"
        )

    def value(self, type_: int) -> bytes | None:
        """The raw value of the first attribute of this type."""
        for t, v in self.attributes:
            if t == type_:
                return v
        return None

    def get(self, attr: Attr[T]) -> T | None:
        """The first attribute of this type, decoded (``StunError`` if malformed)."""
        raw = self.value(attr.type)
        return None if raw is None else attr.decode(raw, self.transaction_id)

    def get_all(self, attr: Attr[T]) -> list[T]:
        """Every attribute of this type, decoded, in wire order."""
        tid = self.transaction_id
        return [attr.decode(v, tid) for t, v in self.attributes if t == attr.type]

    def has(self, attr: Attr[Any] | int) -> bool:
        type_ = attr if isinstance(attr, int) else attr.type
        return any(t == type_ for t, _ in self.attributes)

    def unknown_required(self) -> tuple[int, ...]:
        """Comprehension-required types not in the table, each once, in wire order."""
        seen: dict[int, None] = {}
        for t, _ in self.attributes:
            if t < 0x8000 and t not in TABLE:
                seen[t] = None
        return tuple(seen)

    def error(self) -> tuple[int, str] | None:
        """ERROR-CODE as ``(code, reason)``, for an error response."""
        return self.get(ERROR_CODE)


def build(
    method: int, cls: Class, transaction_id: bytes, *fields: Field | tuple[int, bytes]
) -> Message:
    """A message from typed fields (``LIFETIME(600)``) or raw ``(type, value)`` pairs."""
    attributes = tuple(
        (f.attr.type, f.attr.encode(f.value, transaction_id)) if isinstance(f, Field) else f
        for f in fields
    )
    return Message(method, cls, bytes(transaction_id), attributes)


def response(request: Message, *fields: Field | tuple[int, bytes]) -> Message:
    """A success response to ``request`` (same method and transaction id)."""
    return build(request.method, Class.SUCCESS, request.transaction_id, *fields)


def error_response(
    request: Message, code: int, reason: str | None = None, *fields: Field | tuple[int, bytes]
) -> Message:
    """An error response with ERROR-CODE first; ``reason`` defaults to the RFC's phrase."""
    text = REASONS.get(code, "") if reason is None else reason
    return build(
        request.method, Class.ERROR, request.transaction_id, ERROR_CODE((code, text)), *fields
    )


# -- decoding -----------------------------------------------------------------------------


def looks_like_stun(data: bytes) -> bool:
    """True for a header that may be STUN: top bits 0, cookie, length a multiple of 4."""
    return (
        len(data) >= HEADER_LENGTH
        and data[0] & 0xC0 == 0
        and data[3] & 3 == 0
        and data[4:8] == b"\x21\x12\xa4\x42"
    )


def decode(data: bytes) -> Message:
    """Parse one STUN message (a whole datagram or stream frame); raises only ``StunError``."""
    data = bytes(data)
    if len(data) < HEADER_LENGTH:
        raise StunError("STUN: shorter than a header")
    type_, length, cookie, tid = HEADER.unpack_from(data)
    if type_ & 0xC000:
        raise StunError("STUN: top bits of the type are not 0")
    if cookie != MAGIC_COOKIE:
        raise StunError("STUN: wrong magic cookie")
    if length & 3:
        raise StunError("STUN: length not a multiple of 4")
    if HEADER_LENGTH + length != len(data):
        raise StunError(f"STUN: length {length} but {len(data) - HEADER_LENGTH} bytes follow")
    method, cls = split_type(type_)
    attributes: list[tuple[int, bytes]] = []
    offsets: list[int] = []
    after_mi = after_mi256 = after_fp = False
    count = 0
    offset = HEADER_LENGTH
    end = len(data)
    while offset < end:  # bounds checked inline (the hot path of every request)
        count += 1
        if count > MAX_ATTRIBUTES:
            raise StunError(f"STUN: more than {MAX_ATTRIBUTES} attributes")
        if offset + 4 > end:
            raise StunError(f"STUN: truncated (need 4 bytes, have {end - offset})")
        # bytes indexing, not struct: native integers in the compiled build
        t = (data[offset] << 8) | data[offset + 1]
        size = (data[offset + 2] << 8) | data[offset + 3]
        first = offset + 4
        stop = first + size
        pad = -size & 3
        if stop + pad > end:
            raise StunError(f"STUN: truncated (need {size + pad} bytes, have {end - first})")
        value = data[first:stop]
        here, offset = offset, stop + pad
        if after_fp:
            raise StunError("STUN: attribute after FINGERPRINT")
        if t == _FP:
            if size != 4:
                raise StunError("FINGERPRINT: length must be 4")
            after_fp = True
        elif after_mi256 or (after_mi and t != _MI256):
            continue  # RFC 8489 §14.5, §14.6: ignored
        elif t == _MI:
            if size != 20:
                raise StunError("MESSAGE-INTEGRITY: length must be 20")
            after_mi = True
        elif t == _MI256:
            MESSAGE_INTEGRITY_SHA256.decode(value, tid)  # 16-32 bytes in steps of 4
            after_mi256 = True
        attributes.append((t, value))
        offsets.append(here)
    return Message(method, cls, tid, tuple(attributes), raw=data, offsets=tuple(offsets))


# -- encoding -----------------------------------------------------------------------------


def _attribute(type_: int, value: bytes, pad: bytes = b"\0") -> bytes:
    size = len(value)
    if size > MAX_LENGTH:
        raise LocalProtocolError(f"attribute 0x{type_:04X} longer than 65535 bytes")
    return _ATTR_HEADER.pack(type_, size) + value + pad * (-size & 3)


def encode(
    msg: Message,
    *,
    key: bytes | None = None,
    sha256: bool = False,
    fingerprint: bool = False,
    pad: bytes = b"\0",
) -> bytes:
    """The wire form; with ``key`` a MESSAGE-INTEGRITY (or -SHA256 when ``sha256``), then
    FINGERPRINT when asked. Attributes already in ``msg`` are written as they are.
    ``pad`` is the padding byte (RFC 5769's vectors pad with spaces; we send zeros)."""
    if len(pad) != 1:
        raise LocalProtocolError("pad is one byte")
    if len(msg.transaction_id) != 12:
        raise LocalProtocolError("transaction id must be 12 bytes")
    if not 0 <= msg.method <= 0xFFF:
        raise LocalProtocolError(f"method 0x{msg.method:X} is not 12-bit")
    type_ = message_type(msg.method, msg.cls)
    parts: list[bytes] = []
    attr_header = _ATTR_HEADER.pack
    for t, v in msg.attributes:  # as _attribute() does, inline: every answer passes here
        size = len(v)
        if size > MAX_LENGTH:
            raise LocalProtocolError(f"attribute 0x{t:04X} longer than 65535 bytes")
        parts.append(attr_header(t, size))
        parts.append(v)
        if size & 3:
            parts.append(pad * (-size & 3))
    body = b"".join(parts)
    tid = msg.transaction_id
    # The header as each trailer sees it (its length just past that trailer); the
    # integrity and fingerprint trailers add 24/36 and 8 bytes.
    tail = (36 if sha256 else 24) if key is not None else 0
    if len(body) + tail + (8 if fingerprint else 0) > MAX_LENGTH:
        raise LocalProtocolError("STUN message longer than 65535 bytes")
    if key is not None:
        if sha256:
            mac = hmac_sha256(key, HEADER.pack(type_, len(body) + 36, MAGIC_COOKIE, tid) + body)
            body += _attribute(_MI256, mac)
        else:
            mac = hmac_sha1(key, HEADER.pack(type_, len(body) + 24, MAGIC_COOKIE, tid) + body)
            body += _attribute(_MI, mac)
    if fingerprint:
        crc = _crc_fingerprint(HEADER.pack(type_, len(body) + 8, MAGIC_COOKIE, tid) + body)
        body += _attribute(_FP, crc.to_bytes(4, "big"))
    return HEADER.pack(type_, len(body), MAGIC_COOKIE, tid) + body


def _index(msg: Message, type_: int) -> int:
    for i, (t, _) in enumerate(msg.attributes):
        if t == type_:
            return i
    return -1


def _covered(msg: Message, index: int) -> bytes:
    """The bytes an integrity attribute at ``index`` covers, its length field adjusted."""
    if not msg.raw or len(msg.offsets) != len(msg.attributes):
        raise LocalProtocolError("integrity is checked on a decoded message")
    offset = msg.offsets[index]
    size = len(msg.attributes[index][1])
    length = offset + 4 + size + (-size & 3) - HEADER_LENGTH
    raw = msg.raw
    return raw[:2] + length.to_bytes(2, "big") + raw[4:offset]


def check_integrity(msg: Message, key: bytes) -> bool:
    """True if the message's integrity attribute matches ``key`` (SHA-256 form preferred)."""
    i = _index(msg, _MI256)
    if i >= 0:
        value = msg.attributes[i][1]
        return hmac.compare_digest(hmac_sha256(key, _covered(msg, i), len(value)), value)
    i = _index(msg, _MI)
    if i >= 0:
        return hmac.compare_digest(hmac_sha1(key, _covered(msg, i)), msg.attributes[i][1])
    return False


def check_fingerprint(msg: Message) -> bool:
    """True if the message ends with a FINGERPRINT that matches its bytes."""
    if not msg.attributes or msg.attributes[-1][0] != _FP:
        return False
    if not msg.raw:
        raise LocalProtocolError("the fingerprint is checked on a decoded message")
    expected = _crc_fingerprint(msg.raw[: msg.offsets[-1]])
    return expected == int.from_bytes(msg.attributes[-1][1], "big")


def integrity_kind(msg: Message) -> Attr[bytes] | None:
    """Which integrity attribute ``check_integrity`` will check, if any."""
    if _index(msg, _MI256) >= 0:
        return MESSAGE_INTEGRITY_SHA256
    if _index(msg, _MI) >= 0:
        return MESSAGE_INTEGRITY
    return None


# -- fast path ----------------------------------------------------------------------------

_DATA_INDICATION: Final = message_type(Method.DATA, Class.INDICATION)
_PEER4: Final = struct.Struct("!HHBBH")  # XOR-PEER-ADDRESS header + reserved, family, x-port
_DATA_HEADER: Final = struct.Struct("!HH")
_PADS: Final = (b"", b"\0", b"\0\0", b"\0\0\0")
_COOKIE_PREFIX: Final = MAGIC_COOKIE << 96
_MAX_DATA_PAYLOAD: Final = MAX_LENGTH - 24 - 4 - 3  # room for an IPv6 XOR-PEER-ADDRESS and DATA


def data_indication(peer: tuple[IPAddress, int], payload: bytes, transaction_id: bytes) -> bytes:
    """A Data indication (XOR-PEER-ADDRESS then DATA), as ``encode(build(...))`` writes it,
    without building a message. The caller supplies the random transaction id."""
    if len(transaction_id) != 12:
        raise LocalProtocolError("transaction id must be 12 bytes")
    address, port = peer
    size = len(payload)
    if size > _MAX_DATA_PAYLOAD or not 0 <= port <= 0xFFFF:
        raise LocalProtocolError("payload too long for a Data indication, or bad port")
    if address.version == 4:
        head = _PEER4.pack(0x0012, 8, 0, 1, port ^ 0x2112) + (
            (int(address) ^ MAGIC_COOKIE).to_bytes(4, "big")
        )
    else:
        mask = _COOKIE_PREFIX | int.from_bytes(transaction_id, "big")
        head = _PEER4.pack(0x0012, 20, 0, 2, port ^ 0x2112) + (
            (int(address) ^ mask).to_bytes(16, "big")
        )
    pad = -size & 3
    length = len(head) + 4 + size + pad
    return b"".join(
        (
            HEADER.pack(_DATA_INDICATION, length, MAGIC_COOKIE, transaction_id),
            head,
            _DATA_HEADER.pack(0x0013, size),
            payload,
            _PADS[pad],
        )
    )


_SEND_INDICATION: Final = message_type(Method.SEND, Class.INDICATION)
_HEAD: Final = struct.Struct("!HHI")


def read_send_indication(data: bytes) -> tuple[tuple[IPAddress, int], memoryview] | None:
    """``(peer, payload view)`` of a plain Send indication, without building a message.

    Plain: one XOR-PEER-ADDRESS, one DATA, and only comprehension-optional attributes
    besides (no FINGERPRINT, no DONT-FRAGMENT). Anything else, malformed input included,
    gives ``None``: the caller hands the datagram to the core (slow path). Never raises.
    """
    size = len(data)
    if size < HEADER_LENGTH:
        return None
    type_, length, cookie = _HEAD.unpack_from(data)
    if type_ != _SEND_INDICATION or cookie != MAGIC_COOKIE or length + HEADER_LENGTH != size:
        return None
    pos = HEADER_LENGTH
    peer: tuple[IPAddress, int] | None = None
    start = end = -1
    count = 0
    while pos < size:
        count += 1
        if pos + 4 > size or count > MAX_ATTRIBUTES:
            return None
        t, n = _ATTR_HEADER.unpack_from(data, pos)
        first = pos + 4
        pos = first + n + (-n & 3)
        if pos > size:
            return None
        if t == 0x0012:  # XOR-PEER-ADDRESS
            if peer is not None:
                return None
            x_port = ((data[first + 2] << 8) | data[first + 3]) ^ 0x2112
            if n == 8 and data[first + 1] == 1:
                raw = int.from_bytes(data[first + 4 : first + 8], "big") ^ MAGIC_COOKIE
                peer = (IPv4Address(raw), x_port)
            elif n == 20 and data[first + 1] == 2:
                mask = _COOKIE_PREFIX | int.from_bytes(data[8:20], "big")
                raw = int.from_bytes(data[first + 4 : first + 20], "big") ^ mask
                peer = (IPv6Address(raw), x_port)
            else:
                return None
        elif t == 0x0013:  # DATA
            if start >= 0:
                return None
            start, end = first, first + n
        elif t < 0x8000 or t == _FP:
            return None
    if peer is None or start < 0:
        return None
    return peer, memoryview(data)[start:end]
