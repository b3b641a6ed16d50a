# The bounded binary reader every STUN decoder reads through, and the one error it raises.
#
# Rules:
# - Reads never go past the end given at construction: an overrun, an oversize length or
#   padding that runs past the end raises ``StunError`` (code 400), never ``IndexError`` or
#   ``struct.error``.
# - ``StunError`` is the only exception the codec lets out on peer input (RFC 8489 §6.3:
#   a malformed request gets a 400 Bad Request, other malformed messages are dropped).
"""A bounded big-endian reader and ``StunError``."""

from __future__ import annotations

import struct

from rtc64.errors import RemoteProtocolError

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")


class StunError(RemoteProtocolError):
    """A STUN message or attribute is malformed; ``status`` is the error code to answer.

    400 (Bad Request) for anything malformed; an attribute codec may carry a more precise
    code (440 for an unknown REQUESTED-ADDRESS-FAMILY). Raised for requests and dropped
    silently for other classes by the caller, as RFC 8489 §6.3 says.
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason, status)


class Reader:
    """Reads big-endian fields from ``data[start:end]``; any overrun raises ``StunError``."""

    __slots__ = ("_data", "end", "pos", "what")

    def __init__(self, data: bytes, start: int = 0, end: int | None = None, what: str = "") -> None:
        self._data = data
        self.pos = start
        self.end = len(data) if end is None else end
        self.what = what
        if not 0 <= start <= self.end <= len(data):
            raise StunError(f"{what or 'STUN'}: truncated")

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def _take(self, n: int) -> int:
        pos = self.pos
        if n < 0 or pos + n > self.end:
            have = self.end - pos
            raise StunError(f"{self.what or 'STUN'}: truncated (need {n} bytes, have {have})")
        self.pos = pos + n
        return pos

    def u8(self) -> int:
        return self._data[self._take(1)]

    def u16(self) -> int:
        return int(_U16.unpack_from(self._data, self._take(2))[0])

    def u32(self) -> int:
        return int(_U32.unpack_from(self._data, self._take(4))[0])

    def u64(self) -> int:
        return int(_U64.unpack_from(self._data, self._take(8))[0])

    def read(self, n: int) -> bytes:
        pos = self._take(n)
        return self._data[pos : pos + n]

    def rest(self) -> bytes:
        return self.read(self.remaining)

    def skip_padding(self, length: int) -> None:
        """Skip the 0-3 bytes that pad a ``length``-byte value to 4 (any value, RFC 8489 §14)."""
        self._take(-length & 3)

    def done(self) -> None:
        """Raise unless every byte was read (a value longer than its type allows)."""
        if self.pos != self.end:
            extra = self.end - self.pos
            raise StunError(f"{self.what or 'STUN'}: {extra} unexpected trailing bytes")
