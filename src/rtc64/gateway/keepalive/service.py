# The keepalive schedule wired to the gateway: the thin part that sends, listens and writes.
#
# Rules:
# - ``Keepalives`` is the core an ``io.driver.Driver`` runs (``get_timer``/``handle_timer``);
#   it turns the schedule's actions into sends and store writes and wakes the driver after
#   any input (a stored REGISTER, an OPTIONS answer).
# - The schedule hears of every binding set the registrar stores through ``WatchedStore``
#   (the proxy's store, wrapped), and of the bindings already stored at start (``load``).
# - Pings and OPTIONS leave from the listener the contact registered on; over TCP/TLS/WS
#   only on a connection already open (RFC 5626 §4.4.1: the client keeps its flow; we never
#   open one to a phone's ephemeral port). The Via names that listener's address as seen
#   from the contact (``sent_by``).
# - ``ReplyTap`` sits between the transports and the proxy: answers to our OPTIONS (their
#   Via branch carries ``options.BRANCH_MARK``) go to the schedule, never to the proxy;
#   UDP answers are taken from the raw datagram when ``options.fast_reply`` reads them.
# - An unreachable contact's binding is removed only if the store still holds that very
#   binding (a re-registration since then wins); an answer from a new source updates the
#   binding's received address the same way. Both are logged and counted; store failures
#   are logged and retried at the next failure.
# - SIP workers (``share``): each AOR's contacts are kept alive by exactly one worker, its
#   owner (``owner_of``: CRC-32 of the AOR modulo the worker count, the same in every worker
#   and across restarts), whichever worker stored the REGISTER. A worker storing another
#   worker's AOR tells the owner, which re-reads the AOR from the shared store; at start
#   each worker loads the AORs it owns (so a restarted worker takes its contacts up
#   again). Tokens name the owner (``token_owner``): an answer landing on another worker
#   (the kernel's SO_REUSEPORT pick for the contact's address) is handed to it.

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from rtc64.errors import Rtc64Error
from rtc64.gateway.keepalive.options import build_options, fast_reply, is_ours, reply_token
from rtc64.gateway.keepalive.schedule import (
    Action,
    AddressChanged,
    KeepaliveSchedule,
    Reachable,
    SendOptions,
    SendPing,
    Unreachable,
)
from rtc64.gateway.location.bindings import Binding
from rtc64.gateway.location.store import LocationStore, Owned, SwappingStore
from rtc64.gateway.stats import ContactHealth, KeepaliveCounters
from rtc64.net.address import IPAddress, format_hostport
from rtc64.net.endpoint import Flow, SockAddr, Transport
from rtc64.net.shard import shard_of
from rtc64.sip.message import Message, Response

Spawn = Callable[[Coroutine[Any, Any, None]], None]
LOAD_BATCH = 1000  # bindings tracked per loop turn at start


class KeepaliveSender(Protocol):
    """What the keepalives need from the transports (``io.sip_transport``)."""

    def keepalive(
        self, transport: Transport, listener: str, remote: SockAddr, payload: bytes
    ) -> bool: ...

    def has_connection(self, transport: Transport, address: IPAddress, port: int) -> bool: ...

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


class KeepaliveShare(Protocol):
    """The other SIP workers, as the keepalives of one of them see them
    (``io.worker_link.WorkerLink``)."""

    @property
    def index(self) -> int:
        """This worker's index."""

    @property
    def count(self) -> int:
        """How many workers there are."""

    def keepalive_changed(self, owner: int, aor: str) -> None:
        """Tell worker ``owner`` that ``aor``'s bindings changed in the store."""

    def keepalive_answer(self, owner: int, data: bytes, flow: Flow) -> None:
        """Hand an answer to one of worker ``owner``'s OPTIONS over to it."""


def owner_of(aor: str, count: int) -> int:
    """The SIP worker that keeps ``aor``'s contacts alive (stable across restarts)."""
    return shard_of(aor.encode("utf-8", "surrogateescape"), count)


def worker_token(index: int, random_part: bytes) -> bytes:
    """An OPTIONS token naming worker ``index`` (alphanumeric, as ``options`` wants)."""
    return b"W%dZ%s" % (index, random_part)


def token_owner(token: bytes) -> int | None:
    """The worker a ``worker_token`` names, or None (a single process's token)."""
    if not token.startswith(b"W"):
        return None
    digits, sep, _ = token[1:].partition(b"Z")
    return int(digits) if sep and digits.isdigit() and len(digits) < 6 else None


SentBy = Callable[[str, SockAddr], tuple[SockAddr, str] | None]
"""Listener name and the contact's address → (the listener's local address, the Via
``host:port`` to write toward that contact), or None when no such listener exists."""


@dataclass(slots=True)
class KeepaliveStats:
    ping_failures: int = 0
    """Pings not sent (no listener, no open connection, socket error)."""
    options_unsent: int = 0
    removed: int = 0
    """Bindings removed for being unreachable."""
    moved: int = 0
    """Bindings whose received address an OPTIONS answer updated."""
    store_errors: int = 0


class Keepalives:
    """The keepalive schedule on the loop (see the module rules)."""

    def __init__(
        self,
        schedule: KeepaliveSchedule,
        *,
        sender: KeepaliveSender,
        store: LocationStore,
        sent_by: SentBy,
        clock: Callable[[], float],
        wall: Callable[[], float],
        spawn: Spawn,
        log: logging.Logger,
        wake: Callable[[], None] = lambda: None,
        share: KeepaliveShare | None = None,
    ) -> None:
        self.schedule = schedule
        self.share = share
        self.sender = sender
        self.store = store
        self.sent_by = sent_by
        self.clock = clock
        self.wall = wall
        self.spawn = spawn
        self.log = log
        self.wake = wake
        self.stats = KeepaliveStats()

    # -- read-only view (gateway.stats.KeepaliveView, for the console and ``rtc64 ctl``) -----

    def health(self, aor: str, contact: bytes) -> ContactHealth | None:
        """The schedule's state, failures, OPTIONS RTT and the wall-clock time of the
        last answered OPTIONS of one registered contact."""
        status = self.schedule.status((aor, contact))
        if status is None:
            return None
        answered = status.answered
        last = None if answered is None else self.wall() - max(0.0, self.clock() - answered)
        return ContactHealth(status.state.value, status.failures, last, status.rtt)

    def counters(self) -> KeepaliveCounters:
        """Totals since start, failures by family (for /metrics)."""
        s = self.schedule.stats
        return KeepaliveCounters(
            tracked=len(self.schedule),
            pings=s.pings,
            options=s.options,
            replies=s.replies,
            failures=dict(s.timeouts_by_family),
            unreachable=dict(s.unreachable_by_family),
            removed=self.stats.removed,
            ping_failures=self.stats.ping_failures,
            options_unsent=self.stats.options_unsent,
        )

    # -- driven core ----------------------------------------------------------------------

    def get_timer(self) -> float | None:
        return self.schedule.get_timer()

    def handle_timer(self, now: float) -> None:
        self._run(self.schedule.handle_timer(now))

    # -- input ----------------------------------------------------------------------------

    async def load(self) -> int:
        """Track every binding already in the store; returns how many are tracked."""
        wall = self.wall()
        share = self.share
        mine = None
        if share is not None and share.count > 1:  # decode only this worker's share

            def mine(aor: str) -> bool:
                return owner_of(aor, share.count) == share.index

        bindings = await self.store.all_bindings(wall, mine)
        for n, binding in enumerate(bindings):
            if n % LOAD_BATCH == 0 and n:
                await asyncio.sleep(0)  # 100,000 bindings take ~2 s: let calls through
            if self._elsewhere(binding.aor) is None:
                self.schedule.add(binding, self.clock(), self.wall())
        self.wake()
        return len(self.schedule)

    def _elsewhere(self, aor: str) -> int | None:
        """The other worker owning ``aor``'s keepalives, or None (this one does)."""
        share = self.share
        if share is None or share.count < 2:
            return None
        owner = owner_of(aor, share.count)
        return None if owner == share.index else owner

    def on_replaced(self, aor: str, bindings: Sequence[Binding]) -> None:
        """The store now holds ``bindings`` as the AOR's whole set."""
        owner = self._elsewhere(aor)
        if owner is not None:
            assert self.share is not None
            self.share.keepalive_changed(owner, aor)
            return
        self.schedule.set_aor(aor, bindings, self.clock(), self.wall())
        self.wake()

    async def refresh(self, aor: str) -> None:
        """Another worker stored ``aor``: track what the store holds for it now."""
        if self._elsewhere(aor) is not None:
            return  # not ours (a stale notice from before a change of worker count)
        try:
            bindings = await self.store.lookup(aor, self.wall())
        except Rtc64Error as exc:
            self.stats.store_errors += 1
            self.log.warning("keepalive: cannot read %s: %s", aor, exc)
            return
        self.schedule.set_aor(aor, bindings, self.clock(), self.wall())
        self.wake()

    def _handed(self, token: bytes, data: bytes | None, flow: Flow) -> bool:
        """Hand an answer carrying another worker's token to that worker."""
        share = self.share
        if share is None:
            return False
        owner = token_owner(token)
        if owner is None or owner == share.index or not 0 <= owner < share.count:
            return False
        if data is not None:
            share.keepalive_answer(owner, data, flow)
        return True

    def on_raw(self, data: bytes, flow: Flow) -> bool:
        """Take a raw UDP answer to one of our OPTIONS without a full parse; False: not
        recognised here (parsed as usual, then ``on_response``)."""
        found = fast_reply(data)
        if found is None:
            return False
        token, status = found
        if self._handed(token, data, flow):
            return True
        self._run(self.schedule.on_reply(token, status, flow.transport, flow.remote, self.clock()))
        self.wake()
        return True

    def on_response(self, msg: Message, flow: Flow) -> bool:
        """Take an answer to one of our OPTIONS; False: not ours, the proxy's business."""
        if not isinstance(msg, Response) or not is_ours(msg):
            return False
        token = reply_token(msg)
        if token is None:
            self.schedule.stats.stray_replies += 1
            return True
        if self._handed(token, msg.wire, flow):
            return True
        now = self.clock()
        self._run(self.schedule.on_reply(token, msg.status, flow.transport, flow.remote, now))
        self.wake()
        return True

    # -- output ---------------------------------------------------------------------------

    def _run(self, actions: list[Action]) -> None:
        payload = self.schedule.settings.payload
        for action in actions:
            if isinstance(action, SendPing):
                t = action.target
                if not self.sender.keepalive(t.transport, t.listener, t.remote, payload):
                    self.stats.ping_failures += 1
            elif isinstance(action, SendOptions):
                self._options(action)
            elif isinstance(action, Unreachable):
                self.spawn(self._remove(action.binding, action.failures))
            elif isinstance(action, AddressChanged):
                self.spawn(self._move(action.binding, action.remote))
            elif isinstance(action, Reachable):
                # First answers (one per contact) are debug: 100,000 lines otherwise.
                self.log.log(
                    logging.INFO if action.again else logging.DEBUG,
                    "keepalive: %s contact %s %sreachable (OPTIONS RTT %.1f ms)",
                    action.binding.aor,
                    action.binding.contact.decode("latin-1"),
                    "again " if action.again else "",
                    action.rtt * 1000,
                )

    def _options(self, action: SendOptions) -> None:
        t = action.target
        found = self.sent_by(t.listener, t.remote)
        ip, port = t.remote
        if found is None or (
            t.transport.reliable and not self.sender.has_connection(t.transport, ip, port)
        ):
            self.stats.options_unsent += 1
            return
        local, via = found
        data = build_options(action.binding.contact, t.transport, via, action.token)
        flow = Flow(t.transport, local, t.remote) if t.transport is Transport.UDP else None
        if not self.sender.send(data, t.transport, ip, port, flow=flow):
            self.stats.options_unsent += 1

    async def _remove(self, binding: Binding, failures: int) -> None:
        where = format_hostport(*_received(binding))
        try:
            current = await self.store.lookup(binding.aor, self.wall())
            if binding not in current:
                return
            await self.store.replace(binding.aor, [b for b in current if b != binding])
        except Rtc64Error as exc:
            self.stats.store_errors += 1
            self.log.warning("keepalive: cannot remove %s: %s", binding.aor, exc)
            return
        self.stats.removed += 1
        self.log.warning(
            "keepalive: %s contact %s at %s unreachable (%d OPTIONS unanswered): removed",
            binding.aor,
            binding.contact.decode("latin-1"),
            where,
            failures,
        )

    async def _move(self, binding: Binding, remote: SockAddr) -> None:
        try:
            current = await self.store.lookup(binding.aor, self.wall())
            if binding not in current:
                return
            moved = dataclasses.replace(binding, received_ip=remote[0], received_port=remote[1])
            await self.store.replace(binding.aor, [moved if b == binding else b for b in current])
        except Rtc64Error as exc:
            self.stats.store_errors += 1
            self.log.warning("keepalive: cannot update %s: %s", binding.aor, exc)
            return
        self.stats.moved += 1
        self.log.info(
            "keepalive: %s contact answers from %s (was %s): binding updated",
            binding.aor,
            format_hostport(*remote),
            format_hostport(*_received(binding)),
        )


def _received(binding: Binding) -> SockAddr:
    """The binding's received address (every tracked binding has one)."""
    assert binding.received_ip is not None and binding.received_port is not None
    return binding.received_ip, binding.received_port


class WatchedStore:
    """A location store that reports every binding set it stores to ``on_replace``."""

    def __init__(
        self, inner: LocationStore, on_replace: Callable[[str, Sequence[Binding]], None]
    ) -> None:
        self.inner = inner
        self.on_replace = on_replace
        self._swapping = isinstance(inner, SwappingStore)  # a Protocol check: once

    async def lookup(self, aor: str, now: float) -> list[Binding]:
        return await self.inner.lookup(aor, now)

    async def replace(self, aor: str, bindings: Sequence[Binding]) -> None:
        await self.inner.replace(aor, bindings)
        self.on_replace(aor, bindings)

    async def swap(
        self, aor: str, expected: Sequence[Binding], bindings: Sequence[Binding], now: float
    ) -> bool:
        """Compare-and-set through the inner store (SIP workers and gateways sharing it:
        ``location.store.SwappingStore``); reported only when it was stored."""
        if self._swapping:
            if not await cast(SwappingStore, self.inner).swap(aor, expected, bindings, now):
                return False
        else:
            await self.inner.replace(aor, bindings)
        self.on_replace(aor, bindings)
        return True

    async def expire(self, now: float) -> int:
        return await self.inner.expire(now)

    async def all_bindings(self, now: float, owned: Owned | None = None) -> list[Binding]:
        return await self.inner.all_bindings(now, owned)

    async def close(self) -> None:
        await self.inner.close()


OnMessage = Callable[[Message, Flow], None]
RawMessage = Callable[[bytes, Flow], bool]


class ReplyTap:
    """Answers to our OPTIONS go to ``keepalives``; everything else to ``forward``."""

    def __init__(self, forward: OnMessage, raw_forward: RawMessage | None = None) -> None:
        self.forward = forward
        self.raw_forward = raw_forward
        self.keepalives: Keepalives | None = None

    def on_raw_response(self, data: bytes, flow: Flow) -> bool:
        """A UDP response before parsing: True if it was an answer to our OPTIONS, or
        ``raw_forward`` (the proxy's raw path) took it."""
        keepalives = self.keepalives
        if keepalives is not None and keepalives.on_raw(data, flow):
            return True
        return self.raw_forward is not None and self.raw_forward(data, flow)

    def on_message(self, msg: Message, flow: Flow) -> None:
        keepalives = self.keepalives
        if keepalives is not None and keepalives.on_response(msg, flow):
            return
        self.forward(msg, flow)
