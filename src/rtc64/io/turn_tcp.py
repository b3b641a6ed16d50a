# RFC 6062 on sockets: TCP relays (listening relayed transport addresses), peer connections
# in and out, and the splice of a client data connection to a peer connection.
#
# Rules:
# - A TCP allocation's relay is a listening socket on the relayed address (SO_REUSEADDR +
#   SO_REUSEPORT, so outgoing connections to peers can be bound to the same address and
#   port, §5.2). An accepted peer connection is offered to the core
#   (``peer_connection_incoming``): None closes it, an id keeps it until ConnectionBind.
# - Connect (``ConnectPeer``): a connection from the relayed address to the peer within
#   ``connect_timeout``; the result goes to the core (``peer_connected``); a connection the
#   core no longer wants is closed.
# - Until spliced, at most ``max_buffered`` bytes from a peer are kept (then its reading
#   pauses). After ``SpliceData`` both connections carry raw bytes; flow control pauses the
#   reader whose partner's write buffer is full; a close or EOF on one side reaches the other.
# - Bandwidth (bytes/s per allocation and direction): TCP bytes are never dropped; a
#   direction over its budget pauses the reading side until the budget allows it again.
"""TCP relays and peer connections of RFC 6062 TURN allocations."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Coroutine
from time import monotonic
from typing import Any, cast

from rtc64.io.sockets import STREAM_BACKLOG, client_socket
from rtc64.io.turn_stream import Splice, SplicedStream
from rtc64.net.address import Family, IPAddress, family_of, from_sockaddr, to_sockaddr
from rtc64.net.tokenbucket import Bucket

Address = tuple[IPAddress, int]
Incoming = Callable[[Address, Address], "int | None"]
"""(relay, peer) -> the core's CONNECTION-ID, or None to refuse."""
Connected = Callable[[int, bool], bool]
"""(connection id, ok) -> whether the core still wants the connection."""

MAX_PEER_BUFFER = 64 * 1024


def _reuse(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)


def tcp_relay_socket(address: IPAddress, port: int) -> socket.socket:
    """A listening TCP socket on a relayed transport address."""
    family = family_of(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family is Family.INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        _reuse(sock)
        sock.setblocking(False)
        sock.bind(to_sockaddr(address, port))
        sock.listen(STREAM_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


class PeerConnection(SplicedStream):
    """A TCP connection with a peer: buffered until spliced to a client data connection."""

    def __init__(self, owner: TcpRelays, relay: Address) -> None:
        self.owner = owner
        self.relay = relay
        self.id: int | None = None
        self.transport: asyncio.Transport | None = None
        self.partner: Splice | None = None
        self.closed = False
        self.bytes_in = 0
        self.bytes_out = 0
        self._held = bytearray()
        self._eof = False
        self._throttles = owner.throttles_of(relay)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=self.owner.max_buffered)

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        partner = self.partner
        if partner is not None:
            partner.write(data)
            if self._throttles is not None:
                delay = self._throttles[0].charge(len(data), monotonic())
                if delay > 0:
                    self.owner.hold(self, delay)
            return
        self._held += data
        if len(self._held) >= self.owner.max_buffered and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        if self.partner is not None:
            self.partner.eof()
            return True  # half-close: the client may still send
        self._eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.unsplice()
        self.owner.forget(self)

    # --- Splice (seen from the client data connection; the rest is ``SplicedStream``'s) --

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.bytes_out += len(data)
            self.transport.write(data)
            partner = self.partner
            if self._throttles is not None and partner is not None:
                delay = self._throttles[1].charge(len(data), monotonic())
                if delay > 0:
                    self.owner.hold(partner, delay)

    def splice(self, partner: Splice) -> None:
        """Join to the client data connection; what the peer sent so far goes first."""
        self.partner = partner
        if self._held:
            held = bytes(self._held)
            self._held.clear()
            partner.write(held)
        if self._eof:
            partner.eof()
        elif self.transport is not None:
            self.transport.resume_reading()


class TcpRelay:
    """A listening relayed transport address of a TCP allocation."""

    def __init__(self, owner: TcpRelays, address: Address, sock: socket.socket) -> None:
        self.owner = owner
        self.address = address
        self.sock = sock
        self.server: asyncio.Server | None = None
        self.closed = False
        self.peers: set[PeerConnection] = set()

    def accepted(self) -> PeerConnection:
        return _Accepted(self.owner, self)

    def close(self) -> None:
        self.closed = True
        if self.server is not None:
            self.server.close()
        else:
            self.sock.close()
        for peer in list(self.peers):
            peer.abort()


class _Accepted(PeerConnection):
    """A peer connection accepted on a TCP relay: offered to the core once connected."""

    def __init__(self, owner: TcpRelays, relay: TcpRelay) -> None:
        super().__init__(owner, relay.address)
        self.listener = relay

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        super().connection_made(base)
        transport = cast(asyncio.Transport, base)
        if self.listener.closed:
            transport.abort()
            return
        try:
            peer = from_sockaddr(transport.get_extra_info("peername"))
        except (TypeError, ValueError):
            transport.abort()
            return
        cid = self.owner.incoming(self.relay, peer)
        if cid is None:
            self.owner.refused += 1
            self.closed = True
            transport.abort()
            return
        self.id = cid
        self.listener.peers.add(self)
        self.owner.peers[cid] = self


class TcpRelays:
    """Every TCP relay and RFC 6062 peer connection of the server."""

    def __init__(
        self,
        incoming: Incoming,
        connected: Connected,
        *,
        connect_timeout: float = 10.0,
        max_buffered: int = MAX_PEER_BUFFER,
        bandwidth: int = 0,
        log: logging.Logger | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.incoming = incoming
        self.connected = connected
        self.connect_timeout = connect_timeout
        self.max_buffered = max_buffered
        self.log = log or logging.getLogger("rtc64.io.turn")
        self.relays: dict[Address, TcpRelay] = {}
        self.peers: dict[int, PeerConnection] = {}
        self.bandwidth = bandwidth
        self.throttles: dict[Address, tuple[Bucket, Bucket]] = {}
        """Per TCP relay: (peer -> client, client -> peer) budgets."""
        self.refused = 0
        self.connect_failures = 0
        self.throttled = 0
        self.closed_bytes_from_peers = 0
        self.closed_bytes_to_peers = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def open(self, address: Address, sock: socket.socket) -> None:
        """Serve an already bound listening socket as the relay ``address``."""
        relay = self.relays[address] = TcpRelay(self, address, sock)

        async def start() -> None:
            try:
                relay.server = await self.loop.create_server(relay.accepted, sock=sock)
            except OSError as exc:
                self.log.warning("TURN TCP relay %s failed to start: %s", address, exc)
                sock.close()
                return
            if relay.closed:
                relay.server.close()

        self._spawn(start())

    def throttles_of(self, relay: Address) -> tuple[Bucket, Bucket] | None:
        """The relay's budgets (None: no bandwidth limit)."""
        if self.bandwidth <= 0:
            return None
        found = self.throttles.get(relay)
        if found is None:
            now = monotonic()
            found = self.throttles[relay] = (
                Bucket(self.bandwidth, now=now),
                Bucket(self.bandwidth, now=now),
            )
        return found

    def hold(self, reader: Splice | PeerConnection, delay: float) -> None:
        """Pause ``reader`` for ``delay`` seconds (over its bandwidth budget)."""
        self.throttled += 1
        reader.pause()
        self.loop.call_later(delay, reader.resume)

    def close(self, address: Address) -> None:
        self.throttles.pop(address, None)
        relay = self.relays.pop(address, None)
        if relay is not None:
            relay.close()
        for peer in [p for p in self.peers.values() if p.relay == address]:
            peer.abort()

    def connect(self, relay: Address, peer: Address, cid: int) -> None:
        """RFC 6062 Connect: open a connection from ``relay`` to ``peer``, tell the core."""
        self._spawn(self._connect(relay, peer, cid))

    async def _connect(self, relay: Address, peer: Address, cid: int) -> None:
        conn = PeerConnection(self, relay)
        conn.id = cid
        ok = False
        sock: socket.socket | None = None
        try:
            sock = client_socket(family_of(peer[0]), None)
            _reuse(sock)
            try:
                sock.bind(to_sockaddr(*relay))
            except OSError:
                sock.bind(to_sockaddr(relay[0], 0))  # the relayed port is busy: any port
            await asyncio.wait_for(
                self.loop.sock_connect(sock, to_sockaddr(*peer)), self.connect_timeout
            )
            await self.loop.create_connection(lambda: conn, sock=sock)
            ok = relay in self.relays
        except (OSError, TimeoutError) as exc:
            self.connect_failures += 1
            self.log.debug("TURN connect %s -> %s failed: %s", relay, peer, exc)
            if sock is not None and conn.transport is None:
                sock.close()
        if ok:
            self.peers[cid] = conn
        wanted = self.connected(cid, ok)
        if ok and not wanted:
            self.peers.pop(cid, None)
            conn.abort()

    def splice(self, cid: int, client: Splice) -> bool:
        """Join peer connection ``cid`` with a client data connection (False: it is gone)."""
        peer = self.peers.get(cid)
        if peer is None or peer.closed:
            return False
        peer.splice(client)
        return True

    def peer(self, cid: int) -> PeerConnection | None:
        return self.peers.get(cid)

    def close_peer(self, cid: int) -> None:
        peer = self.peers.pop(cid, None)
        if peer is not None:
            peer.abort()

    def bytes_from_peers(self) -> int:
        return self.closed_bytes_from_peers + sum(p.bytes_in for p in self.peers.values())

    def bytes_to_peers(self) -> int:
        return self.closed_bytes_to_peers + sum(p.bytes_out for p in self.peers.values())

    def forget(self, peer: PeerConnection) -> None:
        if peer.id is not None and self.peers.get(peer.id) is peer:
            del self.peers[peer.id]
            self.closed_bytes_from_peers += peer.bytes_in
            self.closed_bytes_to_peers += peer.bytes_out
        if isinstance(peer, _Accepted):
            peer.listener.peers.discard(peer)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stop(self) -> None:
        for address in list(self.relays):
            self.close(address)
        for peer in list(self.peers.values()):
            peer.abort()
        self.peers.clear()
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
