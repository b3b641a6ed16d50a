# The TURN benchmark's own minimal STUN/TURN client codec (RFC 8489 §5-§14, RFC 8656 §12,
# §18). Only what a load-generating client needs: build requests with long-term credentials
# (MESSAGE-INTEGRITY, HMAC-SHA1 over the MD5 key; FINGERPRINT), read a response's class,
# transaction id and the few attributes a client acts on. It is deliberately independent of
# rtc64.stun, so the benchmark does not measure the server with the server's own codec.
"""Minimal STUN client codec for the TURN benchmark (bench only, not rtc64.stun)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import ipaddress
import os
import struct
import zlib

MAGIC_COOKIE = 0x2112A442
_COOKIE = struct.pack("!I", MAGIC_COOKIE)
FINGERPRINT_XOR = 0x5354554E

# Methods (RFC 8489 §18.2, RFC 8656 §17) and classes.
BINDING, ALLOCATE, REFRESH, SEND, DATA, CREATE_PERMISSION, CHANNEL_BIND = 1, 3, 4, 6, 7, 8, 9
REQUEST, INDICATION, SUCCESS, ERROR = 0, 1, 2, 3

# Attributes (RFC 8489 §18.3, RFC 8656 §18).
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
ERROR_CODE = 0x0009
CHANNEL_NUMBER = 0x000C
LIFETIME = 0x000D
XOR_PEER_ADDRESS = 0x0012
REALM = 0x0014
NONCE = 0x0015
XOR_RELAYED_ADDRESS = 0x0016
REQUESTED_ADDRESS_FAMILY = 0x0017
REQUESTED_TRANSPORT = 0x0019
XOR_MAPPED_ADDRESS = 0x0020
SOFTWARE = 0x8022
FINGERPRINT = 0x8028

UDP = 17


def message_type(method: int, cls: int) -> int:
    """The 14-bit type: method bits M11..M0 interleaved with class bits C1 C0 (§5)."""
    return (
        ((method & 0x0F80) << 2)
        | ((method & 0x0070) << 1)
        | (method & 0x000F)
        | ((cls & 2) << 7)
        | ((cls & 1) << 4)
    )


def split_type(mtype: int) -> tuple[int, int]:
    """(method, class) of a message type."""
    method = (mtype & 0x000F) | ((mtype & 0x00E0) >> 1) | ((mtype & 0x3E00) >> 2)
    cls = ((mtype & 0x0100) >> 7) | ((mtype & 0x0010) >> 4)
    return method, cls


def transaction_id() -> bytes:
    return os.urandom(12)


def _attr(atype: int, value: bytes) -> bytes:
    pad = (-len(value)) % 4
    return struct.pack("!HH", atype, len(value)) + value + b"\0" * pad


def xor_address(ip: str, port: int, tid: bytes) -> bytes:
    """An XOR-*-ADDRESS value (§14.2)."""
    addr = ipaddress.ip_address(ip)
    xport = port ^ (MAGIC_COOKIE >> 16)
    if addr.version == 4:
        xip = int(addr) ^ MAGIC_COOKIE
        return struct.pack("!BBHI", 0, 1, xport, xip)
    mask = int.from_bytes(_COOKIE + tid, "big")
    return struct.pack("!BBH", 0, 2, xport) + (int(addr) ^ mask).to_bytes(16, "big")


def read_xor_address(value: bytes, tid: bytes) -> tuple[str, int]:
    family, xport = value[1], struct.unpack_from("!H", value, 2)[0]
    port = xport ^ (MAGIC_COOKIE >> 16)
    if family == 1:
        return str(
            ipaddress.IPv4Address(struct.unpack_from("!I", value, 4)[0] ^ MAGIC_COOKIE)
        ), port
    if family == 2:
        mask = int.from_bytes(_COOKIE + tid, "big")
        return str(ipaddress.IPv6Address(int.from_bytes(value[4:20], "big") ^ mask)), port
    raise ValueError(f"unknown address family {family}")


@dataclasses.dataclass(frozen=True, slots=True)
class Credentials:
    """A long-term credential as the client holds it (user name + password)."""

    username: str
    password: str

    def key(self, realm: bytes) -> bytes:
        """The long-term key MD5(username:realm:password) (§9.2.2)."""
        text = self.username.encode() + b":" + realm + b":" + self.password.encode()
        return hashlib.md5(text).digest()


def rest_credentials(secret: str, user: str, ttl: int, now: float) -> Credentials:
    """TURN REST credentials as coturn's use-auth-secret accepts them.

    username = "<expiry unix time>:<user>", password = base64(HMAC-SHA1(secret, username)).
    """
    username = f"{int(now) + ttl}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return Credentials(username, base64.b64encode(digest).decode())


@dataclasses.dataclass(frozen=True, slots=True)
class Auth:
    """What an authenticated request carries: credentials, realm and nonce from a 401."""

    username: bytes
    realm: bytes
    nonce: bytes
    key: bytes


def encode(
    method: int,
    cls: int,
    tid: bytes,
    attrs: list[tuple[int, bytes]],
    auth: Auth | None = None,
    fingerprint: bool = True,
) -> bytes:
    """A STUN message; with ``auth`` USERNAME/REALM/NONCE + MESSAGE-INTEGRITY are appended."""
    body = b"".join(_attr(t, v) for t, v in attrs)
    if auth is not None:
        body += _attr(USERNAME, auth.username) + _attr(NONCE, auth.nonce)
        body += _attr(REALM, auth.realm)
        head = struct.pack("!HH", message_type(method, cls), len(body) + 24) + _COOKIE + tid
        mac = hmac.new(auth.key, head + body, hashlib.sha1).digest()
        body += _attr(MESSAGE_INTEGRITY, mac)
    if fingerprint:
        head = struct.pack("!HH", message_type(method, cls), len(body) + 8) + _COOKIE + tid
        crc = (zlib.crc32(head + body) ^ FINGERPRINT_XOR) & 0xFFFFFFFF
        body += _attr(FINGERPRINT, struct.pack("!I", crc))
    return struct.pack("!HH", message_type(method, cls), len(body)) + _COOKIE + tid + body


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    method: int
    cls: int
    tid: bytes
    attrs: dict[int, bytes]

    @property
    def error(self) -> int:
        """The ERROR-CODE number (0 when absent)."""
        value = self.attrs.get(ERROR_CODE)
        if value is None or len(value) < 4:
            return 0
        return (value[2] & 7) * 100 + value[3]

    def address(self, atype: int) -> tuple[str, int] | None:
        value = self.attrs.get(atype)
        return None if value is None else read_xor_address(value, self.tid)


def decode(data: bytes) -> Response | None:
    """Header and attributes (first of each type) of a STUN message; None if not STUN."""
    if len(data) < 20 or data[0] & 0xC0 or data[4:8] != _COOKIE:
        return None
    mtype, length = struct.unpack_from("!HH", data, 0)
    if 20 + length > len(data):
        return None
    method, cls = split_type(mtype)
    attrs: dict[int, bytes] = {}
    pos, end = 20, 20 + length
    while pos + 4 <= end:
        atype, alen = struct.unpack_from("!HH", data, pos)
        if pos + 4 + alen > end:
            return None
        attrs.setdefault(atype, data[pos + 4 : pos + 4 + alen])
        pos += 4 + alen + ((-alen) % 4)
    return Response(method, cls, data[8:20], attrs)


# --- the requests a TURN client sends -------------------------------------------------


def allocate(tid: bytes, auth: Auth | None, lifetime: int | None = None) -> bytes:
    attrs = [(REQUESTED_TRANSPORT, bytes((UDP, 0, 0, 0)))]
    if lifetime is not None:
        attrs.append((LIFETIME, struct.pack("!I", lifetime)))
    return encode(ALLOCATE, REQUEST, tid, attrs, auth)


def refresh(tid: bytes, auth: Auth, lifetime: int) -> bytes:
    return encode(REFRESH, REQUEST, tid, [(LIFETIME, struct.pack("!I", lifetime))], auth)


def channel_bind(tid: bytes, auth: Auth, channel: int, peer: tuple[str, int]) -> bytes:
    attrs = [
        (CHANNEL_NUMBER, struct.pack("!HH", channel, 0)),
        (XOR_PEER_ADDRESS, xor_address(peer[0], peer[1], tid)),
    ]
    return encode(CHANNEL_BIND, REQUEST, tid, attrs, auth)


def channel_data(channel: int, payload: bytes) -> bytes:
    """A ChannelData message (RFC 8656 §12.4; no padding over UDP)."""
    return struct.pack("!HH", channel, len(payload)) + payload
