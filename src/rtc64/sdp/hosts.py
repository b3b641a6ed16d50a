# Addresses as SDP writes them (RFC 8866 §5.7, RFC 8839 §5.1, RFC 5952).
#
# Rules:
# - SDP writes addresses bare, never in brackets; ``addrtype`` (IP4/IP6) says the family.
# - An address is an ``ipaddress`` object, or a host name kept as written: an FQDN in
#   ``c=``/``o=`` (§5.7 allows it), an mDNS ``.local`` name in ICE candidates.
# - Written in RFC 5952 form, IPv4-mapped IPv6 with its dotted tail (RFC 5952 §5), which
#   Python 3.11's ``ipaddress`` writes in hex.
"""Reading and writing the addresses SDP carries."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv6Address, ip_address

from rtc64.net.address import Family, IPAddress, family_of, format_sdp_address

Address = IPv4Address | IPv6Address | str
"""An address as SDP carries it: an IP address, or a host name kept as written."""

_HOSTNAME_RE = re.compile(r"^(?=.*[A-Za-z_])[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?$")


def address_family(addrtype: str) -> Family | None:
    """The family an SDP ``addrtype`` token names (``IP4``/``IP6``), else ``None``."""
    if addrtype == "IP4":
        return Family.INET
    if addrtype == "IP6":
        return Family.INET6
    return None


def family_of_address(address: Address, addrtype: str | None = None) -> Family | None:
    """The family of an IP address; for a host name, what ``addrtype`` says (or ``None``)."""
    if isinstance(address, str):
        return None if addrtype is None else address_family(addrtype)
    return family_of(address)


def read_address(text: str, family: Family | None = None) -> Address:
    """Read an address written bare: an IP address (of ``family`` if given) or a host name.

    Raises ``ValueError`` with the reason for anything else.
    """
    try:
        ip: IPAddress = ip_address(text)
    except ValueError:
        if _HOSTNAME_RE.match(text) and ".." not in text:
            return text
        raise ValueError(f"bad address {text!r}") from None
    if family is not None and family_of(ip) is not family:
        raise ValueError(f"{ip.compressed} is not an {family.sdp} address")
    return ip


def format_address(address: Address) -> str:
    """Write an address for SDP: bare, RFC 5952 form, IPv4-mapped with a dotted tail."""
    if isinstance(address, str):
        return address
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return format_sdp_address(address)


def read_port(text: str) -> int:
    """A port 0..65535 written as 1 to 5 digits; ``ValueError`` otherwise."""
    if not (0 < len(text) <= 5 and text.isascii() and text.isdigit()):
        raise ValueError(f"bad port {text!r}")
    port = int(text)
    if port > 65535:
        raise ValueError(f"bad port {text!r}")
    return port


def read_uint(text: str, what: str, max_digits: int = 20) -> int:
    """An unsigned decimal integer; ``ValueError`` naming ``what`` otherwise."""
    if not (0 < len(text) <= max_digits and text.isascii() and text.isdigit()):
        raise ValueError(f"bad {what} {text!r}")
    return int(text)
