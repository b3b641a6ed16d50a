"""DHCPv4 DISCOVER/OFFER for RFC 8925 ("IPv6-Only Preferred", option 108), without I/O.

Rules (RFC 2131 §2 and §4.4.1, RFC 2132 §9.8 parameter request list, RFC 8925 §3.2-§3.4):

- The DISCOVER asks for option 108 in the parameter request list (55) with subnet mask,
  router and DNS, sets the broadcast flag (the client has no address to be unicast to),
  and carries no requested address: the probe never REQUESTs, so no lease is taken.
- An OFFER is accepted only for our ``xid`` and our hardware address; option 108's value
  is V6ONLY_WAIT, 4 octets, seconds (RFC 8925 §3.4: a client uses at least 300 s).
- Parsing is bounded: the options area is walked once, a length past the end stops the
  walk, and ``DhcpError`` is the only exception.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from rtc64.errors import RemoteProtocolError

MAGIC = b"\x63\x82\x53\x63"
BOOTREQUEST, BOOTREPLY = 1, 2
DISCOVER, OFFER = 1, 2
OPTION_MESSAGE_TYPE = 53
OPTION_SERVER_ID = 54
OPTION_PRL = 55
OPTION_V6ONLY = 108
OPTION_END = 255
OPTION_PAD = 0
MIN_V6ONLY_WAIT = 300
_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")


class DhcpError(RemoteProtocolError):
    """A DHCP message that is not a well-formed answer to us."""


def new_xid() -> int:
    return secrets.randbits(32)


def discover(xid: int, mac: bytes) -> bytes:
    """A DHCPDISCOVER asking for option 108."""
    chaddr = mac.ljust(16, b"\0")
    zero = b"\0\0\0\0"
    header = _HEADER.pack(
        BOOTREQUEST, 1, len(mac), 0, xid, 0, 0x8000, zero, zero, zero, zero, chaddr,
        b"\0" * 64, b"\0" * 128,
    )  # fmt: skip
    options = bytes((OPTION_MESSAGE_TYPE, 1, DISCOVER))
    options += bytes((OPTION_PRL, 4, 1, 3, 6, OPTION_V6ONLY))
    return header + MAGIC + options + bytes((OPTION_END,))


@dataclass(frozen=True, slots=True)
class Offer:
    server: IPv4Address | None
    offered: IPv4Address
    v6only_wait: int | None
    """Option 108's value in seconds, None when the server did not send it."""


def parse_offer(data: bytes, xid: int, mac: bytes) -> Offer:
    """The OFFER answering ``xid`` for ``mac``; ``DhcpError`` for anything else."""
    if len(data) < _HEADER.size + 4:
        raise DhcpError("DHCP: shorter than a BOOTP header")
    fields = _HEADER.unpack_from(data)
    op, htype, hlen, _hops, got_xid = fields[:5]
    yiaddr, chaddr = fields[8], fields[11]
    if op != BOOTREPLY or got_xid != xid:
        raise DhcpError("DHCP: not a reply to our transaction")
    if htype != 1 or hlen != len(mac) or chaddr[:hlen] != mac:
        raise DhcpError("DHCP: reply for another hardware address")
    if data[_HEADER.size : _HEADER.size + 4] != MAGIC:
        raise DhcpError("DHCP: no magic cookie")
    options = read_options(data[_HEADER.size + 4 :])
    kind = options.get(OPTION_MESSAGE_TYPE)
    if kind != bytes((OFFER,)):
        raise DhcpError("DHCP: not an OFFER")
    server = options.get(OPTION_SERVER_ID)
    wait = options.get(OPTION_V6ONLY)
    if wait is not None and len(wait) != 4:
        raise DhcpError("DHCP: option 108 is not 4 octets")
    return Offer(
        IPv4Address(server) if server is not None and len(server) == 4 else None,
        IPv4Address(yiaddr),
        int.from_bytes(wait, "big") if wait is not None else None,
    )


def read_options(area: bytes) -> dict[int, bytes]:
    """Option code -> value (the first of each code); stops at END or the area's end."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(area):
        code = area[pos]
        if code == OPTION_END:
            break
        if code == OPTION_PAD:
            pos += 1
            continue
        if pos + 1 >= len(area):
            raise DhcpError("DHCP: option without a length")
        length = area[pos + 1]
        end = pos + 2 + length
        if end > len(area):
            raise DhcpError(f"DHCP: option {code} runs past the message")
        out.setdefault(code, area[pos + 2 : end])
        pos = end
    return out
