"""Call control on top of forwarding: Timer C, and ending calls whose media died.

Rules (RFC 3261 §16.6 step 11, §15.1.1; rtpengine + Kamailio practice):

- Timer C: an INVITE branch that has heard nothing final three minutes after its last
  provisional is CANCELled (if it went provisional) and counts as 408.
- When the relay reports a call without media for ``media.timeout``, the gateway sends a
  BYE to each party as if the other had hung up (``dialogs.DialogTracker.byes``), with
  ``Reason: SIP;cause=408``, and releases the call's media.
- A 2xx from a losing happy-eyeballs attempt (the callee answered on two addresses) is
  ACKed and ended with a BYE toward that callee; the caller never sees it.
"""

from __future__ import annotations

import secrets

from rtc64.errors import Rtc64Error
from rtc64.gateway import hops
from rtc64.gateway.dialogs import route_sides
from rtc64.gateway.forking import BranchState
from rtc64.gateway.forwarding import ProxyCore
from rtc64.sip import headers as sh
from rtc64.sip.message import Response, build_request
from rtc64.sip.nameaddr import parse_name_addr
from rtc64.sip.serializer import serialize
from rtc64.sip.transaction_client import ClientTransaction
from rtc64.sip.uri import SipUri, format_uri, parse_uri


class CallControl(ProxyCore):
    """``ProxyCore`` plus the calls the gateway ends by itself."""

    def expire_timer_c(self) -> None:
        """Cancel INVITE branches that heard nothing final for Timer C (§16.6 step 11)."""
        now = self.clock()
        for pending in list(self._pending.values()):
            if pending.ctx.method != b"INVITE" or pending.ctx.final_forwarded:
                continue
            for branch in pending.ctx.pending():
                if branch.timer_c and branch.timer_c <= now and not branch.cancelled:
                    if branch.state is BranchState.PROCEEDING:
                        self._send_cancel(branch)
                    else:
                        branch.cancel_wanted = True
                    client = branch.txn
                    if isinstance(client, ClientTransaction):
                        self._branches.pop(client, None)
                    self._complete(pending, branch, 408, None, b"Request Timeout (Timer C)")

    def media_timeout(self, call_id: bytes) -> None:
        """The relay saw no media: BYE both parties of the dialog (as rtpengine+Kamailio)."""
        self.log.info("media timeout: ending call %r with BYE to both sides", call_id)
        for target, routes, lines in self.dialogs.byes(call_id):
            self.spawn(self._send_in_dialog(b"BYE", target, routes, lines))
        self.end_call(call_id)

    def end_unwanted(self, client: ClientTransaction, resp: Response) -> None:
        """ACK and BYE a 2xx nobody wants (a losing happy-eyeballs attempt answered too):
        the dialog is confirmed end to end (§13.2.2.4) and ended at once (§15.1.1)."""
        found = sh.contacts(resp)
        if isinstance(found, sh.Star) or not found or resp.to.tag is None:
            return
        target = format_uri(found[0].uri)
        rr = list(sh.record_routes(resp))
        sides = route_sides(rr, self.identity.is_us)
        # The route set toward the callee: the Record-Routes above ours, reversed (§12.1.2).
        routes = tuple(bytes(r) for r in reversed(sides[0] if sides else rr))
        req = client.request
        base = [
            (b"From", req.get(b"from") or b""),
            (b"To", resp.get(b"to") or b""),
            (b"Call-ID", resp.call_id),
            (b"Max-Forwards", b"70"),
        ]
        ack = [*base, (b"CSeq", b"%d ACK" % req.cseq.seq)]
        bye = [
            *base,
            (b"CSeq", b"%d BYE" % (req.cseq.seq + 1)),
            (b"Reason", b'SIP;cause=200;text="Answered on another address"'),
        ]
        self.spawn(self._send_in_dialog(b"ACK", target, routes, ack))
        self.spawn(self._send_in_dialog(b"BYE", target, routes, bye))

    async def _send_in_dialog(
        self,
        method: bytes,
        target: bytes,
        routes: tuple[bytes, ...],
        lines: list[tuple[bytes, bytes]],
    ) -> None:
        """Send our own in-dialog ACK (stateless) or BYE (client transaction)."""
        try:
            first = parse_name_addr(routes[0], "Route").uri if routes else parse_uri(target)
            if not isinstance(first, SipUri):
                return
            hop = await self._pick_hop(first)
            out = self.identity.listener_for(hop.transport, hop.ip)
            assert out is not None
            branch = hops.BRANCH_PREFIX + b"own-" + secrets.token_hex(8).encode()
            via = hops.via_value(hop.transport, self.identity.hostport_of(out, hop.ip), branch)
            headers = [(b"Via", via), *((b"Route", r) for r in routes), *lines]
            request = build_request(method, target, headers)
            if method == b"ACK":
                self._send(serialize(request), hop)
                return
            _, events = self.layer.start_client(request, hop, hop.reliable, self.clock())
            self.stats.byes_sent += 1
            self.dispatch(events)
        except Rtc64Error as exc:
            self.log.warning("%s to %r not sent: %s", method.decode(), target, exc)
