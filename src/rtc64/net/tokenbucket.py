# Token buckets: the one refill rule every rate limit of the project uses (the SIP request
# limiter and the TURN 401 limiter per source prefix, TURN's bandwidth per allocation).
#
# Rules:
# - A bucket holds at most ``burst`` tokens and gains ``rate`` per second; taking more
#   than it holds takes nothing. Pure: ``now`` (seconds, any monotonic clock) is passed
#   in; a clock that steps back counts as no time passed.
# - ``Bucket``: one bucket (TURN's bytes per second of one allocation and direction).
#   ``take`` refuses what it cannot pay; ``charge`` always pays and may leave the bucket
#   in debt, telling how long the sender should pause (a TCP stream is not dropped).
# - ``TokenBucket``: one bucket per source prefix (IPv6 /64 and IPv4 /32 by default,
#   IPv4-mapped IPv6 counted as IPv4) in a bounded table: a key whose bucket has refilled
#   is forgotten (it is the same as a new key), and past ``max_keys`` the least recently
#   used key goes. ``admit`` also tells when a source starts being throttled (once per
#   episode: it ends when the source is admitted again); ``log_slot`` caps the log lines
#   about it at one per ``interval`` whatever the number of sources.
"""Token buckets: one (``Bucket``) and one per source prefix (``TokenBucket``)."""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Hashable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from rtc64.errors import LocalProtocolError
from rtc64.net.address import unmap

IPAddress = IPv4Address | IPv6Address
SourceKey = IPv4Network | IPv6Network


def refill(tokens: float, last: float, now: float, rate: float, burst: float) -> float:
    """The tokens of a bucket that held ``tokens`` at ``last``, at ``now``."""
    elapsed = now - last
    if elapsed <= 0.0:
        return tokens
    return min(burst, tokens + elapsed * rate)


class Bucket:
    """One token bucket; ``burst`` defaults to one second of ``rate``, at least 4 KiB
    (TURN's bandwidth limit per allocation and direction, in bytes)."""

    __slots__ = ("burst", "dropped", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float | None = None, now: float = 0.0) -> None:
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(rate, 4096.0))
        self.tokens = self.burst
        self.stamp = now
        self.dropped = 0
        """Takes refused (counter)."""

    def take(self, n: float, now: float) -> bool:
        """Take ``n`` tokens at ``now``; False (nothing taken, counted) if short."""
        tokens = refill(self.tokens, self.stamp, now, self.rate, self.burst)
        self.stamp = max(self.stamp, now)
        if tokens < n:
            self.tokens = tokens
            self.dropped += 1
            return False
        self.tokens = tokens - n
        return True

    def charge(self, n: float, now: float) -> float:
        """Take ``n`` tokens even into debt; the seconds until the debt is paid (0: none)."""
        tokens = refill(self.tokens, self.stamp, now, self.rate, self.burst) - n
        self.stamp = max(self.stamp, now)
        self.tokens = tokens
        return 0.0 if tokens >= 0 else -tokens / self.rate


def source_key(address: IPAddress, *, v4_prefix: int = 32, v6_prefix: int = 64) -> SourceKey:
    """The prefix ``address`` is counted under (IPv4-mapped IPv6 counts as IPv4)."""
    address = unmap(address)
    if isinstance(address, IPv6Address):
        shift = 128 - v6_prefix
        return IPv6Network(((int(address) >> shift) << shift, v6_prefix))
    shift = 32 - v4_prefix
    return IPv4Network(((int(address) >> shift) << shift, v4_prefix))


def check_prefixes(v4_prefix: int, v6_prefix: int) -> None:
    """``LocalProtocolError`` unless both are prefix lengths of their family."""
    if not 0 <= v4_prefix <= 32 or not 0 <= v6_prefix <= 128:
        raise LocalProtocolError(f"bad prefix lengths /{v4_prefix} /{v6_prefix}")


class Admission(enum.Enum):
    """What ``TokenBucket.admit`` decided."""

    ADMITTED = "admitted"
    THROTTLED = "throttled"
    THROTTLE_STARTED = "throttle started"


class TokenBucket:
    """Requests per second per source prefix, with a burst allowance.

    Each key holds ``burst`` tokens, refilled at ``rate`` per second; a request takes one.
    ``rate`` 0 turns the limiter off.
    """

    __slots__ = (
        "_buckets",
        "_logged_at",
        "_throttled",
        "_unlogged",
        "allowed",
        "burst",
        "episodes",
        "evictions",
        "limited",
        "max_keys",
        "rate",
        "v4_prefix",
        "v6_prefix",
    )

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_keys: int = 65536,
        v4_prefix: int = 32,
        v6_prefix: int = 64,
    ) -> None:
        if rate < 0 or burst < 1 or max_keys < 1:
            raise LocalProtocolError("rate must be >= 0, burst >= 1, max_keys >= 1")
        check_prefixes(v4_prefix, v6_prefix)
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_keys = max_keys
        self.v4_prefix = v4_prefix
        self.v6_prefix = v6_prefix
        self.allowed = 0
        """Requests let through (counter for metrics)."""
        self.limited = 0
        """Requests refused (counter for metrics)."""
        self.evictions = 0
        """Active buckets dropped because the table was full."""
        self.episodes = 0
        """Times a source started being throttled (counter for metrics)."""
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()
        self._throttled: OrderedDict[SourceKey, None] = OrderedDict()
        self._logged_at: float | None = None
        self._unlogged = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def admit(self, source: IPAddress, now: float, cost: float = 1.0) -> Admission:
        """``allow``, telling also whether this refusal starts a throttle episode."""
        if self.allow(source, now, cost):
            if self._throttled:
                self._throttled.pop(self.key(source), None)
            return Admission.ADMITTED
        key = self.key(source)
        throttled = self._throttled
        if key in throttled:
            throttled.move_to_end(key)
            return Admission.THROTTLED
        throttled[key] = None
        while len(throttled) > self.max_keys:
            throttled.popitem(last=False)
        self.episodes += 1
        return Admission.THROTTLE_STARTED

    def key(self, source: IPAddress) -> SourceKey:
        return source_key(source, v4_prefix=self.v4_prefix, v6_prefix=self.v6_prefix)

    def allow(self, source: IPAddress, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens from ``source``'s bucket; False (and nothing taken) if short."""
        if self.rate == 0:
            self.allowed += 1
            return True
        return self.allow_key(self.key(source), now, cost)

    def allow_key(self, key: Hashable, now: float, cost: float = 1.0) -> bool:
        """``allow`` for a key the caller derived from the source's prefix itself (any
        hashable, one per prefix; cheaper than building the ``ipaddress`` network)."""
        if self.rate == 0:
            self.allowed += 1
            return True
        self._sweep(now)
        buckets = self._buckets
        found = buckets.pop(key, None)
        if found is None:
            tokens = self.burst
        else:
            tokens = refill(found[0], found[1], now, self.rate, self.burst)
        ok = tokens >= cost
        if ok:
            tokens -= cost
            self.allowed += 1
        else:
            self.limited += 1
        buckets[key] = (tokens, now)  # most recently used last
        while len(buckets) > self.max_keys:
            buckets.popitem(last=False)
            self.evictions += 1
        return ok

    def log_slot(self, now: float, interval: float = 1.0) -> int | None:
        """After a throttle start: None when one was logged less than ``interval`` s ago
        (a flood from many prefixes must not flood the log), else how many starts went
        unlogged since the last line."""
        if self._logged_at is not None and 0 <= now - self._logged_at < interval:
            self._unlogged += 1
            return None
        self._logged_at = now
        skipped, self._unlogged = self._unlogged, 0
        return skipped

    def retry_after(self, source: IPAddress, now: float, cost: float = 1.0) -> float:
        """Seconds until ``source`` has ``cost`` tokens (0 if it has them now)."""
        found = self._buckets.get(self.key(source))
        if self.rate == 0 or found is None:
            return 0.0
        tokens = refill(found[0], found[1], now, self.rate, self.burst)
        return max(0.0, (cost - tokens) / self.rate)

    def _sweep(self, now: float) -> None:
        """Forget full buckets from the least recently used end."""
        buckets = self._buckets
        while buckets:
            key, (tokens, last) = next(iter(buckets.items()))
            if tokens + (now - last) * self.rate < self.burst:
                return
            del buckets[key]
