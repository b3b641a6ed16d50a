# State of one relayed call (rtpengine-like: a call is a Call-ID; each party is a tag).
#
# Rules:
# - A party is known by its tag (From tag of its requests, To tag of its responses). Each
#   party has, per ``m=`` line, the local pair facing it (where it sends, where its media
#   leaves from) and what its last SDP signalled.
# - An offer from party X allocates (or reuses) the pairs facing X on X's family and
#   *offered* pairs facing the answerer on ``to_family``; the answer from tag Y makes the
#   offered pairs Y's. Several answers (forks, different To tags) share the offered pairs,
#   each with its own remote, learned source and statistics; the latest answer is the
#   one X's media goes to, every fork's media goes to X.
# - ``peer`` links the two parties media flows between. A pair is released when neither a
#   party nor the pending offer holds it any more.
# - Leg ids are fixed per (party, stream, component), so a pair change (family switch)
#   moves a leg without losing its counters' identity.
# - Pure data and small queries; the engine does the transitions. No clock reads.
"""Calls, parties and their streams as the relay engine keeps them."""

from __future__ import annotations

from dataclasses import dataclass, field

from rtc64.net.address import Family, IPAddress
from rtc64.relay.options import RelayOptions
from rtc64.relay.ports import LocalPair
from rtc64.relay.signalled import SignalledMedia
from rtc64.rtp.legs import LatchMode

RTP = 0
RTCP = 1
COMPONENTS = ("rtp", "rtcp")


@dataclass(slots=True)
class PartyMedia:
    """One party's side of one stream."""

    legs: tuple[int, int]
    """Leg ids (RTP, RTCP)."""
    local: LocalPair | None = None
    signalled: SignalledMedia | None = None
    mode: LatchMode = LatchMode.ANY
    strict: bool = False


@dataclass(slots=True)
class Party:
    """One side of a call (one tag)."""

    tag: bytes
    family: Family | None = None
    media: list[PartyMedia] = field(default_factory=list)
    peer: bytes | None = None
    options: RelayOptions = field(default_factory=RelayOptions)
    source: IPAddress | None = None
    """Signalling source of its last SDP."""

    def held(self, index: int) -> bool:
        if index >= len(self.media):
            return False
        sig = self.media[index].signalled
        return sig is not None and sig.held


@dataclass(slots=True)
class Offer:
    """The latest offer of a call and the pairs it offered to the answerer."""

    offerer: bytes
    to_family: Family
    pairs: list[LocalPair | None]
    expires: float
    answered: bool = False


@dataclass(slots=True)
class Call:
    """A relayed call and every port pair it holds."""

    call_id: bytes
    created: float
    worker: int
    addresses: dict[Family, IPAddress] = field(default_factory=dict)
    parties: dict[bytes, Party] = field(default_factory=dict)
    offer: Offer | None = None
    answered: float | None = None
    pairs: set[LocalPair] = field(default_factory=set)
    active_legs: set[int] = field(default_factory=set)
    last_activity: float = 0.0
    deadline: float | None = None

    def referenced_pairs(self) -> set[LocalPair]:
        out = {pm.local for p in self.parties.values() for pm in p.media if pm.local}
        if self.offer is not None:
            out.update(p for p in self.offer.pairs if p is not None)
        return out

    def leg_ids(self) -> list[int]:
        return [leg for p in self.parties.values() for pm in p.media for leg in pm.legs]

    def all_held(self) -> bool:
        """True when every live stream of the answered dialog is on hold or inactive."""
        live = False
        for party in self.parties.values():
            peer = self.parties.get(party.peer) if party.peer is not None else None
            for i, pm in enumerate(party.media):
                if pm.local is None:
                    continue
                live = True
                if not (party.held(i) or (peer is not None and peer.held(i))):
                    return False
        return live
