"""SDP core (RFC 8866): model, parser, serializer, ICE candidates, rewriting. No I/O."""

from __future__ import annotations

from rtc64.sdp.addresses import (
    AddressSource,
    AddressUse,
    addresses,
    families,
    is_mixed_family,
    unusable_addresses,
)
from rtc64.sdp.ice import Candidate, CandidateType, make_candidate, parse_candidate
from rtc64.sdp.model import (
    Attribute,
    Bandwidth,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    SessionDescription,
    Timing,
)
from rtc64.sdp.parser import parse
from rtc64.sdp.serializer import serialize

__all__ = [
    "AddressSource",
    "AddressUse",
    "Attribute",
    "Bandwidth",
    "Candidate",
    "CandidateType",
    "Connection",
    "Direction",
    "MediaDescription",
    "Origin",
    "SessionDescription",
    "Timing",
    "addresses",
    "families",
    "is_mixed_family",
    "make_candidate",
    "parse",
    "parse_candidate",
    "serialize",
    "unusable_addresses",
]
