"""SIP grammar building blocks shared by the URI and header parsers.

Rules (RFC 3261 §25.1, §7.3.1, §19.1.2):

- Character classes are byte strings used with ``bytes.translate(None, allowed)``: whatever
  is left over is not allowed. No per-character loops or regexes on the hot path.
  Substring tests are ``data.find(sub) >= 0``, not ``sub in data``: on CPython 3.11
  ``bytes.__contains__`` first tries ``sub`` as an integer and builds and clears a
  TypeError (~2,000 instructions; ``find`` ~10 % of that), and parsers ask it ~30 times per message.
- ``token``, ``word`` (Call-ID), URI user/password/parameter/header characters, and
  ``%HH`` escapes exactly as §25.1 spells them; ``%`` is an escape only where a production
  says ``escaped``.
- Quoted strings end at the first unescaped ``"``; a quoted-pair is ``\\`` plus one octet.
- Generic parameters are ``*( SEMI name [ EQUAL value ] )`` with optional LWS around ``;``
  and ``=`` (SEMI = SWS ";" SWS); values are token, host or quoted-string.
- Comma lists split at top-level commas only: never inside quotes or ``<...>``.
- Every failure raises ``RemoteProtocolError`` (400) with a reason saying what was wrong.
"""

from __future__ import annotations

from collections.abc import Iterable

from rtc64.errors import RemoteProtocolError

Params = tuple[tuple[bytes, bytes | None], ...]
"""Parameters as written: ``(name, value)``, value ``None`` when the parameter has none."""

ALNUM = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
TOKEN_CHARS = ALNUM + b"-.!%*_+`'~"
WORD_CHARS = TOKEN_CHARS + b'()<>:\\"/[]?{}'
UNRESERVED = ALNUM + b"-_.!~*'()"
USER_CHARS = UNRESERVED + b"%&=+$,;?/"
PASSWORD_CHARS = UNRESERVED + b"%&=+$,"
PARAM_CHARS = UNRESERVED + b"%[]/:&+$"
HEADER_CHARS = UNRESERVED + b"%[]/?:+$"
URIC_CHARS = UNRESERVED + b"%;/?:@&=+$,"
SCHEME_CHARS = ALNUM + b"+-."
GEN_VALUE_CHARS = TOKEN_CHARS + b"[]:"
DISPLAY_CHARS = TOKEN_CHARS + b" \t"
HEX = b"0123456789abcdefABCDEF"
WS = b" \t"
_SHOWN = 48
_SAFE = UNRESERVED + b";/?:@&=+$, "


def show(value: bytes) -> str:
    """Peer bytes as they may appear in a reason phrase: bounded, quoted, only safe octets."""
    cut = value[:_SHOWN]
    text = "".join(chr(c) if c in _SAFE else "?" for c in cut)
    return f"'{text}...'" if len(value) > _SHOWN else f"'{text}'"


def bad(what: str) -> RemoteProtocolError:
    """A 400 error whose reason phrase is ``Bad Request: <what>``."""
    return RemoteProtocolError(f"Bad Request: {what}")


def is_token(value: bytes) -> bool:
    """True for a non-empty RFC 3261 ``token``."""
    return bool(value) and not value.translate(None, TOKEN_CHARS)


def check_escapes(value: bytes, what: str) -> None:
    """Every ``%`` in ``value`` must start a ``%HH`` escape."""
    i = value.find(b"%")
    while i >= 0:
        pair = value[i + 1 : i + 3]
        if len(pair) != 2 or pair.translate(None, HEX):
            raise bad(f"invalid %-escape in {what}")
        i = value.find(b"%", i + 3)


def unescape(value: bytes) -> bytes:
    """Decode ``%HH`` escapes (``%00`` included); a ``%`` not followed by two hex digits stays."""
    if value.find(b"%") < 0:
        return value
    pieces = value.split(b"%")
    out = [pieces[0]]
    for piece in pieces[1:]:
        pair = piece[:2]
        if len(pair) == 2 and not pair.translate(None, HEX):
            out.append(bytes((int(pair, 16),)))
            out.append(piece[2:])
        else:
            out.append(b"%")
            out.append(piece)
    return b"".join(out)


def quoted_end(value: bytes, i: int, what: str = "header value") -> int:
    """Index just past the quoted string that opens at ``value[i]`` (a ``"``)."""
    j = i + 1
    while True:
        q = value.find(b'"', j)
        if q < 0:
            raise bad(f"unterminated quoted string in {what}")
        slash = value.find(b"\\", j, q)
        if slash < 0:
            return q + 1
        j = slash + 2


def unquote(value: bytes) -> bytes:
    """The text of a complete quoted string (quotes removed, quoted-pairs resolved)."""
    inner = value[1:-1]
    if inner.find(b"\\") < 0:
        return inner
    out = bytearray()
    i = 0
    while i < len(inner):
        c = inner[i]
        if c == 0x5C and i + 1 < len(inner):
            i += 1
            c = inner[i]
        out.append(c)
        i += 1
    return bytes(out)


def quote(text: bytes) -> bytes:
    """Write ``text`` as a quoted string, escaping ``"`` and ``\\``."""
    return b'"' + text.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def split_top(value: bytes, sep: bytes, *, angle: bool = True) -> list[bytes]:
    """Split at ``sep`` outside quoted strings (and outside ``<...>`` when ``angle``)."""
    if value.find(sep) < 0:
        return [value]
    if value.find(b'"') < 0 and (not angle or value.find(b"<") < 0):
        return value.split(sep)
    parts: list[bytes] = []
    start = 0
    i = 0
    n = len(value)
    while i < n:
        nxt = value.find(sep, i)
        q = value.find(b'"', i)
        a = value.find(b"<", i) if angle else -1
        stops = [p for p in (nxt, q, a) if p >= 0]
        if not stops:
            break
        k = min(stops)
        if k == q:
            i = quoted_end(value, q)
        elif k == a:
            gt = value.find(b">", a)
            if gt < 0:
                raise bad("unbalanced '<'")
            i = gt + 1
        else:
            parts.append(value[start:k])
            start = i = k + 1
    parts.append(value[start:])
    return parts


def first_top(value: bytes, sep: bytes, start: int = 0) -> int:
    """Index of the first ``sep`` outside quotes and ``<...>`` at or after ``start``, or -1."""
    i = start
    while True:
        nxt = value.find(sep, i)
        if nxt < 0:
            return -1
        q = value.find(b'"', i, nxt)
        a = value.find(b"<", i, nxt)
        if q < 0 and a < 0:
            return nxt
        if q >= 0 and (a < 0 or q < a):
            i = quoted_end(value, q)
        else:
            gt = value.find(b">", a)
            if gt < 0:
                raise bad("unbalanced '<'")
            i = gt + 1


def parse_params(value: bytes, what: str) -> Params:
    """Parse ``*( SEMI generic-param )``; ``value`` is empty or starts with ``;`` (after LWS)."""
    pieces = split_top(value, b";", angle=False) if value.find(b'"') >= 0 else value.split(b";")
    lws = value.find(b" ") >= 0 or value.find(b"\t") >= 0
    if pieces[0].strip(WS) if lws else pieces[0]:
        raise bad(f"unexpected text {show(pieces[0].strip(WS))} in {what}")
    out: list[tuple[bytes, bytes | None]] = []
    for piece in pieces[1:]:
        name, eq, val = piece.partition(b"=")
        if lws:
            name = name.strip(WS)
            val = val.strip(WS)
        if not name:
            raise bad(f"empty parameter in {what}")
        if name.translate(None, TOKEN_CHARS):
            raise bad(f"invalid parameter name {show(name)} in {what}")
        if not eq:
            out.append((name, None))
            continue
        if not val:
            raise bad(f"parameter {show(name)} without value in {what}")
        if val[0] == 0x22:
            if quoted_end(val, 0, what) != len(val):
                raise bad(f"text after quoted value of parameter {show(name)} in {what}")
        elif val.translate(None, GEN_VALUE_CHARS):
            raise bad(f"invalid value {show(val)} for parameter {show(name)} in {what}")
        out.append((name, val))
    return tuple(out)


def format_params(params: Iterable[tuple[bytes, bytes | None]]) -> bytes:
    """Write parameters as ``;name=value`` / ``;name``."""
    return b"".join(b";" + n if v is None else b";" + n + b"=" + v for n, v in params)


def param_value(params: Params, name: bytes) -> bytes | None:
    """The value of parameter ``name`` (lower-case), or ``None`` if absent or valueless."""
    for n, v in params:
        if n.lower() == name:
            return v
    return None


def has_param(params: Params, name: bytes) -> bool:
    """True if parameter ``name`` (lower-case) is present, with or without a value."""
    return any(n.lower() == name for n, _ in params)


def parse_uint(value: bytes, what: str, maximum: int) -> int:
    """Parse ``1*DIGIT`` (leading zeros allowed) in ``0..maximum``."""
    if not value.isdigit():
        raise bad(f"invalid {what} {show(value)}")
    digits = value.lstrip(b"0")
    if len(digits) > len(str(maximum)) or int(value) > maximum:
        raise bad(f"{what} out of range (0..{maximum})")
    return int(value)
