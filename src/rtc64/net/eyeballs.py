# Happy eyeballs for SIP: RFC 8305 adapted to SIP transactions, as a sans-I/O core.
#
# Rules (RFC 8305 §4 interleaving, §5 connection attempts, §8 defaults; RFC 3261 §9.1,
# §16.7 step 10 for CANCEL of losing branches; RFC 3263 for the target list):
#
# - A race runs over targets already ordered by RFC 3263 and interleaved by family (IPv6
#   first) by ``rtc64.net.rfc3263``. Attempt i+1 starts ``attempt_delay`` (0.25 s,
#   RFC 8305 §5 / §8) after attempt i if nothing at all has been heard from any attempt,
#   or at once when the most recently started attempt fails (transport error, ICMP, timeout).
#   ``attempt_delay=None`` turns racing off: the next target is tried only after a failure
#   (plain RFC 3263 failover, config ``dns.happy_eyeballs = false``).
# - The first answer of any kind wins: a TCP connect completing, or for UDP any SIP response
#   to the attempt's request, 100 Trying included. From then on no attempt is started, and the
#   attempts still silent are stopped (``Decision.stop``). There is never more than one winner.
# - SIP mapping for UDP (what the proxy does; see ``UdpRace``):
#     * each attempt is its own client transaction: a copy of the request with a new Via
#       branch, sent to that attempt's target. Nothing else in the request differs.
#     * a stopped attempt's client transaction is left to run out by itself (Timer B/F): it
#       never answered, and RFC 3261 §9.1 forbids a CANCEL before a provisional response.
#     * a loser that answers later: its first provisional to an INVITE is CANCELled (so the
#       callee never rings twice); a final is ignored (the transaction layer ACKs a non-2xx
#       final to INVITE by itself); a 2xx to INVITE makes a dialog nobody wants, so it is
#       reported (``Action.ACK_BYE``) for the proxy to ACK and BYE. OPTIONS and REGISTER
#       follow the same rule with no CANCEL: a loser's responses are dropped.
#     * every attempt ends: it wins, or its transaction fails or times out
#       (``attempt_failed``), or a loser's final response arrives.
# - Attempt states and their moves are tables (``INVITE_TABLE``, ``NON_INVITE_TABLE``): the
#   same race serves TCP/TLS connects (``Race.connected``) and SIP responses.
# - ``HealthCache`` remembers, per destination, a family that just failed: it is tried second
#   (never dropped) for ``penalty`` seconds (config ``dns.family_penalty``) and recovers by
#   itself or on its next success. Memory is bounded (least recently failed dropped first).
# - Pure: no clock reads; every call takes ``now`` (seconds, any monotonic origin).
"""Happy-eyeballs races over SIP targets and the per-destination family health cache."""

from __future__ import annotations

import enum
import heapq
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, count, zip_longest
from typing import Generic, Protocol, TypeVar

from rtc64.errors import LocalProtocolError
from rtc64.net.address import Family, IPAddress, family_of

ATTEMPT_DELAY = 0.25
"""RFC 8305 §5 and §8: the recommended Connection Attempt Delay."""
FAMILY_PENALTY = 600.0
"""Seconds a family that just failed is tried second (RFC 8305 §5 caches for ~10 min)."""
MAX_ENTRIES = 4096


class Addressed(Protocol):
    """What a race or the cache needs of a target: its IP address (rfc3263.Target has it)."""

    @property
    def address(self) -> IPAddress: ...


T = TypeVar("T", bound=Addressed)


def target_family(target: Addressed) -> Family:
    return family_of(target.address)


def interleave(targets: Sequence[T], first: Sequence[Family]) -> list[T]:
    """RFC 8305 §4: alternate the families in the order ``first`` (count 1), each family's
    targets keeping their relative order; families not named follow in order of appearance."""
    by_family: dict[Family, list[T]] = {}
    for target in targets:
        by_family.setdefault(target_family(target), []).append(target)
    order = [f for f in first if f in by_family] + [f for f in by_family if f not in first]
    rows = zip_longest(*(by_family[f] for f in order))
    return [t for t in chain.from_iterable(rows) if t is not None]


# ---------------------------------------------------------------------------------------
# Family health cache


class HealthCache:
    """Per destination and family: when the family last failed. Bounded, self-expiring."""

    def __init__(self, penalty: float = FAMILY_PENALTY, max_entries: int = MAX_ENTRIES) -> None:
        if penalty < 0 or max_entries < 1:
            raise LocalProtocolError("HealthCache needs penalty >= 0 and max_entries >= 1")
        self.penalty = penalty
        self.max_entries = max_entries
        # (key, family) -> time of the failure; oldest first (the penalty is the same for
        # all, so insertion order is also expiry order).
        self._failed: OrderedDict[tuple[Hashable, Family], float] = OrderedDict()
        # told of what this cache learnt itself (not of what it was told): SIP workers
        # share a destination's health (``io.worker_link.WorkerLink.share_health``)
        self.on_change: Callable[[Hashable, Family, bool], None] | None = None

    def __len__(self) -> int:
        return len(self._failed)

    def record_failure(
        self, key: Hashable, family: Family, now: float, *, notify: bool = True
    ) -> None:
        """``family`` just failed for ``key``: try it second for ``penalty`` seconds.
        ``notify`` False: another process learnt it (``on_change`` is not told)."""
        self._expire(now)
        if self.penalty <= 0:
            return
        entry = (key, family)
        self._failed.pop(entry, None)
        self._failed[entry] = now
        while len(self._failed) > self.max_entries:
            self._failed.popitem(last=False)
        if notify and self.on_change is not None:
            self.on_change(key, family, False)

    def record_success(
        self, key: Hashable, family: Family, now: float, *, notify: bool = True
    ) -> None:
        """``family`` works for ``key``: it is no longer tried second (``on_change`` is
        told only when that lifts a penalty: a success changes nothing otherwise)."""
        self._expire(now)
        lifted = self._failed.pop((key, family), None) is not None
        if lifted and notify and self.on_change is not None:
            self.on_change(key, family, True)

    def penalised(self, key: Hashable, now: float) -> dict[Family, float]:
        """The families of ``key`` tried second, with the time each failed."""
        self._expire(now)
        return {
            family: self._failed[(key, family)]
            for family in Family
            if (key, family) in self._failed
        }

    def order(self, key: Hashable, targets: Sequence[T], now: float) -> list[T]:
        """``targets`` with recently failed families moved back, none dropped.

        Unchanged when no penalty applies or the first target is already of the best family.
        Otherwise the families are interleaved again (RFC 8305 §4), healthy family first;
        when every family is penalised, the one that failed longest ago goes first.
        """
        failed = self.penalised(key, now)
        seen: list[Family] = []
        for target in targets:
            family = target_family(target)
            if family not in seen:
                seen.append(family)
        if not failed or len(seen) < 2:
            return list(targets)
        ranked = sorted(seen, key=lambda f: (f in failed, failed.get(f, 0.0)))
        if ranked[0] is seen[0]:
            return list(targets)
        return interleave(targets, ranked)

    def learn(self, key: Hashable, race: Race[T], now: float) -> None:
        """Record a decided race: the winner's family works; a family of the other kind that
        was tried earlier and failed or stayed silent failed. An undecided race teaches
        nothing (when everything fails, no family is better than the other)."""
        winner = race.winner
        if winner is None:
            return
        won = target_family(race.targets[winner])
        self.record_success(key, won, now)
        for index in range(winner):
            family = target_family(race.targets[index])
            if family is not won:
                self.record_failure(key, family, now)

    def _expire(self, now: float) -> None:
        limit = now - self.penalty
        while self._failed:
            entry, failed_at = next(iter(self._failed.items()))
            if failed_at > limit:
                break
            del self._failed[entry]


# ---------------------------------------------------------------------------------------
# Races


class State(enum.Enum):
    """Where one attempt stands."""

    WAITING = "waiting"  # not started yet
    TRYING = "trying"  # started, nothing heard
    WON = "won"  # the first answer of the race came from it
    STOPPED = "stopped"  # lost while silent: left to run out, a late answer is handled
    CANCELLED = "cancelled"  # lost, answered provisionally to INVITE, CANCEL sent
    ENDED = "ended"  # lost, and its final response came or its transaction ended
    FAILED = "failed"  # its transport failed or it timed out before any winner
    SKIPPED = "skipped"  # never started: another attempt won first


FINISHED = frozenset({State.WON, State.ENDED, State.FAILED, State.SKIPPED})
"""States an attempt never leaves by itself (the winner's fate is the proxy's)."""


class Input(enum.Enum):
    START = "start"
    LOSE = "lose"  # another attempt won
    FAIL = "fail"  # transport error, ICMP, transaction or connect timeout
    PROVISIONAL = "1xx"  # any 1xx, 100 Trying included
    SUCCESS = "2xx"  # a 2xx final response, or a TCP connect completing
    FINAL = "3xx-6xx"  # a non-2xx final response


class Action(enum.Enum):
    """What the caller does with the event it reported."""

    NONE = "none"  # nothing (state bookkeeping only)
    FORWARD = "forward"  # the winner's answer: process it as usual
    IGNORE = "ignore"  # drop the response (a TCP connect: close the socket)
    CANCEL = "cancel"  # send CANCEL for this attempt's INVITE client transaction
    ACK_BYE = "ack-bye"  # a loser's 2xx to INVITE: ACK it, BYE its dialog (once per To tag)


Table = Mapping[tuple[State, Input], tuple[State, Action]]

_COMMON: dict[tuple[State, Input], tuple[State, Action]] = {
    (State.WAITING, Input.START): (State.TRYING, Action.NONE),
    (State.WAITING, Input.LOSE): (State.SKIPPED, Action.NONE),
    (State.TRYING, Input.LOSE): (State.STOPPED, Action.NONE),
    (State.TRYING, Input.FAIL): (State.FAILED, Action.NONE),
    # The first answer of any kind wins (the race decides it before applying the move).
    (State.TRYING, Input.PROVISIONAL): (State.WON, Action.FORWARD),
    (State.TRYING, Input.SUCCESS): (State.WON, Action.FORWARD),
    (State.TRYING, Input.FINAL): (State.WON, Action.FORWARD),
    (State.WON, Input.PROVISIONAL): (State.WON, Action.FORWARD),
    (State.WON, Input.SUCCESS): (State.WON, Action.FORWARD),
    (State.WON, Input.FINAL): (State.WON, Action.FORWARD),
    (State.WON, Input.FAIL): (State.WON, Action.NONE),
    (State.STOPPED, Input.FAIL): (State.ENDED, Action.NONE),
    (State.STOPPED, Input.FINAL): (State.ENDED, Action.IGNORE),
    (State.ENDED, Input.PROVISIONAL): (State.ENDED, Action.IGNORE),
    (State.ENDED, Input.FINAL): (State.ENDED, Action.IGNORE),
    (State.ENDED, Input.FAIL): (State.ENDED, Action.NONE),
    (State.FAILED, Input.PROVISIONAL): (State.FAILED, Action.IGNORE),
    (State.FAILED, Input.FINAL): (State.FAILED, Action.IGNORE),
    (State.FAILED, Input.FAIL): (State.FAILED, Action.NONE),
}

INVITE_TABLE: Table = {
    **_COMMON,
    # RFC 3261 §9.1: CANCEL only once a provisional came; then it is sent at once.
    (State.STOPPED, Input.PROVISIONAL): (State.CANCELLED, Action.CANCEL),
    (State.CANCELLED, Input.PROVISIONAL): (State.CANCELLED, Action.IGNORE),
    (State.CANCELLED, Input.FINAL): (State.ENDED, Action.IGNORE),
    (State.CANCELLED, Input.FAIL): (State.ENDED, Action.NONE),
    # A loser's 2xx made a dialog: ACK and BYE it (every 2xx: a downstream fork may send
    # several, one per dialog; the proxy sends BYE once per To tag).
    (State.STOPPED, Input.SUCCESS): (State.ENDED, Action.ACK_BYE),
    (State.CANCELLED, Input.SUCCESS): (State.ENDED, Action.ACK_BYE),
    (State.ENDED, Input.SUCCESS): (State.ENDED, Action.ACK_BYE),
    (State.FAILED, Input.SUCCESS): (State.FAILED, Action.ACK_BYE),
}
"""Moves for INVITE races."""

NON_INVITE_TABLE: Table = {
    **_COMMON,
    # No CANCEL for non-INVITE requests (RFC 3261 §9.1); a loser's answers are dropped.
    # A stream race uses this table too: a connect completing late is closed.
    (State.STOPPED, Input.PROVISIONAL): (State.STOPPED, Action.IGNORE),
    (State.STOPPED, Input.SUCCESS): (State.ENDED, Action.IGNORE),
    (State.ENDED, Input.SUCCESS): (State.ENDED, Action.IGNORE),
    (State.FAILED, Input.SUCCESS): (State.FAILED, Action.IGNORE),
}
"""Moves for OPTIONS, REGISTER and every other non-INVITE race, and for connect races."""


@dataclass(frozen=True, slots=True)
class Attempt(Generic[T]):
    """Start this attempt now: ``targets[index]``."""

    index: int
    target: T


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to a reported event."""

    action: Action
    winner: int | None
    """The race's winner after the event (None: not decided yet)."""
    stop: tuple[int, ...] = ()
    """Attempts that lost with this event while silent: stop them (see the module rules)."""


class Race(Generic[T]):
    """One race over ordered targets: which attempt to start when, and who won.

    Stream transports report ``connected``; ``UdpRace`` adds SIP responses.
    """

    def __init__(
        self,
        targets: Sequence[T],
        attempt_delay: float | None = ATTEMPT_DELAY,
        table: Table = NON_INVITE_TABLE,
    ) -> None:
        if not targets:
            raise LocalProtocolError("a race needs at least one target")
        if attempt_delay is not None and attempt_delay < 0:
            raise LocalProtocolError("attempt_delay must be >= 0 or None")
        self.targets: tuple[T, ...] = tuple(targets)
        self.attempt_delay = attempt_delay
        self.states: list[State] = [State.WAITING] * len(self.targets)
        self.started_at: list[float | None] = [None] * len(self.targets)
        self.winner: int | None = None
        self._table = table
        self._next = 0  # the next attempt to start
        self._deadline: float | None = None

    def __repr__(self) -> str:
        states = ",".join(s.value for s in self.states)
        return f"<{type(self).__name__} [{states}] winner={self.winner}>"

    @property
    def exhausted(self) -> bool:
        """Every target was tried and every attempt failed: nothing more will come."""
        return all(s is State.FAILED for s in self.states)

    @property
    def done(self) -> bool:
        """Every attempt has ended (the winner counts as ended)."""
        return all(s in FINISHED for s in self.states)

    def state(self, index: int) -> State:
        return self.states[index]

    def start(self, now: float) -> Attempt[T]:
        """Start the race: send to (connect to) the first target."""
        if self._next:
            raise LocalProtocolError("the race has already started")
        return self._start_next(now)

    def get_timer(self) -> float | None:
        """When ``handle_timer`` starts the next attempt (None: nothing scheduled)."""
        return self._deadline

    def handle_timer(self, now: float) -> Attempt[T] | None:
        """The next attempt, if ``attempt_delay`` of silence has passed."""
        if self._deadline is None or now < self._deadline:
            return None
        return self._start_next(now)

    def attempt_failed(self, index: int, now: float) -> Attempt[T] | None:
        """Attempt ``index`` failed (transport error, ICMP, timeout) or its transaction ended.

        Returns the next attempt to start at once if it was the latest one started and no
        attempt has won yet.
        """
        self._move(index, Input.FAIL)
        if self.winner is None and index == self._next - 1 and self._next < len(self.targets):
            return self._start_next(now)
        return None

    def connected(self, index: int, now: float) -> Decision:
        """A stream connect to ``targets[index]`` completed (FORWARD: keep it; else close)."""
        return self._answer(index, Input.SUCCESS)

    def _answer(self, index: int, inp: Input) -> Decision:
        self._check(index)
        stop: tuple[int, ...] = ()
        if self.winner is None and self.states[index] is State.TRYING:
            self.winner = index
            self._deadline = None
            stop = tuple(i for i, s in enumerate(self.states) if s is State.TRYING and i != index)
            for i, s in enumerate(self.states):
                if i != index and s in (State.TRYING, State.WAITING):
                    self._move(i, Input.LOSE)
        action = self._move(index, inp)
        return Decision(action, self.winner, stop)

    def _start_next(self, now: float) -> Attempt[T]:
        index = self._next
        self._move(index, Input.START)
        self.started_at[index] = now
        self._next += 1
        more = self._next < len(self.targets)
        delay = self.attempt_delay
        self._deadline = now + delay if more and delay is not None else None
        return Attempt(index, self.targets[index])

    def _check(self, index: int) -> None:
        if not 0 <= index < len(self.targets):
            raise LocalProtocolError(f"no attempt {index} in this race")

    def _move(self, index: int, inp: Input) -> Action:
        self._check(index)
        move = self._table.get((self.states[index], inp))
        if move is None:
            raise LocalProtocolError(f"attempt {index} is {self.states[index].value}: no {inp}")
        self.states[index] = move[0]
        return move[1]


class UdpRace(Race[T]):
    """The race of one SIP request over UDP targets; see the module rules for the mapping.

    ``invite`` selects the table: INVITE losers that answer later are CANCELled (1xx) or
    ACKed and BYEd (2xx); other methods' losers are ignored.

    Proxy wiring, per forwarded target set (one response-context branch, many attempts):

    - targets = ``HealthCache.order(key, resolved_targets, now)``; ``race.start(now)``;
      ``RaceTimers.watch(race)``; start the attempt: build the request as for a new branch
      (new Via branch, Via/Record-Route/SDP of the attempt's family) and start its client
      transaction; map that transaction to ``(race, index)``.
    - timer: for each ``(race, attempt)`` of ``RaceTimers.handle_timer(now)``, start it.
    - ResponseReceived (100 included, before any other handling): ``race.response``;
      on the deciding one ``HealthCache.learn`` and ``Decision.stop`` lists the attempts
      to mute; act on ``Decision.action`` (FORWARD: the usual branch processing).
    - ClientTimeout/TransportFailed: the winner's goes the usual way; else
      ``race.attempt_failed`` (start what it returns, ``watch`` the race again); when
      ``race.exhausted`` the branch completes with 408 (timeouts) or 503.
    """

    def __init__(
        self,
        targets: Sequence[T],
        attempt_delay: float | None = ATTEMPT_DELAY,
        *,
        invite: bool = True,
    ) -> None:
        super().__init__(targets, attempt_delay, INVITE_TABLE if invite else NON_INVITE_TABLE)
        self.invite = invite

    def response(self, index: int, status: int, now: float) -> Decision:
        """A response with ``status`` came on attempt ``index``'s client transaction."""
        if not 100 <= status <= 699:
            raise LocalProtocolError(f"bad SIP status {status}")
        if status < 200:
            inp = Input.PROVISIONAL
        elif status < 300:
            inp = Input.SUCCESS
        else:
            inp = Input.FINAL
        return self._answer(index, inp)


class RaceTimers(Generic[T]):
    """The deadlines of many races in one heap, for a proxy with one timer.

    ``watch`` a race after ``start`` and after every call that may have moved its deadline
    (``attempt_failed`` that started an attempt); entries a race no longer has are skipped.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Race[T]]] = []
        self._seq = count()

    def __len__(self) -> int:
        return len(self._heap)

    def watch(self, race: Race[T]) -> None:
        deadline = race.get_timer()
        if deadline is not None:
            heapq.heappush(self._heap, (deadline, next(self._seq), race))

    def get_timer(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].get_timer() != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def handle_timer(self, now: float) -> list[tuple[Race[T], Attempt[T]]]:
        """The attempts to start now, each with its race."""
        out: list[tuple[Race[T], Attempt[T]]] = []
        while (deadline := self.get_timer()) is not None and deadline <= now:
            race = heapq.heappop(self._heap)[2]
            attempt = race.handle_timer(now)
            if attempt is not None:
                out.append((race, attempt))
            self.watch(race)
        return out
