"""Hosts and addresses as SIP, SDP and sockets write them.

Rules (RFC 3261 §19.1.1 and §25.1 ``hostport``, RFC 5118 §4, RFC 4291 §2.2, RFC 5952,
RFC 4007 §6, RFC 8866 §5.7):

- A host is a domain name (kept lower-case, compared case-insensitively) or an IP address
  (``ipaddress`` objects: they compare as binary values, never as strings).
- SIP writes IPv6 as a reference, ``[2001:db8::1]``, wherever the grammar has ``host``
  (URIs, Via sent-by, Record-Route, Path). SDP writes it bare. ``format_host`` and
  ``format_hostport`` are the one place that decides. Text is RFC 5952 canonical; an
  IPv4-mapped address is written ``::ffff:192.0.2.1`` (RFC 5952 §5) on every Python.
- A zone (scope) id such as ``%eth0`` means something only on this host (RFC 4007 §6): it
  is kept on addresses read from sockets, refused in SIP and SDP input, and never written.
- Parsing accepts every form SIP allows: ``[v6]``, ``[v6]:port``, IPv4, IPv4 with port,
  domain names (RFC 3261 ``hostname``: the top label starts with a letter, a trailing dot
  is allowed), IPv6 with embedded IPv4 (``[::ffff:192.0.2.1]``), and tolerates RFC 5118
  §4.10's extra colon before an embedded IPv4 (``[2001:db8:::192.0.2.1]`` reads as
  ``2001:db8::192.0.2.1``). ``[2001:db8::10:5070]`` is a host without a port (§4.3).
  A bare IPv6 address where a reference is required is an error (§4.2).
- Only ASCII is accepted; the RFC's ``DIGIT`` and ``ALPHA`` are ASCII, so ``re.ASCII`` and
  ``fullmatch`` are used throughout (no Unicode digits, no trailing newline).
- IPv4 octets with leading zeros (``010.0.0.1``) are refused: the grammar's ``1*3DIGIT``
  admits them, but other stacks read them as octal, and a gateway must not disagree with
  its peers about which host an address names.
- Socket addresses and address text are memoised in bounded caches (the same peers send
  and receive every datagram; ``ipaddress`` parses and formats in Python): results are
  immutable, errors are never cached, a full cache is emptied; ``clear_caches`` empties all.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

from rtc64.errors import LocalProtocolError, RemoteProtocolError

IPAddress = IPv4Address | IPv6Address
Host = IPv4Address | IPv6Address | str
"""A host: an IP address, or a lower-case domain name."""

_DOMAIN_RE = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)*[a-z](?:[a-z0-9-]*[a-z0-9])?\.?", re.ASCII
)
_IPV4_RE = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}", re.ASCII)
# RFC 3261 port = 1*DIGIT; leading zeros are legal, the length cap only bounds the work.
_PORT_RE = re.compile(r"[0-9]{1,10}", re.ASCII)
# RFC 5118 §4.10: hexpart ending in "::" followed by ":" IPv4address (RFC 3261 ABNF bug).
_THREE_COLONS_RE = re.compile(r"([0-9a-f:]*::):([0-9]{1,3}(?:\.[0-9]{1,3}){3})", re.ASCII | re.I)
_SHOWN = 64  # at most this many characters of bad input go into an error message
MAX_PORT = 65535


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
    # isinstance, not ``address.version``: a property, a Python call from compiled code.
    return Family.INET if isinstance(address, IPv4Address) else Family.INET6


def unmap(address: IPAddress) -> IPAddress:
    """IPv4 for an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``), else the address itself."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def without_scope(address: IPAddress) -> IPAddress:
    """The address without its zone id (``fe80::1%eth0`` -> ``fe80::1``)."""
    if isinstance(address, IPv6Address) and address.scope_id is not None:
        return IPv6Address(int(address))
    return address


@dataclass(frozen=True, slots=True)
class HostPort:
    """A host with an optional port, as in SIP ``hostport``."""

    host: Host
    port: int | None = None

    def __reduce__(self) -> tuple[type[HostPort], tuple[Host, int | None]]:
        # In a listen spec's ``advertise``, pickled to the SIP workers; compiled, a frozen
        # class cannot be unpickled field by field: rebuild it through the constructor.
        return (HostPort, (self.host, self.port))

    def __str__(self) -> str:
        return format_hostport(self.host, self.port)

    @property
    def is_ip(self) -> bool:
        return not isinstance(self.host, str)


def _shown(text: str) -> str:
    """Bad input as it goes into a message: ASCII-escaped, quoted and bounded in length."""
    if len(text) > _SHOWN:
        return ascii(text[:_SHOWN]) + f"... ({len(text)} chars)"
    return ascii(text)


def _bad(what: str, text: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"Bad Request: invalid {what} {_shown(text)}")


def _text(text: str | bytes) -> str:
    return text.decode("ascii", "replace") if isinstance(text, bytes) else text


def parse_ipv6_reference(text: str) -> IPv6Address:
    """Parse the inside of ``[...]``, tolerating RFC 5118 §4.10's triple colon.

    Zone ids are refused: SIP's ``IPv6reference`` has no ``%`` (RFC 3261 §25.1).
    """
    if "%" not in text and text.isascii():
        try:
            return IPv6Address(text)
        except ValueError:
            pass
        # RFC 5118 §4.10: "2001:db8:::192.0.2.1" must be read as "2001:db8::192.0.2.1".
        m = _THREE_COLONS_RE.fullmatch(text)
        if m is not None:
            try:
                return IPv6Address(m[1] + m[2])
            except ValueError:
                pass
    raise _bad("IPv6 reference", f"[{text}]")


def _parse_ipv4(s: str) -> IPv4Address:
    try:
        return IPv4Address(s)
    except ValueError:
        raise _bad("IPv4 address", s) from None


def parse_host(text: str | bytes) -> Host:
    """Parse a SIP ``host``: ``[IPv6]``, IPv4 or a domain name (returned lower-case).

    Raises ``RemoteProtocolError`` (400) for anything else, including a bare IPv6 address.
    """
    s = _text(text)
    if not s or not s.isascii():
        raise _bad("host", s)
    if s[0] == "[":
        if s[-1] != "]":
            raise _bad("IPv6 reference", s)
        return parse_ipv6_reference(s[1:-1])
    if _IPV4_RE.fullmatch(s):
        return _parse_ipv4(s)
    lower = s.lower()
    if _DOMAIN_RE.fullmatch(lower):
        return lower
    if ":" in s:
        # A bare IPv6 address is not a SIP host (RFC 3261 §25.1, RFC 5118 §4.2).
        raise _bad("host (IPv6 needs brackets)", s)
    raise _bad("host", s)


def parse_hostport(text: str | bytes) -> HostPort:
    """Parse a SIP ``hostport``: ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    s = _text(text)
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
        # A bare IPv6 address is not a SIP host (RFC 3261 §25.1, RFC 5118 §4.2).
        raise _bad("hostport (IPv6 needs brackets)", s)
    name, sep, port = s.partition(":")
    return HostPort(parse_host(name), parse_port(port) if sep else None)


def parse_port(text: str | bytes) -> int:
    """Parse a port number 0..65535 written as ASCII digits (leading zeros allowed)."""
    s = _text(text)
    if not _PORT_RE.fullmatch(s):
        raise _bad("port", s)
    port = int(s)
    if port > MAX_PORT:
        raise _bad("port", s)
    return port


def parse_ip(text: str | bytes, *, scope: bool = False) -> IPAddress:
    """Parse an IP address written bare (SDP, STUN, config), or as ``[v6]``.

    A zone id (``fe80::1%eth0``) is refused unless ``scope`` is true (local configuration).
    """
    s = _text(text)
    if s.startswith("[") and s.endswith("]"):
        if scope and "%" in s:
            return _parse_scoped(s[1:-1], s)
        return parse_ipv6_reference(s[1:-1])
    if not s.isascii() or ("%" in s and not scope):
        raise _bad("IP address", s)
    if "%" in s:
        return _parse_scoped(s, s)
    try:
        return ip_address(s)
    except ValueError:
        raise _bad("IP address", s) from None


def _parse_scoped(s: str, shown: str) -> IPv6Address:
    addr, _, zone = s.partition("%")
    if not zone or not zone.isascii() or not zone.isprintable() or " " in zone:
        raise _bad("IPv6 address with zone id", shown)
    try:
        return IPv6Address(f"{IPv6Address(addr)}%{zone}")
    except ValueError:
        raise _bad("IPv6 address with zone id", shown) from None


def _ipv6_text(address: IPv6Address) -> str:
    """RFC 5952 text without zone id; IPv4-mapped in mixed notation (RFC 5952 §5)."""
    mapped = address.ipv4_mapped
    if mapped is not None:
        return f"::ffff:{mapped}"
    if address.scope_id is not None:
        return IPv6Address(int(address)).compressed
    return address.compressed


_CACHE_MAX = 4096
_ADDRESS_OF: dict[str, IPAddress] = {}  # socket host text (zone appended) -> address
_TEXT_OF: dict[int, str] = {}  # ``address_key(address)`` -> RFC 5952 text without zone
_SOCKET_TEXT_OF: dict[int | IPAddress, str] = {}  # IPv4 its int, IPv6 address (zone kept)


def address_key(address: IPAddress) -> int:
    """An address as one plain int, IPv4 ``n`` and IPv6 ``-1 - n`` (never equal), zone
    ignored: a set or dict key hashed and compared in C (``ipaddress`` hashes and
    compares in Python). The unspecified addresses are 0 and -1."""
    n = int(address)
    return n if isinstance(address, IPv4Address) else -1 - n


def clear_caches() -> None:
    """Empty the address caches (they refill on demand)."""
    _ADDRESS_OF.clear()
    _TEXT_OF.clear()
    _SOCKET_TEXT_OF.clear()


def address_text(address: IPAddress) -> str:
    """RFC 5952 text of an address, bare, without zone id (IPv4 dotted)."""
    key = address_key(address)
    text = _TEXT_OF.get(key)
    if text is None:
        text = _ipv6_text(address) if isinstance(address, IPv6Address) else address.compressed
        if len(_TEXT_OF) >= _CACHE_MAX:
            _TEXT_OF.clear()
        _TEXT_OF[key] = text
    return text


def format_host(host: Host) -> str:
    """Write a host for SIP: IPv6 as ``[...]``, IPv4 dotted, names as they are."""
    if isinstance(host, IPv6Address):
        return "[" + address_text(host) + "]"
    if isinstance(host, IPv4Address):
        return address_text(host)
    if ":" in host or not host:
        raise LocalProtocolError(f"not a host name: {_shown(host)} (use an ipaddress object)")
    return host


def format_hostport(host: Host, port: int | None) -> str:
    """Write ``host[:port]`` for SIP, bracketing IPv6."""
    h = format_host(host)
    if port is None:
        return h
    if not 0 <= port <= MAX_PORT:
        raise LocalProtocolError(f"port {port!r} out of range 0..{MAX_PORT}")
    return f"{h}:{port}"


def format_sdp_address(address: IPAddress) -> str:
    """Write an address for SDP ``c=``/``o=``/``a=rtcp``/candidates: always bare."""
    return address_text(address)


def from_sockaddr(sockaddr: tuple[object, ...]) -> tuple[IPAddress, int]:
    """Normalise a socket address (2-tuple for IPv4, 4-tuple for IPv6) to ``(ip, port)``.

    A scope id (link-local) is kept in the address; an IPv4-mapped source stays IPv6
    (the socket is IPv6); use ``unmap`` where the distinction does not matter.
    """
    if len(sockaddr) not in (2, 4):
        raise TypeError(f"bad socket address {sockaddr!r}")
    host = sockaddr[0]
    port = sockaddr[1]
    if not isinstance(host, str) or not isinstance(port, int) or isinstance(port, bool):
        raise TypeError(f"bad socket address {sockaddr!r}")
    if len(sockaddr) == 4 and "%" not in host:
        scope_id = sockaddr[3]
        if scope_id and isinstance(scope_id, int):
            host = f"{host}%{scope_id}"
    address = _ADDRESS_OF.get(host)
    if address is None:
        address = ip_address(host)
        if len(_ADDRESS_OF) >= _CACHE_MAX:
            _ADDRESS_OF.clear()
        _ADDRESS_OF[host] = address
    return address, port


def to_sockaddr(address: IPAddress, port: int) -> tuple[str, int]:
    """The socket address to pass to ``sendto``/``connect`` for ``(address, port)``.

    The zone id is kept (``fe80::1%eth0``): the kernel needs it for link-local peers.
    """
    key: int | IPAddress = int(address) if isinstance(address, IPv4Address) else address
    text = _SOCKET_TEXT_OF.get(key)
    if text is None:
        text = str(address)
        if len(_SOCKET_TEXT_OF) >= _CACHE_MAX:
            _SOCKET_TEXT_OF.clear()
        _SOCKET_TEXT_OF[key] = text
    return (text, port)
