# RFC 6062 requests and io callbacks of the TURN core: Connect (§5.2), ConnectionBind
# (§5.4), ConnectionAttempt for incoming peer connections (§5.3), and their 30 s timers.
#
# Rules:
# - Connect and ConnectionAttempt need a TCP allocation, a permission for the peer
#   (403 without) and the peer policy's consent, applied to the address as sent (the
#   policy unwraps IPv4 embedded in IPv6 itself); one connection per peer (446).
# - A Connect is answered when the io reports the outcome: CONNECTION-ID, or 447 on
#   failure or after 30 s.
# - ConnectionBind comes on a new TCP/TLS connection (not the control connection, never
#   UDP), with the credentials of the allocation's user (441 otherwise) and the id of a
#   connection waiting for it (400 otherwise). Its success answer goes out first, then
#   SpliceData: the io joins the two connections and no STUN follows on that one.
"""RFC 6062 handling for TurnServer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rtc64.net.endpoint import Transport
from rtc64.stun.attributes import CONNECTION_ID, XOR_PEER_ADDRESS
from rtc64.stun.message import Class, Message, Method, build, encode, error_response, response
from rtc64.turn.allocation import peer_address
from rtc64.turn.auth import Authenticated
from rtc64.turn.events import (
    ClientFlow,
    CloseConnection,
    ConnectPeer,
    SockAddr,
    SpliceData,
    ToClient,
)
from rtc64.turn.protocols import TCP
from rtc64.turn.refusal import Refuse
from rtc64.turn.tcp import ConnState, PeerConnection, PendingConnect

if TYPE_CHECKING:
    from rtc64.turn.server import TurnServer


def connect(
    server: TurnServer, msg: Message, client: ClientFlow, auth: Authenticated, now: float
) -> Message | None:
    """Connect: start a connection to the peer; the answer comes with ``peer_connected``."""
    alloc = server.owned(client, auth)
    if alloc.protocol != TCP:
        raise Refuse(400, "Connect needs a TCP allocation")
    sent = msg.get(XOR_PEER_ADDRESS)
    if sent is None:
        raise Refuse(400, "XOR-PEER-ADDRESS missing")
    peer = peer_address(sent)
    relay = server.check_peer(alloc, peer[0])
    if not alloc.permitted(peer[0], now):
        raise Refuse(403, "Forbidden (no permission for this peer)")
    if server.connections.exists(relay, peer):
        raise Refuse(446, "Connection Already Exists")
    pending = PendingConnect(client, msg.transaction_id, auth.key, auth.sha256)
    conn = server.connections.open(client, relay, peer, now, pending)
    server.deadlines.schedule(conn.until, conn)
    server.emit(ConnectPeer(relay, peer, conn.id))
    return None


def _answer_connect(server: TurnServer, pending: PendingConnect, reply: Message) -> None:
    server.answer(pending.client, reply, pending.key, pending.sha256)


def peer_connected(server: TurnServer, connection_id: int, ok: bool, now: float) -> bool:
    conn = server.connections.get(connection_id)
    if conn is None or conn.state is not ConnState.CONNECTING or conn.connect is None:
        return False
    pending = conn.connect
    request = Message(Method.CONNECT, Class.REQUEST, pending.transaction_id)
    if not ok:
        server.connections.remove(connection_id)
        server.deadlines.cancel(conn)
        _answer_connect(server, pending, error_response(request, 447))
        return False
    server.connections.connected(conn, now)
    server.deadlines.cancel(conn)
    server.deadlines.schedule(conn.until, conn)
    _answer_connect(server, pending, response(request, CONNECTION_ID(connection_id)))
    return True


def connection_bind(
    server: TurnServer, msg: Message, client: ClientFlow, auth: Authenticated, now: float
) -> Message | None:
    """ConnectionBind on a new data connection."""
    if client.transport is Transport.UDP or client in server.by_flow:
        raise Refuse(400, "ConnectionBind needs a new TCP or TLS connection")
    cid = msg.get(CONNECTION_ID)
    if cid is None:
        raise Refuse(400, "CONNECTION-ID missing")
    conn = server.connections.get(cid)
    if conn is None or conn.state is not ConnState.WAITING_BIND:
        raise Refuse(400, "no connection waiting with this CONNECTION-ID")
    alloc = server.by_flow.get(conn.owner)
    if alloc is None:
        raise Refuse(400, "no connection waiting with this CONNECTION-ID")
    if alloc.username != auth.username:
        raise Refuse(441, "Wrong Credentials")
    server.connections.bound(conn)
    server.deadlines.cancel(conn)
    server.deferred.append(SpliceData(cid, client))
    return response(msg)


def incoming(server: TurnServer, relay: SockAddr, peer: SockAddr, now: float) -> int | None:
    """A peer connected to a TCP relay: ConnectionAttempt to the client, or None."""
    alloc = server.by_relay.get(relay)
    if alloc is None or alloc.protocol != TCP:
        server.counters.drop("no-allocation")
        return None
    if not alloc.permitted(peer[0], now) or not server.policy.allowed(peer[0]):
        server.counters.drop("no-permission")
        return None
    if server.connections.exists(relay, peer):
        server.counters.drop("duplicate-connection")
        return None
    conn = server.connections.open(alloc.client, relay, peer, now)
    server.deadlines.schedule(conn.until, conn)
    indication = build(
        Method.CONNECTION_ATTEMPT,
        Class.INDICATION,
        server.random(12),
        XOR_PEER_ADDRESS(peer),
        CONNECTION_ID(conn.id),
    )
    server.emit(ToClient(alloc.client, encode(indication)))
    return conn.id


def expire(server: TurnServer, key: object, now: float) -> None:
    """A connection's 30 s ran out: Connect gets 447, an unbound connection is closed."""
    if not isinstance(key, PeerConnection) or server.connections.get(key.id) is not key:
        return
    if key.until > now:
        server.deadlines.schedule(key.until, key)
        return
    server.connections.remove(key.id)
    if key.state is ConnState.CONNECTING and key.connect is not None:
        request = Message(Method.CONNECT, Class.REQUEST, key.connect.transaction_id)
        _answer_connect(server, key.connect, error_response(request, 447))
    server.emit(CloseConnection(key.id))
