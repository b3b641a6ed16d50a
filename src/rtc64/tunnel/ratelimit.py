# Rules: one token bucket per key (an IPv4 source, or a fixed key for ICMP errors):
# ``rate`` tokens per second up to ``burst``; a packet costs one token. The table is
# bounded: at ``max_keys`` the least recently used bucket is forgotten (a flood of
# sources costs memory once, not without bound). Pure: the caller passes ``now``.
"""Token bucket table for per-source rate limits."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class TokenBuckets:
    """Per-key token buckets with LRU eviction."""

    def __init__(self, rate: float, burst: float, max_keys: int = 65536) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate must be > 0, burst >= 1, max_keys >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[Hashable, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: Hashable, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens from ``key``'s bucket; False when it has too few."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.stamp)
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
            bucket.stamp = max(bucket.stamp, now)
        if bucket.tokens < cost:
            return False
        bucket.tokens -= cost
        return True
