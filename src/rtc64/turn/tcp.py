# RFC 6062 peer connections of TCP allocations.
#
# Rules:
# - A peer connection is CONNECTING (our Connect, waiting for the io), then WAITING_BIND
#   (connected, or accepted from a peer: waiting for the client's ConnectionBind), then
#   BOUND (spliced to a client data connection; the io owns it from then on).
# - CONNECTION-IDs are random 32-bit numbers, unique among live connections, so a client
#   cannot guess another allocation's id (ConnectionBind also checks the username).
# - One connection per (relay, peer): a second Connect gets 446 (§5.2).
# - CONNECTING and WAITING_BIND last at most 30 s (§5.2, §5.3); then Connect fails with
#   447 or the unbound connection is closed.
"""RFC 6062 connection state: ids, states, deadlines."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from rtc64.turn.events import ClientFlow, SockAddr
from rtc64.turn.settings import CONNECTION_TIMEOUT


class ConnState(enum.Enum):
    CONNECTING = "connecting"
    WAITING_BIND = "waiting-bind"
    BOUND = "bound"


@dataclass(frozen=True, slots=True)
class PendingConnect:
    """A Connect request waiting for the io, answered later on ``client``."""

    client: ClientFlow
    transaction_id: bytes
    key: bytes | None
    sha256: bool


@dataclass(slots=True, eq=False)
class PeerConnection:
    """One TCP connection between a TCP relay and a peer."""

    id: int
    owner: ClientFlow
    """The control connection (the allocation's 5-tuple)."""
    relay: SockAddr
    peer: SockAddr
    state: ConnState
    until: float
    connect: PendingConnect | None = None


class Connections:
    """Live peer connections by id and by (relay, peer)."""

    __slots__ = ("_by_id", "_by_peer", "_random")

    def __init__(self, random: Callable[[int], bytes]) -> None:
        self._by_id: dict[int, PeerConnection] = {}
        self._by_peer: dict[tuple[SockAddr, SockAddr], int] = {}
        self._random = random

    def _new_id(self) -> int:
        while True:
            cid = int.from_bytes(self._random(4), "big")
            if cid and cid not in self._by_id:
                return cid

    def exists(self, relay: SockAddr, peer: SockAddr) -> bool:
        return (relay, peer) in self._by_peer

    def open(
        self,
        owner: ClientFlow,
        relay: SockAddr,
        peer: SockAddr,
        now: float,
        connect: PendingConnect | None = None,
    ) -> PeerConnection:
        """A new connection: CONNECTING when ``connect`` is given, else WAITING_BIND."""
        state = ConnState.CONNECTING if connect is not None else ConnState.WAITING_BIND
        conn = PeerConnection(
            self._new_id(), owner, relay, peer, state, now + CONNECTION_TIMEOUT, connect
        )
        self._by_id[conn.id] = conn
        self._by_peer[(relay, peer)] = conn.id
        return conn

    def get(self, cid: int) -> PeerConnection | None:
        return self._by_id.get(cid)

    def connected(self, conn: PeerConnection, now: float) -> None:
        conn.state = ConnState.WAITING_BIND
        conn.until = now + CONNECTION_TIMEOUT
        conn.connect = None

    def bound(self, conn: PeerConnection) -> None:
        conn.state = ConnState.BOUND
        conn.until = float("inf")

    def remove(self, cid: int) -> PeerConnection | None:
        conn = self._by_id.pop(cid, None)
        if conn is not None:
            self._by_peer.pop((conn.relay, conn.peer), None)
        return conn

    def of_relay(self, relay: SockAddr) -> list[PeerConnection]:
        return [c for c in self._by_id.values() if c.relay == relay]

    def expired(self, now: float) -> list[PeerConnection]:
        """Remove and return connections whose 30 s ran out (not BOUND ones)."""
        gone = [c for c in self._by_id.values() if c.until <= now]
        for conn in gone:
            self.remove(conn.id)
        return gone

    def next_deadline(self) -> float | None:
        times = [c.until for c in self._by_id.values() if c.state is not ConnState.BOUND]
        return min(times) if times else None

    def __len__(self) -> int:
        return len(self._by_id)
