"""DHCPv4 DISCOVER/OFFER for RFC 8925 ("IPv6-Only Preferred", option 108), without I/O.

Rules (RFC 2131 §2 and §4.4.1, RFC 2132 §9.8 parameter request list, RFC 8925 §3.2-§3.4):

- The codec is ``clat.dhcp4``'s (the CLAT daemon's probe): the DISCOVER asks for option
  108 with subnet mask, router and DNS, sets the broadcast flag and carries no requested
  address: the probe never REQUESTs, so no lease is taken.
- An OFFER is accepted only for our ``xid`` and our hardware address; option 108's value
  is V6ONLY_WAIT, 4 octets, seconds (RFC 8925 §3.4: a client uses at least 300 s). The
  network probe refuses an OFFER whose option 108 is not 4 octets (a broken server is
  reported as no answer rather than as IPv4 offered).
- Parsing is bounded; ``DhcpError`` is the only exception.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from ipaddress import IPv4Address

from rtc64.clat import dhcp4
from rtc64.clat.dhcp4 import MIN_V6ONLY_WAIT, DhcpError, discover, read_options

MAGIC = dhcp4.MAGIC_COOKIE
OPTION_V6ONLY = dhcp4.OPT_V6ONLY_PREFERRED
__all__ = ["MAGIC", "MIN_V6ONLY_WAIT", "DhcpError", "Offer", "discover", "new_xid",
           "parse_offer", "read_options"]  # fmt: skip


def new_xid() -> int:
    return secrets.randbits(32)


@dataclass(frozen=True, slots=True)
class Offer:
    server: IPv4Address | None
    offered: IPv4Address
    v6only_wait: int | None
    """Option 108's value in seconds, None when the server did not send it."""


def parse_offer(data: bytes, xid: int, mac: bytes) -> Offer:
    """The OFFER answering ``xid`` for ``mac``; ``DhcpError`` for anything else."""
    reply = dhcp4.parse(data)
    if reply.op != dhcp4.BOOTREPLY or reply.xid != xid:
        raise DhcpError("DHCP: not a reply to our transaction")
    if reply.chaddr != mac:
        raise DhcpError("DHCP: reply for another hardware address")
    if reply.message_type != dhcp4.DHCPOFFER:
        raise DhcpError("DHCP: not an OFFER")
    wait = reply.options.get(OPTION_V6ONLY)
    if wait is not None and len(wait) != 4:
        raise DhcpError("DHCP: option 108 is not 4 octets")
    return Offer(reply.server, reply.yiaddr, reply.v6only_wait)
