"""The pure TURN core (RFC 8656, RFC 6156, RFC 6062): allocations, permissions, channels,
lifetimes as deadlines, and the dispatch of decoded STUN messages (docs/turn.md)."""

from rtc64.turn.events import (
    Bind,
    ClientFlow,
    CloseConnection,
    ConnectPeer,
    Event,
    Lookup,
    Permit,
    RelayClosed,
    SpliceData,
    ToClient,
    ToPeer,
    Unbind,
    Unpermit,
)
from rtc64.turn.protocols import PENDING, Credentials, PeerPolicy, Pending, Relays, RelayUnavailable
from rtc64.turn.server import TurnServer
from rtc64.turn.settings import TurnSettings
from rtc64.turn.stats import TurnStats

__all__ = [
    "PENDING",
    "Bind",
    "ClientFlow",
    "CloseConnection",
    "ConnectPeer",
    "Credentials",
    "Event",
    "Lookup",
    "PeerPolicy",
    "Pending",
    "Permit",
    "RelayClosed",
    "RelayUnavailable",
    "Relays",
    "SpliceData",
    "ToClient",
    "ToPeer",
    "TurnServer",
    "TurnSettings",
    "TurnStats",
    "Unbind",
    "Unpermit",
]
