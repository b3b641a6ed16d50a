"""ACKs for 2xx forwarded from their raw bytes: the proxy's in-dialog fast path.

Rules (RFC 3261 §16.4, §16.6, §16.11, §17.2.3; Kamailio's ``loose_route`` + ``t_relay``
forward an ACK for a 2xx statelessly the same way):

- A UDP ACK of the plain shape ``sip.peek.peek_request`` reads is forwarded without
  building the message model when every check of the full path (``routing.Routing.ack``)
  passes on its raw fields, in the same order and with the same code:
  * no live server transaction has its branch (an ACK for a non-2xx final, or one
    that reuses the INVITE's branch, is the transaction layer's), it has a To tag, no
    credentials and no Proxy-Require, Max-Forwards above 0, and no body when the media
    bridge is on (an answer in the ACK is rewritten on the full path);
  * its Route entries parse, the first ones name us (``Router.pop_ours``) and each of
    ours carries this call's token (``hops.tokens_issued_for`` over the Call-ID and
    both tags);
  * from an untrusted source, the dialog admits it (``DialogTracker.admit_tags``: a
    live dialog, its tags, the Request-URI among the other party's targets, the Routes
    after ours on its side); trusted sources are admitted as on the full path;
  * the next hop (``Router._next_hop``: a flow token of ours, the next Route, or the
    Request-URI) is an IP literal toward which we have a listener
    (``NextHops.usable_literal``): no DNS, no NAT64 synthesis, no WebSocket.
  Anything else returns False before any state changed: the caller parses the message
  and the full path decides (refusals are counted and logged there, once).
- What the full path does then is done here: the dialog's CSeq and expiry
  (``seen_tags``), the worker's own port toward a callee first reached from it, and
  the bytes §16.6 asks for (``splice.forwarded``'s, byte for byte): our Via on top of
  the caller's (stamped with ``received``/``rport``), Max-Forwards minus one, our
  Route lines removed and the entries after ours written one per line at the end of
  the header section.
"""

from __future__ import annotations

from rtc64.errors import RemoteProtocolError
from rtc64.gateway.proxy import hops, splice
from rtc64.gateway.proxy.forwarder import Forwarder, _own_port
from rtc64.gateway.proxy.router import Router
from rtc64.gateway.proxy.routing import Routing
from rtc64.net.endpoint import Flow
from rtc64.sip.headers import split_list
from rtc64.sip.nameaddr import NameAddr, parse_name_addr
from rtc64.sip.parser import parse_request_line
from rtc64.sip.peek import RawRequest
from rtc64.sip.via import parse_via


def _routes(raw: RawRequest) -> list[NameAddr]:
    """The Route entries of ``raw`` (``sip.headers.routes``); raises on a bad one."""
    return [
        parse_name_addr(v, "Route", angle=True)
        for line in raw.routes
        for v in split_list(line, "Route")
    ]


def forward_raw_ack(routing: Routing, raw: RawRequest, data: bytes, flow: Flow) -> bool:
    """Forward the raw ACK ``data`` (read as ``raw``) as the rules above say; False: not
    taken, nothing changed."""
    fw: Forwarder = routing.forwarder
    if (
        raw.method != b"ACK"
        or raw.guarded
        or raw.to_tag is None
        or not raw.max_forwards
        or not raw.routes
        or (raw.body and fw.media is not None)
        or fw.layer.serves_branch(raw.branch)
    ):
        return False
    router: Router = routing.router
    tags = (raw.from_tag, raw.to_tag)
    try:
        entries = _routes(raw)
        popped = router.pop_ours(entries)
        if not popped:
            return False
        issued = hops.tokens_issued_for(router.secret, raw.call_id, tags, popped)
        if issued is None:
            return False
        _, uri = parse_request_line(data[: data.find(b"\r\n")])
        dialogs = routing.calls.dialogs
        now = routing.clock()
        if not routing.auth.is_trusted(flow.remote[0]):
            why = dialogs.admit_tags(
                raw.call_id, *tags, uri, (r.uri for r in entries), issued=issued,
                wall=routing.wall(), now=now,
            )  # fmt: skip
            if why is not None:
                return False
        hop_uri, pinhole = router._next_hop(entries, uri, popped, flow)
        hop = fw.nexthops.usable_literal(hop_uri)
        if hop is None:
            return False
        top = parse_via(raw.top_via)
    except RemoteProtocolError:
        return False
    out = fw.identity.listener_for(hop.transport, hop.ip)
    if out is None:  # pragma: no cover - usable_literal found one
        return False
    # From here on the full path's steps, in its order (``Routing.ack``).
    dialogs.seen_tags(raw.call_id, *tags, raw.seq, now)
    if dialogs.own_port_tags(raw.call_id, *tags, now) and not pinhole:
        hop = _own_port(hop)
    stamped = hops.stamp_via(top, flow)
    below = raw.top_via if stamped is None else stamped
    hashed = hops.loop_hash_of(
        (bytes(uri), raw.from_tag or b"", raw.to_tag or b"", raw.call_id, b"%d" % raw.seq,
         below, b"", b"")
    )  # fmt: skip
    ours = splice.via_toward(fw.identity, out, hop, hops.branch_of(hashed))
    caller = data[raw.via_start : raw.via_end] if stamped is None else b"Via: %s\r\n" % stamped
    cuts = [
        (raw.via_start, raw.via_end, b"Via: " + ours + b"\r\n" + caller),
        (raw.mf_start, raw.mf_end, b"%s: %d\r\n" % (raw.mf_name, raw.max_forwards - 1)),
        *((start, end, b"") for start, end in raw.route_spans),
        (raw.head_end, raw.head_end, b"".join(b"Route: %s\r\n" % bytes(r) for r in entries)),
    ]
    cuts.sort()
    parts: list[bytes] = []
    cursor = 0
    for start, end, repl in cuts:
        parts.append(data[cursor:start])
        parts.append(repl)
        cursor = end
    parts.append(data[cursor:])
    fw.send(b"".join(parts), hop)
    fw.stats.forwarded += 1
    return True
