# Rules: one socket per family, never dual-stack: every IPv6 socket gets IPV6_V6ONLY=1
# (RFC 3493 §5.3) so an IPv4 listener on the same port is a separate socket and IPv4
# peers never show up as ::ffff:a.b.c.d. Stream listeners set SO_REUSEADDR (restart while
# old connections sit in TIME_WAIT); UDP listeners never do (two processes would split the
# datagrams) and ask for a large SO_RCVBUF (the kernel caps it at net.core.rmem_max).
"""Socket creation with the options every rtc64 socket needs."""

from __future__ import annotations

import socket

from rtc64.net.address import Family, IPAddress, family_of, to_sockaddr

UDP_RCVBUF = 4 * 1024 * 1024
STREAM_BACKLOG = 512


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


def udp_socket(address: IPAddress, port: int, rcvbuf: int = UDP_RCVBUF) -> socket.socket:
    """A bound, non-blocking UDP socket of ``address``'s family."""
    sock = _new(family_of(address), socket.SOCK_DGRAM)
    try:
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind(to_sockaddr(address, port))
    except OSError:
        sock.close()
        raise
    return sock


def listen_socket(address: IPAddress, port: int, backlog: int = STREAM_BACKLOG) -> socket.socket:
    """A bound, listening, non-blocking TCP socket of ``address``'s family."""
    sock = _new(family_of(address), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
