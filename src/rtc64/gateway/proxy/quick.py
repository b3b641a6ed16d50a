"""Responses forwarded from their raw bytes: the proxy's reply fast path.

Rules (RFC 3261 §16.7, §17.1.3; RFC 6026 §7-§8; Kamailio's tm forwards replies this way):

- A UDP response of the plain shape ``sip.peek.peek_response`` reads (one value on the
  top Via line, a branch, one CSeq/Call-ID/From/To, an exact Content-Length) with a 1xx
  or a 2xx is matched to its client transaction by branch and CSeq
  method (§17.1.3) and, when everything below holds, forwarded upstream with its top Via
  line cut out, without building the message model:
  * the transaction is one of this forwarder's branches, not an attempt of a
    happy-eyeballs race (racing judges those), and its timers are not overdue;
  * the response comes from the transport, address and port the request went to, with
    the request's Call-ID and CSeq number;
  * it has no body, or the media bridge would leave it untouched
    (``MediaBridge.leaves_response``: no relay session, no offer kept for a late relay, no
    NAT64 translation for the call); a body to rewrite takes the full path;
  * when the request is a record-routed dialog-forming one, its To, first Contact and
    Record-Route entries parse (the dialog learns them, as on the full path).
  Anything else returns False before any state changed: the caller parses the message
  and the usual path decides (stray responses, CANCEL, non-2xx finals, races,
  retransmissions past the transaction's end).
- A 100 Trying so matched is absorbed: the client transaction hears it (Timer A/E stop,
  RFC 3261 §17.1.1.2, §17.1.2.2), nothing is forwarded (§16.7 step 5), as on the full
  path; its body is not looked at.
- What the full path does after matching is done here in the same order: the client
  transaction runs the status (an absorbed retransmission stops there), the branch
  becomes PROCEEDING (a wanted CANCEL is sent, Timer C re-armed, the early dialog
  learnt, the 1xx forwarded while no final went upstream) or COMPLETED (Timer C off, a
  BYE's dialog ended, the 2xx forwarded, the dialog confirmed and pending branches
  cancelled on the first 2xx to an INVITE; 2xx retransmissions in ACCEPTED forwarded).
"""

from __future__ import annotations

from rtc64.errors import RemoteProtocolError
from rtc64.gateway.proxy.forking import BranchState
from rtc64.gateway.proxy.forwarder import Forwarder
from rtc64.gateway.proxy.hops import Hop
from rtc64.net.address import unmap
from rtc64.net.endpoint import Flow, Transport
from rtc64.sip.headers import split_list
from rtc64.sip.nameaddr import NameAddr, parse_name_addr
from rtc64.sip.peek import RawResponse
from rtc64.sip.transaction_client import ClientTransaction

Learnt = tuple[NameAddr, NameAddr | None, list[NameAddr]]
"""A response's To, first Contact and Record-Route entries."""


def _learnt(raw: RawResponse) -> Learnt:
    """To, first Contact, Record-Route entries of ``raw``; raises on a bad value."""
    to = parse_name_addr(raw.to, "To")
    contact = None
    if raw.contacts:
        first = split_list(raw.contacts[0], "Contact")
        if first and first[0].strip() != b"*":
            contact = parse_name_addr(first[0], "Contact")
    rrs = [
        parse_name_addr(v, "Record-Route")
        for line in raw.record_routes
        for v in split_list(line, "Record-Route")
    ]
    return to, contact, rrs


def forward_raw_response(
    fw: Forwarder, raw: RawResponse, data: bytes, flow: Flow, now: float
) -> bool:
    """Forward the raw response ``data`` (read as ``raw``) as the rules above say; False:
    not taken, nothing changed."""
    status = raw.status
    if status >= 300 or flow.transport is not Transport.UDP:
        return False
    client = fw.layer.client_for(raw.branch, raw.method)
    if client is None or fw.racer.racing(client):
        return False
    leg = fw._branches.get(client)
    hop = client.dest
    if leg is None or not isinstance(hop, Hop) or hop.transport is not Transport.UDP:
        return False
    if hop.port != flow.remote[1] or unmap(hop.ip) != unmap(flow.remote[0]):
        return False
    sent = client.request
    if raw.call_id != sent.call_id or raw.seq != sent.cseq.seq:
        return False
    if status == 100:
        return _absorb_trying(fw, client, now)
    pending, branch = leg.pending, leg.branch
    req = pending.request
    if raw.body and fw.media is not None and not fw.media.leaves_response(req, hop.ip):
        return False
    learn = pending.record_routed and req.to.tag is None
    learnt: Learnt | None = None
    if learn and (status < 200 or req.method == b"INVITE"):
        try:
            learnt = _learnt(raw)
        except RemoteProtocolError:
            return False
    ran = fw.layer.receive_status(client, status, now)
    if ran is None:
        return False
    seen, events = ran
    if seen:
        fw._upgraded.pop(client, None)  # the TCP connection works: no UDP fallback
        upstream = raw.without_top_via(data)
        if status < 200:
            branch.state = BranchState.PROCEEDING
            if branch.cancel_wanted and not branch.cancelled:
                fw._send_cancel(branch)
            fw.calls.arm_timer_c(leg, now)
            if learnt is not None:
                to, contact, rrs = learnt
                fw.calls.learnt(
                    req, status, to=to, to_value=raw.to, contact=contact, record_routes=rrs,
                    now=now,
                )  # fmt: skip
            if not pending.ctx.final_forwarded:
                fw.respond(pending.server, upstream, status)
        else:
            first_final = fw.branch_final(pending, branch, status, None)
            ctx = pending.ctx
            fw._finish(pending)
            fw.respond(pending.server, upstream, status)
            if first_final and ctx.method == b"INVITE":
                if learnt is not None:
                    to, contact, rrs = learnt
                    fw.calls.learnt(
                        req, status, to=to, to_value=raw.to, contact=contact,
                        record_routes=rrs, now=now, hop=hop,
                    )  # fmt: skip
                fw._cancel_pending(ctx)
    fw.dispatch(events)
    return True


def _absorb_trying(fw: Forwarder, client: ClientTransaction, now: float) -> bool:
    """A 100 Trying from the next hop: the client transaction hears it (Timer A/E stop,
    PROCEEDING), nothing goes upstream (§16.7 step 5), as on the full path."""
    ran = fw.layer.receive_status(client, 100, now)
    if ran is None:
        return False
    seen, events = ran
    if seen:
        fw._upgraded.pop(client, None)  # the TCP connection works: no UDP fallback
    fw.dispatch(events)
    return True
