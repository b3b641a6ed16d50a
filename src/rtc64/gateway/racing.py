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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rtc64.gateway.branches import Pending, Plan
from rtc64.gateway.calls import CallControl
from rtc64.gateway.forking import Branch
from rtc64.gateway.hops import Hop
from rtc64.net.address import family_of
from rtc64.net.endpoint import Transport
from rtc64.net.eyeballs import ATTEMPT_DELAY, Action, HealthCache, Race, RaceTimers, UdpRace
from rtc64.sip.message import Response
from rtc64.sip.transaction_client import ClientTransaction, make_cancel


@dataclass(slots=True)
class _Race:
    """One branch's race: its plan, the race state and the attempts' transactions."""

    pending: Pending
    branch: Branch
    plan: Plan
    key: str
    race: UdpRace[Hop]
    clients: dict[int, ClientTransaction]
    learnt: bool = False


class RacingCore(CallControl):
    """``CallControl`` whose branches race their addresses (happy eyeballs)."""

    def __init__(
        self,
        *args: Any,
        attempt_delay: float | None = ATTEMPT_DELAY,
        family_penalty: float = 600.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.attempt_delay = attempt_delay
        self.health = HealthCache(family_penalty)
        self._race_timers: RaceTimers[Hop] = RaceTimers()
        self._races: dict[Race[Hop], _Race] = {}
        self._attempt_of: dict[ClientTransaction, tuple[_Race, int]] = {}

    # -- starting -------------------------------------------------------------------------

    async def _start_branch(
        self, pending: Pending, branch: Branch, plan: Plan, candidates: list[Hop], key: str
    ) -> None:
        ordered = self.health.order(key, candidates, self.clock())
        streams = [h for h in ordered if h.transport.reliable]
        if self.attempt_delay is not None and len(streams) >= 2 and len(streams) == len(ordered):
            await self._start_stream_branch(pending, branch, plan, streams, key)
            return
        udp = [h for h in ordered if h.transport is Transport.UDP]
        if self.attempt_delay is None or len(udp) < 2 or len(udp) != len(ordered):
            await super()._start_branch(pending, branch, plan, ordered, key)
            return
        race: UdpRace[Hop] = UdpRace(
            udp, self.attempt_delay, invite=pending.request.method == b"INVITE"
        )
        entry = _Race(pending, branch, plan, key, race, {})
        self._races[race] = entry
        first = race.start(self.clock())
        self._race_timers.watch(race)
        self._launch(entry, first.index, first.target)

    async def _start_stream_branch(
        self, pending: Pending, branch: Branch, plan: Plan, streams: list[Hop], key: str
    ) -> None:
        """TCP/TLS: race the connections (RFC 8305 §5), send on the first that connects."""
        try:
            winner, race = await self.sender.connect_race(
                streams[0].transport,
                streams,
                attempt_delay=self.attempt_delay,
                server_name=streams[0].server_name,
            )
        except OSError as exc:
            reason = f"Service Unavailable: {exc}"
            self._complete(pending, branch, 503, None, reason.encode("utf-8", "replace"))
            return
        if race is not None:
            self.health.learn(key, race, self.clock())
        if winner is not streams[0]:
            self.stats.race_fallbacks += 1
        self._attempt(pending, branch, plan, winner)

    def _launch(self, entry: _Race, index: int, hop: Hop) -> None:
        client = self._attempt(entry.pending, entry.branch, entry.plan, hop)
        if client is None:  # no listener or no media ports: the branch is completed
            self._forget(entry)
            return
        entry.clients[index] = client
        self._attempt_of[client] = (entry, index)
        self.stats.race_attempts += 1

    def _forget(self, entry: _Race) -> None:
        self._races.pop(entry.race, None)

    # -- timers ---------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest of the transaction layer's and the races' deadlines."""
        deadlines = [d for d in (self.layer.get_timer(), self._race_timers.get_timer()) if d]
        return min(deadlines) if deadlines else None

    def on_timer(self) -> None:
        super().on_timer()
        for race, attempt in self._race_timers.handle_timer(self.clock()):
            entry = self._races.get(race)
            if entry is not None and entry.branch.final is None:
                self.log.debug(
                    "happy eyeballs: no answer from %s within %.0f ms, trying %s",
                    entry.branch.target,
                    (self.attempt_delay or 0) * 1000,
                    attempt.target,
                )
                self._launch(entry, attempt.index, attempt.target)
        self._on_events()

    # -- responses and failures -----------------------------------------------------------

    def _branch_response(self, client: ClientTransaction, resp: Response) -> None:
        found = self._attempt_of.get(client)
        if found is None:
            super()._branch_response(client, resp)
            return
        entry, index = found
        decision = entry.race.response(index, resp.status, self.clock())
        if not entry.learnt and entry.race.winner is not None:
            entry.learnt = True
            self.health.learn(entry.key, entry.race, self.clock())
            winner = entry.race.targets[entry.race.winner]
            if entry.race.winner > 0:
                self.stats.race_fallbacks += 1
                self.log.info(
                    "happy eyeballs: %s answered on %s after %d silent attempt(s)",
                    entry.branch.target,
                    f"IPv{winner.ip.version}",
                    entry.race.winner,
                )
            for other in decision.stop:
                stopped = entry.clients.get(other)
                if stopped is not None:
                    self._branches.pop(stopped, None)
        if decision.action is Action.FORWARD:
            entry.branch.txn = client
            super()._branch_response(client, resp)
        elif decision.action is Action.CANCEL:
            self._cancel_loser(client)
        elif decision.action is Action.ACK_BYE:
            self.log.warning(
                "happy eyeballs: a losing attempt to %s answered 2xx too; ACK and BYE it",
                entry.branch.target,
            )
            self.end_unwanted(client, resp)

    def _cancel_loser(self, client: ClientTransaction) -> None:
        hop = client.dest
        assert isinstance(hop, Hop)
        _, events = self.layer.start_client(
            make_cancel(client.request), hop, hop.reliable, self.clock()
        )
        self.dispatch(events)

    def _branch_failed(self, client: ClientTransaction, status: int, reason: bytes) -> None:
        found = self._attempt_of.pop(client, None)
        if found is None:
            super()._branch_failed(client, status, reason)
            return
        entry, index = found
        race = entry.race
        if race.winner == index:
            self._forget(entry)
            super()._branch_failed(client, status, reason)
            return
        self._branches.pop(client, None)
        now = self.clock()
        self.health.record_failure(entry.key, family_of(race.targets[index].ip), now)
        nxt = race.attempt_failed(index, now)
        if nxt is not None:
            self._launch(entry, nxt.index, nxt.target)
            self._race_timers.watch(race)
        elif race.exhausted:
            self._forget(entry)
            self._complete(entry.pending, entry.branch, status, None, reason)

    def _terminated(self, txn: Any) -> None:
        super()._terminated(txn)
        if isinstance(txn, ClientTransaction):
            found = self._attempt_of.pop(txn, None)
            if found is not None and found[0].race.done:
                self._forget(found[0])
