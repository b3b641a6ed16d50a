# Rules (RFC 8305 §5, RFC 3261 §18.1.1 / RFC 5922 for TLS, RFC 7118 for WebSocket):
# - Stream connects race over targets already ordered (RFC 3263, interleaved by family,
#   health cache applied): the next connect starts ``attempt_delay`` after the previous one
#   unless something connected, or at once when the latest one fails. The pure
#   ``rtc64.net.eyeballs.Race`` decides; this adapter only runs the sockets and the clock.
# - The first connected socket wins; every other attempt is cancelled and its socket closed,
#   including one that connected in the same instant (no socket leaks on any path,
#   cancellation of the caller included).
# - TLS (and so WSS) runs on the winning socket only: a certificate or handshake failure is
#   an error of that target and never a reason to fall back to the other family, which
#   would hide a misconfigured server. A WebSocket upgrade is the caller's, on top.
# - aiohappyeyeballs was considered (it races sockets the same way) but reports neither
#   which attempts failed (the health cache needs it) nor the targets in its errors; the race
#   core here is the same one the UDP transactions use.
"""Happy-eyeballs connects for TCP/TLS/WS targets (RFC 8305 §5)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl as _ssl
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from rtc64.io import sockets
from rtc64.net.address import Family, IPAddress, family_of, format_hostport, to_sockaddr
from rtc64.net.eyeballs import ATTEMPT_DELAY, Action, Race

CONNECT_TIMEOUT = 10.0
HANDSHAKE_TIMEOUT = 10.0


class StreamTarget(Protocol):
    """What a connect needs of a target (``rtc64.net.rfc3263.Target`` has it)."""

    @property
    def address(self) -> IPAddress: ...

    @property
    def port(self) -> int: ...


T = TypeVar("T", bound=StreamTarget)
Connect = Callable[[T], Coroutine[Any, Any, socket.socket]]


def describe(target: StreamTarget) -> str:
    return format_hostport(target.address, target.port)


class ConnectRaceError(OSError):
    """No target could be connected; the message names every target and why it failed."""

    def __init__(self, failures: Sequence[tuple[StreamTarget, BaseException]]) -> None:
        parts = ", ".join(f"{describe(t)} ({_reason(exc)})" for t, exc in failures)
        super().__init__(f"could not connect to any of {len(failures)} targets: {parts}")
        self.failures = tuple(failures)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)  # asyncio's strerror is "Connect call failed (...)"
    return str(exc) or type(exc).__name__


def tcp_connector(
    *,
    local: Mapping[Family, IPAddress] | None = None,
    timeout: float = CONNECT_TIMEOUT,
) -> Connect[StreamTarget]:
    """A ``connect`` for ``connect_race``: a V6ONLY/NODELAY client socket per family, bound
    to ``local[family]`` if given, connected within ``timeout`` seconds."""

    async def connect(target: StreamTarget) -> socket.socket:
        loop = asyncio.get_running_loop()
        family = family_of(target.address)
        sock = sockets.client_socket(family, (local or {}).get(family))
        try:
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, to_sockaddr(target.address, target.port))
        except BaseException:
            sock.close()
            raise
        return sock

    return connect


@dataclass(frozen=True, slots=True)
class Connected(Generic[T]):
    """The winner of a connect race."""

    target: T
    sock: socket.socket
    """The connected socket (owned by ``transport`` when there is one)."""
    race: Race[T]
    """The finished race: hand it to ``HealthCache.learn``."""
    transport: asyncio.BaseTransport | None = None
    protocol: asyncio.BaseProtocol | None = None


async def connect_race(
    targets: Sequence[T],
    *,
    attempt_delay: float | None = ATTEMPT_DELAY,
    connect: Connect[T] | None = None,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    protocol_factory: Callable[[], asyncio.BaseProtocol] | None = None,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
) -> Connected[T]:
    """Connect to the first of ``targets`` that answers, RFC 8305 §5 style.

    With ``ssl`` or ``protocol_factory``, the winning socket is handed to
    ``loop.create_connection`` (TLS handshake included, verified against
    ``server_hostname``, default the winner's address) and the transport is returned too.
    Raises ``ConnectRaceError`` (an ``OSError``) naming every target when none connects;
    a TLS failure on the winner propagates as it is, after the socket is closed.
    """
    loop = asyncio.get_running_loop()
    race = Race(targets, attempt_delay)
    dial: Connect[T] = connect if connect is not None else tcp_connector()
    pending: dict[asyncio.Task[socket.socket], int] = {}
    failures: dict[int, BaseException] = {}
    winner: tuple[int, socket.socket] | None = None

    def launch(index: int, target: T) -> None:
        pending[loop.create_task(dial(target))] = index

    first = race.start(loop.time())
    launch(first.index, first.target)
    try:
        while winner is None:
            if race.exhausted:
                raise ConnectRaceError([(race.targets[i], failures[i]) for i in sorted(failures)])
            deadline = race.get_timer()
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            done, _ = await asyncio.wait(
                pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            now = loop.time()
            for task in sorted(done, key=pending.__getitem__):
                index = pending.pop(task)
                exc = task.exception()
                if exc is not None:
                    failures[index] = exc
                    nxt = race.attempt_failed(index, now)
                    if nxt is not None:
                        launch(nxt.index, nxt.target)
                    continue
                sock = task.result()
                if race.connected(index, now).action is Action.FORWARD:
                    winner = (index, sock)
                else:
                    sock.close()
            if winner is None:
                nxt = race.handle_timer(now)
                if nxt is not None:
                    launch(nxt.index, nxt.target)
    finally:
        _abandon(pending)
    index, sock = winner
    target = race.targets[index]
    if ssl is None and protocol_factory is None:
        return Connected(target, sock, race)
    try:
        transport, protocol = await loop.create_connection(
            protocol_factory or asyncio.Protocol,
            sock=sock,
            ssl=ssl,
            server_hostname=(server_hostname or str(target.address)) if ssl else None,
            ssl_handshake_timeout=handshake_timeout if ssl else None,
        )
    except BaseException:
        sock.close()
        raise
    return Connected(target, sock, race, transport, protocol)


def _abandon(pending: Mapping[asyncio.Task[socket.socket], int]) -> None:
    """Cancel the attempts still running; a socket one of them still returns is closed."""
    for task in pending:
        task.cancel()
        task.add_done_callback(_close_result)


def _close_result(task: asyncio.Task[socket.socket]) -> None:
    if task.cancelled():
        return
    if task.exception() is None:
        with contextlib.suppress(OSError):
            task.result().close()
