# GRUUs (RFC 5627): globally routable URIs naming one UA instance of an AOR.
#
# Rules:
# - Public GRUU (§3.1): the AOR with ``gr=<instance URN>`` (the ``+sip.instance`` value
#   without its quotes and angle brackets), e.g. ``sip:bob@example.net;gr=urn:uuid:f81d...``.
#   It reveals the AOR by design.
# - Temporary GRUU (§3.2): ``sip:tgruu.<token>@<domain>;gr`` where the token is the AOR and
#   instance encrypted under a key derived from the gateway secret (a PRF keystream:
#   HMAC-SHA-256 of a random 8-byte nonce and a block counter) and authenticated
#   (encrypt-then-MAC, HMAC-SHA-256 truncated to 10 bytes), base32 without padding, lower
#   case. So the gateway needs no storage to resolve one, nobody without the secret learns
#   the AOR from it, and a forged or altered token is refused. The token also carries 8
#   bytes of SHA-256 of the REGISTER's Call-ID: a temporary GRUU reaches the instance only
#   while it is registered with that Call-ID (RFC 5627: a UA that reboots and
#   registers with a new Call-ID invalidates the ones it was given). Each REGISTER hands
#   out a fresh one (random nonce); all stay valid as long as that holds.
# - A request whose Request-URI is a GRUU reaches only bindings of that instance;
#   none live answers 480.

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

from rtc64.sip.grammar import PARAM_CHARS
from rtc64.sip.uri import SipUri

TEMP_PREFIX = "tgruu."
_NONCE = 8
_MAC = 10
_TAG = 8


@dataclass(frozen=True, slots=True)
class GruuTarget:
    """What a GRUU names: the AOR (None for a public GRUU: the URI itself), the instance
    URN, and for a temporary GRUU the Call-ID tag its binding must still have."""

    aor: str | None
    instance: bytes
    call_tag: bytes | None = None


def call_tag(call_id: bytes) -> bytes:
    """The 8-byte tag of a REGISTER's Call-ID that a temporary GRUU carries."""
    return hashlib.sha256(call_id).digest()[:_TAG]


MAX_TOKEN = 1024  # base32 characters: an AOR and a 256-byte instance fit


def instance_urn(instance: bytes) -> bytes:
    """The ``+sip.instance`` value as its bare URN (no quotes, no angle brackets)."""
    return instance.strip().strip(b'"').strip().strip(b"<>").strip()


def public_gruu(aor: str, instance: bytes) -> bytes | None:
    """The public GRUU of ``instance`` of ``aor`` (None for an empty instance)."""
    urn = instance_urn(instance)
    if not urn:
        return None
    return aor.encode("utf-8") + b";gr=" + _escape(urn)


_GR_SAFE = frozenset(PARAM_CHARS) - {ord("%")}


def _escape(value: bytes) -> bytes:
    """``value`` as a URI parameter value: every octet outside paramchar as ``%HH``."""
    return b"".join(bytes((c,)) if c in _GR_SAFE else b"%%%02X" % c for c in value)


def _keys(secret: bytes) -> tuple[bytes, bytes]:
    enc = hmac.new(secret, b"rtc64 temp-gruu enc", hashlib.sha256).digest()
    mac = hmac.new(secret, b"rtc64 temp-gruu mac", hashlib.sha256).digest()
    return enc, mac


def _stream(key: bytes, nonce: bytes, length: int) -> bytes:
    out = bytearray()
    block = 0
    while len(out) < length:
        out += hmac.new(key, nonce + block.to_bytes(4, "big"), hashlib.sha256).digest()
        block += 1
    return bytes(out[:length])


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def temp_gruu(secret: bytes, aor: str, instance: bytes, call_id: bytes) -> bytes | None:
    """A fresh temporary GRUU for ``instance`` of ``aor`` registered with ``call_id``
    (random nonce: each differs); None when they are too long for one (``MAX_TOKEN``)."""
    enc, mac_key = _keys(secret)
    plain = call_tag(call_id) + aor.encode("utf-8") + b"\x00" + instance_urn(instance)
    nonce = os.urandom(_NONCE)
    cipher = _xor(plain, _stream(enc, nonce, len(plain)))
    tag = hmac.new(mac_key, nonce + cipher, hashlib.sha256).digest()[:_MAC]
    token = base64.b32encode(nonce + cipher + tag).decode("ascii").rstrip("=").lower()
    if len(token) > MAX_TOKEN:
        return None
    domain = aor.rpartition("@")[2] if "@" in aor else aor.removeprefix("sip:")
    return f"sip:{TEMP_PREFIX}{token}@{domain};gr".encode("ascii", "replace")


def open_temp_gruu(secret: bytes, user: bytes) -> GruuTarget | None:
    """The AOR, instance URN and Call-ID tag inside a temporary GRUU's user part, or None
    when it is not one of ours (wrong prefix, bad encoding, forged or altered)."""
    text = user.decode("ascii", "replace").lower()
    if not text.startswith(TEMP_PREFIX):
        return None
    token = text[len(TEMP_PREFIX) :]
    if not token or len(token) > MAX_TOKEN:
        return None
    try:
        raw = base64.b32decode(token.upper() + "=" * (-len(token) % 8))
    except ValueError:
        return None
    if len(raw) < _NONCE + _MAC + _TAG + 3:
        return None
    nonce, cipher, tag = raw[:_NONCE], raw[_NONCE:-_MAC], raw[-_MAC:]
    enc, mac_key = _keys(secret)
    expected = hmac.new(mac_key, nonce + cipher, hashlib.sha256).digest()[:_MAC]
    if not hmac.compare_digest(expected, tag):
        return None
    plain = _xor(cipher, _stream(enc, nonce, len(cipher)))
    tag, rest = plain[:_TAG], plain[_TAG:]
    aor, sep, urn = rest.partition(b"\x00")
    if not sep or not urn:
        return None
    try:
        return GruuTarget(aor.decode("utf-8"), urn, tag)
    except UnicodeDecodeError:
        return None


def gruu_instance(secret: bytes, uri: SipUri) -> GruuTarget | None:
    """What a GRUU Request-URI names, or None when ``uri`` is no GRUU (no ``gr``
    parameter) or a temporary GRUU that is not ours."""
    gr = uri.param(b"gr")
    if gr is None:
        return None
    if gr:
        return GruuTarget(None, instance_urn(gr))
    if uri.user is None:
        return None
    return open_temp_gruu(secret, uri.user)
