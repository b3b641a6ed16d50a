"""Error responses to requests that could not be parsed (or are refused before parsing:
a 503 under overload, ``gateway.proxy.service.Proxy.shed_raw``).

Rules (RFC 3261 §8.2.6, §16.3; RFC 4475 §3.1.2): a request whose start line looks like
a request and which carries Via, From, To, Call-ID and CSeq lines gets an error response
built from those lines copied byte-exact (every Via, the first of each of the others; a
To tag added), so the client can match it even though the message was malformed.
Anything else (responses, garbage, requests missing those lines) gets no answer: the
caller drops and counts it.
"""

from __future__ import annotations

import secrets

from rtc64.errors import RemoteProtocolError
from rtc64.sip.headers import header_key

_COPY = (b"via", b"from", b"to", b"call-id", b"cseq")
_MAX_REASON = 200


def _lines(data: bytes) -> list[bytes]:
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[:end]
    out: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and out:
            out[-1] += b" " + line.strip()
        else:
            out.append(line)
    return out


def _reason(status: int, reason: str) -> bytes:
    text = reason.encode("ascii", "replace")[:_MAX_REASON]
    return bytes(c if 0x20 <= c < 0x7F else 0x3F for c in text) or b"%d" % status


def reject_bytes(
    data: bytes, status: int, reason: str, extra: tuple[bytes, bytes] | None = None
) -> bytes | None:
    """The response to send for request ``data`` (malformed, or refused before parsing),
    with one ``extra`` header (name, value) if given, or None (drop it)."""
    lines = _lines(data)
    start = lines[0].rstrip(b" \t") if lines else b""  # trailing SP: RFC 4475 trws
    parts = start.split(b" ")
    if len(parts) < 3 or parts[0].startswith(b"SIP/") or not parts[-1].startswith(b"SIP/"):
        return None
    copied: dict[bytes, list[bytes]] = {k: [] for k in _COPY}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        try:
            key = header_key(name.strip())
        except RemoteProtocolError:
            key = b""  # a malformed name is simply not copied
        if key in copied and (key == b"via" or not copied[key]):
            # Via lines all; From, To, Call-ID and CSeq once each (RFC 4475 multi01).
            copied[key].append(name.strip() + b": " + value.strip())
    if any(not copied[k] for k in _COPY):
        return None
    to = copied[b"to"][0]
    if b";tag=" not in to.lower().replace(b" ", b""):
        to += b";tag=" + secrets.token_hex(6).encode("ascii")
    copied[b"to"] = [to]
    out = [b"SIP/2.0 %d %s" % (status, _reason(status, reason))]
    for key in _COPY:
        out.extend(copied[key])
    if extra is not None:
        out.append(extra[0] + b": " + extra[1])
    out += [b"Content-Length: 0", b"", b""]
    return b"\r\n".join(out)
