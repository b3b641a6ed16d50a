# What the TURN core asks of its collaborators, synchronously (docs/turn.md "turn/").
#
# Rules:
# - ``Relays`` (the io) binds relay sockets at once from the media relay's PortPool so TURN
#   and RTP never collide; it raises ``RelayUnavailable`` when no port is free (508).
#   With ``reserve_next`` (EVEN-PORT R bit, RFC 8656 §14.6) it also keeps port N+1 bound;
#   the core owns the RESERVATION-TOKEN and later takes that address with
#   ``take_reserved(address)`` or gives it back with ``release(address)``.
# - ``Credentials`` (turnserver.credentials) gives RFC 8489 §9.2 long-term keys and
#   stateless nonces; ``key`` may answer ``PENDING`` while the user store is read.
# - ``PeerPolicy`` (turnserver.peers) says whether a peer may be relayed to; it unwraps
#   IPv4 embedded in IPv6 itself.
"""Protocols of the TURN core's collaborators: relays, credentials, peer policy."""

from __future__ import annotations

from typing import Final, Literal, Protocol, final

from rtc64.errors import ProtocolError
from rtc64.net.address import Family, IPAddress
from rtc64.turn.events import ClientFlow, SockAddr

MD5: Final = 0x0001
"""PASSWORD-ALGORITHM MD5 (RFC 8489 §18.5): the key is MD5(user:realm:password)."""
SHA256: Final = 0x0002
"""PASSWORD-ALGORITHM SHA-256 (RFC 8489 §18.5)."""
UDP: Final = 17
"""REQUESTED-TRANSPORT UDP (RFC 8656 §18.7)."""
TCP: Final = 6
"""REQUESTED-TRANSPORT TCP (RFC 6062 §6.1)."""


class RelayUnavailable(ProtocolError):  # noqa: N818 (the name docs/turn.md gives)
    """No relay port (or address) of the wanted family is free: answer 508."""

    def __init__(self, reason: str = "Insufficient Capacity") -> None:
        super().__init__(reason, 508)


@final
class Pending:
    """``Credentials.key`` is fetching the user; the core emits ``Lookup`` and drops."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PENDING"


PENDING = Pending()


class Relays(Protocol):
    """Relay sockets (implemented by the io)."""

    def reserve(self, family: Family, protocol: int, *, even: bool, reserve_next: bool) -> SockAddr:
        """Bind a relay socket of ``family`` and ``protocol`` (UDP 17 / TCP 6) now.

        ``even``: an even port; ``reserve_next``: also keep port+1 bound for a later
        ``take_reserved``. Raises ``RelayUnavailable``.
        """
        ...

    def take_reserved(self, address: SockAddr) -> SockAddr | None:
        """Turn the kept address into a live relay socket (None: it is gone)."""
        ...

    def release(self, relay: SockAddr) -> None:
        """Close a relay socket or drop a kept reservation."""
        ...


class Credentials(Protocol):
    """Long-term credentials and stateless nonces (RFC 8489 §9.2)."""

    def key(self, username: str, realm: str, algorithm: int) -> bytes | Pending | None:
        """The MESSAGE-INTEGRITY key, None for an unknown user, or ``PENDING``.

        An object that also has ``keys(username, realm, algorithm) -> tuple[bytes, ...] |
        Pending`` (every key the user may have signed with, one per TURN REST secret) is
        asked through ``keys`` instead, so rotated secrets keep working.
        """
        ...

    def nonce(self, client: ClientFlow, now: float) -> str:
        """A fresh nonce for ``client`` (with the RFC 8489 nonce cookie)."""
        ...

    def nonce_ok(self, nonce: str, client: ClientFlow, now: float) -> bool | Literal["stale"]:
        """True if ``nonce`` is ours and fresh for ``client``; "stale" if it expired."""
        ...


class PeerPolicy(Protocol):
    """May the server relay to this peer (turnserver.peers.PeerPolicy)."""

    def allowed(self, peer_ip: IPAddress) -> bool: ...
