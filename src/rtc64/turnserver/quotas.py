"""Per-source limit on 401 challenges: a TURN server must not become a reflector.

Rules (RFC 8489 §6.3.4 and §9.2.4 "the server SHOULD limit..."; RFC 8656 §21.1.1, §21.2):

- An unauthenticated request costs the sender a few bytes and the server a 401 carrying
  REALM, NONCE, PASSWORD-ALGORITHMS and SOFTWARE: over UDP, with a spoofed source, that
  reflects (and amplifies) traffic at a victim; from one real source it is a guessing
  flood. The service passes every datagram the core wants to send through
  ``ChallengeLimiter.admit``: 401 error responses beyond ``rate`` per second (``burst``
  at once) per source prefix are dropped and counted; nothing else is touched.
- Meant for UDP clients (a TCP/TLS source is not spoofable). The defaults (20/s, burst
  100) leave room for many browsers behind one CGNAT IPv4 address: a 401 is ~150 bytes,
  so a reflected victim gets at most a few KB/s.
- Sources are keyed by prefix (/64 for IPv6, /32 for IPv4, IPv4-mapped as IPv4) in a
  bounded table (least recently used key goes first): ``net.tokenbucket.TokenBucket``.
- Spotting a 401 reads the raw bytes (STUN header and attribute TLVs, RFC 8489 §5, §14),
  bounded by the message length; anything malformed is "not a 401" (it is the core's own
  output, so that never happens in practice).
"""

from __future__ import annotations

from ipaddress import IPv6Address
from typing import Final

from rtc64.net.address import IPAddress, unmap
from rtc64.net.tokenbucket import TokenBucket

MAGIC_COOKIE: Final = b"\x21\x12\xa4\x42"
ERROR_CODE: Final = 0x0009
_CLASS_MASK: Final = 0x0110
_ERROR_CLASS: Final = 0x0110
_HEADER: Final = 20


def is_unauthorized(data: bytes | bytearray | memoryview) -> bool:
    """True if ``data`` is a STUN error response whose ERROR-CODE is 401."""
    view = data if isinstance(data, bytes) else bytes(data)  # bytes: indexed natively
    size = len(view)
    if size < _HEADER or view[4:8] != MAGIC_COOKIE:
        return False
    msg_type = (view[0] << 8) | view[1]
    if msg_type & 0xC000 or msg_type & _CLASS_MASK != _ERROR_CLASS:
        return False
    end = min(size, _HEADER + ((view[2] << 8) | view[3]))
    pos = _HEADER
    while pos + 4 <= end:
        attr = (view[pos] << 8) | view[pos + 1]
        length = (view[pos + 2] << 8) | view[pos + 3]
        value = pos + 4
        if attr == ERROR_CODE:
            if length < 4 or value + 4 > end:
                return False
            return (view[value + 2] & 0x07) == 4 and view[value + 3] == 1
        pos = value + ((length + 3) & ~3)
    return False


class ChallengeLimiter:
    """401 responses per second per source prefix; ``rate`` 0 turns the limit off."""

    __slots__ = ("bucket", "challenges", "dropped")

    def __init__(
        self,
        rate: float = 20.0,
        burst: float = 100.0,
        *,
        max_keys: int = 65536,
        v4_prefix: int = 32,
        v6_prefix: int = 64,
    ) -> None:
        self.bucket = TokenBucket(
            rate, burst, max_keys=max_keys, v4_prefix=v4_prefix, v6_prefix=v6_prefix
        )
        self.challenges = 0
        """401 responses let through (counter)."""
        self.dropped = 0
        """401 responses dropped because their source was over its budget (counter)."""

    def key(self, source: IPAddress) -> tuple[int, int]:
        """The bucket of ``source``: its prefix as (IP version, prefix bits), IPv4-mapped
        IPv6 counted as IPv4 (what ``net.tokenbucket.source_key`` names, as integers)."""
        source = unmap(source)
        bucket = self.bucket
        if isinstance(source, IPv6Address):
            return (6, int(source) >> (128 - bucket.v6_prefix))
        return (4, int(source) >> (32 - bucket.v4_prefix))

    def allow(self, source: IPAddress, now: float) -> bool:
        """May one more 401 go to ``source`` now? Counts either way."""
        if self.bucket.allow_key(self.key(source), now):
            self.challenges += 1
            return True
        self.dropped += 1
        return False

    def admit(self, data: bytes | bytearray | memoryview, source: IPAddress, now: float) -> bool:
        """True if ``data`` may be sent to ``source``: anything but a 401 always may."""
        if not is_unauthorized(data):
            return True
        return self.allow(source, now)

    def __len__(self) -> int:
        return len(self.bucket)
