# The TURN service: the pure core (``turn.server.TurnServer``) wired to its io (listeners,
# relay sockets, RFC 6062 connections) and its collaborators (credentials, peer policy).
#
# Rules:
# - Every input reaches the core through this object (client messages, peer connections,
#   connect results, timers) and every call is followed by draining the core's events into
#   the io, in order, then by the driver's ``update``: the fast-path tables are always what
#   the core last decided, so no packet needs the core once a permission or channel exists.
# - The relay a ``reserve`` binds belongs to the client being served (``relays.serving``).
# - 401 answers to UDP clients pass the per-source challenge limiter (``turnserver.quotas``):
#   a flood of unauthenticated requests from one (maybe spoofed) prefix gets a few 401s,
#   the rest are dropped.
# - Without the SIP proxy (``serve --only turn``) nothing else tunes the collector:
#   ``tune_memory`` applies the gateway's settings (io/memory.py) for this process.
# - ``Lookup``: the user is fetched off the loop's critical path (at most ``max_lookups`` at
#   once, more are dropped and counted: the client retransmits), then the request is fed
#   again. A core failure on one input is logged and counted, never fatal.
"""TurnService: core + io + credentials + policy, and the stats snapshot."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from rtc64.io import memory
from rtc64.io.driver import Driver, clock
from rtc64.io.turn_listeners import Address, ListenerLimits, TurnListeners
from rtc64.io.turn_relay import TurnRelays
from rtc64.io.turn_tcp import TcpRelays
from rtc64.net.address import IPAddress, family_of
from rtc64.net.endpoint import BoundListener, ListenSpec, Transport
from rtc64.relay.ports import PortPool
from rtc64.turn.events import (
    Bind,
    ClientFlow,
    CloseConnection,
    ConnectPeer,
    Event,
    Lookup,
    Permit,
    RelayClosed,
    SpliceData,
    ToClient,
    ToPeer,
    Unbind,
    Unpermit,
)
from rtc64.turn.protocols import Credentials, PeerPolicy
from rtc64.turn.server import TurnServer
from rtc64.turn.settings import TurnSettings
from rtc64.turnserver.quotas import ChallengeLimiter, is_unauthorized
from rtc64.turnserver.stats import (
    AllocationView,
    TcpCounters,
    TurnServiceStats,
    allocation_views,
    snapshot,
)

Fetch = Callable[[str], Awaitable[object]]
"""Fetch a user into the credentials' cache (the ``Lookup`` step)."""


@dataclass(frozen=True, slots=True)
class TurnServiceSettings:
    """What the service needs besides the core's own settings."""

    core: TurnSettings
    listen: tuple[ListenSpec, ...]
    relay_addresses: tuple[IPAddress, ...]
    ports: tuple[int, int] = (30000, 40000)
    """The relay port range when no media relay shares its pool."""
    bandwidth: int = 0
    """Bytes per second per allocation and direction (0: unlimited)."""
    limits: ListenerLimits = field(default_factory=ListenerLimits)
    connect_timeout: float = 10.0
    max_lookups: int = 64


class TurnService:
    """A running TURN server: ``start``, then ``close``."""

    def __init__(
        self,
        settings: TurnServiceSettings,
        *,
        credentials: Credentials,
        policy: PeerPolicy,
        pools: Sequence[PortPool] = (),
        fetch: Fetch | None = None,
        server_tls: ssl.SSLContext | None = None,
        challenges: ChallengeLimiter | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.settings = settings
        self.challenges = challenges
        self.credentials = credentials
        self.policy = policy
        self.fetch = fetch
        self.log = log or logging.getLogger("rtc64.turn")
        self.loop = asyncio.get_running_loop()
        pools = list(pools)
        missing = [
            a
            for a in settings.relay_addresses
            if not any(a in p.addresses(family_of(a)) for p in pools)
        ]
        self.own_pool: PortPool | None = None
        """The pool of relay addresses no media relay shares (range ``settings.ports``)."""
        if missing:
            self.own_pool = PortPool(missing, *settings.ports)
            pools.append(self.own_pool)
        self.listeners = TurnListeners(
            settings.listen, self, server_tls=server_tls, limits=settings.limits, log=self.log
        )
        self.tcp = TcpRelays(
            self._incoming,
            self._connected,
            connect_timeout=settings.connect_timeout,
            bandwidth=settings.bandwidth,
            log=self.log,
        )
        self.relays = TurnRelays(
            pools,
            settings.relay_addresses,
            self.listeners,
            self.tcp,
            bandwidth=settings.bandwidth,
            log=self.log,
        )
        self.core = TurnServer(
            settings.core,
            credentials=credentials,
            relays=self.relays,
            policy=policy,
        )
        self.driver = Driver(log=self.log)
        self.failures = 0
        self.lookups_dropped = 0
        self._lookups: set[asyncio.Task[None]] = set()
        self.bound: list[BoundListener] = []

    async def start(self) -> list[BoundListener]:
        """Bind the listeners and start the timers."""
        self.bound = await self.listeners.start()
        self.driver.drive(self)
        return self.bound

    async def reconfigure(
        self,
        listen: Sequence[ListenSpec],
        core: TurnSettings,
        policy: PeerPolicy,
        ports: tuple[int, int] | None = None,
    ) -> tuple[list[ListenSpec], list[ListenSpec]]:
        """A reload: listeners opened and closed (``TurnListeners.relisten``), then the
        core's limits, the peer policy and the own pool's port range (``ports``, checked
        by the caller: ``check_ports``) for requests from now on; allocations in progress
        stay. Returns (opened, closed); ``ConfigError`` changes nothing."""
        opened, closed = await self.listeners.relisten(listen)
        self.core.settings = core
        self.core.policy = self.policy = policy
        self.settings = dataclasses.replace(self.settings, listen=tuple(listen), core=core)
        if ports is not None and ports != self.settings.ports:
            pool = self.own_pool
            if pool is not None:
                pool.reconfigure(self._own_addresses(pool), *ports)
            self.settings = dataclasses.replace(self.settings, ports=ports)
            self.retire()
        self.bound[:] = self.listeners.bound
        return opened, closed

    def check_ports(self, ports: tuple[int, int]) -> None:
        """``LocalProtocolError`` when the own pool cannot take the range ``ports``."""
        if self.own_pool is not None:
            PortPool(self._own_addresses(self.own_pool), *ports)

    def retire(self) -> int:
        """A pool's range changed: idle relay sockets outside it are closed (how many)."""
        return self.relays.retire()

    @staticmethod
    def _own_addresses(pool: PortPool) -> list[IPAddress]:
        return [a for family in pool.families for a in pool.addresses(family)]

    async def close(self) -> None:
        self.driver.close()
        for task in self._lookups:
            task.cancel()
        self.relays.stop()
        self.tcp.stop()
        await self.listeners.stop()

    # --- input -------------------------------------------------------------------------------

    def from_client(
        self, data: bytes, transport: Transport, local: Address, remote: Address, connection: int
    ) -> None:
        """A STUN message (or ChannelData the fast path did not take) from a client."""
        flow = ClientFlow(transport, remote, local, connection)
        self.relays.serving = flow
        try:
            self.core.receive_client(data, flow, clock())
        except Exception:
            self.failures += 1
            self.log.exception("TURN: input from %s failed", flow)
        finally:
            self.relays.serving = None
        self._after()

    def connection_closed(
        self, transport: Transport, local: Address, remote: Address, connection: int
    ) -> None:
        """A client's TCP/TLS connection is gone: its allocation goes with it (RFC 8656
        §3.1, RFC 6062 §5.1)."""
        try:
            self.core.client_closed(ClientFlow(transport, remote, local, connection), clock())
        except Exception:
            self.failures += 1
            self.log.exception("TURN: closing connection %d failed", connection)
        self._after()

    def _incoming(self, relay: Address, peer: Address) -> int | None:
        try:
            cid = self.core.peer_connection_incoming(relay, peer, clock())
        except Exception:
            self.failures += 1
            self.log.exception("TURN: peer connection %s -> %s failed", peer, relay)
            cid = None
        self._after()
        return cid

    def _connected(self, cid: int, ok: bool) -> bool:
        try:
            wanted = self.core.peer_connected(cid, ok, clock())
        except Exception:
            self.failures += 1
            self.log.exception("TURN: connect result %d failed", cid)
            wanted = False
        self._after()
        return wanted

    # --- the driver's core -----------------------------------------------------------------

    def get_timer(self) -> float | None:
        return self.core.get_timer()

    def handle_timer(self, now: float) -> None:
        try:
            self.core.handle_timer(now)
        finally:
            self._drain()

    # --- output ----------------------------------------------------------------------------

    def _after(self) -> None:
        self._drain()
        self.driver.update()

    def _drain(self) -> None:
        limiter = self.challenges
        send = self.listeners.send
        for event in self.core.events():
            try:
                if isinstance(event, ToClient):  # most events: answered here, not in _apply
                    c = event.client
                    if (
                        limiter is not None
                        and c.transport is Transport.UDP  # a stream source is not spoofable
                        and is_unauthorized(event.data)
                        and not limiter.allow(c.remote[0], clock())
                    ):
                        continue
                    send(event.data, c.transport, c.local, c.remote, c.connection)
                else:
                    self._apply(event)
            except Exception:
                self.failures += 1
                self.log.exception("TURN: applying %s failed", type(event).__name__)

    def _apply(self, event: Event) -> None:
        """Every event but ``ToClient`` (``_drain``)."""
        relays = self.relays
        if isinstance(event, ToPeer):
            relays.to_peer(event)
        elif isinstance(event, Permit):
            relays.permit(event)
        elif isinstance(event, Unpermit):
            relays.unpermit(event)
        elif isinstance(event, Bind):
            relays.bind(event)
        elif isinstance(event, Unbind):
            relays.unbind(event)
        elif isinstance(event, RelayClosed):
            relays.relay_closed(event)
            for cid in [c for c, p in self.tcp.peers.items() if p.relay == event.relay]:
                self.tcp.close_peer(cid)
        elif isinstance(event, ConnectPeer):
            self.tcp.connect(event.relay, event.peer, event.connection_id)
        elif isinstance(event, SpliceData):
            self._splice(event)
        elif isinstance(event, CloseConnection):
            self.tcp.close_peer(event.connection_id)
        elif isinstance(event, Lookup):
            self._lookup(event)

    def _splice(self, event: SpliceData) -> None:
        conn = self.listeners.connection(event.client.connection)
        peer = self.tcp.peer(event.connection_id)
        if conn is None or peer is None or peer.closed:
            if conn is not None:
                conn.close()
            self.tcp.close_peer(event.connection_id)
            return
        conn.splice(peer)
        peer.splice(conn)

    def _lookup(self, event: Lookup) -> None:
        fetch = self.fetch
        if fetch is None or len(self._lookups) >= self.settings.max_lookups:
            self.lookups_dropped += 1
            return

        async def look_up() -> None:
            try:
                await fetch(event.username)
            except Exception as exc:  # the store failed: the client will retransmit
                self.log.warning("TURN: user look-up for %r failed: %s", event.username, exc)
                return
            c = event.client
            self.from_client(event.data, c.transport, c.local, c.remote, c.connection)

        task = self.loop.create_task(look_up())
        self._lookups.add(task)
        task.add_done_callback(self._lookups.discard)

    # --- stats -----------------------------------------------------------------------------

    def allocations(self) -> list[AllocationView]:
        """The live allocations with their relays' counters (a snapshot)."""
        return allocation_views(self.core.by_flow.values(), self.relays.counters(), clock())

    def stats(self) -> TurnServiceStats:
        """A read-only snapshot: the core's counters, the listeners', every relay's."""
        return snapshot(
            self.core.stats(),
            self.listeners.stats,
            self.relays.counters(),
            self.relays.closed_totals,
            tcp=TcpCounters(
                relays=len(self.tcp.relays),
                connections=len(self.tcp.peers),
                bytes_from_peers=self.tcp.bytes_from_peers(),
                bytes_to_peers=self.tcp.bytes_to_peers(),
                refused=self.tcp.refused,
                connect_failures=self.tcp.connect_failures,
                throttled=self.tcp.throttled,
            ),
            failures=self.failures,
            lookups_dropped=self.lookups_dropped,
            challenges_dropped=0 if self.challenges is None else self.challenges.dropped,
        )


UPKEEP_INTERVAL = 10.0
"""Seconds between ``MemoryKeeper`` checks of a TURN-only process."""


def tune_memory(service: TurnService, log: logging.Logger) -> Callable[[], None]:
    """The collector as the gateway's load watch sets it (start-up objects frozen, young
    threshold 2,000, no automatic full collections; ``MemoryKeeper`` runs them while
    allocations are few, or every 30 min), for a process without the SIP proxy. Returns
    the undo (stop the upkeep, CPython's defaults again)."""
    memory.tune()
    keeper = memory.MemoryKeeper(
        lambda: len(service.core.by_flow), lambda: False, log.getChild("memory")
    )

    async def upkeep() -> None:
        while True:
            await asyncio.sleep(UPKEEP_INTERVAL)
            keeper.check(clock())

    task = service.loop.create_task(upkeep())

    def undo() -> None:
        task.cancel()
        memory.untune()

    return undo
