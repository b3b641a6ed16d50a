# The core's inputs and outputs as plain data (docs/turn.md "turn/").
#
# Rules:
# - A ``ClientFlow`` is the RFC 8656 §2 5-tuple: transport, client's (ip, port), the
#   listener's (ip, port) and, for TCP/TLS, the io's connection id (0 for UDP). Every
#   allocation is keyed by it; a request from any other flow never touches it.
# - A relay is named by its relayed transport address ``(ip, port)``; a dual allocation
#   (RFC 8656 §7.2, ADDITIONAL-ADDRESS-FAMILY) has two and gets events for each.
# - Events are what the service does next: send bytes, install or drop fast-path entries,
#   close a relay, open or splice RFC 6062 connections, fetch a user.
"""ClientFlow and the events the TURN core emits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from rtc64.net.address import Family, IPAddress, family_of
from rtc64.net.endpoint import Transport

SockAddr = tuple[IPAddress, int]
"""``(ip, port)`` with an ``ipaddress`` object: compares as a binary value."""


class ClientFlow:
    """The 5-tuple a client talks to the server on (RFC 8656 §2).

    ``local`` is the listener's bound ``(ip, port)``; ``connection`` is 0 for UDP and the
    io's id of the TCP/TLS connection otherwise. An immutable value: equal and hashed by
    its four fields. A plain class rather than a frozen dataclass so that the mypyc build
    constructs it natively (one per request): the dataclass's ``__init__`` is generated
    Python, and the hash is computed once here (``ipaddress`` objects hash in Python).
    """

    __slots__ = ("_hash", "connection", "local", "remote", "transport")

    def __init__(
        self, transport: Transport, remote: SockAddr, local: SockAddr, connection: int = 0
    ) -> None:
        self.transport: Final = transport
        self.remote: Final = remote
        self.local: Final = local
        self.connection: Final = connection
        # id(): an enum member hashes in Python; ``__eq__`` compares members by identity
        self._hash: Final = hash((id(transport), remote, local, connection))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClientFlow):
            return NotImplemented
        return (
            self._hash == other._hash
            and self.transport is other.transport
            and self.connection == other.connection
            and self.remote == other.remote
            and self.local == other.local
        )

    def __repr__(self) -> str:
        return (
            f"ClientFlow(transport={self.transport!r}, remote={self.remote!r}, "
            f"local={self.local!r}, connection={self.connection!r})"
        )

    @property
    def family(self) -> Family:
        return family_of(self.remote[0])

    @property
    def stream(self) -> bool:
        """TCP or TLS: ChannelData is padded to 4 bytes (RFC 8656 §12.5)."""
        return self.transport is not Transport.UDP


class ToClient:
    """Send ``data`` (a STUN message or ChannelData) to the client on ``client``.

    A plain immutable class like ``ClientFlow`` (one per answer: native construction in
    the mypyc build, not a dataclass's generated Python ``__init__``)."""

    __slots__ = ("client", "data")

    def __init__(self, client: ClientFlow, data: bytes) -> None:
        self.client: Final = client
        self.data: Final = data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ToClient):
            return NotImplemented
        return self.client == other.client and self.data == other.data

    def __hash__(self) -> int:
        return hash((self.client, self.data))

    def __repr__(self) -> str:
        return f"ToClient(client={self.client!r}, data={self.data!r})"


@dataclass(frozen=True, slots=True)
class ToPeer:
    """Send ``data`` from relay ``relay`` to ``peer`` (a Send indication's or ChannelData's
    payload on the slow path)."""

    relay: SockAddr
    peer: SockAddr
    data: bytes


@dataclass(frozen=True, slots=True)
class Permit:
    """Datagrams from ``peer_ip`` to ``relay`` may pass until ``until`` (fast path)."""

    relay: SockAddr
    peer_ip: IPAddress
    until: float


@dataclass(frozen=True, slots=True)
class Unpermit:
    """The permission for ``peer_ip`` on ``relay`` expired: drop its datagrams."""

    relay: SockAddr
    peer_ip: IPAddress


@dataclass(frozen=True, slots=True)
class Bind:
    """Channel ``channel`` of ``client`` is bound to ``peer`` on ``relay`` (both ways)."""

    relay: SockAddr
    client: ClientFlow
    channel: int
    peer: SockAddr


@dataclass(frozen=True, slots=True)
class Unbind:
    """Channel ``channel`` on ``relay`` expired."""

    relay: SockAddr
    channel: int


class RelayClosed:
    """The allocation owning ``relay`` is gone: close the socket, its peer connections,
    and forget its tables. The core has already called ``relays.release(relay)``.
    A plain immutable class like ``ToClient`` (one per allocation)."""

    __slots__ = ("relay",)

    def __init__(self, relay: SockAddr) -> None:
        self.relay: Final = relay

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RelayClosed):
            return NotImplemented
        return self.relay == other.relay

    def __hash__(self) -> int:
        return hash(self.relay)

    def __repr__(self) -> str:
        return f"RelayClosed(relay={self.relay!r})"


@dataclass(frozen=True, slots=True)
class ConnectPeer:
    """RFC 6062 Connect: open a TCP connection from ``relay`` to ``peer``; answer with
    ``TurnServer.peer_connected(connection_id, ok, now)``."""

    relay: SockAddr
    peer: SockAddr
    connection_id: int


@dataclass(frozen=True, slots=True)
class SpliceData:
    """RFC 6062 ConnectionBind succeeded: from now on bytes on data connection ``client``
    are the peer connection ``connection_id``'s (both ways); no more STUN on it."""

    connection_id: int
    client: ClientFlow


@dataclass(frozen=True, slots=True)
class CloseConnection:
    """RFC 6062: peer connection ``connection_id`` was never bound (30 s) or its
    allocation went away: close it."""

    connection_id: int


@dataclass(frozen=True, slots=True)
class Lookup:
    """``credentials.key`` answered ``Pending``: fetch ``username``, then feed ``data``
    from ``client`` to ``receive_client`` again."""

    username: str
    client: ClientFlow
    data: bytes


Event = (
    ToClient
    | ToPeer
    | Permit
    | Unpermit
    | Bind
    | Unbind
    | RelayClosed
    | ConnectPeer
    | SpliceData
    | CloseConnection
    | Lookup
)
