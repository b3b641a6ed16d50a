# Rules: one socket per family, never dual-stack: every IPv6 socket gets IPV6_V6ONLY=1
# (RFC 3493 §5.3) so an IPv4 listener on the same port is a separate socket and IPv4
# peers never show up as ::ffff:a.b.c.d. Stream listeners set SO_REUSEADDR (restart while
# old connections sit in TIME_WAIT); UDP listeners never do (two processes would split the
# datagrams) unless asked to join a SO_REUSEPORT group (SIP workers, by design), and ask
# for a large SO_RCVBUF (the kernel caps it at net.core.rmem_max).
# Large datagrams (RFC 3261 §18.1.1, RFC 8200 §5): IPv6 routers never fragment and an
# anycast front end may never see the ICMPv6 Packet Too Big, so IPv6 UDP sockets fragment
# at the minimum MTU themselves (``IPV6_USE_MIN_MTU`` where the OS has it, RFC 3542 §11.1;
# on Linux ``IPV6_MTU`` = 1280 with ``IPV6_MTU_DISCOVER`` = ``IPV6_PMTUDISC_DONT`` and
# ``IPV6_DONTFRAG`` off). Linux applies that cap when it fragments, i.e. to datagrams
# larger than the route's MTU; one between 1280 and the link MTU leaves whole (set the
# route's MTU to 1280 where that matters). IPv4 UDP sockets may send without DF
# (``IP_MTU_DISCOVER`` = ``IP_PMTUDISC_DONT``) so routers fragment instead of dropping.
"""Socket creation with the options every rtc64 socket needs."""

from __future__ import annotations

import socket

from rtc64.net.address import Family, IPAddress, family_of, to_sockaddr

UDP_RCVBUF = 4 * 1024 * 1024
STREAM_BACKLOG = 512
IPV6_MIN_MTU = 1280  # RFC 8200 §5
# Linux values (<linux/in6.h>, <linux/in.h>) where Python's socket module lacks the name.
IPV6_MTU = getattr(socket, "IPV6_MTU", 24)
IPV6_MTU_DISCOVER = getattr(socket, "IPV6_MTU_DISCOVER", 23)
IPV6_PMTUDISC_DONT = getattr(socket, "IPV6_PMTUDISC_DONT", 0)
IPV6_DONTFRAG = getattr(socket, "IPV6_DONTFRAG", 62)
IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
IP_PMTUDISC_DONT = getattr(socket, "IP_PMTUDISC_DONT", 0)
IPV6_USE_MIN_MTU: int | None = getattr(socket, "IPV6_USE_MIN_MTU", None)  # BSD, macOS


def _new(family: Family, kind: socket.SocketKind) -> socket.socket:
    sock = socket.socket(family, kind)
    try:
        if family is Family.INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def udp_socket(
    address: IPAddress,
    port: int,
    rcvbuf: int = UDP_RCVBUF,
    *,
    ipv6_min_mtu: bool = True,
    ipv4_no_df: bool = False,
    reuse_port: bool = False,
) -> socket.socket:
    """A bound, non-blocking UDP socket of ``address``'s family; IPv6 sockets fragment at
    the minimum MTU (``ipv6_min_mtu``), IPv4 ones send without DF (``ipv4_no_df``);
    ``reuse_port``: one of a SO_REUSEPORT group (SIP workers; the kernel hashes each
    peer's address and port to one socket of the group)."""
    sock = _new(family_of(address), socket.SOCK_DGRAM)
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sock.family == socket.AF_INET6 and ipv6_min_mtu:
            fragment_at_min_mtu(sock)
        elif sock.family == socket.AF_INET and ipv4_no_df:
            send_without_df(sock)
        sock.bind(to_sockaddr(address, port))
    except OSError:
        sock.close()
        raise
    return sock


def listen_socket(
    address: IPAddress, port: int, backlog: int = STREAM_BACKLOG, *, reuse_port: bool = False
) -> socket.socket:
    """A bound, listening, non-blocking TCP socket of ``address``'s family (``reuse_port``:
    one of a SO_REUSEPORT group, each accepting its share of new connections)."""
    sock = _new(family_of(address), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(to_sockaddr(address, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def client_socket(family: Family, local: IPAddress | None) -> socket.socket:
    """An unconnected, non-blocking TCP socket, bound to ``local`` (ephemeral port) if given."""
    sock = _new(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if local is not None and not local.is_unspecified:
            sock.bind(to_sockaddr(local, 0))
    except OSError:
        sock.close()
        raise
    return sock


def v6only(sock: socket.socket) -> bool:
    """Whether an IPv6 socket has IPV6_V6ONLY set (False for IPv4 sockets)."""
    if sock.family != socket.AF_INET6:
        return False
    return bool(sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))


def fragment_at_min_mtu(sock: socket.socket) -> None:
    """Make an IPv6 UDP socket fragment what it sends at 1280 bytes (the minimum MTU)
    whatever path MTU it learnt: ``IPV6_USE_MIN_MTU`` where it exists, else Linux's
    per-socket ``IPV6_MTU`` cap with path-MTU discovery off and DONTFRAG off."""
    if IPV6_USE_MIN_MTU is not None:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_USE_MIN_MTU, 1)
        return
    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DONT)
    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU, IPV6_MIN_MTU)
    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_DONTFRAG, 0)


def send_without_df(sock: socket.socket) -> None:
    """Make an IPv4 UDP socket send without the DF bit (routers may fragment)."""
    sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
