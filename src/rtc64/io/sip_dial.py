# Rules (RFC 3261 §18.1.1, §26.2; RFC 5922; RFC 5923 §6): outbound SIP stream connections.
# A connection is dialled from the listener address of its transport and family, within
# ``limits.connect_timeout``; TLS runs on the connected socket within
# ``limits.handshake_timeout``, checking the server against the name it must prove: the
# SIP domain the send was for, else the address (``tls_name``). A send for a SIP domain
# reuses only a connection opened and checked for that very domain; one addressed by IP
# reuses any connection to that address and port (``reusable_for``). Every failure ends
# the connection with a one-line reason naming the peer (``Connection.failed``).
"""Dialling outbound SIP stream connections (TCP, TLS) and the TLS names they must prove."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import Callable
from typing import Any

from rtc64.io import sockets
from rtc64.io.connection import Connection, Limits
from rtc64.io.tls import TlsClientPolicy
from rtc64.net.address import IPAddress, family_of, format_hostport, to_sockaddr
from rtc64.net.endpoint import SockAddr


def tls_name(remote: SockAddr, server_name: str | None) -> str:
    """The name a TLS server at ``remote`` must prove: the SIP domain, else the address."""
    return server_name or remote[0].compressed


def reusable_for(conn: Connection, name: str, server_name: str | None) -> bool:
    """RFC 5923 §6: a send for a SIP domain uses only a connection we opened and checked
    for that very domain; a send addressed by IP (responses, Via, Record-Route entries
    with an address) uses any connection to that address and port."""
    if server_name is None:
        return True
    return conn.outbound and conn.tls_name == name


async def dial(
    conn: Connection,
    local: IPAddress,
    server_name: str | None,
    policy: TlsClientPolicy,
    limits: Limits,
) -> None:
    """Connect ``conn`` to its remote from ``local``, then ``attach`` it."""
    assert conn.remote is not None
    loop = asyncio.get_running_loop()
    address, port = conn.remote
    sock = sockets.client_socket(family_of(address), local)
    try:
        async with asyncio.timeout(limits.connect_timeout):
            await loop.sock_connect(sock, to_sockaddr(address, port))
    except (OSError, TimeoutError) as exc:
        sock.close()
        why = f"{conn.kind.value} connection to {format_hostport(*conn.remote)} failed"
        conn.failed(f"{why}: {_explain(exc)}")
        return
    except BaseException:
        sock.close()
        conn.failed("cancelled")
        raise
    await attach(conn, sock, server_name, policy, limits)


async def attach(
    conn: Connection,
    sock: socket.socket,
    server_name: str | None,
    policy: TlsClientPolicy,
    limits: Limits,
) -> None:
    """Run ``conn`` (TLS on top if needed) on an already connected socket."""
    assert conn.remote is not None
    loop = asyncio.get_running_loop()
    secure = conn.kind.secure
    context: ssl.SSLContext | None = None
    name = conn.tls_name or tls_name(conn.remote, server_name)
    if secure:
        context = policy.context_for(name)
        if policy.verifies(name):
            conn.peer_check = _peer_check(policy, name, format_hostport(*conn.remote))
    try:
        await loop.create_connection(
            lambda: conn,
            sock=sock,
            ssl=context,
            server_hostname=name if secure else None,
            ssl_handshake_timeout=limits.handshake_timeout if secure else None,
        )
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        sock.close()
        where = format_hostport(*conn.remote)
        if secure:
            shown = where if name == conn.remote[0].compressed else f"{name} ({where})"
            conn.failed(f"TLS handshake with {shown} failed: {_explain(exc)}")
        else:
            conn.failed(f"{conn.kind.value} connection to {where} failed: {_explain(exc)}")
    except BaseException:
        sock.close()
        conn.failed("cancelled")
        raise


def _peer_check(policy: TlsClientPolicy, name: str, where: str) -> Callable[[Any], str | None]:
    def check(cert: Any) -> str | None:
        refused = policy.check_peer(name, cert)
        return None if refused is None else f"TLS server {where}: {refused}"

    return check


def _explain(exc: BaseException) -> str:
    """A short, single-line description of a connect or handshake error."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        text = f"certificate verify failed: {exc.verify_message or exc.reason}"
    elif isinstance(exc, ssl.SSLError):
        text = str(exc.reason or exc)
    elif isinstance(exc, TimeoutError):
        text = "timed out"
    elif isinstance(exc, OSError) and exc.errno:
        text = os.strerror(exc.errno)  # asyncio's own text holds the address as a tuple
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())
