"""Call control beside forwarding: Timer C, the dialogs we record-routed, and the calls
the gateway ends by itself.

Rules (RFC 3261 §16.6 step 11, §12, §13.2.2.4, §15.1.1; rtpengine + Kamailio practice):

- Timer C: an INVITE branch that has heard nothing final ``timer_c`` (180 s) after it was
  sent or after its last provisional is CANCELled (if it went provisional) and counts as
  408. Timer C is a deadline like every other timer: one heap, ``get_timer()`` and
  ``handle_timer(now)``, which hands the expired branches back to the forwarder.
- Dialogs begin with the record-routed dialog-forming requests we forward and are learnt
  from their responses (``dialogs``); in-dialog requests raise their CSeqs and refresh
  targets; a BYE releases the media at once, its final response ends the dialog; a final
  error to the dialog-forming request ends both. ``admit`` answers whether an in-dialog
  request from an untrusted source belongs to a live dialog.
- When the relay reports a call without media for ``media.timeout``, the gateway sends a
  BYE to each party as if the other had hung up (``DialogTracker.byes``), with
  ``Reason: SIP;cause=408``, and releases the call's media.
- A 2xx from a losing happy-eyeballs attempt (the callee answered on two addresses) is
  ACKed and ended with a BYE toward that callee; the caller never sees it.

Call control only decides: the requests it wants sent are ``OwnRequest`` values the
forwarder sends.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable, Iterable

from rtc64.gateway.calllog import CallLog
from rtc64.gateway.media import MediaBridge
from rtc64.gateway.proxy.branches import Leg, OwnRequest
from rtc64.gateway.proxy.dialogs import DialogTracker, route_sides
from rtc64.gateway.proxy.forking import Branch, BranchState
from rtc64.gateway.proxy.hops import Hop
from rtc64.gateway.stats import CallView
from rtc64.net.address import IPAddress
from rtc64.net.endpoint import Flow, Transport
from rtc64.sip import headers as sh
from rtc64.sip.message import Request, Response
from rtc64.sip.nameaddr import NameAddr
from rtc64.sip.uri import SipUri, Uri, format_uri

TIMER_C = 180.0  # > 3 minutes per RFC 3261 §16.6 step 11; 180 s as Kamailio's fr_inv_timer


class CallControl:
    """Timer C deadlines, the dialog tracker and the media bridge's call ends."""

    def __init__(
        self,
        *,
        is_ours: Callable[[SipUri], bool],
        log: logging.Logger,
        media: MediaBridge | None = None,
        timer_c: float = TIMER_C,
        started: float = 0.0,
    ) -> None:
        self.is_ours = is_ours
        self.log = log
        self.media = media
        self.timer_c = timer_c
        self.dialogs = DialogTracker(is_ours, started=started)
        self.journal: CallLog | None = None  # call set-up/answer/end log lines
        self._heap: list[tuple[float, int]] = []
        self._armed: dict[int, Leg] = {}
        self._keys = itertools.count(1)

    # -- Timer C ----------------------------------------------------------------------------

    def arm_timer_c(self, leg: Leg, now: float) -> None:
        """(Re)start Timer C of an INVITE branch (sent, or a provisional came). A
        restart that moves an armed deadline later only records it on the branch: its
        heap entry is moved when it comes to the top (``get_timer``, ``handle_timer``),
        which most never do (the call is answered first): one entry per branch."""
        branch = leg.branch
        if leg.pending.ctx.method != b"INVITE":
            return
        deadline = now + self.timer_c
        armed = branch.timer_key and self._armed.get(branch.timer_key) is leg
        if armed and deadline >= branch.timer_c:
            branch.timer_c = deadline
            return
        self._armed.pop(branch.timer_key, None)
        branch.timer_c = deadline
        branch.timer_key = key = next(self._keys)
        self._armed[key] = leg
        heapq.heappush(self._heap, (branch.timer_c, key))
        if len(self._heap) > 64 and len(self._heap) > 4 * len(self._armed):
            # Re-armed and disarmed entries linger in the heap; rebuild it now and then.
            self._heap = [(leg.branch.timer_c, k) for k, leg in self._armed.items()]
            heapq.heapify(self._heap)

    def disarm_timer_c(self, branch: Branch) -> None:
        """The branch completed: its Timer C is gone."""
        if branch.timer_key:
            self._armed.pop(branch.timer_key, None)
            branch.timer_key = 0

    def get_timer(self) -> float | None:
        heap = self._heap
        while heap:
            when, key = heap[0]
            leg = self._armed.get(key)
            if leg is None:  # disarmed
                heapq.heappop(heap)
            elif leg.branch.timer_c != when:  # restarted since: its entry moves on
                heapq.heapreplace(heap, (leg.branch.timer_c, key))
            else:
                return when
        return None

    def handle_timer(self, now: float) -> list[Leg]:
        """INVITE branches whose Timer C fired: the forwarder cancels and fails them."""
        expired: list[Leg] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, key = heap[0]
            leg = self._armed.get(key)
            if leg is not None and leg.branch.timer_c > now:  # restarted: not due yet
                heapq.heapreplace(heap, (leg.branch.timer_c, key))
                continue
            heapq.heappop(heap)
            if leg is None:
                continue
            del self._armed[key]
            branch = leg.branch
            branch.timer_key = 0
            if leg.pending.ctx.final_forwarded or branch.cancelled:
                continue
            if branch.state is not BranchState.COMPLETED:
                expired.append(leg)
        return expired

    # -- dialogs and call ends ------------------------------------------------------------

    def begin(
        self, req: Request, now: float, flow: Flow | None = None, *, own_port: bool = False
    ) -> None:
        """We forward a record-routed dialog-forming request without a To tag
        (``own_port``: to targets reached from a SIP worker's private port)."""
        self.dialogs.begin(req, now, own_port=own_port)
        if self.journal is not None and req.method == b"INVITE":
            self.journal.setup(req, flow)

    def answered(self, req: Request, resp: Response, now: float) -> None:
        """A provisional response to a record-routed dialog-forming request."""
        self.dialogs.answered(req, resp, now)

    def confirmed(self, invite: Request, ok: Response, now: float, hop: object = None) -> None:
        """A 2xx to an INVITE we record-routed: remember the dialog."""
        self.dialogs.confirmed(invite, ok, now)
        if self.journal is not None:
            self.journal.answered(invite.call_id, ok.status, _hop(hop))

    def learnt(
        self,
        req: Request,
        status: int,
        *,
        to: NameAddr,
        to_value: bytes,
        contact: NameAddr | None,
        record_routes: list[NameAddr],
        now: float,
        hop: object = None,
    ) -> None:
        """``answered`` (1xx) or ``confirmed`` (2xx to INVITE) for a response read from
        its raw bytes: its To (parsed and as received), first Contact, Record-Route."""
        if status < 200:
            self.dialogs.learn(req, to.tag, contact, record_routes, now)
            return
        self.dialogs.confirm(
            req, to.tag, to=to_value, contact=contact, record_routes=record_routes, now=now
        )
        if self.journal is not None:
            self.journal.answered(req.call_id, status, _hop(hop))

    def bye_answered(self, bye: Request, status: int) -> None:
        """A final response to a BYE ends its dialog (credentials asked for aside)."""
        if self.journal is not None and status not in (401, 407):
            dialog = self.dialogs.get(bye.call_id)
            side = "bye-caller" if dialog is None or dialog.from_caller(bye) else "bye-callee"
            self.journal.ended(bye.call_id, side, status)
        self.dialogs.bye_answered(bye, status)

    def end_dialog(self, call_id: bytes) -> None:
        """The dialog-forming request failed: forget the dialog."""
        self.dialogs.end(call_id)

    def in_dialog(self, req: Request, now: float) -> bool:
        """Bookkeeping for an in-dialog request being forwarded (the dialog itself ends
        with the BYE's final response, ``bye_answered``); returns whether it goes to a
        party first reached from a SIP worker's private port (``toward_own_port``)."""
        self.dialogs.seen(req, now)
        if req.method == b"BYE" and self.media is not None:
            self.media.end(req.call_id)
        return self.dialogs.toward_own_port(req, now)

    def admit(
        self, req: Request, target: Uri, routes: Iterable[Uri], issued: int, *, wall: float,
        now: float,
    ) -> str | None:  # fmt: skip
        """None when the in-dialog ``req`` from an untrusted source belongs to a live
        dialog (``DialogTracker.admit``), else why not."""
        return self.dialogs.admit(req, target, routes, issued, wall=wall, now=now)

    def end_call(self, call_id: bytes, status: int | None = None) -> None:
        """The call is over (``status``: its INVITE's final failure): release its media
        and forget its dialog."""
        if self.journal is not None:
            reason = (
                "media-timeout" if status is None else "cancelled" if status == 487 else "failed"
            )
            self.journal.ended(call_id, reason, status)
        self.dialogs.end(call_id)
        if self.media is not None:
            self.media.end(call_id)

    def snapshot(self, now: float) -> list[CallView]:
        """Calls in progress (the call log's, whose dialog is live), read-only; empty
        without a call log."""
        if self.journal is None:
            return []

        def state(call_id: bytes) -> str | None:
            dialog = self.dialogs.get(call_id, now)
            if dialog is None:
                return None
            return "confirmed" if dialog.confirmed else "early"

        return self.journal.snapshot(state)

    def media_timeout(self, call_id: bytes) -> list[OwnRequest]:
        """The relay saw no media: BYE both parties of the dialog (as rtpengine+Kamailio)."""
        self.log.info("media timeout: ending call %r with BYE to both sides", call_id)
        byes = [
            OwnRequest(b"BYE", target, routes, tuple(lines))
            for target, routes, lines in self.dialogs.byes(call_id)
        ]
        self.end_call(call_id)
        return byes

    def unwanted(self, request: Request, resp: Response) -> list[OwnRequest]:
        """ACK and BYE for a 2xx nobody wants (a losing happy-eyeballs attempt answered
        too): the dialog is confirmed end to end (§13.2.2.4) and ended at once (§15.1.1).
        ``request`` is the INVITE as that attempt sent it."""
        found = sh.contacts(resp)
        if isinstance(found, sh.Star) or not found or resp.to.tag is None:
            return []
        target = format_uri(found[0].uri)
        rr = list(sh.record_routes(resp))
        sides = route_sides(rr, self.is_ours)
        # The route set toward the callee: the Record-Routes above ours, reversed (§12.1.2).
        routes = tuple(bytes(r) for r in reversed(sides[0] if sides else rr))
        base = (
            (b"From", request.get(b"from") or b""),
            (b"To", resp.get(b"to") or b""),
            (b"Call-ID", resp.call_id),
            (b"Max-Forwards", b"70"),
        )
        ack = (*base, (b"CSeq", b"%d ACK" % request.cseq.seq))
        bye = (
            *base,
            (b"CSeq", b"%d BYE" % (request.cseq.seq + 1)),
            (b"Reason", b'SIP;cause=200;text="Answered on another address"'),
        )
        return [OwnRequest(b"ACK", target, routes, ack), OwnRequest(b"BYE", target, routes, bye)]


def _hop(hop: object) -> tuple[Transport, IPAddress, int] | None:
    """Transport, address and port of a branch's destination (a ``hops.Hop``)."""
    return (hop.transport, hop.ip, hop.port) if isinstance(hop, Hop) else None
