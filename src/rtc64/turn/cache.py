# Retransmitted requests are answered from a cache (RFC 8489 §6.3.1: a server keeps
# responses to requests for 40 s when it is not stateless, and TURN is not).
#
# Rules: keyed by (5-tuple, transaction id); bounded (oldest out first); entries expire
# 40 s after they were stored. Only responses the server had to do work for are stored
# (never 401/438 challenges, so an unauthenticated flood cannot fill it).
"""Bounded retransmission cache of responses."""

from __future__ import annotations

from collections import OrderedDict

from rtc64.turn.events import ClientFlow
from rtc64.turn.settings import TRANSACTION_LIFETIME


class ResponseCache:
    """Responses by ``(client, transaction id)`` for ``TRANSACTION_LIFETIME`` seconds."""

    __slots__ = ("_entries", "_size")

    def __init__(self, size: int) -> None:
        self._entries: OrderedDict[tuple[ClientFlow, bytes], tuple[bytes, float]] = OrderedDict()
        self._size = size

    def get(self, client: ClientFlow, transaction_id: bytes, now: float) -> bytes | None:
        entry = self._entries.get((client, transaction_id))
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def put(self, client: ClientFlow, transaction_id: bytes, data: bytes, now: float) -> None:
        if self._size <= 0:
            return
        key = (client, transaction_id)
        self._entries.pop(key, None)
        self._entries[key] = (data, now + TRANSACTION_LIFETIME)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def next_deadline(self) -> float | None:
        for _, until in self._entries.values():
            return until
        return None

    def expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, (_, until) = next(iter(entries.items()))
            if until > now:
                break
            del entries[key]

    def __len__(self) -> int:
        return len(self._entries)
