"""Clients that never answer a digest challenge offering SHA-256: say why in the log.

Rules (RFC 8760 §2.4 servers may offer several algorithms; a client answers one):

- Some deployed clients answer MD5 only and fail the whole request when any challenge
  names another algorithm (baresip 1.0 / libre 1.1: ENOSYS). The gateway cannot tell
  from the request; it can tell that a challenge offering SHA-256 got no answer:
  * the same source and Call-ID send a new request without credentials, or
  * no request with credentials comes from that source and Call-ID within ``give_up``
    seconds (noticed by ``sweep``, which the gateway calls every second; clients answer a
    challenge at once, so a few seconds are plenty).
- Each such case is counted; the warning naming ``auth.algorithms = ["MD5"]`` and
  ``--auth-algorithm MD5`` is logged at most once per source prefix per ``quiet``
  seconds, so scanners that never answer cannot flood the log.
- Pure: ``now`` is passed in; tables are bounded (oldest entries go first).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

from rtc64.gateway.ratelimit import SourceKey, source_key
from rtc64.net.address import IPAddress

GIVE_UP = 10.0  # seconds: clients answer a challenge within a round trip
QUIET = 600.0  # seconds between two warnings about one source prefix
MAX_ENTRIES = 4096

HINT = (
    "clients such as baresip 1.0 (libre) answer MD5 only and fail on any other algorithm: "
    'for them set auth.algorithms = ["MD5"] (or rtc64 serve --auth-algorithm MD5)'
)


class UnansweredChallenges:
    """Remembers recent challenges that offered SHA-256, per (source, Call-ID)."""

    def __init__(
        self,
        log: logging.Logger,
        *,
        give_up: float = GIVE_UP,
        quiet: float = QUIET,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self._log = log
        self._give_up = give_up
        self._quiet = quiet
        self._max = max_entries
        # (source prefix, Call-ID) -> what the warning says
        self._pending: OrderedDict[tuple[SourceKey, bytes], _Challenge] = OrderedDict()
        self._warned: OrderedDict[SourceKey, float] = OrderedDict()
        self.unanswered = 0
        """Challenges offering SHA-256 that got no answer (counter for metrics)."""

    def challenged(
        self, source: IPAddress, call_id: bytes, method: bytes, user_agent: bytes, now: float
    ) -> None:
        """A challenge offering SHA-256 was sent to ``source`` for ``call_id``."""
        prefix = source_key(source)
        key = (prefix, call_id)
        self._pending.pop(key, None)
        agent = user_agent.decode("utf-8", "replace")[:80]
        method_text = method.decode("ascii", "replace")
        self._pending[key] = _Challenge(now, prefix, str(source), method_text, agent)
        while len(self._pending) > self._max:
            self._pending.popitem(last=False)

    def answered(self, source: IPAddress, call_id: bytes) -> None:
        """A request with credentials for our realm came from ``source`` for ``call_id``."""
        if self._pending:
            self._pending.pop((source_key(source), call_id), None)

    def without_credentials(self, source: IPAddress, call_id: bytes, now: float) -> None:
        """A request without credentials: if we challenged this Call-ID, it was not answered."""
        if not self._pending:
            return
        found = self._pending.pop((source_key(source), call_id), None)
        if found is not None:
            self._report(found, now, "sent a new request without answering it")

    def sweep(self, now: float) -> None:
        """Report challenges left unanswered for ``give_up`` seconds."""
        pending = self._pending
        while pending:
            key, entry = next(iter(pending.items()))
            if now - entry.at < self._give_up:
                return
            del pending[key]
            self._report(entry, now, f"gave up (no answer within {self._give_up:g} s)")

    def _report(self, entry: _Challenge, now: float, what: str) -> None:
        self.unanswered += 1
        prefix = entry.prefix
        until = self._warned.get(prefix)
        if until is not None and until > now:
            return
        self._warned.pop(prefix, None)
        self._warned[prefix] = now + self._quiet
        while len(self._warned) > self._max:
            self._warned.popitem(last=False)
        self._log.warning(
            "auth: client %s (User-Agent %r) was challenged for %s with SHA-256 offered and %s; %s",
            entry.source,
            entry.user_agent or "-",
            entry.method,
            what,
            HINT,
        )


@dataclass(frozen=True, slots=True)
class _Challenge:
    at: float
    prefix: SourceKey
    source: str
    method: str
    user_agent: str
