"""Abuse protection: per-source request rate limit and authentication failure blocking.

Rules:

- Pure: ``now`` (seconds, any monotonic clock) is passed in; no clock reads, no I/O. A clock
  that steps back counts as no time passed.
- Sources are keyed by prefix, not by address: IPv6 by /64 (RFC 7421: one host or link owns
  a /64, and rotating through it is free), IPv4 by /32; both prefix lengths are
  configurable. IPv4-mapped IPv6 sources count as IPv4. Usernames are keyed as given.
- Memory is bounded: idle keys are dropped as they are met (oldest first), and past
  ``max_keys`` the least recently used key goes. Active blocks live in their own table,
  so flooding the failure table with new keys cannot lift a block.
- ``AuthFailureTracker`` blocks a key after ``max_failures`` failures within ``window``
  seconds, for ``block_seconds``; blocks expire by themselves. Keys are a source prefix or
  a (user name, source prefix) pair, never a user name alone: a guesser (possibly
  spoofing its source over UDP) must not lock a user out everywhere. Counters are plain
  attributes for metrics; each block is reported once as a ``BlockEvent`` (callback and a
  bounded queue).
- The request rate limiter is ``net.tokenbucket.TokenBucket`` (re-exported here): one
  token-bucket module for the SIP limiter, TURN's 401 limiter and TURN's bandwidth.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network

from rtc64.errors import LocalProtocolError
from rtc64.gateway.stats import Block
from rtc64.net.address import unmap
from rtc64.net.tokenbucket import (
    Admission,
    IPAddress,
    SourceKey,
    TokenBucket,
    check_prefixes,
    source_key,
)

__all__ = [
    "Admission",
    "AuthFailureTracker",
    "BlockEvent",
    "IPAddress",
    "SourceKey",
    "TokenBucket",
    "source_key",
]
UserAtSource = tuple[str, SourceKey]
KeyLike = IPAddress | str | tuple[str, IPAddress]
"""What callers pass: addresses are turned into their prefix."""
Key = IPv4Network | IPv6Network | str | UserAtSource
"""A tracker key: a source prefix, a (user name, source prefix) pair, or a plain name."""


PREFIX_CACHE = 4096  # source prefixes remembered by a tracker (each REGISTER needs several)


# --- authentication failures -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlockEvent:
    """A key was blocked: log "blocked {key} for {seconds} s after {failures} failures"."""

    key: Key
    failures: int
    seconds: float
    at: float

    def __str__(self) -> str:
        key = self.key
        if isinstance(key, tuple):
            what = f"user {key[0]!r} from source {key[1]}"
        else:
            what = f"user {key!r}" if isinstance(key, str) else f"source {key}"
        return f"blocked {what} for {self.seconds:g} s after {self.failures} failures"


class AuthFailureTracker:
    """Blocks a source prefix, or a user name from one source prefix, after too many failed
    authentications.

    The caller checks ``check(source, user)`` before verifying, then records the outcome
    for the source and for ``(user, source)``. A success clears the failure count of a
    key; it does not lift a block.
    """

    __slots__ = (
        "_blocks",
        "_failures",
        "_prefixes",
        "_queue",
        "block_seconds",
        "blocks",
        "evictions",
        "failures",
        "max_failures",
        "max_keys",
        "on_block",
        "on_failure",
        "v4_prefix",
        "v6_prefix",
        "window",
    )

    def __init__(
        self,
        max_failures: int,
        window: float,
        block_seconds: float,
        *,
        max_keys: int = 65536,
        v4_prefix: int = 32,
        v6_prefix: int = 64,
        on_block: Callable[[BlockEvent], None] | None = None,
        max_events: int = 1024,
    ) -> None:
        if max_failures < 1 or window <= 0 or block_seconds <= 0 or max_keys < 1:
            raise LocalProtocolError(
                "max_failures >= 1, window > 0, block_seconds > 0 and max_keys >= 1"
            )
        check_prefixes(v4_prefix, v6_prefix)
        self.max_failures = max_failures
        self.window = float(window)
        self.block_seconds = float(block_seconds)
        self.max_keys = max_keys
        self.v4_prefix = v4_prefix
        self.v6_prefix = v6_prefix
        self.on_block = on_block
        self.on_failure: Callable[[KeyLike, float], None] | None = None
        """Told of every failure recorded here (SIP workers share them: ``notify``)."""
        self.failures = 0
        """Failures recorded (counter for metrics)."""
        self.blocks = 0
        """Blocks started (counter for metrics)."""
        self.evictions = 0
        """Keys with live failures or blocks dropped because a table was full."""
        self._failures: OrderedDict[Key, deque[float]] = OrderedDict()
        self._blocks: OrderedDict[Key, float] = OrderedDict()  # key -> until, oldest first
        self._queue: deque[BlockEvent] = deque(maxlen=max_events)
        self._prefixes: dict[IPAddress, SourceKey] = {}  # bounded: PREFIX_CACHE

    def key(self, key: KeyLike) -> Key:
        """Normalise: an address becomes its prefix (also in a (user, address) pair), a
        name stays as it is."""
        if isinstance(key, str):
            return key
        if isinstance(key, tuple):
            return (key[0], self._prefix(key[1]))
        return self._prefix(key)

    def _prefix(self, address: IPAddress) -> SourceKey:
        found = self._prefixes.get(address)
        if found is None:
            if len(self._prefixes) >= PREFIX_CACHE:
                self._prefixes.clear()
            found = source_key(address, v4_prefix=self.v4_prefix, v6_prefix=self.v6_prefix)
            self._prefixes[address] = found
        return found

    def is_blocked(self, key: KeyLike, now: float) -> float | None:
        """Seconds of block left for ``key``, or None when it may try."""
        self._sweep(now)
        until = self._blocks.get(self.key(key))
        if until is None or until <= now:
            return None
        return until - now

    def check(self, source: IPAddress, username: str | None, now: float) -> float | None:
        """The longest block left on ``source`` or on ``username`` from ``source``, or None.

        A user name is never blocked from every source: another address may still try.
        """
        left = [self.is_blocked(source, now)]
        if username is not None:
            left.append(self.is_blocked((username, source), now))
        return max((s for s in left if s is not None), default=None)

    def record_failure(self, key: KeyLike, now: float, *, notify: bool = True) -> BlockEvent | None:
        """Count a failure; returns the ``BlockEvent`` when this one starts a block.
        ``notify`` False: a failure another SIP worker saw (``on_failure`` not told)."""
        if notify and self.on_failure is not None:
            self.on_failure(key, now)
        self._sweep(now)
        k = self.key(key)
        self.failures += 1
        until = self._blocks.get(k)
        if until is not None and until > now:
            return None  # already blocked: the block is not extended
        times = self._failures.pop(k, None)
        if times is None:
            times = deque(maxlen=self.max_failures)
        times.append(now)
        if len(times) < self.max_failures or now - times[0] > self.window:
            self._failures[k] = times
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)
                self.evictions += 1
            return None
        return self._block(k, now)

    def record_success(self, key: KeyLike, now: float) -> None:
        """Forget the failures of ``key`` (a block, if any, runs its course)."""
        self._sweep(now)
        self._failures.pop(self.key(key), None)

    def pop_events(self) -> list[BlockEvent]:
        """The blocks started since the last call, oldest first (bounded queue)."""
        events = list(self._queue)
        self._queue.clear()
        return events

    def blocked_count(self, now: float) -> int:
        """Keys blocked right now (gauge for metrics)."""
        self._sweep(now)
        return len(self._blocks)

    def blocked(self, now: float) -> list[Block]:
        """The blocks in force, soonest to end first (for the operator)."""
        self._sweep(now)
        return [Block(k, until - now) for k, until in self._blocks.items()]

    def unblock(self, target: str, now: float) -> int:
        """Lift the blocks of ``target``: an address or prefix (its source prefix, and
        every user blocked from it) or a user name (from every source). Returns how many
        blocks were lifted; the failure history of those keys is forgotten too."""
        self._sweep(now)
        try:
            net = ip_network(target, strict=False)
        except ValueError:
            net = None
        prefix = None if net is None else self.key(unmap(net.network_address))

        def matches(k: Key) -> bool:
            if prefix is not None:
                return k == prefix or (isinstance(k, tuple) and k[1] == prefix)
            return k == target or (isinstance(k, tuple) and k[0] == target)

        lifted = [k for k in self._blocks if matches(k)]
        for k in lifted:
            del self._blocks[k]
        for k in [k for k in self._failures if matches(k)]:
            del self._failures[k]
        return len(lifted)

    def __len__(self) -> int:
        return len(self._failures) + len(self._blocks)

    def _block(self, k: Key, now: float) -> BlockEvent:
        self._blocks.pop(k, None)
        self._blocks[k] = now + self.block_seconds
        while len(self._blocks) > self.max_keys:
            self._blocks.popitem(last=False)  # the one that ends soonest
            self.evictions += 1
        self.blocks += 1
        event = BlockEvent(k, self.max_failures, self.block_seconds, now)
        self._queue.append(event)
        if self.on_block is not None:
            self.on_block(event)
        return event

    def _sweep(self, now: float) -> None:
        """Drop ended blocks and failure histories that left the window, oldest first."""
        blocks = self._blocks
        while blocks:
            key, until = next(iter(blocks.items()))
            if until > now:
                break
            del blocks[key]
        failures = self._failures
        while failures:
            key, times = next(iter(failures.items()))
            if now - times[-1] <= self.window:
                break
            del failures[key]
