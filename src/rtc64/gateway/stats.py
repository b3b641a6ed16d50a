"""Counters of the signalling gateway (monotonic; for logs, tests and future metrics)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class ProxyStats:
    """Monotonic counters (Prometheus ``_total`` semantics)."""

    requests_in: int = 0
    responses_in: int = 0
    messages_out: int = 0
    forwarded: int = 0
    errors_sent: int = 0
    bad_messages: int = 0
    rate_limited: int = 0
    throttled_sources: int = 0  # throttle episodes: a source went over sip.request_rate
    overloaded: int = 0
    auth_challenges: int = 0
    registrations: int = 0
    registrations_forbidden: int = 0  # REGISTER for an AOR not the authenticated user's
    registrations_too_many: int = 0  # 503: the AOR would exceed registrar.max_contacts
    registrations_first_hop: int = 0  # 439: outbound flow through a first hop without it
    send_failures: int = 0
    dropped: int = 0
    in_dialog_refused: int = 0
    byes_sent: int = 0
    race_attempts: int = 0
    race_fallbacks: int = 0
    tcp_upgrades: int = 0  # large requests sent over TCP instead of UDP (RFC 3261 §18.1.1)
    tcp_upgrade_fallbacks: int = 0  # ... whose TCP connection failed: sent over UDP after all
    response_loops: int = 0
    """Responses not sent because they would reach one of our own sockets (loop guard)."""

    def snapshot(self) -> dict[str, int]:
        return asdict(self)
