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
# - Deadlines sit in a timing wheel of ``resolution``-wide slots (one list entry per target,
#   stale entries skipped), so the driver's one timer fires at most once per slot.
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from rtc64.gateway.location.bindings import Binding
from rtc64.net.address import family_of
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


class _Contact:
    """One target's mutable state (slotted: 100,000 of them must stay small)."""

    __slots__ = (
        "answer_due",
        "binding",
        "expires",
        "failures",
        "options_due",
        "ping_due",
        "rtt",
        "sent_at",
        "slot",
        "state",
        "target",
        "token",
    )

    def __init__(self, binding: Binding, target: Target, expires: float) -> None:
        self.binding = binding
        self.target = target
        self.expires = expires
        self.ping_due = 0.0
        self.options_due = math.inf
        self.answer_due = math.inf
        self.sent_at = 0.0
        self.rtt: float | None = None
        self.token: bytes | None = None
        self.failures = 0
        self.state = ContactState.UNKNOWN
        self.slot = -1

    def due(self) -> float:
        return min(self.ping_due, self.options_due, self.answer_due, self.expires)


@dataclass(slots=True)
class KeepaliveSchedule:
    """Keepalive deadlines for every registered contact (see the module rules)."""

    settings: KeepaliveSettings
    rng: Callable[[], float]
    """Uniform floats in [0, 1)."""
    new_token: Callable[[], bytes]
    """Fresh unguessable tokens (Via branch suffix and Call-ID)."""
    stats: ScheduleStats = field(default_factory=ScheduleStats)
    _contacts: dict[ContactKey, _Contact] = field(default_factory=dict)
    _by_aor: dict[str, tuple[bytes, ...]] = field(default_factory=dict)
    """Contacts per AOR (a tuple: most AORs have one, and a set costs 216 bytes)."""
    _tokens: dict[bytes, _Contact] = field(default_factory=dict)
    _wheel: dict[int, list[_Contact]] = field(default_factory=dict)
    _slots: list[int] = field(default_factory=list)

    # -- targets --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._contacts)

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

    def _put(self, binding: Binding, now: float, wall: float) -> None:
        target = Target.of(binding)
        key = (binding.aor, binding.contact)
        if target is None or not binding.is_live(wall):
            self.remove(key)
            return
        expires = now + (binding.expires_at - wall)
        c = self._contacts.get(key)
        if c is None:
            c = _Contact(binding, target, expires)
            s = self.settings
            # A uniform share of one drawn gap: close to the renewal process's stationary
            # phase, so contacts added together stay spread after the first round too.
            c.ping_due = now + self.rng() * self._gap(s.interval)
            if s.options_interval:
                c.options_due = now + self.rng() * self._gap(s.options_interval)
            self._contacts[key] = c
            self._by_aor[binding.aor] = (*self._by_aor.get(binding.aor, ()), binding.contact)
        else:
            if c.target != target:
                self._forget_token(c)
                c.target = target
            c.binding, c.expires = binding, expires
            c.failures = 0
            if c.state is ContactState.UNREACHABLE:
                c.state = ContactState.UNKNOWN
        self._enqueue(c)

    def remove(self, key: ContactKey) -> bool:
        """Stop tracking a contact; False if it was not tracked."""
        c = self._contacts.pop(key, None)
        if c is None:
            return False
        self._forget_token(c)
        c.slot = -1  # its wheel entry is skipped when its slot comes
        left = tuple(c for c in self._by_aor.get(key[0], ()) if c != key[1])
        if left:
            self._by_aor[key[0]] = left
        else:
            self._by_aor.pop(key[0], None)
        return True

    def status(self, key: ContactKey) -> ContactStatus | None:
        c = self._contacts.get(key)
        if c is None:
            return None
        return ContactStatus(c.state, c.target, c.failures, c.rtt)

    def count(self, state: ContactState) -> int:
        return sum(1 for c in self._contacts.values() if c.state is state)

    # -- timer ----------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The end of the earliest slot holding a target (None when there is none)."""
        slots = self._slots
        return slots[0] * self.settings.resolution if slots else None

    def handle_timer(self, now: float) -> list[Action]:
        """Fire every slot due at ``now``; return what to send and report."""
        actions: list[Action] = []
        slots, wheel, res = self._slots, self._wheel, self.settings.resolution
        while slots and slots[0] * res <= now:
            slot = heapq.heappop(slots)
            for c in wheel.pop(slot, ()):
                if c.slot == slot:
                    c.slot = -1
                    self._fire(c, now, actions)
        return actions

    def _enqueue(self, c: _Contact) -> None:
        slot = math.ceil(c.due() / self.settings.resolution)
        if slot == c.slot:
            return
        c.slot = slot
        bucket = self._wheel.get(slot)
        if bucket is None:
            self._wheel[slot] = [c]
            heapq.heappush(self._slots, slot)
        else:
            bucket.append(c)

    def _fire(self, c: _Contact, now: float, actions: list[Action]) -> None:
        s = self.settings
        if now >= c.expires:
            self.remove((c.binding.aor, c.binding.contact))
            return
        if now >= c.answer_due:
            self._forget_token(c)
            self.stats.timeouts += 1
            c.failures += 1
            if c.failures >= s.max_failures:
                if c.state is not ContactState.UNREACHABLE:
                    c.state = ContactState.UNREACHABLE
                    self.stats.unreachable += 1
                actions.append(Unreachable(c.binding, c.failures))  # again if removal failed
        if now >= c.options_due:
            c.options_due = now + self._gap(s.options_interval)
            if c.token is not None:
                pass  # still waiting for the previous one (timeout above the interval)
            elif len(self._tokens) >= s.max_outstanding:
                self.stats.deferred += 1
            else:
                token = self.new_token()
                c.token, c.sent_at = token, now
                c.answer_due = now + min(s.options_timeout, s.options_interval)
                self._tokens[token] = c
                self.stats.options += 1
                actions.append(SendOptions(c.target, c.binding, token))
                c.ping_due = now + self._gap(s.interval)  # the OPTIONS opened the pinhole
        if now >= c.ping_due:
            c.ping_due = now + self._gap(s.interval)
            self.stats.pings += 1
            actions.append(SendPing(c.target))
        self._enqueue(c)

    def _gap(self, interval: float) -> float:
        return interval * (1.0 - self.settings.jitter * self.rng())

    def _forget_token(self, c: _Contact) -> None:
        if c.token is not None:
            self._tokens.pop(c.token, None)
            c.token = None
        c.answer_due = math.inf

    # -- replies --------------------------------------------------------------------------

    def on_reply(
        self, token: bytes, status: int, transport: Transport, source: SockAddr, now: float
    ) -> list[Action]:
        """A response to one of our OPTIONS arrived from ``source`` over ``transport``."""
        c = self._tokens.get(token)
        if c is None or transport is not c.target.transport:
            self.stats.stray_replies += 1
            return []
        if family_of(source[0]) is not family_of(c.target.remote[0]):
            self.stats.stray_replies += 1
            return []
        if status < 200:
            return []  # provisional: the final one decides
        self._forget_token(c)
        self.stats.replies += 1
        c.rtt = rtt = max(0.0, now - c.sent_at)
        c.failures = 0
        actions: list[Action] = []
        if c.state is not ContactState.REACHABLE:
            actions.append(Reachable(c.binding, rtt, c.state is ContactState.UNREACHABLE))
        c.state = ContactState.REACHABLE
        if source != c.target.remote:
            self.stats.address_changes += 1
            c.target = Target(c.target.transport, c.target.listener, source)
            actions.append(AddressChanged(c.binding, source))
        self._enqueue(c)
        return actions

    def rebind(self, old: Binding, new: Binding) -> None:
        """The store now holds ``new`` in place of ``old`` (same AOR and contact)."""
        c = self._contacts.get((old.aor, old.contact))
        if c is not None and c.binding == old:
            c.binding = new
