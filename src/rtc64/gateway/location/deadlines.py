# Deadlines per key: which keys are due at ``now``, touching only those (a heap, one live
# entry per key). A sans-I/O helper for tables that expire entries (the store's cache, the
# registration log): an expiry tick costs O(due * log n), never a walk of every entry.
#
# Rules:
# - ``schedule(key, when)`` makes ``when`` the key's deadline only if it is earlier than the
#   one it has: a later deadline (a refresh) waits for the earlier one to come due, when
#   the owner looks at the key and schedules what it has left. So each key has at most one
#   live heap entry plus entries made stale by an earlier deadline, which leave the heap at
#   their own time: the heap never grows with refreshes.
# - ``due(now)`` returns each key whose deadline is <= ``now`` once and forgets it; the
#   owner re-schedules the key if it still has entries.
# - Heap entries are (float, key) tuples of atoms: untracked by the garbage collector.

from __future__ import annotations

import heapq
from typing import Generic, TypeVar

K = TypeVar("K", str, tuple[str, bytes])


class Deadlines(Generic[K]):
    """The earliest deadline of each key, in a heap (see the module rules)."""

    __slots__ = ("_due", "_heap")

    def __init__(self) -> None:
        self._heap: list[tuple[float, K]] = []
        self._due: dict[K, float] = {}

    def __len__(self) -> int:
        """Keys with a deadline."""
        return len(self._due)

    @property
    def entries(self) -> int:
        """Heap entries, stale ones included (bounded: see the module rules)."""
        return len(self._heap)

    def schedule(self, key: K, when: float) -> None:
        """Give ``key`` the deadline ``when`` unless it already has an earlier one."""
        current = self._due.get(key)
        if current is None or when < current:
            self._due[key] = when
            heapq.heappush(self._heap, (when, key))

    def next(self) -> float | None:
        """The earliest deadline (possibly a stale entry's: never later than the real one)."""
        return self._heap[0][0] if self._heap else None

    def due(self, now: float) -> list[K]:
        """Every key whose deadline is <= ``now``, each once; they have none after this."""
        heap, current, out = self._heap, self._due, []
        while heap and heap[0][0] <= now:
            when, key = heapq.heappop(heap)
            if current.get(key) == when:
                del current[key]
                out.append(key)
        return out
