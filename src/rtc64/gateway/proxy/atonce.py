"""In-dialog requests other than ACK routed at once, without the routing coroutine.

Rules (RFC 3261 §16.3-§16.6, §12.2.2; Kamailio's ``loose_route`` + ``t_relay`` route an
in-dialog request so):

- An in-dialog request (To tag) of a method in ``AT_ONCE`` (a BYE above all) is parsed
  and gets its server transaction as usual (retransmissions are the transaction
  layer's); then ``forward_in_dialog`` decides at once, instead of the routing step's
  coroutine and the forwarder's resolving and racing, when every check of the full
  path (``Router._route``, ``Routing._admit``, ``Router.in_dialog``) passes on the
  parsed request, in its order: Max-Forwards above 0 (and present), no Proxy-Require,
  no Via of ours below the top (the loop check), the Request-URI not ours (no
  strict-router fix-up), the first Route entries ours and signed for this call, the
  dialog admitting an untrusted source, and the next hop an IP literal toward which we
  have a listener (``NextHops.usable_literal``: no DNS, no NAT64, no WebSocket).
- Anything else returns False before any state changed: the routing step decides, and
  answers and counts its refusals (403, 483, 420, 430...).
- Taken, it does the full path's bookkeeping (``CallControl.in_dialog``: CSeq, targets,
  a BYE's media released; the worker's own port toward a callee first reached from it)
  and forwards through ``Forwarder.launch``: the same ``Pending``, branch, client
  transaction (Timer E/F), spliced bytes and response handling (``quick.py`` or the
  full path: the BYE's final ends the dialog and the call log's call) as the routing
  step's ``Forwarder.forward`` with one target and no Record-Route.
"""

from __future__ import annotations

from rtc64.errors import RemoteProtocolError
from rtc64.gateway.proxy import hops
from rtc64.gateway.proxy.branches import Launch, Leg, Pending, Plan, flow_of
from rtc64.gateway.proxy.forking import Branch, ResponseContext
from rtc64.gateway.proxy.forwarder import Forwarder, _own_port
from rtc64.gateway.proxy.router import Router
from rtc64.gateway.proxy.routing import Routing
from rtc64.sip import headers as sh
from rtc64.sip.transaction_server import ServerTransaction
from rtc64.sip.uri import SipUri

AT_ONCE = frozenset(b"BYE INFO UPDATE PRACK NOTIFY SUBSCRIBE REFER MESSAGE OPTIONS".split())
"""In-dialog methods ``forward_in_dialog`` may route at once (not INVITE, ACK, CANCEL,
REGISTER: their paths differ)."""


def forward_in_dialog(routing: Routing, server: ServerTransaction) -> bool:
    """Route the in-dialog request of the new ``server`` at once, as the rules above
    say; False: not taken, nothing changed (the routing step decides)."""
    req = server.request
    if req.method not in AT_ONCE or req.to.tag is None or not req.max_forwards:
        return False
    fw: Forwarder = routing.forwarder
    router: Router = routing.router
    identity = fw.identity
    if req.has(b"proxy-require"):
        return False
    if len(req.vias) > 1 and any(hops.is_our_via(v, identity.is_our_sent_by) for v in req.vias):
        return False  # possibly a loop: the full path checks it
    flow = flow_of(server.dest)
    uri = req.uri
    try:
        routes = list(sh.routes(req))
        if isinstance(uri, SipUri) and identity.is_us(uri):
            return False  # a strict router's Request-URI: the full path restores it
        popped = router.pop_ours(routes)
        if not popped:
            return False
        issued = hops.tokens_issued(router.secret, req, popped)
        if issued is None:
            return False
        now = routing.clock()
        if not routing.auth.is_trusted(flow.remote[0]):
            why = routing.calls.admit(
                req, uri, (r.uri for r in routes), issued, wall=routing.wall(), now=now
            )
            if why is not None:
                return False
        hop_uri, pinhole = router._next_hop(list(routes), uri, popped, flow)
    except RemoteProtocolError:
        return False
    hop = fw.nexthops.usable_literal(hop_uri)
    if hop is None:
        return False
    # From here on the full path's steps, in its order (``Routing._route``, then
    # ``Forwarder.forward`` with one target and no Record-Route).
    if routing.calls.in_dialog(req, now) and not pinhole:
        hop = _own_port(hop)
    pending = Pending(server, req, ResponseContext(req.method))
    fw.in_flight += 1
    fw._pending[server] = pending
    branch = Branch(0, target=str(hop_uri.host))
    pending.ctx.branches.append(branch)
    plan = Plan(
        flow=flow, in_listener=None, stamped=hops.stamp_top_via(req, flow), new_uri=None,
        routes=tuple(bytes(r) for r in routes), path=None,
        tcp_ok=hop_uri.param(b"transport") is None,
    )  # fmt: skip
    fw.launch(Launch(Leg(pending, branch, plan), hop))
    fw._maybe_finish(pending)
    return True
