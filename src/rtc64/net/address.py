"""Hosts and addresses as SIP, SDP and sockets write them.

Rules (RFC 3261 §25.1 ``hostport``, RFC 5118, RFC 4291 §2.2, RFC 8866 §5.7):

- A host is a domain name (kept lower-case, compared case-insensitively) or an IP address
  (``ipaddress`` objects: they compare as binary values, never as strings).
- SIP writes IPv6 as a reference, ``[2001:db8::1]``, wherever the grammar has ``host``
  (URIs, Via sent-by, Record-Route, Path). SDP writes it bare. ``format_host`` and
  ``format_hostport`` are the one place that decides.
- Parsing accepts every form SIP allows: ``[v6]``, ``[v6]:port``, IPv4, IPv4 with port,
  domain names, IPv6 with embedded IPv4 (``[::ffff:192.0.2.1]``), and tolerates RFC 5118
  §4.4's extra colon (``[2001:db8:::192.0.2.1]`` reads as ``2001:db8::192.0.2.1``).
  A bare IPv6 address where a reference is required is an error.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

from rtc64.errors import RemoteProtocolError

IPAddress = IPv4Address | IPv6Address
Host = IPv4Address | IPv6Address | str
"""A host: an IP address, or a lower-case domain name."""

_DOMAIN_RE = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)*[a-z](?:[a-z0-9-]*[a-z0-9])?\.?$")
_IPV4_RE = re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$")
_DIGITS_RE = re.compile(r"^\d{1,5}$")


class Family(enum.IntEnum):
    """Address family, with the values of ``socket.AF_INET``/``AF_INET6`` on Linux."""

    INET = 2
    INET6 = 10

    @property
    def label(self) -> str:
        return "IPv4" if self is Family.INET else "IPv6"

    @property
    def sdp(self) -> str:
        """The SDP ``addrtype`` token (RFC 8866 §5.7)."""
        return "IP4" if self is Family.INET else "IP6"


def family_of(address: IPAddress) -> Family:
    """The family of an address (an IPv4-mapped IPv6 address is IPv6 on the wire)."""
    return Family.INET if address.version == 4 else Family.INET6


def unmap(address: IPAddress) -> IPAddress:
    """IPv4 for an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``), else the address itself."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True, slots=True)
class HostPort:
    """A host with an optional port, as in SIP ``hostport``."""

    host: Host
    port: int | None = None

    def __str__(self) -> str:
        return format_hostport(self.host, self.port)

    @property
    def is_ip(self) -> bool:
        return not isinstance(self.host, str)


def _bad(what: str, text: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"Bad Request: invalid {what} {text!r}")


def parse_ipv6_reference(text: str) -> IPv6Address:
    """Parse the inside of ``[...]``, tolerating RFC 5118 §4.4's triple colon."""
    try:
        return IPv6Address(text)
    except ValueError:
        pass
    # RFC 5118 §4.4: "2001:db8:::192.0.2.1" must be read as "2001:db8::192.0.2.1".
    if ":::" in text and text.count(":::") == 1 and "::::" not in text:
        try:
            return IPv6Address(text.replace(":::", "::"))
        except ValueError:
            pass
    raise _bad("IPv6 reference", f"[{text}]")


def parse_host(text: str | bytes) -> Host:
    """Parse a SIP ``host``: ``[IPv6]``, IPv4 or a domain name (returned lower-case).

    Raises ``RemoteProtocolError`` (400) for anything else, including a bare IPv6 address.
    """
    s = text.decode("ascii", "replace") if isinstance(text, bytes) else text
    if not s:
        raise _bad("host", s)
    if s[0] == "[":
        if s[-1] != "]":
            raise _bad("IPv6 reference", s)
        return parse_ipv6_reference(s[1:-1])
    if _IPV4_RE.match(s):
        try:
            return IPv4Address(s)
        except ValueError:
            raise _bad("IPv4 address", s) from None
    lower = s.lower()
    if _DOMAIN_RE.match(lower):
        return lower
    raise _bad("host", s)


def parse_hostport(text: str | bytes) -> HostPort:
    """Parse a SIP ``hostport``: ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    s = text.decode("ascii", "replace") if isinstance(text, bytes) else text
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            raise _bad("IPv6 reference", s)
        host: Host = parse_ipv6_reference(s[1:end])
        rest = s[end + 1 :]
        if not rest:
            return HostPort(host)
        if rest[0] != ":":
            raise _bad("hostport", s)
        return HostPort(host, parse_port(rest[1:]))
    if s.count(":") > 1:
        # A bare IPv6 address is not a SIP host (RFC 3261 §25.1, RFC 5118 §4.10).
        raise _bad("hostport (IPv6 needs brackets)", s)
    name, sep, port = s.partition(":")
    return HostPort(parse_host(name), parse_port(port) if sep else None)


def parse_port(text: str | bytes) -> int:
    """Parse a port number 0..65535 written as 1 to 5 digits."""
    s = text.decode("ascii", "replace") if isinstance(text, bytes) else text
    if not _DIGITS_RE.match(s):
        raise _bad("port", s)
    port = int(s)
    if port > 65535:
        raise _bad("port", s)
    return port


def parse_ip(text: str | bytes) -> IPAddress:
    """Parse an IP address written bare (SDP, STUN, config), or as ``[v6]``."""
    s = text.decode("ascii", "replace") if isinstance(text, bytes) else text
    if s.startswith("[") and s.endswith("]"):
        return parse_ipv6_reference(s[1:-1])
    try:
        return ip_address(s)
    except ValueError:
        raise _bad("IP address", s) from None


def format_host(host: Host) -> str:
    """Write a host for SIP: IPv6 as ``[...]``, IPv4 dotted, names as they are."""
    if isinstance(host, IPv6Address):
        return f"[{host.compressed}]"
    if isinstance(host, IPv4Address):
        return host.compressed
    return host


def format_hostport(host: Host, port: int | None) -> str:
    """Write ``host[:port]`` for SIP, bracketing IPv6."""
    h = format_host(host)
    return h if port is None else f"{h}:{port}"


def format_sdp_address(address: IPAddress) -> str:
    """Write an address for SDP ``c=``/``o=``/``a=rtcp``/candidates: always bare."""
    return address.compressed


def from_sockaddr(sockaddr: tuple[object, ...]) -> tuple[IPAddress, int]:
    """Normalise a socket address (2-tuple for IPv4, 4-tuple for IPv6) to ``(ip, port)``.

    A scope id (link-local) is kept in the address; an IPv4-mapped source stays IPv6
    (the socket is IPv6); use ``unmap`` where the distinction does not matter.
    """
    host = str(sockaddr[0])
    port = sockaddr[1]
    if not isinstance(port, int):
        raise TypeError(f"bad socket address {sockaddr!r}")
    if len(sockaddr) == 4 and sockaddr[3] and "%" not in host:
        host = f"{host}%{sockaddr[3]}"
    return ip_address(host), port


def to_sockaddr(address: IPAddress, port: int) -> tuple[str, int]:
    """The socket address to pass to ``sendto``/``connect`` for ``(address, port)``."""
    return (address.compressed, port)
