# The media relay engine: offer/answer/delete/query over calls, rtpengine-like, driving a
# forwarder (in-process sockets or worker processes) through ``Forwarder``.
#
# Rules:
# - No asyncio and no clock reads of its own: ``clock`` is injected, timers are deadlines
#   (``get_timer()``/``handle_timer(now)``), so unit tests run it on a fake clock and a
#   fake forwarder. ``on_timer`` tells the runner that the earliest deadline may have changed
#   (the runner reads ``get_timer()``).
# - offer(): the SDP as its sender wrote it in, the SDP for the answerer out (pointing at
#   the pairs facing the answerer, on ``to_family``). answer(): the answerer's SDP in, the
#   SDP for the offerer out. Re-offers reuse ports; a party whose SDP changes family gets a
#   pair on the new family (its old one is released once unused). See ``session.py``.
# - Learning (``rtp.legs``): ``ADDRESS`` when the SDP address is usable and of the family
#   of the signalling source, ``ANY`` otherwise, ``OFF`` with ``trust_address``. Every
#   offer/answer reopens the learning window of the call's legs and counts as activity.
# - Timeouts: an unanswered offer is forgotten after ``offer_timeout``; an answered call
#   with no packet on any leg for ``timeout`` (``hold_timeout`` when every stream is on
#   hold/inactive) is reported through ``on_timeout(call_id)`` (the callback may query it)
#   and then deleted. Activity is read from the forwarder's counters only when a deadline
#   falls due, never per packet.
# - Errors: unparsable SDP raises ``RemoteProtocolError`` (from the SDP parser); no ports
#   or no address of a family raises ``RelayUnavailableError`` (503), leaving no trace of a new
#   call; an answer for an unknown call raises ``UnknownCallError``.
"""MediaRelay: calls, port pairs, latching policy, timeouts."""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import ip_network
from typing import Protocol

from rtc64.errors import LocalProtocolError
from rtc64.net.address import Family, IPAddress, family_of, format_hostport
from rtc64.net.ranges import is_private_or_unusable_for_media
from rtc64.relay.options import DEFAULT_OPTIONS, IceMode, RelayOptions, RelaySettings
from rtc64.relay.ports import LocalPair, PortPool, RelayUnavailableError
from rtc64.relay.session import COMPONENTS, RTCP, RTP, Call, Offer, Party, PartyMedia
from rtc64.relay.signalled import SignalledMedia, read_media, rewrite_for_relay
from rtc64.relay.stats import CallStats, LegStats
from rtc64.rtp.legs import LatchMode, LegCounters, LegSpec, LocalPort
from rtc64.sdp import parse, serialize

_BIND_ATTEMPTS = 8


class UnknownCallError(LocalProtocolError):
    """An answer, or a query, for a call the relay does not have."""

    def __init__(self, call_id: bytes) -> None:
        super().__init__(f"unknown call {call_id!r}", 404)


class Forwarder(Protocol):
    """The packet path: sockets, legs and their counters (``io.media``, ``io.media_workers``)."""

    def open(self, worker: int, ports: Sequence[LocalPort]) -> list[LocalPort]:
        """Bind ``ports``; return those that failed (asynchronous forwarders return [])."""
        ...

    def close(self, worker: int, ports: Sequence[LocalPort]) -> None: ...

    def update(self, worker: int, legs: Sequence[LegSpec], removed: Sequence[int]) -> None: ...

    def counters(self, legs: Iterable[int]) -> dict[int, LegCounters]: ...

    def shutdown(self) -> None: ...


@dataclass(slots=True)
class RelayCounters:
    """Engine-level counters for metrics."""

    offers: int = 0
    answers: int = 0
    deletes: int = 0
    timeouts: int = 0
    expired_offers: int = 0
    unavailable: int = 0


class MediaRelay:
    """rtpengine-like media relay engine (see the module comment)."""

    def __init__(
        self,
        settings: RelaySettings,
        forwarder: Forwarder,
        *,
        clock: Callable[[], float],
        on_timeout: Callable[[bytes], None] | None = None,
        on_timer: Callable[[], None] | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.settings = settings
        self.forwarder = forwarder
        self.pool = PortPool(settings.addresses, *settings.ports, workers=settings.workers)
        self.clock = clock
        self.on_timeout = on_timeout
        self.on_timer = on_timer
        self.log = log or logging.getLogger("rtc64.relay")
        self.counters = RelayCounters()
        self._calls: dict[bytes, Call] = {}
        self._heap: list[tuple[float, bytes]] = []
        self._next_leg = 1
        self._trusted = tuple(ip_network(n) for n in settings.trusted_networks)

    # --- public API ---------------------------------------------------------------------

    def reconfigure(self, settings: RelaySettings) -> None:
        """A reload: new addresses, ports, timeouts, strictness and trusted networks for
        what comes next. Calls in progress keep their addresses and ports (a re-offer
        that needs a new pair on an address no longer configured gets 503); their next
        idle deadline uses the new timeouts. The worker count needs a restart."""
        if settings.workers != self.settings.workers:
            raise LocalProtocolError("the relay's worker count changes only with a restart")
        self.pool.reconfigure(settings.addresses, *settings.ports)
        self.settings = settings
        self._trusted = tuple(ip_network(n) for n in settings.trusted_networks)

    def offer(
        self,
        call_id: bytes,
        from_tag: bytes,
        sdp: bytes,
        *,
        to_family: Family,
        from_source: IPAddress | None = None,
        options: RelayOptions = DEFAULT_OPTIONS,
        to_tag: bytes | None = None,
    ) -> bytes:
        """The offerer's SDP in, the SDP for the answerer (on ``to_family``) out."""
        now = self.clock()
        sd = parse(sdp)
        if options.ice is not IceMode.REMOVE:
            raise LocalProtocolError("ICE through the relay needs STUN on relay ports", 501)
        media = read_media(sd)
        call = self._calls.get(call_id)
        new = call is None
        if call is None:
            call = Call(call_id, now, self.pool.least_used_worker(), last_activity=now)
        try:
            party = call.parties.get(from_tag) or Party(from_tag)
            self._set_party(call, party, media, from_source, options, fallback=to_family)
            call.parties[from_tag] = party
            other_tag = to_tag if to_tag is not None and to_tag in call.parties else party.peer
            other = call.parties.get(other_tag) if other_tag is not None else None
            pairs: list[LocalPair | None] = []
            previous = call.offer if call.offer and call.offer.offerer == from_tag else None
            for i, m in enumerate(media):
                existing = other.media[i].local if other and i < len(other.media) else None
                if existing is None and previous is not None and i < len(previous.pairs):
                    existing = previous.pairs[i]  # a repeated offer keeps its ports
                if m.rejected:
                    pairs.append(None)
                elif existing is not None and existing.family is to_family:
                    pairs.append(existing)
                else:
                    pairs.append(self._allocate(call, to_family))
            call.offer = Offer(from_tag, to_family, pairs, now + self.settings.offer_timeout)
            out = rewrite_for_relay(
                sd,
                self.settings.sdp_address(self._address(call, to_family)),
                [p.port if p is not None else None for p in pairs],
                replace_origin=options.replace_origin,
                replace_session_connection=options.replace_session_connection,
            )
        except RelayUnavailableError:
            self.counters.unavailable += 1
            if new:
                self._discard(call)
            raise
        except Exception:
            if new:
                self._discard(call)
            raise
        self._calls[call_id] = call
        self.counters.offers += 1
        # A re-offer is activity: resuming a hold longer than ``timeout`` must not find the
        # idle deadline already past before its answer comes.
        call.last_activity = max(call.last_activity, now)
        self._push(call, options)
        self._release_unused(call)
        self._schedule(call, now)
        return serialize(out)

    def answer(
        self,
        call_id: bytes,
        from_tag: bytes,
        to_tag: bytes,
        sdp: bytes,
        *,
        to_family: Family,
        from_source: IPAddress | None = None,
        options: RelayOptions = DEFAULT_OPTIONS,
    ) -> bytes:
        """The answerer's (``to_tag``) SDP in, the SDP for the offerer (``from_tag``) out.

        ``to_family`` is the offerer's side: the pairs facing it are already chosen, so it
        only matters when the offerer is unknown (never, for a consistent caller).
        """
        now = self.clock()
        call = self._calls.get(call_id)
        if call is None or from_tag not in call.parties:
            raise UnknownCallError(call_id)
        sd = parse(sdp)
        media = read_media(sd)
        offerer = call.parties[from_tag]
        offer = call.offer
        answerer = call.parties.get(to_tag) or Party(to_tag)
        if offer is not None and offer.offerer == from_tag:
            pairs = offer.pairs
        elif to_tag in call.parties:  # a repeated answer: keep what it has
            pairs = [pm.local for pm in answerer.media]
        else:
            raise LocalProtocolError(f"answer from {to_tag!r} to no offer of {from_tag!r}")
        answerer.options = options
        answerer.source = from_source
        strict = self._strict(options)
        for i, m in enumerate(media):
            pm = self._party_media(answerer, i)
            pair = pairs[i] if i < len(pairs) else None
            pm.local = None if m.rejected else pair
            pm.signalled = m
            pm.strict = strict
            if pm.local is not None:
                pm.mode = self._mode(m, pm.local.family, from_source, options)
        del answerer.media[len(media) :]
        answerer.family = next((pm.local.family for pm in answerer.media if pm.local), None)
        answerer.peer = from_tag
        offerer.peer = to_tag
        call.parties[to_tag] = answerer
        if offer is not None:
            offer.answered = True
        if call.answered is None:
            call.answered = now
        call.last_activity = max(call.last_activity, now)
        self.counters.answers += 1
        self._push(call, options)
        self._release_unused(call)
        self._schedule(call, now)
        ports = [
            offerer.media[i].local.port  # type: ignore[union-attr]
            if i < len(offerer.media) and offerer.media[i].local is not None and not m.rejected
            else None
            for i, m in enumerate(media)
        ]
        family = offerer.family or to_family
        out = rewrite_for_relay(
            sd,
            self.settings.sdp_address(self._address(call, family)),
            ports,
            replace_origin=options.replace_origin,
            replace_session_connection=options.replace_session_connection,
        )
        return serialize(out)

    def delete(
        self, call_id: bytes, from_tag: bytes | None = None, to_tag: bytes | None = None
    ) -> CallStats | None:
        """End a call (or only the fork ``to_tag`` when others remain); its last stats."""
        call = self._calls.get(call_id)
        if call is None:
            return None
        self.counters.deletes += 1
        if to_tag is not None and to_tag in call.parties and len(call.parties) > 2:
            stats = self._stats(call, only=to_tag)
            self._remove_party(call, to_tag)
            return stats
        stats = self._stats(call)
        self._discard(call)
        return stats

    def query(self, call_id: bytes) -> CallStats | None:
        call = self._calls.get(call_id)
        return None if call is None else self._stats(call)

    def calls(self) -> list[bytes]:
        return list(self._calls)

    def close(self) -> None:
        for call in list(self._calls.values()):
            self._discard(call)
        self.forwarder.shutdown()

    # --- timers -------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        heap = self._heap
        while heap:
            when, call_id = heap[0]
            call = self._calls.get(call_id)
            if call is not None and call.deadline == when:
                return when
            heapq.heappop(heap)
        return None

    def handle_timer(self, now: float) -> None:
        """Expire unanswered offers and time out idle calls whose deadline is due."""
        while (when := self.get_timer()) is not None and when <= now:
            _, call_id = heapq.heappop(self._heap)
            call = self._calls[call_id]
            call.deadline = None
            if call.answered is None:
                self.counters.expired_offers += 1
                self.log.info("media: offer for %r never answered, released", call_id)
                self._discard(call)
                continue
            counters = self.forwarder.counters(call.leg_ids())
            seen = [c.last_packet for c in counters.values() if c.last_packet is not None]
            if seen:
                call.last_activity = max(call.last_activity, *seen)
            if call.last_activity + self._idle_limit(call) > now:
                self._schedule(call, now, notify=False)
                continue
            self.counters.timeouts += 1
            self.log.info("media: call %r timed out (no media)", call_id)
            if self.on_timeout is not None:
                try:
                    self.on_timeout(call_id)
                except Exception:
                    self.log.exception("media: on_timeout(%r) failed", call_id)
            if self._calls.get(call_id) is call:
                self._discard(call)
        self._notify()

    # --- internals ----------------------------------------------------------------------

    def _idle_limit(self, call: Call) -> float:
        return self.settings.hold_timeout if call.all_held() else self.settings.timeout

    def _schedule(self, call: Call, now: float, *, notify: bool = True) -> None:
        if call.answered is None:
            deadline = call.offer.expires if call.offer is not None else now
        else:
            deadline = call.last_activity + self._idle_limit(call)
        if deadline != call.deadline:
            call.deadline = deadline
            heapq.heappush(self._heap, (deadline, call.call_id))
        if notify:
            self._notify()

    def _notify(self) -> None:
        if self.on_timer is not None:
            self.on_timer()

    def _strict(self, options: RelayOptions) -> bool:
        return (
            self.settings.strict_source if options.strict_source is None else options.strict_source
        )

    def _usable(self, address: IPAddress) -> bool:
        if any(address in net for net in self._trusted):
            return True
        return not is_private_or_unusable_for_media(address)

    def _mode(
        self,
        m: SignalledMedia,
        local_family: Family,
        source: IPAddress | None,
        options: RelayOptions,
    ) -> LatchMode:
        if options.trust_address:
            return LatchMode.OFF
        address = m.address
        if address is None or not self._usable(address):
            return LatchMode.ANY
        family = family_of(address)
        if family is not local_family or (source is not None and family_of(source) is not family):
            return LatchMode.ANY
        return LatchMode.ADDRESS

    def _party_media(self, party: Party, index: int) -> PartyMedia:
        while len(party.media) <= index:
            party.media.append(PartyMedia((self._next_leg, self._next_leg + 1)))
            self._next_leg += 2
        return party.media[index]

    def _set_party(
        self,
        call: Call,
        party: Party,
        media: Sequence[SignalledMedia],
        source: IPAddress | None,
        options: RelayOptions,
        *,
        fallback: Family,
    ) -> None:
        """Record an offerer's SDP and give it pairs on its family."""
        family = options.from_family
        if family is None:
            live = [m for m in media if not m.rejected]
            family = next((family_of(m.address) for m in live if m.address is not None), None)
        if family is None:
            family = party.family
        if family is None:
            family = next((m.family for m in media if m.family is not None), None)
        if family is None:
            family = fallback if source is None else family_of(source)
        party.family = family
        party.options = options
        party.source = source
        strict = self._strict(options)
        for i, m in enumerate(media):
            pm = self._party_media(party, i)
            pm.signalled = m
            pm.strict = strict
            if m.rejected:
                pm.local = None
                continue
            if pm.local is None or pm.local.family is not family:
                pm.local = self._allocate(call, family)
            pm.mode = self._mode(m, family, source, options)
        del party.media[len(media) :]

    def _address(self, call: Call, family: Family) -> IPAddress:
        address = call.addresses.get(family)
        if address is None:
            address = call.addresses[family] = self.pool.pick_address(family)
        return address

    def _allocate(self, call: Call, family: Family) -> LocalPair:
        address = self._address(call, family)
        for _ in range(_BIND_ATTEMPTS):
            pair = self.pool.allocate(address, call.worker)
            failed = self.forwarder.open(call.worker, (pair.rtp, pair.rtcp))
            if not failed:
                call.pairs.add(pair)
                return pair
            opened = [p for p in (pair.rtp, pair.rtcp) if p not in failed]
            if opened:
                self.forwarder.close(call.worker, opened)
            where = format_hostport(address, pair.port)
            self.log.warning("media: cannot bind %s, trying another", where)
            self.pool.release(pair)
        raise RelayUnavailableError(f"cannot bind media ports on {address}")

    def _release_unused(self, call: Call) -> None:
        unused = call.pairs - call.referenced_pairs()
        if not unused:
            return
        ports: list[LocalPort] = []
        for pair in unused:
            ports += (pair.rtp, pair.rtcp)
            call.pairs.discard(pair)
        self.forwarder.close(call.worker, ports)
        for pair in unused:
            self.pool.release(pair)

    def _push(self, call: Call, options: RelayOptions | None) -> None:
        """Send the forwarder every leg of ``call`` as it now stands."""
        window = 0.0
        if options is not None:
            chosen = options.learning_window
            window = self.settings.learning_window if chosen is None else chosen
        specs: list[LegSpec] = []
        active: set[int] = set()
        for party in call.parties.values():
            peer = call.parties.get(party.peer) if party.peer is not None else None
            for i, pm in enumerate(party.media):
                if pm.local is None or pm.signalled is None:
                    continue
                other = peer.media[i] if peer is not None and i < len(peer.media) else None
                linked = other is not None and other.local is not None
                sig = pm.signalled
                rates = sig.clock_rates if self.settings.rtp_stats else ()
                for component in (RTP, RTCP):
                    if component == RTP:
                        local, ip, port = pm.local.rtp, sig.address, sig.port
                    else:
                        local, ip, port = pm.local.rtcp, sig.rtcp_address, sig.rtcp_port
                    leg = pm.legs[component]
                    active.add(leg)
                    specs.append(
                        LegSpec(
                            leg=leg,
                            local=local,
                            peer=other.legs[component] if linked and other else None,
                            remote=None if ip is None else (ip, port),
                            mode=pm.mode,
                            strict=pm.strict,
                            window=window,
                            clock_rates=rates if component == RTP else (),
                        )
                    )
        removed = sorted(call.active_legs - active)
        call.active_legs = active
        self.forwarder.update(call.worker, specs, removed)

    def _remove_party(self, call: Call, tag: bytes) -> None:
        party = call.parties.pop(tag)
        for other in call.parties.values():
            if other.peer == tag:
                forks = [p.tag for p in call.parties.values() if p.peer == other.tag]
                other.peer = forks[-1] if forks else None
        party.media.clear()
        self._push(call, None)
        self._release_unused(call)

    def _discard(self, call: Call) -> None:
        if self._calls.get(call.call_id) is call:
            del self._calls[call.call_id]
        call.deadline = None
        if call.active_legs:
            self.forwarder.update(call.worker, (), sorted(call.active_legs))
            call.active_legs = set()
        call.parties.clear()
        call.offer = None
        self._release_unused(call)

    def _stats(self, call: Call, only: bytes | None = None) -> CallStats:
        counters = self.forwarder.counters(call.leg_ids())
        legs: list[LegStats] = []
        for party in call.parties.values():
            if only is not None and party.tag != only:
                continue
            peer = call.parties.get(party.peer) if party.peer is not None else None
            for i, pm in enumerate(party.media):
                sig = pm.signalled
                if pm.local is None or sig is None:
                    continue
                held = party.held(i) or (peer is not None and peer.held(i))
                for component in (RTP, RTCP):
                    c = counters.get(pm.legs[component])
                    ip = sig.address if component == RTP else sig.rtcp_address
                    port = sig.port if component == RTP else sig.rtcp_port
                    legs.append(
                        LegStats(
                            tag=party.tag,
                            media=i,
                            kind=sig.kind,
                            component=COMPONENTS[component],
                            local=pm.local.rtp if component == RTP else pm.local.rtcp,
                            remote=None if ip is None else (ip, port),
                            latched=None if c is None else c.latched,
                            mode=pm.mode,
                            held=held,
                            packets=0 if c is None else c.packets,
                            octets=0 if c is None else c.octets,
                            forwarded=0 if c is None else c.forwarded,
                            dropped=0 if c is None else c.dropped,
                            last_packet=None if c is None else c.last_packet,
                            reception=None if c is None else c.reception,
                        )
                    )
        return CallStats(
            call.call_id, call.created, call.answered, tuple(call.parties), tuple(legs)
        )
