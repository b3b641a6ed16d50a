# The STUN attribute table: one codec per attribute type (RFC 8489 §14, §18.3; RFC 8656 §18;
# RFC 6156; RFC 6062 §6.2; RFC 8445 §16.1 for the ICE attributes a STUN server must read).
#
# Rules:
# - ``TABLE`` maps a type to its ``Attr``: ``decode(value, transaction_id)`` reads the value
#   through the bounded ``Reader`` and raises only ``StunError``; ``encode(value,
#   transaction_id)`` builds the value (without header or padding) and raises
#   ``LocalProtocolError`` for a value we should never send.
# - A type below 0x8000 that is not in ``TABLE`` is comprehension-required and unknown: the
#   caller answers a request with 420 and UNKNOWN-ATTRIBUTES (RFC 8489 §6.3.1, §14.9).
# - Addresses are ``(ipaddress, port)``; the XOR forms XOR the port with the cookie's top 16
#   bits, IPv4 with the cookie, IPv6 with cookie + transaction id (RFC 8489 §14.2).
#   Family 0x01 is IPv4, 0x02 IPv6; any other value, or a length that does not match the
#   family, is malformed.
# - Text attributes are UTF-8 with the RFC's length limits (USERNAME < 513 bytes, REALM,
#   NONCE, SOFTWARE, reason phrases < 763 bytes). SASLprep/OpaqueString is not applied:
#   values are kept and compared as the bytes the peer sent.
# - ERROR-CODE is ``(code, reason)`` with class 3-6 and number 0-99 (RFC 8489 §14.8).
"""Typed codecs for every STUN, TURN and ICE attribute rtc64 reads or writes."""

from __future__ import annotations

import enum
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Final, Generic, TypeVar

from rtc64.errors import LocalProtocolError
from rtc64.net.address import Family, IPAddress
from rtc64.stun.reader import Reader, StunError

T = TypeVar("T")

MAGIC_COOKIE: Final = 0x2112A442
_COOKIE_BYTES: Final = MAGIC_COOKIE.to_bytes(4, "big")
Address = tuple[IPAddress, int]

MAX_USERNAME: Final = 512  # RFC 5389 §15.3 "fewer than 513 bytes" (RFC 8489 lowered it to 508)
MAX_TEXT: Final = 762  # REALM, NONCE, SOFTWARE, reason phrase: "fewer than 763 bytes"

_WIRE_FAMILY = {1: Family.INET, 2: Family.INET6}
_FAMILY_WIRE = {Family.INET: 1, Family.INET6: 2}


class PasswordAlgorithm(enum.IntEnum):
    """RFC 8489 §18.5 password algorithms."""

    MD5 = 0x0001
    SHA256 = 0x0002


class Attr(Generic[T]):
    """One attribute type: its number, RFC name and value codec."""

    __slots__ = ("_decode", "_encode", "_fast", "name", "type")

    def __init__(
        self,
        type_: int,
        name: str,
        decode: Callable[[Reader, bytes], T],
        encode: Callable[[T, bytes], bytes],
        fast: Callable[[bytes, str], T] | None = None,
    ) -> None:
        self.type = type_
        self.name = name
        self._decode = decode
        self._encode = encode
        self._fast = fast
        """The same decoding straight from the value (no ``Reader``): text and integers,
        read on every request."""

    def __repr__(self) -> str:
        return f"<Attr 0x{self.type:04X} {self.name}>"

    @property
    def comprehension_required(self) -> bool:
        return self.type < 0x8000

    def decode(self, value: bytes, transaction_id: bytes) -> T:
        """The typed value; ``StunError`` (naming the attribute) if it is malformed."""
        fast = self._fast
        try:
            if fast is not None:
                return fast(value, self.name)
            reader = Reader(value, what=self.name)
            result = self._decode(reader, transaction_id)
        except UnicodeDecodeError:
            raise StunError(f"{self.name}: not UTF-8") from None
        reader.done()
        return result

    def encode(self, value: T, transaction_id: bytes) -> bytes:
        return self._encode(value, transaction_id)

    def __call__(self, value: T) -> Field:
        return Field(self, value)


class Field:
    """An attribute with a typed value, encoded once the transaction id is known.

    An immutable value; a plain class (not a named tuple, whose ``__new__`` is Python) so
    that the mypyc build constructs the several built for every answer natively."""

    __slots__ = ("attr", "value")

    def __init__(self, attr: Attr[Any], value: Any) -> None:
        self.attr: Final = attr
        self.value: Final[Any] = value  # Any, not `object`: mypyc builds it from known names

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Field):
            return NotImplemented
        return self.attr is other.attr and self.value == other.value

    def __hash__(self) -> int:
        return hash((self.attr.type, self.value))

    def __repr__(self) -> str:
        return f"Field(attr={self.attr!r}, value={self.value!r})"

    def pack(self, transaction_id: bytes) -> tuple[int, bytes]:
        return self.attr.type, self.attr.encode(self.value, transaction_id)


# -- value codecs -------------------------------------------------------------------------


def _mask(transaction_id: bytes, length: int) -> int:
    return int.from_bytes((_COOKIE_BYTES + transaction_id)[:length], "big")


def _read_address(r: Reader, transaction_id: bytes, xor: bool) -> Address:
    r.u8()  # reserved, ignored
    wire_family = r.u8()
    port = r.u16()
    if wire_family == 1:
        size = 4
    elif wire_family == 2:
        size = 16
    else:
        raise StunError(f"{r.what}: unknown address family {wire_family}")
    raw = int.from_bytes(r.read(size), "big")
    if xor:
        if len(transaction_id) != 12:
            raise StunError(f"{r.what}: transaction id must be 12 bytes")
        port ^= MAGIC_COOKIE >> 16
        raw ^= _mask(transaction_id, size)
    return (IPv4Address(raw) if size == 4 else IPv6Address(raw)), port


def _write_address(value: Address, transaction_id: bytes, xor: bool) -> bytes:
    address, port = value
    if not 0 <= port <= 0xFFFF:
        raise LocalProtocolError(f"port {port} out of range")
    size = 4 if address.version == 4 else 16
    raw = int(address)
    if xor:
        if len(transaction_id) != 12:
            raise LocalProtocolError("transaction id must be 12 bytes")
        port ^= MAGIC_COOKIE >> 16
        raw ^= _mask(transaction_id, size)
    family = 1 if size == 4 else 2
    return bytes((0, family)) + port.to_bytes(2, "big") + raw.to_bytes(size, "big")


_Codec = tuple[Callable[[Reader, bytes], T], Callable[[T, bytes], bytes]]


def _address(xor: bool) -> _Codec[Address]:
    def decode(r: Reader, tid: bytes) -> Address:
        return _read_address(r, tid, xor)

    def encode(value: Address, tid: bytes) -> bytes:
        return _write_address(value, tid, xor)

    return decode, encode


def _text(
    limit: int,
) -> tuple[
    Callable[[Reader, bytes], str], Callable[[str, bytes], bytes], Callable[[bytes, str], str]
]:
    def decode(r: Reader, _tid: bytes) -> str:
        if r.remaining > limit:
            raise StunError(f"{r.what}: longer than {limit} bytes")
        return r.rest().decode("utf-8")

    def fast(value: bytes, name: str) -> str:
        if len(value) > limit:
            raise StunError(f"{name}: longer than {limit} bytes")
        return value.decode("utf-8")

    def encode(value: str, _tid: bytes) -> bytes:
        data = value.encode("utf-8")
        if len(data) > limit:
            raise LocalProtocolError(f"text attribute longer than {limit} bytes")
        return data

    return decode, encode, fast


def _opaque(
    sizes: tuple[int, ...] | None,
) -> tuple[Callable[[Reader, bytes], bytes], Callable[[bytes, bytes], bytes]]:
    def decode(r: Reader, _tid: bytes) -> bytes:
        if sizes is not None and r.remaining not in sizes:
            raise StunError(f"{r.what}: length {r.remaining} not in {sizes}")
        return r.rest()

    def encode(value: bytes, _tid: bytes) -> bytes:
        if sizes is not None and len(value) not in sizes:
            raise LocalProtocolError(f"value of {len(value)} bytes, expected {sizes}")
        if len(value) > 0xFFFF:
            raise LocalProtocolError("attribute value longer than 65535 bytes")
        return bytes(value)

    return decode, encode


def _uint(
    size: int,
) -> tuple[
    Callable[[Reader, bytes], int], Callable[[int, bytes], bytes], Callable[[bytes, str], int]
]:
    def decode(r: Reader, _tid: bytes) -> int:
        if r.remaining != size:
            raise StunError(f"{r.what}: length {r.remaining}, expected {size}")
        return int.from_bytes(r.read(size), "big")

    def fast(value: bytes, name: str) -> int:
        if len(value) != size:
            raise StunError(f"{name}: length {len(value)}, expected {size}")
        return int.from_bytes(value, "big")

    def encode(value: int, _tid: bytes) -> bytes:
        if not 0 <= value < 1 << (8 * size):
            raise LocalProtocolError(f"{value} does not fit in {size} bytes")
        return value.to_bytes(size, "big")

    return decode, encode, fast


def _flag_decode(r: Reader, _tid: bytes) -> bool:
    if r.remaining:
        raise StunError(f"{r.what}: must be empty")
    return True


def _flag_encode(value: bool, _tid: bytes) -> bytes:
    if value is not True:
        raise LocalProtocolError("a flag attribute is present (True) or left out")
    return b""


def _check_code(code: int) -> None:
    if not 300 <= code <= 699:
        raise LocalProtocolError(f"error code {code} not in 300-699")


def _read_code(r: Reader, high_bits: int) -> tuple[int, str]:
    cls = high_bits & 0x7
    number = r.u8()
    if not 3 <= cls <= 6 or number > 99:
        raise StunError(f"{r.what}: class {cls} number {number} out of range")
    if r.remaining > MAX_TEXT:
        raise StunError(f"{r.what}: reason longer than {MAX_TEXT} bytes")
    return cls * 100 + number, r.rest().decode("utf-8")


def _write_code(code: int, reason: str) -> bytes:
    _check_code(code)
    data = reason.encode("utf-8")
    if len(data) > MAX_TEXT:
        raise LocalProtocolError(f"reason longer than {MAX_TEXT} bytes")
    return bytes((code // 100, code % 100)) + data


def _error_decode(r: Reader, _tid: bytes) -> tuple[int, str]:
    r.u16()  # reserved
    return _read_code(r, r.u8())


def _error_encode(value: tuple[int, str], _tid: bytes) -> bytes:
    return b"\0\0" + _write_code(*value)


def _wire_family(r: Reader, status: int) -> Family:
    wire = r.u8()
    family = _WIRE_FAMILY.get(wire)
    if family is None:
        raise StunError(f"{r.what}: unknown address family {wire}", status)
    return family


def _family_decode(r: Reader, _tid: bytes) -> Family:
    family = _wire_family(r, 440)  # RFC 8656 §7.2: unsupported family -> 440
    r.read(3)  # RFFU
    return family


def _family_wire(value: object) -> int:
    """The wire number of a ``Family`` (typed ``object``: a wrong value must be a
    ``LocalProtocolError`` in the mypyc build too, not its TypeError)."""
    wire = _FAMILY_WIRE.get(value) if isinstance(value, Family) else None
    if wire is None:
        raise LocalProtocolError(f"not an address family: {value!r}")
    return wire


def _family_encode(value: object, _tid: bytes) -> bytes:
    return bytes((_family_wire(value), 0, 0, 0))


def _address_error_decode(r: Reader, _tid: bytes) -> tuple[Family, int, str]:
    family = _wire_family(r, 400)
    r.u8()  # reserved
    code, reason = _read_code(r, r.u8())
    return family, code, reason


def _address_error_encode(value: tuple[object, int, str], _tid: bytes) -> bytes:
    family, code, reason = value
    return bytes((_family_wire(family), 0)) + _write_code(code, reason)


def _unknown_decode(r: Reader, _tid: bytes) -> tuple[int, ...]:
    if r.remaining % 2:
        raise StunError(f"{r.what}: odd length")
    return tuple(r.u16() for _ in range(r.remaining // 2))


def _unknown_encode(value: tuple[int, ...], _tid: bytes) -> bytes:
    if any(not 0 <= t <= 0xFFFF for t in value):
        raise LocalProtocolError("attribute types are 16-bit")
    return b"".join(t.to_bytes(2, "big") for t in value)


def _transport_decode(r: Reader, _tid: bytes) -> int:
    protocol = r.u8()
    r.read(3)  # RFFU
    return protocol


def _transport_encode(value: int, _tid: bytes) -> bytes:
    if not 0 <= value <= 0xFF:
        raise LocalProtocolError(f"protocol {value} not 0-255")
    return bytes((value, 0, 0, 0))


def _channel_decode(r: Reader, _tid: bytes) -> int:
    number = r.u16()
    r.u16()  # RFFU
    return number


def _channel_encode(value: int, _tid: bytes) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise LocalProtocolError(f"channel {value} not 16-bit")
    return value.to_bytes(2, "big") + b"\0\0"


def _even_port_decode(r: Reader, _tid: bytes) -> bool:
    return bool(r.u8() & 0x80)


def _even_port_encode(value: bool, _tid: bytes) -> bytes:
    return b"\x80" if value else b"\x00"


def _read_algorithm(r: Reader) -> tuple[int, bytes]:
    number = r.u16()
    length = r.u16()
    params = r.read(length)
    r.skip_padding(length)
    return number, params


def _write_algorithm(value: tuple[int, bytes]) -> bytes:
    number, params = value
    if not 0 <= number <= 0xFFFF or len(params) > 0xFFFF:
        raise LocalProtocolError("password algorithm number or parameters out of range")
    head = number.to_bytes(2, "big") + len(params).to_bytes(2, "big")
    return head + params + bytes(-len(params) & 3)


def _algorithm_decode(r: Reader, _tid: bytes) -> tuple[int, bytes]:
    return _read_algorithm(r)


def _algorithm_encode(value: tuple[int, bytes], _tid: bytes) -> bytes:
    return _write_algorithm(value)


def _algorithms_decode(r: Reader, _tid: bytes) -> tuple[tuple[int, bytes], ...]:
    out: list[tuple[int, bytes]] = []
    while r.remaining:
        out.append(_read_algorithm(r))
    return tuple(out)


def _algorithms_encode(value: tuple[tuple[int, bytes], ...], _tid: bytes) -> bytes:
    return b"".join(_write_algorithm(item) for item in value)


def _icmp_decode(r: Reader, _tid: bytes) -> tuple[int, int, int]:
    # RFC 8656 §18.13 draws a 7-bit type and 9-bit code, but ICMP types and codes are
    # octets (RFC 792, RFC 4443) and most stacks (turn-types, stun_formats) write one
    # octet each after 16 reserved bits; so do we: (type, code, error data).
    r.u16()  # reserved
    icmp_type = r.u8()
    icmp_code = r.u8()
    return icmp_type, icmp_code, r.u32()


def _icmp_encode(value: tuple[int, int, int], _tid: bytes) -> bytes:
    icmp_type, icmp_code, data = value
    if not (0 <= icmp_type <= 0xFF and 0 <= icmp_code <= 0xFF and 0 <= data <= 0xFFFFFFFF):
        raise LocalProtocolError("ICMP type/code/data out of range")
    return bytes((0, 0, icmp_type, icmp_code)) + data.to_bytes(4, "big")


def _sha256_mi_decode(r: Reader, _tid: bytes) -> bytes:
    # RFC 8489 §14.6: 16 to 32 bytes, a multiple of 4 (a truncated HMAC-SHA256).
    if not 16 <= r.remaining <= 32 or r.remaining % 4:
        raise StunError(f"{r.what}: length {r.remaining} not 16-32 in steps of 4")
    return r.rest()


_SHA256_SIZES: Final = (16, 20, 24, 28, 32)

# -- the table ----------------------------------------------------------------------------

TABLE: dict[int, Attr[Any]] = {}


def _register(attr: Attr[T]) -> Attr[T]:
    if attr.type in TABLE:
        raise AssertionError(f"duplicate attribute 0x{attr.type:04X}")
    TABLE[attr.type] = attr
    return attr


# RFC 8489 (STUN)
MAPPED_ADDRESS: Attr[Address] = _register(Attr(0x0001, "MAPPED-ADDRESS", *_address(False)))
USERNAME: Attr[str] = _register(Attr(0x0006, "USERNAME", *_text(MAX_USERNAME)))
MESSAGE_INTEGRITY: Attr[bytes] = _register(Attr(0x0008, "MESSAGE-INTEGRITY", *_opaque((20,))))
ERROR_CODE: Attr[tuple[int, str]] = _register(
    Attr(0x0009, "ERROR-CODE", _error_decode, _error_encode)
)
UNKNOWN_ATTRIBUTES: Attr[tuple[int, ...]] = _register(
    Attr(0x000A, "UNKNOWN-ATTRIBUTES", _unknown_decode, _unknown_encode)
)
REALM: Attr[str] = _register(Attr(0x0014, "REALM", *_text(MAX_TEXT)))
NONCE: Attr[str] = _register(Attr(0x0015, "NONCE", *_text(MAX_TEXT)))
MESSAGE_INTEGRITY_SHA256: Attr[bytes] = _register(
    Attr(0x001C, "MESSAGE-INTEGRITY-SHA256", _sha256_mi_decode, _opaque(_SHA256_SIZES)[1])
)
PASSWORD_ALGORITHM: Attr[tuple[int, bytes]] = _register(
    Attr(0x001D, "PASSWORD-ALGORITHM", _algorithm_decode, _algorithm_encode)
)
USERHASH: Attr[bytes] = _register(Attr(0x001E, "USERHASH", *_opaque((32,))))
XOR_MAPPED_ADDRESS: Attr[Address] = _register(Attr(0x0020, "XOR-MAPPED-ADDRESS", *_address(True)))
PASSWORD_ALGORITHMS: Attr[tuple[tuple[int, bytes], ...]] = _register(
    Attr(0x8002, "PASSWORD-ALGORITHMS", _algorithms_decode, _algorithms_encode)
)
ALTERNATE_DOMAIN: Attr[str] = _register(Attr(0x8003, "ALTERNATE-DOMAIN", *_text(MAX_TEXT)))
SOFTWARE: Attr[str] = _register(Attr(0x8022, "SOFTWARE", *_text(MAX_TEXT)))
ALTERNATE_SERVER: Attr[Address] = _register(Attr(0x8023, "ALTERNATE-SERVER", *_address(False)))
FINGERPRINT: Attr[int] = _register(Attr(0x8028, "FINGERPRINT", *_uint(4)))

# RFC 8656 (TURN), RFC 6156 (families), RFC 6062 (TCP allocations)
CHANNEL_NUMBER: Attr[int] = _register(
    Attr(0x000C, "CHANNEL-NUMBER", _channel_decode, _channel_encode)
)
LIFETIME: Attr[int] = _register(Attr(0x000D, "LIFETIME", *_uint(4)))
XOR_PEER_ADDRESS: Attr[Address] = _register(Attr(0x0012, "XOR-PEER-ADDRESS", *_address(True)))
DATA: Attr[bytes] = _register(Attr(0x0013, "DATA", *_opaque(None)))
XOR_RELAYED_ADDRESS: Attr[Address] = _register(Attr(0x0016, "XOR-RELAYED-ADDRESS", *_address(True)))
REQUESTED_ADDRESS_FAMILY: Attr[Family] = _register(
    Attr(0x0017, "REQUESTED-ADDRESS-FAMILY", _family_decode, _family_encode)
)
EVEN_PORT: Attr[bool] = _register(Attr(0x0018, "EVEN-PORT", _even_port_decode, _even_port_encode))
REQUESTED_TRANSPORT: Attr[int] = _register(
    Attr(0x0019, "REQUESTED-TRANSPORT", _transport_decode, _transport_encode)
)
DONT_FRAGMENT: Attr[bool] = _register(Attr(0x001A, "DONT-FRAGMENT", _flag_decode, _flag_encode))
RESERVATION_TOKEN: Attr[bytes] = _register(Attr(0x0022, "RESERVATION-TOKEN", *_opaque((8,))))
CONNECTION_ID: Attr[int] = _register(Attr(0x002A, "CONNECTION-ID", *_uint(4)))
ADDITIONAL_ADDRESS_FAMILY: Attr[Family] = _register(
    Attr(0x8000, "ADDITIONAL-ADDRESS-FAMILY", _family_decode, _family_encode)
)
ADDRESS_ERROR_CODE: Attr[tuple[Family, int, str]] = _register(
    Attr(0x8001, "ADDRESS-ERROR-CODE", _address_error_decode, _address_error_encode)
)
ICMP: Attr[tuple[int, int, int]] = _register(Attr(0x8004, "ICMP", _icmp_decode, _icmp_encode))

# RFC 8445 §16.1 (ICE): a Binding request from a browser carries these.
PRIORITY: Attr[int] = _register(Attr(0x0024, "PRIORITY", *_uint(4)))
USE_CANDIDATE: Attr[bool] = _register(Attr(0x0025, "USE-CANDIDATE", _flag_decode, _flag_encode))
ICE_CONTROLLED: Attr[int] = _register(Attr(0x8029, "ICE-CONTROLLED", *_uint(8)))
ICE_CONTROLLING: Attr[int] = _register(Attr(0x802A, "ICE-CONTROLLING", *_uint(8)))

NAMES: dict[int, str] = {t: a.name for t, a in TABLE.items()}
