"""The proxy's media bridge: when to relay a call's media, and SDP offer/answer tracking.

Rules (RFC 3264 offer/answer in SIP; RFC 6337 for where offers and answers travel):

- Policy ``media.policy``: ``auto`` relays when the two parties' families differ (the
  families of the transport flows), or when an SDP carries a media address that cannot
  be reached as written (CLAT 192.0.0.0/29, RFC 1918, CGNAT, link-local, loopback, ULA:
  ``net.ranges``; and the addresses of this host's CLATs, learnt by ``serve`` from
  ``rtc64 clat``'s status: ``unusable``), or when a stream of the SDP can only be
  reached on the family other than that of the leg it is sent to (``c=IN IP4`` toward
  an IPv6 leg; an IPv4-mapped ``::ffff:a.b.c.d`` counts as IPv4), or when the call is
  relayed already; ``always`` relays every call with SDP; ``never`` passes SDP
  untouched.
- The family rule holds for answers too: an offer that passed untouched is kept until
  its answer; an answer of the other family than the offerer's leg makes the call
  relayed then (``late relay``): the relay learns the kept offer, the offerer gets the
  relay's address of its family, and media toward the answerer goes through the relay
  (the answerer already holds the offerer's own address and sends to it directly).
- IPv4-mapped addresses are written as IPv4 (``IN IP4``) in SDP given to the relay, so
  it sends to them from an IPv4 socket.
- Policy ``nat64`` (with a NAT64 prefix, configured or discovered): a call one of whose
  parties is reached through the NAT64 (its signalling address is inside the prefix) is
  not relayed; media flows through the operator's NAT64 instead. Every SDP coming from
  such a party gets each IPv4 address (``o=``, ``c=``, ``a=rtcp``, candidates and their
  ``raddr``) replaced by its RFC 6052 synthesised IPv6 address, ``IN IP4`` becoming
  ``IN IP6`` (``0.0.0.0`` of a hold becomes ``::``; multicast stays). SDP going to such a
  party is left as is: the IPv4-only peer cannot use the IPv6 addresses in it, so it
  must use symmetric RTP (send from the port it receives on, to the source it receives
  from) to answer through the NAT64's dynamic mapping, which the IPv6 side opens by
  sending first. A call already relayed stays relayed; calls without a NAT64 party
  follow ``auto``. Without a prefix ``nat64`` is ``auto``.
- An INVITE/UPDATE (or re-INVITE) with SDP is an offer from its sender; the SDP in the
  reliable answer to it (18x or 2xx) is the answer. An INVITE without SDP gets the offer
  in the 2xx and the answer in the ACK. The decision is taken per offer, per family of
  the receiving side: a forked INVITE going to an IPv4 and an IPv6 contact gets one relay
  session per family (``call_id;f=4`` / ``;f=6``); the branch that answers binds the
  dialog to its session and the others are deleted. A branch whose offer went through
  untouched gets its answer through untouched; when that answer is final the call is
  not relayed and its sessions are deleted.
- The unspecified address of an old-style hold (``c=IN IP4 0.0.0.0``) means "send
  nothing", not "unreachable": it alone never makes ``auto`` relay.
- BYE, CANCEL, and a final error to the initial INVITE end the call's relay sessions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Protocol

from rtc64.errors import RemoteProtocolError
from rtc64.net import rfc6052
from rtc64.net.address import Family, IPAddress, family_of, unmap
from rtc64.sdp import parse as parse_sdp
from rtc64.sdp import serialize as serialize_sdp
from rtc64.sdp.addresses import (
    MEDIA_SOURCES,
    addresses,
    needs_other_family,
    unusable_addresses,
)
from rtc64.sdp.model import SessionDescription
from rtc64.sdp.rewrite import map_addresses
from rtc64.sip.message import Request, Response

SDP_TYPE = b"application/sdp"
POLICIES = ("auto", "always", "never", "nat64")
MAX_PASSED = 20_000
"""Untouched offers kept for a late relay at most (the oldest go first)."""


class Relay(Protocol):
    """What the bridge needs from the media relay engine (``relay.MediaRelay``)."""

    def offer(
        self,
        call_id: bytes,
        from_tag: bytes,
        sdp: bytes,
        *,
        to_family: Family,
        from_source: IPAddress | None,
    ) -> bytes: ...

    def answer(
        self,
        call_id: bytes,
        from_tag: bytes,
        to_tag: bytes,
        sdp: bytes,
        *,
        to_family: Family,
        from_source: IPAddress | None,
    ) -> bytes: ...

    def delete(self, call_id: bytes) -> object: ...


@dataclass(slots=True)
class _Call:
    """Relay sessions of one Call-ID and who made the offer still waiting for an answer."""

    sessions: dict[Family, bytes] = field(default_factory=dict)
    bound: bytes | None = None
    offer_tag: bytes | None = None


@dataclass(frozen=True, slots=True)
class _Passed:
    """An offer that went through untouched, kept until its answer (late relay)."""

    offer_tag: bytes
    sdp: bytes
    offerer: IPAddress


def _other(family: Family) -> Family:
    return Family.INET if family is Family.INET6 else Family.INET6


def _parse(sdp: bytes) -> SessionDescription | None:
    try:
        return parse_sdp(sdp)
    except RemoteProtocolError:
        return None


def unmapped_sdp(sdp: bytes) -> bytes:
    """``sdp`` with IPv4-mapped addresses written as IPv4 (``IN IP4``); as is when it has
    none or does not parse."""
    if b"ffff:" not in sdp.lower():  # no IPv4-mapped address can be there: skip the parse
        return sdp
    sd = _parse(sdp)
    if sd is None:
        return sdp
    new = map_addresses(sd, unmap)
    return sdp if new == sd else serialize_sdp(new)


def has_sdp(msg: Request | Response) -> bool:
    if not msg.body:
        return False
    ctype = msg.get(b"content-type")
    return ctype is not None and ctype.split(b";", 1)[0].strip().lower() == SDP_TYPE


def _suffix(family: Family) -> bytes:
    return b";f=4" if family is Family.INET else b";f=6"


class MediaBridge:
    """Decides per offer whether to relay and rewrites SDP bodies through the relay."""

    def __init__(
        self,
        relay: Relay | None,
        policy: str,
        log: logging.Logger,
        *,
        nat64: IPv6Network | None = None,
        unusable: Callable[[], Collection[IPAddress]] = frozenset,
    ) -> None:
        if policy not in POLICIES:
            policy = "auto"
        self.relay = relay
        # nat64 translation needs no relay; the other policies do.
        self.policy = policy if relay is not None or policy == "nat64" else "never"
        self.nat64 = nat64
        self.unusable = unusable
        """Addresses learnt to be unusable in SDP beyond the ranges (this host's CLATs)."""
        self.log = log
        self._calls: dict[bytes, _Call] = {}
        self._passed: dict[tuple[bytes, Family], _Passed] = {}
        """Untouched offers awaiting their answer, by Call-ID and the answerer's family."""
        self.relayed_offers = 0
        self.late_relays = 0
        """Calls relayed from their answer on (an answer of the other family)."""
        self.passed_offers = 0
        self.translated = 0

    def through_nat64(self, address: IPAddress) -> bool:
        """Whether policy ``nat64`` applies to a party signalling from ``address``."""
        return (
            self.policy == "nat64"
            and self.nat64 is not None
            and isinstance(address, IPv6Address)
            and address in self.nat64
        )

    def _synthesised(self, address: IPAddress) -> IPAddress:
        if not isinstance(address, IPv4Address) or address.is_multicast:
            return address
        if address.is_unspecified:  # a hold (or ICE placeholder) stays one
            return IPv6Address(0)
        assert self.nat64 is not None
        return rfc6052.synthesize(address, self.nat64)

    def translate(self, sdp: bytes) -> bytes | None:
        """``sdp`` with its IPv4 addresses synthesised under the NAT64 prefix; None when
        nothing changes or the SDP does not parse (it then passes untouched)."""
        try:
            sd = parse_sdp(sdp)
        except RemoteProtocolError as exc:
            self.log.debug("media: SDP not translated for NAT64: %s", exc)
            return None
        new = map_addresses(sd, self._synthesised)
        if new == sd:
            return None
        self.translated += 1
        return serialize_sdp(new)

    def active_calls(self) -> int:
        return len(self._calls)

    def relayed(self, call_id: bytes) -> bool:
        """Whether the relay carries media of ``call_id`` now."""
        call = self._calls.get(call_id)
        return call is not None and bool(call.sessions)

    @staticmethod
    def call_of(session: bytes) -> bytes:
        """The Call-ID behind a relay session key (``call_id;f=4`` → ``call_id``)."""
        head, sep, tail = session.rpartition(b";f=")
        return head if sep and tail in (b"4", b"6") else session

    def _wants_relay(self, call: _Call | None, sdp: bytes, a: Family, b: Family) -> bool:
        if self.policy == "never":
            return False
        if self.policy == "always" or call is not None or a is not b:
            return True
        sd = _parse(sdp)
        if sd is None:
            return False
        if needs_other_family(sd, b):
            return True
        unusable = unusable_addresses(sd, MEDIA_SOURCES)
        if any(use.ip is None or not use.ip.is_unspecified for use in unusable):
            return True
        learnt = self.unusable()
        return bool(learnt) and any(
            use.ip in learnt for use in addresses(sd) if use.source in MEDIA_SOURCES
        )

    # -- offers ----------------------------------------------------------------------

    def offer(
        self,
        call_id: bytes,
        offerer_tag: bytes,
        sdp: bytes,
        *,
        offerer: IPAddress,
        answerer: IPAddress,
    ) -> bytes | None:
        """Rewritten SDP for an offer from ``offerer`` going to ``answerer``, or None."""
        a, b = family_of(offerer), family_of(answerer)
        call = self._calls.get(call_id)
        if call is None and (self.through_nat64(offerer) or self.through_nat64(answerer)):
            self.passed_offers += 1
            return self.translate(sdp) if self.through_nat64(offerer) else None
        if self.relay is None or not self._wants_relay(call, sdp, a, b):
            self.passed_offers += 1
            if self.relay is not None and self.policy != "never":
                self._keep_passed(call_id, b, _Passed(offerer_tag, sdp, offerer))
            return None
        self._passed.pop((call_id, b), None)
        if call is None:
            call = self._calls[call_id] = _Call()
        session = call.bound or call.sessions.get(b)
        if session is None:
            session = call_id + _suffix(b)
            call.sessions[b] = session
        call.offer_tag = offerer_tag
        self.relayed_offers += 1
        return self.relay.offer(
            session, offerer_tag, unmapped_sdp(sdp), to_family=b, from_source=offerer
        )

    def answer(
        self,
        call_id: bytes,
        answerer_tag: bytes,
        sdp: bytes,
        *,
        answerer: IPAddress,
        offerer: IPAddress,
        final: bool,
    ) -> bytes | None:
        """Rewritten SDP for an answer from ``answerer`` back to the offerer, or None."""
        call = self._calls.get(call_id)
        if call is None and self.through_nat64(answerer):
            return self.translate(sdp)
        passed = self._passed.pop((call_id, family_of(answerer)), None)
        if passed is not None and self._answer_needs_relay(sdp, offerer):
            return self._late_relay(
                call_id, passed, answerer_tag=answerer_tag, sdp=sdp, answerer=answerer, final=final
            )
        if passed is not None and not final:
            self._passed[call_id, family_of(answerer)] = passed  # the 2xx may differ
        if call is None or self.relay is None or call.offer_tag is None:
            return None
        session = call.bound or call.sessions.get(family_of(answerer))
        if session is None:
            # This branch got the offer untouched (another family's branch is relayed).
            if final:
                self.end(call_id)
            return None
        out = self.relay.answer(
            session,
            call.offer_tag,
            answerer_tag,
            unmapped_sdp(sdp),
            to_family=family_of(offerer),
            from_source=answerer,
        )
        if final:
            self._bind(call, session)
            call.offer_tag = None
        return out

    def _keep_passed(self, call_id: bytes, family: Family, passed: _Passed) -> None:
        key = (call_id, family)
        self._passed.pop(key, None)
        self._passed[key] = passed
        if len(self._passed) > MAX_PASSED:  # calls never answered nor ended through us
            del self._passed[next(iter(self._passed))]

    def _answer_needs_relay(self, sdp: bytes, offerer: IPAddress) -> bool:
        """An answer to an untouched offer that the offerer's leg cannot use as written."""
        sd = _parse(sdp)
        return sd is not None and needs_other_family(sd, family_of(offerer))

    def _late_relay(
        self,
        call_id: bytes,
        passed: _Passed,
        *,
        answerer_tag: bytes,
        sdp: bytes,
        answerer: IPAddress,
        final: bool,
    ) -> bytes:
        """Relay a call from its answer on: the relay learns the kept offer (its rewritten
        form is not sent: the answerer has the offer already), the offerer gets the answer
        pointing at the relay; the relay's side facing the answerer is of the family the
        answer's SDP names."""
        assert self.relay is not None
        call = self._calls.get(call_id)
        if call is None:
            call = self._calls[call_id] = _Call()
        offerer_family = family_of(passed.offerer)
        session = call.bound or call_id + _suffix(family_of(answerer))
        call.sessions[family_of(answerer)] = session
        call.offer_tag = passed.offer_tag
        self.late_relays += 1
        self.log.info(
            "media: relaying %r from its answer on (SDP of the other family toward IPv%d)",
            call_id,
            4 if offerer_family is Family.INET else 6,
        )
        self.relay.offer(
            session,
            passed.offer_tag,
            unmapped_sdp(passed.sdp),
            to_family=_other(offerer_family),
            from_source=passed.offerer,
        )
        out = self.relay.answer(
            session,
            passed.offer_tag,
            answerer_tag,
            unmapped_sdp(sdp),
            to_family=offerer_family,
            from_source=answerer,
        )
        if final:
            self._bind(call, session)
            call.offer_tag = None
        return out

    def _bind(self, call: _Call, session: bytes) -> None:
        """The answering branch's session serves the dialog; the others go."""
        call.bound = session
        for family, other in list(call.sessions.items()):
            if other != session:
                self._delete(other)
                del call.sessions[family]

    # -- SIP-level hooks used by the proxy ---------------------------------------------

    def request_body(self, req: Request, sender: IPAddress, receiver: IPAddress) -> bytes | None:
        """New body for a forwarded request (offer in INVITE/UPDATE, answer in ACK/PRACK)."""
        if not has_sdp(req):
            return None
        tag = req.from_.tag or b""
        if req.method in (b"ACK", b"PRACK"):
            return self.answer(
                req.call_id, tag, req.body, answerer=sender, offerer=receiver, final=True
            )
        if req.method in (b"INVITE", b"UPDATE"):
            return self.offer(req.call_id, tag, req.body, offerer=sender, answerer=receiver)
        return None

    def response_body(
        self, req: Request, resp: Response, responder: IPAddress, requester: IPAddress
    ) -> bytes | None:
        """New body for a forwarded 18x/2xx carrying SDP."""
        if not has_sdp(resp) or req.method not in (b"INVITE", b"UPDATE"):
            return None
        tag = resp.to.tag or b""
        if has_sdp(req):
            return self.answer(
                req.call_id,
                tag,
                resp.body,
                answerer=responder,
                offerer=requester,
                final=200 <= resp.status < 300,
            )
        # No offer in the request: the response carries the offer, the ACK the answer.
        return self.offer(req.call_id, tag, resp.body, offerer=responder, answerer=requester)

    def leaves_response(self, req: Request, responder: IPAddress) -> bool:
        """Whether ``response_body`` for any response to ``req`` from ``responder`` is
        None with nothing changed (the proxy may forward its bytes untouched): ``req`` is
        not INVITE/UPDATE, or it carried the offer of a call with no relay session, no
        untouched offer kept for a late relay, and no NAT64 translation."""
        if req.method not in (b"INVITE", b"UPDATE"):
            return True
        return (
            has_sdp(req)
            and req.call_id not in self._calls
            and (req.call_id, family_of(responder)) not in self._passed
            and not self.through_nat64(responder)
        )

    def end(self, call_id: bytes) -> None:
        """Tear down every relay session of ``call_id``."""
        for family in Family:
            self._passed.pop((call_id, family), None)
        call = self._calls.pop(call_id, None)
        if call is None:
            return
        for session in call.sessions.values():
            self._delete(session)

    def _delete(self, session: bytes) -> None:
        if self.relay is not None:
            try:
                self.relay.delete(session)
            except Exception:
                self.log.exception("media: deleting session %r failed", session)
