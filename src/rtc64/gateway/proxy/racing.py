"""Happy eyeballs in the proxy: a branch whose target has several addresses races them.

Rules (RFC 8305 adapted, RFC 3263, RFC 3261 §9.1 and §16.7; see ``net.eyeballs``):

- The candidates of a branch come from RFC 3263 (IPv6 first, families interleaved), then
  the per-destination ``HealthCache`` puts a family that just failed second.
- Over UDP each attempt is its own client transaction (new Via branch) to the next
  address; attempt i+1 starts when nothing at all has been heard for ``attempt_delay``
  (0.25 s), or at once when attempt i fails. The first response of any kind wins; from
  then on the branch is the winner's. A loser that goes provisional later is CANCELled
  (the callee never rings twice), a loser's final is dropped, a loser's 2xx to INVITE is
  ACKed and ended with BYE.
- Stream transports (TCP/TLS) race their connections instead (``SipTransportLayer.
  connect_race``: IPv6 first, the next address ``attempt_delay`` later, losers closed) and
  the request goes on the first connection that succeeds. With ``attempt_delay`` None
  (config ``dns.happy_eyeballs = false``) a branch uses the first candidate only.

``Racing`` decides and remembers; the forwarder sends. It hands back ``Launch`` values
(send this branch to that hop) and verdicts on responses and failures (``branches``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from rtc64.gateway.proxy.branches import Launch, Leg, RaceFailure, RaceVerdict
from rtc64.gateway.proxy.hops import Hop
from rtc64.gateway.stats import Fallbacks, ProxyStats
from rtc64.net.address import family_of
from rtc64.net.endpoint import Transport
from rtc64.net.eyeballs import ATTEMPT_DELAY, HealthCache, Race, RaceTimers, UdpRace
from rtc64.sip.transaction_client import ClientTransaction

FAMILY_PENALTY = 600.0


class Connector(Protocol):
    """The transport layer's connection race (``SipTransportLayer.connect_race``)."""

    async def connect_race(
        self,
        transport: Transport,
        targets: Sequence[Hop],
        *,
        attempt_delay: float | None,
        server_name: str | None = None,
    ) -> tuple[Hop, Race[Hop] | None]: ...


@dataclass(slots=True)
class _Race:
    """One branch's UDP race: the branch, the race state and the attempts' transactions."""

    leg: Leg
    key: str
    race: UdpRace[Hop]
    clients: dict[int, ClientTransaction]
    learnt: bool = False


class Racing:
    """Races per branch (UDP attempts, stream connections) and the family health cache."""

    def __init__(
        self,
        *,
        connector: Connector,
        clock: Callable[[], float],
        stats: ProxyStats,
        log: logging.Logger,
        fallbacks: Fallbacks | None = None,
        attempt_delay: float | None = ATTEMPT_DELAY,
        family_penalty: float = FAMILY_PENALTY,
    ) -> None:
        self.connector = connector
        self.clock = clock
        self.stats = stats
        self.fallbacks = fallbacks or Fallbacks()
        self.log = log
        self.attempt_delay = attempt_delay
        self.health = HealthCache(family_penalty)
        self._timers: RaceTimers[Hop] = RaceTimers()
        self._races: dict[Race[Hop], _Race] = {}
        self._attempt_of: dict[ClientTransaction, tuple[_Race, int]] = {}

    # -- starting -------------------------------------------------------------------------

    async def start(self, leg: Leg, candidates: list[Hop], key: str) -> Launch:
        """The first attempt of a branch; raises ``OSError`` when no connection succeeds."""
        # One candidate (an IP literal, a single A record) has no order to change.
        ordered = (
            candidates if len(candidates) < 2 else self.health.order(key, candidates, self.clock())
        )
        delay = self.attempt_delay
        streams = [h for h in ordered if h.reliable]
        if delay is not None and len(streams) >= 2 and len(streams) == len(ordered):
            return Launch(leg, await self._connect(streams, key, delay))
        udp = [h for h in ordered if h.transport is Transport.UDP]
        if delay is None or len(udp) < 2 or len(udp) != len(ordered):
            return Launch(leg, ordered[0])
        race: UdpRace[Hop] = UdpRace(udp, delay, invite=leg.pending.request.method == b"INVITE")
        self._races[race] = _Race(leg, key, race, {})
        first = race.start(self.clock())
        self._timers.watch(race)
        return Launch(leg, first.target, race, first.index)

    async def _connect(self, streams: list[Hop], key: str, delay: float) -> Hop:
        """TCP/TLS: race the connections (RFC 8305 §5); the first that connects wins."""
        winner, race = await self.connector.connect_race(
            streams[0].transport, streams, attempt_delay=delay, server_name=streams[0].server_name
        )
        if race is not None:
            self.health.learn(key, race, self.clock())
        if winner is not streams[0]:
            self.stats.race_fallbacks += 1
            self.fallbacks.happy_eyeballs[family_of(winner.ip)] += 1
        return winner

    def launched(self, launch: Launch, client: ClientTransaction | None) -> None:
        """The forwarder sent ``launch`` as ``client`` (None: the branch failed at once)."""
        entry = self._races.get(launch.race) if isinstance(launch.race, Race) else None
        if entry is None:
            return
        if client is None:  # no listener or no media ports: the branch is completed
            self._forget(entry)
            return
        entry.clients[launch.index] = client
        self._attempt_of[client] = (entry, launch.index)
        self.stats.race_attempts += 1

    def _forget(self, entry: _Race) -> None:
        self._races.pop(entry.race, None)

    # -- timers ---------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        return self._timers.get_timer()

    def handle_timer(self, now: float) -> list[Launch]:
        """Attempts to start because their predecessors stayed silent."""
        launches: list[Launch] = []
        for race, attempt in self._timers.handle_timer(now):
            entry = self._races.get(race)
            if entry is not None and entry.leg.branch.final is None:
                self.log.debug(
                    "happy eyeballs: no answer from %s within %.0f ms, trying %s",
                    entry.leg.branch.target,
                    (self.attempt_delay or 0) * 1000,
                    attempt.target,
                )
                launches.append(Launch(entry.leg, attempt.target, race, attempt.index))
        return launches

    # -- responses and failures -----------------------------------------------------------

    def racing(self, client: ClientTransaction) -> bool:
        """Whether ``client`` is an attempt of a race (its responses are judged here)."""
        return client in self._attempt_of

    def response(self, client: ClientTransaction, status: int) -> RaceVerdict | None:
        """What to do with a response to an attempt; None when ``client`` raced nothing."""
        found = self._attempt_of.get(client)
        if found is None:
            return None
        entry, index = found
        now = self.clock()
        decision = entry.race.response(index, status, now)
        stop: list[ClientTransaction] = []
        if not entry.learnt and entry.race.winner is not None:
            entry.learnt = True
            self.health.learn(entry.key, entry.race, now)
            winner = entry.race.targets[entry.race.winner]
            if entry.race.winner > 0:
                self.stats.race_fallbacks += 1
                self.fallbacks.happy_eyeballs[family_of(winner.ip)] += 1
                self.log.info(
                    "happy eyeballs: %s answered on %s after %d silent attempt(s)",
                    entry.leg.branch.target,
                    f"IPv{winner.ip.version}",
                    entry.race.winner,
                )
            stop = [c for i in decision.stop if (c := entry.clients.get(i)) is not None]
        return RaceVerdict(decision.action, entry.leg, tuple(stop))

    def failed(self, client: ClientTransaction) -> RaceFailure | None:
        """An attempt timed out or its transport failed; None when it raced nothing."""
        found = self._attempt_of.pop(client, None)
        if found is None:
            return None
        entry, index = found
        race = entry.race
        if race.winner == index:
            self._forget(entry)
            return RaceFailure(entry.leg, winner=True)
        now = self.clock()
        self.health.record_failure(entry.key, family_of(race.targets[index].ip), now)
        nxt = race.attempt_failed(index, now)
        if nxt is not None:
            self._timers.watch(race)
            return RaceFailure(entry.leg, retry=Launch(entry.leg, nxt.target, race, nxt.index))
        if race.exhausted:
            self._forget(entry)
            return RaceFailure(entry.leg, exhausted=True)
        return RaceFailure(entry.leg)

    def terminated(self, client: ClientTransaction) -> None:
        found = self._attempt_of.pop(client, None)
        if found is not None and found[0].race.done:
            self._forget(found[0])
