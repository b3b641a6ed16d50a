"""What the proxy's forwarding keeps per request and per branch, and small helpers.

- ``Sender`` is what the proxy needs of the transport layer; ``Spawn`` starts a coroutine.
- ``Pending`` is a proxied request: its server transaction, its response context and
  whether we Record-Routed it. ``Plan`` is what every copy of the request on one branch
  shares (only the hop differs between happy-eyeballs attempts).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rtc64.gateway.forking import ResponseContext
from rtc64.gateway.hops import Hop
from rtc64.gateway.identity import Listener
from rtc64.net.address import IPAddress
from rtc64.net.endpoint import Flow, Transport
from rtc64.net.eyeballs import Race
from rtc64.sip.message import Request
from rtc64.sip.transaction_server import ServerTransaction
from rtc64.sip.uri import SipUri, parse_uri


class Sender(Protocol):
    def send(
        self,
        data: bytes,
        transport: Transport,
        address: IPAddress,
        port: int,
        *,
        flow: Flow | None = None,
        server_name: str | None = None,
        handle: object = None,
    ) -> bool: ...

    def has_connection(self, transport: Transport, address: IPAddress, port: int) -> bool:
        """Whether an open connection of ``transport`` to ``(address, port)`` exists."""
        ...

    async def connect_race(
        self,
        transport: Transport,
        targets: Sequence[Hop],
        *,
        attempt_delay: float | None,
        server_name: str | None = None,
    ) -> tuple[Hop, Race[Hop] | None]: ...


Spawn = Callable[[Coroutine[Any, Any, None]], None]


@dataclass(slots=True)
class Pending:
    """A proxied request: its server transaction and response context."""

    server: ServerTransaction
    request: Request
    ctx: ResponseContext
    record_routed: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    """What every copy of a request on one branch shares (only the hop differs)."""

    flow: Flow
    in_listener: Listener | None  # set when we Record-Route
    stamped: bytes | None  # the caller's Via with received/rport
    new_uri: SipUri | None
    routes: tuple[bytes, ...] | None  # None: the Route lines stay as received
    path: Callable[[Listener, IPAddress], bytes] | None


def flow_of(dest: object) -> Flow:
    assert isinstance(dest, Hop) and dest.flow is not None
    return dest.flow


def received_uri(route: SipUri) -> SipUri | None:
    """The flow a Path entry of ours recorded (``received=`` param), as a URI."""
    value = route.param(b"received")
    if not value:
        return None
    text = value.replace(b"%3B", b";").replace(b"%3b", b";").replace(b"%3D", b"=")
    uri = parse_uri(text.replace(b"%3d", b"="), "Path received")
    return uri if isinstance(uri, SipUri) else None


def ip_of(dest: object) -> IPAddress:
    """The address of a ``Hop`` destination."""
    assert isinstance(dest, Hop)
    return dest.ip
