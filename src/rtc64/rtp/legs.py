# What a relay leg is, and who may send on it: latching (symmetric RTP, RFC 4961 §3) and
# RTP-bleed protection.
#
# Rules:
# - A leg is one party's media on one local port: packets from the party arrive there and
#   packets for the party leave from there (symmetric RTP). ``LegSpec`` is its
#   configuration (set by the engine), ``LegCounters`` what the forwarder counted.
# - The forwarder sends to the latched source once there is one, else to the signalled
#   address (``remote``). ``LatchMode.OFF`` (trust the SDP address) never learns.
# - Learning ("latching") happens from the first packet of an acceptable source, and again
#   (re-latching) only while the learning window after an offer/answer is open.
#   ``ADDRESS``: acceptable sources are those with the signalled IP address (any port: NATs
#   and phones move ports, never addresses). ``ANY``: every source, used when the SDP
#   address cannot be trusted (private, CLAT, loopback... or of another family than the
#   signalling), where the first packet is the only evidence of the peer.
# - After the window: a packet from another source than the latched one is dropped when
#   ``strict``; otherwise it is forwarded if acceptable (``ANY``, or the signalled address)
#   and dropped if not — a stranger never gets media relayed from or to it (RTP bleed).
# - Times are plain floats (seconds, the caller's monotonic clock); nothing here reads it.
"""Relay-leg configuration, counters and the latching decision."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from rtc64.net.address import IPAddress
from rtc64.rtp.stats import ReceptionSnapshot

LocalPort = tuple[IPAddress, int]
"""A local UDP port of the relay: address and port."""


class LatchMode(enum.IntEnum):
    """Where a leg may learn its peer's real source from."""

    OFF = 0
    ADDRESS = 1
    ANY = 2


class Verdict(enum.IntEnum):
    """What to do with a packet from a source that is not the latched one."""

    DROP = 0
    FORWARD = 1
    LATCH = 2


def admit(
    mode: LatchMode,
    *,
    strict: bool,
    window_open: bool,
    latched: bool,
    signalled_ip: IPAddress | None,
    signalled_port: int | None,
    source_ip: IPAddress,
    source_port: int,
) -> Verdict:
    """Decide for a packet whose source is not the latched one (see the module comment)."""
    if mode is LatchMode.OFF:
        if not strict:
            return Verdict.FORWARD
        exact = source_ip == signalled_ip and source_port == signalled_port
        return Verdict.FORWARD if exact else Verdict.DROP
    acceptable = mode is LatchMode.ANY or (signalled_ip is not None and source_ip == signalled_ip)
    if not acceptable:
        return Verdict.DROP
    if not latched or window_open:
        return Verdict.LATCH
    return Verdict.DROP if strict else Verdict.FORWARD


@dataclass(frozen=True, slots=True)
class LegSpec:
    """Configuration of one leg, as the engine hands it to a forwarder."""

    leg: int
    local: LocalPort
    peer: int | None
    """The leg packets received here are sent out of (toward its party), if any."""
    remote: tuple[IPAddress, int] | None
    """Signalled destination of this leg's party (``None``: unknown or on hold)."""
    mode: LatchMode
    strict: bool
    window: float
    """Seconds from now during which (re-)learning is allowed; 0 keeps the current window."""
    clock_rates: tuple[tuple[int, int], ...] = ()
    """Payload type → clock rate for reception statistics; empty: count packets only."""


@dataclass(frozen=True, slots=True)
class LegCounters:
    """What a forwarder counted on one leg (a snapshot)."""

    leg: int
    packets: int
    octets: int
    dropped: int
    """Packets refused on this leg's port (foreign source; for ports shared by forks,
    counted on the first leg of the port)."""
    forwarded: int
    last_packet: float | None
    latched: tuple[IPAddress, int] | None
    reception: ReceptionSnapshot | None = None
