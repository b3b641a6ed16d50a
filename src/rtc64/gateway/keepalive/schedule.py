# The keepalive schedule: when each registered contact gets a pinhole keepalive or a SIP
# OPTIONS, and what its answers mean. A sans-I/O core: ``now`` in (the process clock),
# actions out; no sockets, no clock reads, no randomness of its own (``rng`` is given).
#
# Rules (RFC 5626 §3.5.1, §4.4.1; Asterisk's qualify for OPTIONS and RTT):
# - A target is one registered contact (key: AOR, Contact URI) reached from the listener it
#   registered on, over its transport, at its received address and port (its family).
# - Every ``interval`` seconds at most a pinhole keepalive goes out (UDP: ``payload``; streams:
#   a CRLF CRLF ping; the io picks the form); every ``options_interval`` an OPTIONS, which
#   also refreshes the pinhole. Gaps are drawn in [(1 - jitter) x, x] (never above the
#   interval) and a new target's first send a uniform share of one such gap (close to the
#   stationary phase), so sends spread evenly, never in bursts (also after a restart that
#   loads every binding at once).
# - Contacts are indexes into columns (arrays of numbers, lists of binding rows
#   (``Binding.to_row``) and tokens): no per-contact object for the garbage collector to
#   walk (rows are plain tuples it stops tracking). Deadlines sit in a timing wheel of
#   ``resolution``-wide slots (one list entry per target, stale entries skipped), so the
#   driver's one timer fires at most once per slot.
# - OPTIONS are stateless (no transaction): each carries a fresh token as its Via branch and
#   Call-ID; the token table holds at most one entry per target and at most
#   ``max_outstanding`` in all (beyond it OPTIONS wait for the next round, counted). A reply
#   is matched by token only once, from the target's transport and family; any final
#   response proves liveness and records the RTT. A reply from another source (same
#   family) moves the target there (``AddressChanged``).
# - No final reply within ``options_timeout`` is a failure; ``max_failures`` consecutive
#   failures mark the target UNREACHABLE (``Unreachable``: the wiring removes the binding;
#   repeated at each further failure while the removal has not happened). A
#   re-registration resets the count.
# - Targets leave at their binding's expiry, on ``remove``, or when their AOR's set changes.

from __future__ import annotations

import enum
import heapq
import math
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from rtc64.gateway.location.bindings import Binding, BindingRow, row_target, unpack_ip
from rtc64.net.address import Family, family_of
from rtc64.net.endpoint import SockAddr, Transport

ContactKey = tuple[str, bytes]
"""(AOR, Contact URI as registered)."""

DEFAULT_PAYLOAD = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class KeepaliveSettings:
    """How often and how hard the gateway keeps registered contacts' paths open."""

    enabled: bool = True
    interval: float = 25.0
    """Seconds between pinhole keepalives (RFC 5626 §4.4.1 suggests 25 s for UDP)."""
    options_interval: float = 120.0
    """Seconds between OPTIONS liveness checks (0: none)."""
    max_failures: int = 3
    """Consecutive unanswered OPTIONS that make a contact unreachable."""
    payload: bytes = DEFAULT_PAYLOAD
    """The UDP pinhole keepalive (RFC 5626 §3.5.1 CRLF CRLF by default)."""
    options_timeout: float = 8.0
    """Seconds an OPTIONS waits for a final response (capped at the OPTIONS interval)."""
    jitter: float = 0.1
    """Each gap is drawn in [(1 - jitter) x interval, interval]."""
    resolution: float = 0.02
    """Width of a timing-wheel slot: the driver fires at most once per slot."""
    max_outstanding: int = 1_000_000
    """OPTIONS awaiting a reply, all targets together."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.interval) and self.interval > 0):
            raise ValueError(f"keepalive interval must be > 0, got {self.interval!r}")
        if not (math.isfinite(self.options_interval) and self.options_interval >= 0):
            raise ValueError(f"OPTIONS interval must be >= 0, got {self.options_interval!r}")
        if self.max_failures < 1:
            raise ValueError(f"max_failures must be >= 1, got {self.max_failures!r}")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError(f"jitter must be within [0, 1), got {self.jitter!r}")
        if not (self.resolution > 0 and self.options_timeout > 0 and self.max_outstanding > 0):
            raise ValueError("resolution, options_timeout and max_outstanding must be > 0")
        if not self.payload or len(self.payload) > 512:
            raise ValueError("keepalive payload must be 1..512 bytes")


class ContactState(enum.Enum):
    UNKNOWN = "unknown"
    """No OPTIONS answered yet."""
    REACHABLE = "reachable"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class Target:
    """Where a contact's keepalives go: transport, listener name, remote address."""

    transport: Transport
    listener: str
    remote: SockAddr

    @classmethod
    def of(cls, binding: Binding) -> Target | None:
        """The binding's path, or None when it cannot be kept open from here (no received
        address, or registered through another proxy: RFC 3327 Path)."""
        if binding.received_ip is None or binding.received_port is None or binding.path:
            return None
        return cls(
            Transport(binding.transport),
            binding.listener,
            (binding.received_ip, binding.received_port),
        )


# -- actions for the wiring -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendPing:
    """Send a pinhole keepalive (UDP payload, or a stream CRLF CRLF ping)."""

    target: Target


@dataclass(frozen=True, slots=True)
class SendOptions:
    """Send a stateless OPTIONS to the binding's contact carrying ``token``."""

    target: Target
    binding: Binding
    token: bytes


@dataclass(frozen=True, slots=True)
class Unreachable:
    """The contact failed ``max_failures`` OPTIONS in a row: remove its binding."""

    binding: Binding
    failures: int


@dataclass(frozen=True, slots=True)
class Reachable:
    """The contact answered its first OPTIONS, or answered again after being unreachable."""

    binding: Binding
    rtt: float
    again: bool


@dataclass(frozen=True, slots=True)
class AddressChanged:
    """An OPTIONS answer came from a new source: the binding's received address moves."""

    binding: Binding
    remote: SockAddr


Action = SendPing | SendOptions | Unreachable | Reachable | AddressChanged


@dataclass(frozen=True, slots=True)
class ContactStatus:
    """A contact as the schedule sees it (for the console and ``rtc64 ctl``)."""

    state: ContactState
    target: Target
    failures: int
    rtt: float | None
    """Seconds between the latest answered OPTIONS and its reply."""
    answered: float | None = None
    """When (the ``now`` given to ``on_reply``) the latest OPTIONS answer came."""


@dataclass(slots=True)
class ScheduleStats:
    pings: int = 0
    options: int = 0
    replies: int = 0
    timeouts: int = 0
    unreachable: int = 0
    address_changes: int = 0
    stray_replies: int = 0
    """Replies with an unknown or used token, or from the wrong transport or family."""
    deferred: int = 0
    """OPTIONS postponed because the token table was full."""
    timeouts_by_family: dict[Family, int] = field(default_factory=dict)
    """``timeouts`` by the family of the contact's address."""
    unreachable_by_family: dict[Family, int] = field(default_factory=dict)


_STATES = (ContactState.UNKNOWN, ContactState.REACHABLE, ContactState.UNREACHABLE)
_UNKNOWN, _REACHABLE, _UNREACHABLE = 0, 1, 2
_TRANSPORTS = {t.value: t for t in Transport}
_INF = math.inf


class KeepaliveSchedule:
    """Keepalive deadlines for every registered contact (see the module rules).

    Storage is columnar: a contact is an index into arrays of numbers and two lists, so
    100,000 contacts add no object the garbage collector has to walk (a full collection
    visits every tracked object; one object per contact cost 0.1 s more per collection at
    100,000 contacts on the benchmark machine) and cost about 200 bytes each.
    """

    __slots__ = (
        "_answer",
        "_answered",
        "_binding",
        "_by_aor",
        "_expires",
        "_failures",
        "_free",
        "_ids",
        "_options",
        "_ping",
        "_remote",
        "_rtt",
        "_sent",
        "_slot",
        "_slots",
        "_state",
        "_token",
        "_tokens",
        "_wheel",
        "new_token",
        "rng",
        "settings",
        "stats",
    )

    def __init__(
        self,
        settings: KeepaliveSettings,
        *,
        rng: Callable[[], float],
        new_token: Callable[[], bytes],
    ) -> None:
        self.settings = settings
        self.rng = rng
        """Uniform floats in [0, 1)."""
        self.new_token = new_token
        """Fresh unguessable tokens (Via branch suffix and Call-ID)."""
        self.stats = ScheduleStats()
        self._ids: dict[ContactKey, int] = {}
        self._free: list[int] = []
        self._by_aor: dict[str, tuple[bytes, ...]] = {}
        """Contacts per AOR (a tuple: most AORs have one, and a set costs 216 bytes)."""
        self._tokens: dict[bytes, int] = {}
        self._wheel: dict[int, list[int]] = {}
        self._slots: list[int] = []
        # one entry per contact id
        self._binding: list[BindingRow | None] = []
        self._remote: list[SockAddr | None] = []
        """Where the contact answered from, when not the binding's received address."""
        self._token: list[bytes | None] = []
        self._ping = array("d")
        self._options = array("d")
        self._answer = array("d")
        self._expires = array("d")
        self._sent = array("d")
        self._rtt = array("d")  # NaN: never answered
        self._answered = array("d")  # ``now`` of the latest answer, NaN: never answered
        self._failures = array("l")
        self._slot = array("q")  # -1: in no slot
        self._state = bytearray()

    # -- targets --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def outstanding(self) -> int:
        """OPTIONS awaiting a reply."""
        return len(self._tokens)

    def set_aor(self, aor: str, bindings: Iterable[Binding], now: float, wall: float) -> None:
        """The AOR's whole binding set is now ``bindings`` (a REGISTER was stored).

        ``wall`` is the wall-clock time at ``now`` (bindings expire in wall-clock time).
        Targets no longer listed leave; new ones get a random phase; a target that
        re-registered counts as alive (failures reset).
        """
        keep: set[bytes] = set()
        for binding in bindings:
            if binding.aor != aor:
                continue
            keep.add(binding.contact)
            self._put(binding, now, wall)
        for contact in self._by_aor.get(aor, ()):
            if contact not in keep:
                self.remove((aor, contact))

    def add(self, binding: Binding, now: float, wall: float) -> None:
        """Track one binding (or refresh it)."""
        self._put(binding, now, wall)

    def _new_id(self) -> int:
        if self._free:
            return self._free.pop()
        self._binding.append(None)
        self._remote.append(None)
        self._token.append(None)
        for column in (self._ping, self._options, self._answer, self._expires, self._sent):
            column.append(0.0)
        self._rtt.append(math.nan)
        self._answered.append(math.nan)
        self._failures.append(0)
        self._slot.append(-1)
        self._state.append(_UNKNOWN)
        return len(self._binding) - 1

    def _put(self, binding: Binding, now: float, wall: float) -> None:
        key = (binding.aor, binding.contact)
        if Target.of(binding) is None or not binding.is_live(wall):
            self.remove(key)
            return
        expires = now + (binding.expires_at - wall)
        i = self._ids.get(key)
        if i is None:
            i = self._new_id()
            s = self.settings
            self._binding[i], self._remote[i], self._token[i] = binding.to_row(), None, None
            # A uniform share of one drawn gap: close to the renewal process's stationary
            # phase, so contacts added together stay spread after the first round too.
            self._ping[i] = now + self.rng() * self._gap(s.interval)
            self._options[i] = (
                now + self.rng() * self._gap(s.options_interval) if s.options_interval else _INF
            )
            self._answer[i], self._sent[i], self._rtt[i] = _INF, 0.0, math.nan
            self._answered[i] = math.nan
            self._failures[i], self._slot[i], self._state[i] = 0, -1, _UNKNOWN
            self._ids[key] = i
            self._by_aor[binding.aor] = (*self._by_aor.get(binding.aor, ()), binding.contact)
        else:
            old = self._binding[i]
            assert old is not None
            row = binding.to_row()
            if row_target(old) != row_target(row):
                self._forget_token(i)
                self._remote[i] = None
            elif self._remote[i] == (binding.received_ip, binding.received_port):
                self._remote[i] = None  # the store caught up with an answer's new source
            self._binding[i] = row
            self._failures[i] = 0
            if self._state[i] == _UNREACHABLE:
                self._state[i] = _UNKNOWN
        self._expires[i] = expires
        self._enqueue(i)

    def remove(self, key: ContactKey) -> bool:
        """Stop tracking a contact; False if it was not tracked."""
        i = self._ids.pop(key, None)
        if i is None:
            return False
        self._forget_token(i)
        self._slot[i] = -1  # its wheel entry is skipped when its slot comes
        self._binding[i] = self._remote[i] = None
        self._free.append(i)
        left = tuple(c for c in self._by_aor.get(key[0], ()) if c != key[1])
        if left:
            self._by_aor[key[0]] = left
        else:
            self._by_aor.pop(key[0], None)
        return True

    def _target(self, i: int) -> Target:
        row = self._binding[i]
        assert row is not None
        remote = self._remote[i]
        if remote is None:
            ip, port = unpack_ip(row[8]), row[9]
            assert ip is not None and port is not None
            remote = (ip, port)
        return Target(_TRANSPORTS[row[5]], row[6], remote)

    def _binding_of(self, i: int) -> Binding:
        row = self._binding[i]
        assert row is not None
        return Binding.from_row(row)

    def status(self, key: ContactKey) -> ContactStatus | None:
        i = self._ids.get(key)
        if i is None:
            return None
        rtt, answered = self._rtt[i], self._answered[i]
        return ContactStatus(
            _STATES[self._state[i]],
            self._target(i),
            self._failures[i],
            None if math.isnan(rtt) else rtt,
            None if math.isnan(answered) else answered,
        )

    def count(self, state: ContactState) -> int:
        code = _STATES.index(state)
        return sum(1 for i in self._ids.values() if self._state[i] == code)

    # -- timer ----------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The end of the earliest slot holding a target (None when there is none)."""
        slots = self._slots
        return slots[0] * self.settings.resolution if slots else None

    def handle_timer(self, now: float) -> list[Action]:
        """Fire every slot due at ``now``; return what to send and report."""
        actions: list[Action] = []
        slots, wheel, res, slot_of = self._slots, self._wheel, self.settings.resolution, self._slot
        while slots and slots[0] * res <= now:
            slot = heapq.heappop(slots)
            for i in wheel.pop(slot, ()):
                if slot_of[i] == slot:
                    slot_of[i] = -1
                    self._fire(i, now, actions)
        return actions

    def _enqueue(self, i: int) -> None:
        due = min(self._ping[i], self._options[i], self._answer[i], self._expires[i])
        slot = math.ceil(due / self.settings.resolution)
        if slot == self._slot[i]:
            return
        self._slot[i] = slot
        bucket = self._wheel.get(slot)
        if bucket is None:
            self._wheel[slot] = [i]
            heapq.heappush(self._slots, slot)
        else:
            bucket.append(i)

    def _fire(self, i: int, now: float, actions: list[Action]) -> None:
        s = self.settings
        row = self._binding[i]
        assert row is not None
        if now >= self._expires[i]:
            self.remove((row[0], row[1]))
            return
        if now >= self._answer[i]:
            self._forget_token(i)
            stats = self.stats
            stats.timeouts += 1
            family = family_of(self._target(i).remote[0])
            stats.timeouts_by_family[family] = stats.timeouts_by_family.get(family, 0) + 1
            failures = self._failures[i] = self._failures[i] + 1
            if failures >= s.max_failures:
                if self._state[i] != _UNREACHABLE:
                    self._state[i] = _UNREACHABLE
                    stats.unreachable += 1
                    by = stats.unreachable_by_family
                    by[family] = by.get(family, 0) + 1
                # again if removal failed
                actions.append(Unreachable(self._binding_of(i), failures))
        if now >= self._options[i]:
            self._options[i] = now + self._gap(s.options_interval)
            if self._token[i] is not None:
                pass  # still waiting for the previous one (timeout above the interval)
            elif len(self._tokens) >= s.max_outstanding:
                self.stats.deferred += 1
            else:
                token = self.new_token()
                self._token[i], self._sent[i] = token, now
                self._answer[i] = now + min(s.options_timeout, s.options_interval)
                self._tokens[token] = i
                self.stats.options += 1
                actions.append(SendOptions(self._target(i), self._binding_of(i), token))
                self._ping[i] = now + self._gap(s.interval)  # the OPTIONS opened the pinhole
        if now >= self._ping[i]:
            self._ping[i] = now + self._gap(s.interval)
            self.stats.pings += 1
            actions.append(SendPing(self._target(i)))
        self._enqueue(i)

    def _gap(self, interval: float) -> float:
        return interval * (1.0 - self.settings.jitter * self.rng())

    def _forget_token(self, i: int) -> None:
        token = self._token[i]
        if token is not None:
            self._tokens.pop(token, None)
            self._token[i] = None
        self._answer[i] = _INF

    # -- replies --------------------------------------------------------------------------

    def on_reply(
        self, token: bytes, status: int, transport: Transport, source: SockAddr, now: float
    ) -> list[Action]:
        """A response to one of our OPTIONS arrived from ``source`` over ``transport``."""
        i = self._tokens.get(token)
        if i is None:
            self.stats.stray_replies += 1
            return []
        target = self._target(i)
        if transport is not target.transport or family_of(source[0]) is not family_of(
            target.remote[0]
        ):
            self.stats.stray_replies += 1
            return []
        if status < 200:
            return []  # provisional: the final one decides
        self._forget_token(i)
        self.stats.replies += 1
        self._rtt[i] = rtt = max(0.0, now - self._sent[i])
        self._answered[i] = now
        self._failures[i] = 0
        actions: list[Action] = []
        if self._state[i] != _REACHABLE:
            actions.append(Reachable(self._binding_of(i), rtt, self._state[i] == _UNREACHABLE))
        self._state[i] = _REACHABLE
        if source != target.remote:
            self.stats.address_changes += 1
            self._remote[i] = source
            actions.append(AddressChanged(self._binding_of(i), source))
        self._enqueue(i)
        return actions
