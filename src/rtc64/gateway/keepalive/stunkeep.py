# STUN keep-alives on the SIP UDP ports (RFC 5626 §4.4.2, §8; RFC 8489 §6.3, §14.2).
#
# Rules:
# - A Binding request is answered with XOR-MAPPED-ADDRESS (the source it came from), plus
#   FINGERPRINT when the request carried one (a valid one: an invalid fingerprint means the
#   datagram is not STUN for us, dropped). No authentication: RFC 5626 keep-alives carry no
#   credentials, and the answer tells the client only its own address.
# - A request with unknown comprehension-required attributes gets 420 with
#   UNKNOWN-ATTRIBUTES (§6.3.1.1). Binding indications are keep-alives: nothing to answer.
#   Anything else (other methods, responses, malformed messages) is dropped.
# - An answer is never much larger than the request that caused it (at most 44 bytes to a
#   20-byte request), so the port is a poor reflector.

from __future__ import annotations

from rtc64.net.endpoint import SockAddr
from rtc64.stun import StunError
from rtc64.stun.attributes import FINGERPRINT, UNKNOWN_ATTRIBUTES, XOR_MAPPED_ADDRESS
from rtc64.stun.message import (
    Class,
    Method,
    check_fingerprint,
    decode,
    encode,
    error_response,
    response,
)


def answer(data: bytes, source: SockAddr) -> bytes | None:
    """The bytes to send back to ``source`` for a STUN datagram, or None to drop it."""
    try:
        msg = decode(data)
    except StunError:
        return None
    if msg.method != Method.BINDING or msg.cls is not Class.REQUEST:
        return None
    fingerprint = msg.has(FINGERPRINT)
    if fingerprint and not check_fingerprint(msg):
        return None
    unknown = msg.unknown_required()
    if unknown:
        reply = error_response(msg, 420, None, UNKNOWN_ATTRIBUTES(unknown))
    else:
        reply = response(msg, XOR_MAPPED_ADDRESS(source))
    return encode(reply, fingerprint=fingerprint)
