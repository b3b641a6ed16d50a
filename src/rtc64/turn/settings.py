# Settings of the TURN core (RFC 8656, RFC 6156, RFC 6062); the service builds them from
# the [turn] configuration section, the core never reads configuration.
"""TurnSettings: realm, limits, lifetimes and family rules of the TURN core."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from rtc64.net.address import Family, IPAddress
from rtc64.net.endpoint import Transport
from rtc64.turn.events import SockAddr
from rtc64.turn.protocols import MD5, SHA256

DEFAULT_LIFETIME: Final = 600
"""Allocation lifetime when the client asks for less or nothing (RFC 8656 §7.2)."""
PERMISSION_LIFETIME: Final = 300
"""RFC 8656 §9: permissions last 300 s, refreshed by CreatePermission/ChannelBind."""
CHANNEL_LIFETIME: Final = 600
"""RFC 8656 §12: channel bindings last 10 minutes."""
CHANNEL_QUARANTINE: Final = 300
"""RFC 8656 §12: an expired channel number / peer is not re-bound to another for 5 min."""
RESERVATION_LIFETIME: Final = 30
"""RFC 8656 §14.9: a RESERVATION-TOKEN is good for about 30 s."""
CONNECTION_TIMEOUT: Final = 30
"""RFC 6062 §5.2/§5.3: Connect attempts and unbound peer connections time out at 30 s."""
TRANSACTION_LIFETIME: Final = 40
"""RFC 8489 §6.3.1: answer a retransmitted request from a cache for 40 s."""


@dataclass(frozen=True, slots=True)
class TurnSettings:
    """What the core needs to decide; every limit is a count, every time in seconds.

    ``relay_families``: the families the server has relay addresses of (440 for others).
    ``keep_client_family``: relay in the client's family when the request names none,
    everywhere (True) or only on the listeners ``(transport, local)`` in
    ``keep_client_family_on``. ``open``: no authentication at all (a lab only).
    """

    realm: str = "rtc64"
    open: bool = False
    software: str | None = "rtc64"
    relay_families: frozenset[Family] = frozenset((Family.INET, Family.INET6))
    keep_client_family: bool = False
    keep_client_family_on: frozenset[tuple[Transport, SockAddr]] = frozenset()
    password_algorithms: tuple[int, ...] = (SHA256, MD5)
    default_lifetime: int = DEFAULT_LIFETIME
    max_lifetime: int = 3600
    max_allocations: int = 10000
    user_quota: int = 10
    max_permissions: int = 32
    max_channels: int = 64
    tcp_relay: bool = True
    external_addresses: tuple[tuple[IPAddress, IPAddress], ...] = ()
    """``(relay ip, advertised ip)``: XOR-RELAYED-ADDRESS names the advertised one (1:1 NAT)."""
    cache_size: int = 4096
    """Retransmission cache entries (oldest evicted first)."""

    def __post_init__(self) -> None:
        if self.default_lifetime <= 0 or self.max_lifetime < self.default_lifetime:
            raise ValueError(
                f"max_lifetime {self.max_lifetime} must be >= default_lifetime "
                f"{self.default_lifetime} > 0"
            )
        for name in ("max_allocations", "user_quota", "max_permissions", "max_channels"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, not {getattr(self, name)}")
        if not self.password_algorithms or any(
            a not in (MD5, SHA256) for a in self.password_algorithms
        ):
            raise ValueError(f"password_algorithms {self.password_algorithms!r}: MD5=1, SHA256=2")
