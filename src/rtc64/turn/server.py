# The TURN server core: dispatch of client STUN/ChannelData and peer datagrams (RFC 8656,
# RFC 6156, RFC 6062, RFC 8489). Sans-I/O: bytes and ``now`` in, events out.
#
# Rules:
# - Every input an attacker controls is answered with a STUN error (requests) or dropped
#   and counted (indications, ChannelData, responses, garbage); nothing raises out.
# - A request first meets the retransmission cache (same 5-tuple + transaction id within
#   40 s: the same bytes again), then 420 for unknown comprehension-required attributes,
#   then authentication (auth.py), then its method. Binding needs no credentials.
# - Allocation requests act only on the allocation of their own 5-tuple: none -> 437,
#   another username -> 441. A second Allocate on a 5-tuple -> 437 (or, with the
#   allocating transaction id, the same success again).
# - Peers are judged by ``policy.allowed`` (403) and by family (443; an IPv4-mapped IPv6
#   peer is IPv4). Limits: 486 quotas (per user and in total; reservations count),
#   508 no port or a full permission/channel table.
# - Refresh with LIFETIME 0 deletes the allocation; with REQUESTED-ADDRESS-FAMILY too, on a
#   dual allocation, only that family's relay (RFC 8656 §7.3); a family it lacks: 443.
# - RFC 6062 (TCP allocations, Connect/ConnectionBind/ConnectionAttempt) lives in
#   ``tcp_requests.py``; this module owns the tables and the timers.
"""TurnServer: the sans-I/O TURN core."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable
from ipaddress import IPv6Address
from typing import Final

from rtc64.net.address import Family, IPAddress
from rtc64.stun import channeldata
from rtc64.stun.attributes import (
    CHANNEL_NUMBER,
    DATA,
    ERROR_CODE,
    FINGERPRINT,
    LIFETIME,
    MAGIC_COOKIE,
    REQUESTED_ADDRESS_FAMILY,
    UNKNOWN_ATTRIBUTES,
    XOR_MAPPED_ADDRESS,
    XOR_PEER_ADDRESS,
)
from rtc64.stun.message import (
    HEADER,
    Class,
    Message,
    Method,
    data_indication,
    decode,
    encode,
    error_response,
    response,
    split_type,
)
from rtc64.stun.reader import StunError
from rtc64.turn import allocate, tcp_requests
from rtc64.turn.allocate import Reservation, quota_user
from rtc64.turn.allocation import (
    CHANNEL_MAX,
    CHANNEL_MIN,
    Allocation,
    Deadlines,
    peer_address,
    peer_family,
)
from rtc64.turn.auth import Authenticated, Authenticator, Rejected
from rtc64.turn.cache import ResponseCache
from rtc64.turn.events import (
    ClientFlow,
    Event,
    Lookup,
    RelayClosed,
    SockAddr,
    ToClient,
    ToPeer,
)
from rtc64.turn.protocols import (
    UDP,
    Credentials,
    PeerPolicy,
    Relays,
)
from rtc64.turn.refusal import Refuse
from rtc64.turn.settings import TurnSettings
from rtc64.turn.stats import Counters, TurnStats
from rtc64.turn.tcp import Connections

_AUTHENTICATED_METHODS: Final = frozenset(
    (
        Method.ALLOCATE,
        Method.REFRESH,
        Method.CREATE_PERMISSION,
        Method.CHANNEL_BIND,
        Method.CONNECT,
        Method.CONNECTION_BIND,
    )
)


def _error_code(reply: Message) -> int:
    """The ERROR-CODE number of our own error response (``error_response`` puts it first),
    read without decoding the reason; 0 if it has none."""
    for type_, value in reply.attributes[:1]:
        if type_ == ERROR_CODE.type and len(value) >= 4:
            return (value[2] & 7) * 100 + value[3]
    error = reply.error()
    return error[0] if error else 0


_Handler = Callable[[Message, ClientFlow, Authenticated, float], Message | None]


class TurnServer:
    """The TURN core (see the module rules); drain ``events()`` after every call."""

    def __init__(
        self,
        settings: TurnSettings,
        *,
        credentials: Credentials,
        relays: Relays,
        policy: PeerPolicy,
        random: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self.settings = settings
        self.relays = relays
        self.policy = policy
        self.random = random
        self.auth = Authenticator(settings, credentials)
        self.by_flow: dict[ClientFlow, Allocation] = {}
        self.by_relay: dict[SockAddr, Allocation] = {}
        self.per_user: Counter[str] = Counter()
        self.reservations: dict[bytes, Reservation] = {}
        self.connections = Connections(random)
        self.deadlines = Deadlines()
        self.cache = ResponseCache(settings.cache_size)
        self.counters = Counters()
        self._external = dict(settings.external_addresses)
        self._events: list[Event] = []
        self.deferred: list[Event] = []
        """Events a handler wants emitted after its answer (SpliceData)."""
        self._handlers: dict[int, _Handler] = {
            Method.ALLOCATE: lambda m, c, a, n: allocate.allocate(self, m, c, a, n),
            Method.REFRESH: self._refresh,
            Method.CREATE_PERMISSION: self._create_permission,
            Method.CHANNEL_BIND: self._channel_bind,
            Method.CONNECT: lambda m, c, a, n: tcp_requests.connect(self, m, c, a, n),
            Method.CONNECTION_BIND: lambda m, c, a, n: tcp_requests.connection_bind(
                self, m, c, a, n
            ),
        }

    # -- outputs ---------------------------------------------------------------------------

    def events(self) -> list[Event]:
        """The events since the last call, in order."""
        events, self._events = self._events, []
        return events

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def get_timer(self) -> float | None:
        due, cached = self.deadlines.next(), self.cache.next_deadline()
        if due is None or cached is None:
            return cached if due is None else due
        return min(due, cached)

    def stats(self) -> TurnStats:
        allocations = list(self.by_flow.values())
        return TurnStats(
            allocations=len(allocations),
            reservations=len(self.reservations),
            permissions=sum(len(a.permissions) for a in allocations),
            channels=sum(len(a.channels) for a in allocations),
            tcp_connections=len(self.connections),
            allocations_by_family=dict(self.counters.by_family),
            errors=dict(self.counters.errors),
            dropped=dict(self.counters.dropped),
            requests=self.counters.requests,
            indications=self.counters.indications,
            lookups=self.counters.lookups,
        )

    # -- timers ----------------------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        """Expire allocations, permissions, channels, reservations, RFC 6062 connections
        and cache entries that are due at ``now``."""
        for key in self.deadlines.due(now):
            if isinstance(key, Allocation):
                if self.by_flow.get(key.client) is not key:
                    continue
                if key.expires <= now:
                    self.delete(key)
                else:
                    for event in key.expire(now):
                        self.emit(event)
                    self.deadlines.schedule(key.next_deadline(), key)
            elif isinstance(key, Reservation):
                if self.reservations.get(key.token) is key:
                    del self.reservations[key.token]
                    self.unquota(key.quota_user)
                    self.relays.release(key.address)
            else:
                tcp_requests.expire(self, key, now)
        self.cache.expire(now)

    # -- client input ----------------------------------------------------------------------

    def receive_client(self, data: bytes, client: ClientFlow, now: float) -> None:
        """A STUN message or ChannelData from ``client``."""
        if not data:
            self.counters.drop("malformed")
            return
        kind = data[0] >> 6
        if kind == 1:
            self._channel_data(data, client, now)
        elif kind == 0:
            self._stun(data, client, now)
        else:
            self.counters.drop("not-stun")

    def _channel_data(self, data: bytes, client: ClientFlow, now: float) -> None:
        try:
            number, payload = channeldata.parse(data)
        except StunError:
            self.counters.drop("malformed")
            return
        alloc = self.by_flow.get(client)
        if alloc is None:
            self.counters.drop("no-allocation")
            return
        channel = alloc.channel(number, now)
        if channel is None:
            self.counters.drop("no-channel")
            return
        if not alloc.permitted(channel.peer[0], now):
            self.counters.drop("no-permission")
            return
        self.emit(ToPeer(channel.relay, channel.peer, bytes(payload)))

    def _stun(self, data: bytes, client: ClientFlow, now: float) -> None:
        try:
            msg = decode(data)
        except StunError as exc:
            self._malformed(data, client, exc)
            return
        if msg.cls is Class.INDICATION:
            self.counters.indications += 1
            if msg.unknown_required():  # RFC 8489 §6.3.2: silently discarded
                self.counters.drop("bad-indication")
            elif msg.method == Method.SEND:
                self._send_indication(msg, client, now)
            else:
                self.counters.drop("bad-indication")
            return
        if msg.cls is not Class.REQUEST:
            self.counters.drop("not-request")
            return
        self.counters.requests += 1
        cached = self.cache.get(client, msg.transaction_id, now)
        if cached is not None:
            self.emit(ToClient(client, cached))
            return
        fingerprint = msg.has(FINGERPRINT)
        unknown = msg.unknown_required()
        if unknown:
            reply = error_response(msg, 420, None, UNKNOWN_ATTRIBUTES(unknown))
            self._answer(client, reply, None, fingerprint=fingerprint)
            return
        if msg.method == Method.BINDING:
            reply = response(msg, XOR_MAPPED_ADDRESS(client.remote))
            self._answer(client, reply, None, fingerprint=fingerprint)
            return
        if msg.method not in _AUTHENTICATED_METHODS:
            self._answer(client, error_response(msg, 400, "Unknown method"), None)
            return
        self._request(msg, data, client, now, fingerprint)

    def _request(
        self, msg: Message, data: bytes, client: ClientFlow, now: float, fingerprint: bool
    ) -> None:
        try:
            verdict = self.auth.check(msg, client, now)
        except StunError as exc:
            self._answer(client, error_response(msg, exc.status, exc.reason), None)
            return
        if isinstance(verdict, Rejected):
            challenge = error_response(msg, verdict.code, verdict.reason, *verdict.fields)
            self._answer(client, challenge, None, fingerprint=fingerprint)
            return
        if not isinstance(verdict, Authenticated):
            self.counters.lookups += 1
            self.emit(Lookup(verdict.username, client, data))
            return
        reply: Message | None
        try:
            reply = self._handlers[msg.method](msg, client, verdict, now)
        except Refuse as refusal:
            self.deferred.clear()
            reply = error_response(msg, refusal.code, refusal.reason)
        except StunError as exc:
            self.deferred.clear()
            reply = error_response(msg, exc.status, exc.reason)
        if reply is not None:
            self._answer(client, reply, verdict, fingerprint=fingerprint, now=now)
        self._events.extend(self.deferred)
        self.deferred.clear()

    def _malformed(self, data: bytes, client: ClientFlow, exc: StunError) -> None:
        """Answer a request we could not parse with 400 when its header is readable."""
        if len(data) < HEADER.size:
            self.counters.drop("malformed")
            return
        type_, _, cookie, tid = HEADER.unpack_from(data)
        method, cls = split_type(type_ & 0x3FFF)
        if cookie != MAGIC_COOKIE or cls is not Class.REQUEST:
            self.counters.drop("malformed")
            return
        self.counters.requests += 1
        self._answer(
            client, error_response(Message(method, cls, tid), exc.status, exc.reason), None
        )

    def answer(
        self,
        client: ClientFlow,
        reply: Message,
        key: bytes | None,
        sha256: bool,
        *,
        fingerprint: bool = False,
        cache: bool = False,
        now: float = 0.0,
    ) -> None:
        """Encode and send ``reply`` (signed with ``key``), count errors, cache it."""
        if reply.cls is Class.ERROR:
            self.counters.errors[_error_code(reply)] += 1
        data = encode(reply, key=key, sha256=sha256, fingerprint=fingerprint)
        if cache:
            self.cache.put(client, reply.transaction_id, data, now)
        self.emit(ToClient(client, data))

    def _answer(
        self,
        client: ClientFlow,
        reply: Message,
        auth: Authenticated | None,
        *,
        fingerprint: bool = False,
        now: float = 0.0,
    ) -> None:
        if auth is None:
            self.answer(client, reply, None, False, fingerprint=fingerprint)
        else:
            self.answer(
                client,
                reply,
                auth.key,
                auth.sha256,
                fingerprint=fingerprint,
                cache=True,
                now=now,
            )

    # -- Refresh, CreatePermission, ChannelBind --------------------------------------------

    def owned(self, client: ClientFlow, auth: Authenticated) -> Allocation:
        """The allocation of this 5-tuple, if it is this user's (437, 441 otherwise)."""
        alloc = self.by_flow.get(client)
        if alloc is None:
            raise Refuse(437, "Allocation Mismatch")
        if alloc.username != auth.username:
            raise Refuse(441, "Wrong Credentials")
        return alloc

    def _refresh(
        self, msg: Message, client: ClientFlow, auth: Authenticated, now: float
    ) -> Message | None:
        alloc = self.owned(client, auth)
        family = msg.get(REQUESTED_ADDRESS_FAMILY)
        if family is not None and family not in alloc.relays:
            raise Refuse(443, "Peer Address Family Mismatch")
        requested = msg.get(LIFETIME)
        if requested == 0 and family is not None and len(alloc.relays) > 1:
            self._drop_family(alloc, family)  # one relay of a dual allocation
            return response(msg, LIFETIME(0))
        if requested == 0:
            self.delete(alloc, after_answer=True)
            return response(msg, LIFETIME(0))
        alloc.refresh(allocate.desired_lifetime(self.settings, requested), now)
        self.deadlines.schedule(alloc.next_deadline(), alloc)
        return response(msg, LIFETIME(alloc.lifetime))

    def check_peer(self, alloc: Allocation, peer_ip: IPAddress) -> SockAddr:
        """The relay for ``peer_ip``: 403 when the peer policy refuses it (judged first, so a
        forbidden peer is refused as such whatever its family, ``::ffff:127.0.0.1`` on an
        IPv6 allocation included), 443 for a family the allocation lacks."""
        if isinstance(peer_ip, IPv6Address) and peer_ip.scope_id:
            raise Refuse(403, "Forbidden")
        if not self.policy.allowed(peer_ip):
            raise Refuse(403, "Forbidden")
        relay = alloc.relay_for(peer_ip)
        if relay is None:
            raise Refuse(443, "Peer Address Family Mismatch")
        return relay

    def _create_permission(
        self, msg: Message, client: ClientFlow, auth: Authenticated, now: float
    ) -> Message | None:
        alloc = self.owned(client, auth)
        peers = [peer_address(p) for p in msg.get_all(XOR_PEER_ADDRESS)]
        if not peers:
            raise Refuse(400, "XOR-PEER-ADDRESS missing")
        ips = [ip for ip, _ in peers]
        for ip in ips:
            self.check_peer(alloc, ip)
        if len(alloc.permissions) + alloc.new_permissions(ips) > self.settings.max_permissions:
            raise Refuse(508, "Insufficient Capacity (permissions)")
        for ip in ips:
            self.emit(alloc.permit(ip, now))
        self.deadlines.schedule(alloc.next_deadline(), alloc)
        return response(msg)

    def _channel_bind(
        self, msg: Message, client: ClientFlow, auth: Authenticated, now: float
    ) -> Message | None:
        alloc = self.owned(client, auth)
        if alloc.protocol != UDP:
            raise Refuse(400, "ChannelBind on a TCP allocation")
        number = msg.get(CHANNEL_NUMBER)
        sent = msg.get(XOR_PEER_ADDRESS)
        if number is None or sent is None:
            raise Refuse(400, "CHANNEL-NUMBER and XOR-PEER-ADDRESS required")
        peer = peer_address(sent)
        if not CHANNEL_MIN <= number <= CHANNEL_MAX:
            raise Refuse(400, "CHANNEL-NUMBER not in 0x4000-0x7FFF")
        self.check_peer(alloc, peer[0])
        conflict = alloc.channel_conflict(number, peer, now)
        if conflict is not None:
            raise Refuse(400, conflict)
        if number not in alloc.channels and len(alloc.channels) >= self.settings.max_channels:
            raise Refuse(508, "Insufficient Capacity (channels)")
        if (
            peer[0] not in alloc.permissions
            and len(alloc.permissions) >= self.settings.max_permissions
        ):
            raise Refuse(508, "Insufficient Capacity (permissions)")
        for event in alloc.bind(number, peer, now):
            self.emit(event)
        self.deadlines.schedule(alloc.next_deadline(), alloc)
        return response(msg)

    # -- Send indications and peer datagrams ------------------------------------------------

    def _send_indication(self, msg: Message, client: ClientFlow, now: float) -> None:
        alloc = self.by_flow.get(client)
        if alloc is None:
            self.counters.drop("no-allocation")
            return
        try:
            peer = msg.get(XOR_PEER_ADDRESS)
            payload = msg.get(DATA)
        except StunError:
            self.counters.drop("malformed")
            return
        if peer is None or payload is None or alloc.protocol != UDP:
            self.counters.drop("bad-indication")
            return
        peer = peer_address(peer)
        relay = alloc.relay_for(peer[0])
        if relay is None:
            self.counters.drop("family")
            return
        if not alloc.permitted(peer[0], now):
            self.counters.drop("no-permission")
            return
        self.emit(ToPeer(relay, peer, payload))

    def receive_peer(self, relay: SockAddr, data: bytes, peer: SockAddr, now: float) -> None:
        """A datagram from ``peer`` to ``relay`` that the fast path did not handle."""
        alloc = self.by_relay.get(relay)
        if alloc is None or alloc.protocol != UDP:
            self.counters.drop("no-allocation")
            return
        if not alloc.permitted(peer[0], now):
            self.counters.drop("no-permission")
            return
        client = alloc.client
        number = alloc.channel_of_peer.get(peer)
        if number is not None and alloc.channel(number, now) is not None:
            self.emit(ToClient(client, channeldata.pack(number, data, stream=client.stream)))
            return
        try:
            indication = data_indication(peer, data, self.random(12))
        except Exception:
            self.counters.drop("oversize")
            return
        self.emit(ToClient(client, indication))

    # -- teardown ---------------------------------------------------------------------------

    def delete(self, alloc: Allocation, *, after_answer: bool = False) -> None:
        """Remove ``alloc``: release its relays, close its RFC 6062 connections
        (``after_answer``: the RelayClosed events follow the current request's answer)."""
        if self.by_flow.get(alloc.client) is not alloc:
            return
        del self.by_flow[alloc.client]
        self.deadlines.cancel(alloc)
        user = quota_user(alloc.username, alloc.client)
        self.unquota(user)
        for relay in alloc.relays.values():
            self.by_relay.pop(relay, None)
            for conn in self.connections.of_relay(relay):
                self.connections.remove(conn.id)
            self.relays.release(relay)
            (self.deferred if after_answer else self._events).append(RelayClosed(relay))

    def _drop_family(self, alloc: Allocation, family: Family) -> None:
        """Delete the ``family`` relay of a dual allocation (Refresh with LIFETIME 0 and
        REQUESTED-ADDRESS-FAMILY, RFC 8656 §7.3): its permissions and channels go too."""
        relay = alloc.relays.pop(family)
        for ip in [ip for ip in alloc.permissions if peer_family(ip) is family]:
            del alloc.permissions[ip]
        for channel in [c for c in alloc.channels.values() if c.relay == relay]:
            del alloc.channels[channel.number]
            alloc.channel_of_peer.pop(channel.peer, None)
        self.by_relay.pop(relay, None)
        self.relays.release(relay)
        self.deferred.append(RelayClosed(relay))

    def unquota(self, user: str) -> None:
        """One allocation or reservation of ``user`` less (no empty entries kept)."""
        left = self.per_user[user] - 1
        if left > 0:
            self.per_user[user] = left
        else:
            del self.per_user[user]

    def client_closed(self, client: ClientFlow, now: float) -> None:
        """A TCP/TLS client connection closed: its allocation goes (RFC 8656 §3.1,
        RFC 6062 §5.1 for the control connection)."""
        alloc = self.by_flow.get(client)
        if alloc is not None:
            self.delete(alloc)

    # -- RFC 6062 io callbacks ----------------------------------------------------------

    def peer_connected(self, connection_id: int, ok: bool, now: float) -> bool:
        """The io's outcome of a ``ConnectPeer``; False: close the connection (unknown id,
        or the attempt failed)."""
        return tcp_requests.peer_connected(self, connection_id, ok, now)

    def peer_connection_incoming(self, relay: SockAddr, peer: SockAddr, now: float) -> int | None:
        """A peer connected to TCP relay ``relay``: its CONNECTION-ID, or None (close it:
        no permission, no such allocation, or a connection with that peer exists)."""
        return tcp_requests.incoming(self, relay, peer, now)
