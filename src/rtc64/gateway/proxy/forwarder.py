"""The forwarder, the proxy's transaction user: branches, responses, CANCEL, ACK for 2xx.

Rules (RFC 3261 §16.6 forwarding, §16.7 responses, §16.10 CANCEL, §16.11 stateless ACK
forwarding; RFC 5658 double Record-Route; RFC 3581):

- ``forward`` takes the router's ``Forward`` decision: one ``Pending`` per server
  transaction, one branch per target; each target is resolved (``nexthop``, RFC 3263)
  and handed to racing, which says which hop each attempt goes to (``Launch``).
- An attempt is the received bytes spliced (``splice``): Request-URI, Route set,
  Max-Forwards, Record-Route, Path, our Via on top of the stamped previous one, and the
  SDP body rewritten by the media bridge when the call is relayed; then a new client
  transaction.
- Provisional responses (not 100) and every 2xx go upstream at once; the best final when
  every branch has completed (``forking``); a 2xx or 6xx cancels the pending branches.
  Responses of losing happy-eyeballs attempts are judged by racing (``RaceVerdict``).
- Call control hears what it needs (Timer C armed per INVITE attempt and provisional,
  dialogs confirmed by 2xx, calls ended by final errors and BYEs) and hands back the
  requests it wants sent (``OwnRequest``) and the branches whose Timer C fired.
- A response for no transaction of ours is forwarded statelessly when its top Via is ours.
- Loop guard: no response is ever sent to one of our own UDP sockets (dropped, counted).
- A request too large for UDP goes over TCP when the target allows it, and back to UDP
  when that connection fails (RFC 3261 §18.1.1, ``mtu``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from ipaddress import IPv4Address

from rtc64.errors import LocalProtocolError, RemoteProtocolError, Rtc64Error
from rtc64.gateway.identity import Identity, Listener
from rtc64.gateway.media import MediaBridge
from rtc64.gateway.proxy import hops, mtu, splice
from rtc64.gateway.proxy.branches import (
    CallHooks,
    Launch,
    Leg,
    OwnRequest,
    Pending,
    Plan,
    Racer,
    Sender,
    Spawn,
    flow_of,
    ip_of,
    listener_of,
)
from rtc64.gateway.proxy.forking import Branch, BranchState, ResponseContext, best_response
from rtc64.gateway.proxy.hops import Hop
from rtc64.gateway.proxy.nexthop import NextHops
from rtc64.gateway.proxy.router import Forward, Target
from rtc64.gateway.stats import ProxyStats
from rtc64.net.address import Host, address_text
from rtc64.net.endpoint import Flow, Transport
from rtc64.net.eyeballs import Action
from rtc64.sip.edit import Edit
from rtc64.sip.message import Request, Response, make_response
from rtc64.sip.nameaddr import parse_name_addr
from rtc64.sip.serializer import serialize
from rtc64.sip.transaction import TransactionLayer
from rtc64.sip.transaction_base import (
    ClientTimeout,
    Event,
    ResponseReceived,
    Send,
    StrayResponse,
    Terminated,
    TransportFailed,
)
from rtc64.sip.transaction_client import ClientTransaction, make_cancel
from rtc64.sip.transaction_server import ServerTransaction
from rtc64.sip.uri import SipUri, parse_uri

DIALOG_FORMING = frozenset((b"INVITE", b"SUBSCRIBE", b"REFER", b"NOTIFY"))


def _own_port(hop: Hop) -> Hop:
    """``hop`` marked as having no pinhole to keep (``Hop.own_port``)."""
    return Hop(hop.transport, hop.ip, hop.port, hop.flow, hop.server_name, own_port=True)


def _host_text(host: Host) -> str:
    """``str(host)``: an IPv4 address's text from the address cache (``ipaddress``
    writes it in Python, once per INVITE and BYE)."""
    if isinstance(host, IPv4Address):
        return address_text(host)
    return str(host)


def transport_reason(detail: str) -> bytes:
    """The reason phrase of a 503 for a transport failure: printable, one line, bounded
    (the detail may quote a peer's certificate)."""
    text = " ".join("".join(c if c.isprintable() else " " for c in detail).split())[:160]
    return ("Service Unavailable: " + text if text else "Service Unavailable").encode(
        "utf-8", "replace"
    )


class Forwarder:
    """Pending requests and their branches between the transaction layer and the wire."""

    def __init__(
        self,
        *,
        identity: Identity,
        layer: TransactionLayer,
        sender: Sender,
        nexthops: NextHops,
        racer: Racer,
        calls: CallHooks,
        realm: str,
        secret: bytes,
        clock: Callable[[], float],
        wall: Callable[[], float],
        spawn: Spawn,
        stats: ProxyStats,
        log: logging.Logger,
        on_events: Callable[[], None],
        media: MediaBridge | None = None,
    ) -> None:
        self.identity = identity
        self.layer = layer
        self.sender = sender
        self.nexthops = nexthops
        self.racer = racer
        self.calls = calls
        self.realm = realm
        self.secret = secret
        self.clock = clock
        self.wall = wall
        self.spawn = spawn
        self.stats = stats
        self.log = log
        self.media = media
        self._on_events = on_events
        self._pending: dict[ServerTransaction, Pending] = {}
        self._branches: dict[ClientTransaction, Leg] = {}
        self._upgraded: dict[ClientTransaction, Launch] = {}  # large requests sent over TCP
        self._stamp: tuple[Request, Flow, bytes | None] | None = None  # see ``stamped``
        self.in_flight = 0
        """Proxied requests still waiting for their final response (the overload measure;
        finished transactions lingering for retransmissions are cheap and not counted)."""

    # -- transaction-layer events ---------------------------------------------------------

    def dispatch(self, events: list[Event]) -> None:
        """Act on the events of our own calls into the transaction layer."""
        for ev in events:
            self.handle(ev)
        self._on_events()

    def handle(self, ev: Event) -> None:
        """One event (new requests and ACKs for 2xx go to the routing step instead)."""
        if isinstance(ev, Send):
            self.send(ev.data, ev.dest, ev.txn)
        elif isinstance(ev, ResponseReceived):
            self._branch_response(ev.txn, ev.response)
        elif isinstance(ev, StrayResponse):
            self._forward_stray(ev.response)
        elif isinstance(ev, ClientTimeout):
            self._branch_failed(ev.txn, 408, b"Request Timeout")
        elif isinstance(ev, TransportFailed):
            if isinstance(ev.txn, ClientTransaction):
                self._branch_failed(ev.txn, 503, transport_reason(ev.reason))
        elif isinstance(ev, Terminated):
            self._terminated(ev.txn)

    def send(self, data: bytes, dest: object, txn: object = None) -> None:
        """Bytes to a ``Hop`` through the transport layer (counted); a failure to send is
        reported back with ``txn`` as the handle (``Proxy.transport_failed``)."""
        assert isinstance(dest, Hop)
        if self.response_loops(data, dest):
            return
        self.stats.messages_out += 1
        if not self.sender.send(
            data,
            dest.transport,
            dest.ip,
            dest.port,
            flow=dest.flow,
            server_name=dest.server_name,
            handle=txn,
            own_port=dest.own_port,
        ):
            self.stats.send_failures += 1

    def response_loops(self, data: bytes, dest: Hop) -> bool:
        """Loop guard: a response whose destination is one of our own sockets (a Via
        sent-by naming us without rport, a spoofed source) is dropped and counted."""
        if not data.startswith(b"SIP/2.0 ") or dest.reliable:
            return False
        if not self.identity.is_own_socket(dest.transport, dest.ip, dest.port):
            return False
        self.stats.response_loops += 1
        self.log.debug("response to our own socket %s dropped (loop)", dest)
        return True

    def _terminated(self, txn: ClientTransaction | ServerTransaction) -> None:
        if isinstance(txn, ServerTransaction):
            pending = self._pending.pop(txn, None)
            if pending is not None:
                self._finish(pending)
        else:
            self._branches.pop(txn, None)
            self._upgraded.pop(txn, None)
            self.racer.terminated(txn)

    def _finish(self, pending: Pending) -> None:
        """The request got its final response upstream (or its transaction ended)."""
        if not pending.ctx.final_forwarded:
            pending.ctx.final_forwarded = True
            self.in_flight -= 1
            if pending.ctx.method != b"INVITE":
                # Retransmissions are absorbed by the transaction alone: forget it now
                # rather than when its Timer J ends (32 s of lingering state per request).
                self._pending.pop(pending.server, None)

    # -- our own responses ----------------------------------------------------------------

    def respond(self, server: ServerTransaction, resp: Response | bytes, status: int = 0) -> None:
        """Send a response on a server transaction (ours, or forwarded bytes)."""
        if isinstance(resp, Response):
            status, data = resp.status, serialize(resp)
            if resp.status >= 300:
                self.stats.errors_sent += 1
        else:
            data = resp
        try:
            events = self.layer.send_response(server, data, self.clock())
        except LocalProtocolError as exc:
            # e.g. a late provisional after the final: nothing to send (RFC 3261 §16.7).
            self.log.debug("response %d not sent: %s", status, exc.reason)
            return
        self.dispatch(events)

    def reply(
        self,
        server: ServerTransaction,
        status: int,
        reason: str | bytes | None = None,
        headers: tuple[tuple[bytes, bytes], ...] | list[tuple[bytes, bytes]] = (),
    ) -> None:
        """Answer the request of ``server`` ourselves."""
        text = reason.encode("utf-8", "replace") if isinstance(reason, str) else reason
        req = self.local_request(server)
        self.respond(server, make_response(req, status, text, headers=headers))

    @staticmethod
    def local_request(server: ServerTransaction) -> Request:
        """The request to build our own responses from: top Via stamped (RFC 3581 §4)."""
        dest = server.dest
        if isinstance(dest, Hop) and dest.flow is not None:
            return hops.with_stamped_via(server.request, dest.flow)
        return server.request

    def trying(self, server: ServerTransaction) -> None:
        """100 Trying for an INVITE (§16.2), before routing starts."""
        req = server.request
        self.respond(server, hops.trying_stamped(req, self.stamped(req, flow_of(server.dest))), 100)

    def stamped(self, req: Request, flow: Flow) -> bytes | None:
        """``hops.stamp_top_via(req, flow)``, remembered for the last request: the 100
        Trying and the forwarded INVITE need the same value (the request and the flow
        objects are held while remembered, so identity stands for equality)."""
        memo = self._stamp
        if memo is not None and memo[0] is req and memo[1] is flow:
            return memo[2]
        stamped = hops.stamp_top_via(req, flow)
        self._stamp = (req, flow, stamped)
        return stamped

    # -- forwarding -----------------------------------------------------------------------

    async def forward(self, server: ServerTransaction, flow: Flow, decision: Forward) -> None:
        """Proxy the request of ``server`` to every target of ``decision`` (§16.6)."""
        req = server.request
        pending = self._pending.get(server)
        if pending is None:
            pending = Pending(server, req, ResponseContext(req.method))
            self.in_flight += 1
            self._pending[server] = pending
        in_listener = listener_of(self.identity, flow)
        stamped = self.stamped(req, flow)
        rr = decision.record_route and req.method in DIALOG_FORMING and in_listener is not None
        pending.record_routed = rr
        if rr and req.to.tag is None:
            own_port = all(t.own_port for t in decision.targets)
            self.calls.begin(req, self.clock(), flow, own_port=own_port)
        path = None
        if decision.path:
            path = splice.path_for(self.identity, flow, ob=splice.outbound_register(req))
        # The router read every Route value (parsed each one): counting them is enough.
        received_routes = len(req.values(b"route"))
        for target in decision.targets:
            host = _host_text(target.hop.host)
            branch = Branch(len(pending.ctx.branches), target=host)
            pending.ctx.branches.append(branch)
            new_routes = None
            if len(target.routes) != received_routes or target.extra:
                new_routes = (*target.extra, *(bytes(r) for r in target.routes))
            plan = Plan(
                flow=flow,
                in_listener=in_listener if rr else None,
                stamped=stamped,
                new_uri=target.uri,
                routes=new_routes,
                path=path,
                tcp_ok=target.hop.param(b"transport") is None,
                callee_flow=target.flow,
            )
            leg = Leg(pending, branch, plan)
            try:
                candidates = await self.nexthops.candidates(target.hop)
                if target.own_port:
                    candidates = [_own_port(h) for h in candidates]
            except RemoteProtocolError as exc:
                self.log.info("no route to %s for %r: %s", host, req.call_id, exc.reason)
                self._complete(pending, branch, exc.status, None, exc.reason.encode())
                continue
            try:
                launch = await self.racer.start(leg, candidates, host)
            except OSError as exc:
                reason = f"Service Unavailable: {exc}"
                self._complete(pending, branch, 503, None, reason.encode("utf-8", "replace"))
                continue
            self.launch(launch)
        self._maybe_finish(pending)

    def launch(self, launch: Launch, *, upgrade: bool = True) -> None:
        """Send one attempt of a branch and tell racing what became of it; a large
        request may go over TCP instead of UDP (``mtu``), and back to UDP when that
        connection fails."""
        client = self._attempt(launch.leg, launch.hop, upgrade=upgrade)
        if client is not None and client.dest is not launch.hop:
            self._upgraded[client] = launch
        self.racer.launched(launch, client)

    def _attempt(self, leg: Leg, hop: Hop, *, upgrade: bool = False) -> ClientTransaction | None:
        """Forward one copy of the request to ``hop`` as a new client transaction."""
        pending, branch, plan = leg.pending, leg.branch, leg.plan
        req = pending.request
        out = self.identity.listener_for(hop.transport, hop.ip)
        if out is None:
            reason = f"Service Unavailable: no {hop.transport.value} listener for {hop.ip}"
            self._complete(pending, branch, 503, None, reason.encode())
            return None
        top_via = plan.stamped if plan.stamped is not None else req.values(b"via")[0]
        via = splice.our_via(self.identity, out, hop, req, top_via)
        try:
            body = self._media_body(req, plan.flow, hop)
        except Rtc64Error as exc:
            self.log.warning("media: cannot relay %r: %s", req.call_id, exc)
            self._complete(pending, branch, 503, None, b"Service Unavailable: no media relay ports")
            return None
        data = self._spliced(leg, out, hop, via, body)
        tcp_out = bigger = None
        if upgrade and plan.tcp_ok and len(data) > mtu.size_limit():  # rare: look TCP up
            tcp_out = self.identity.listener_for(Transport.TCP, hop.ip)
            bigger = mtu.tcp_instead(hop, len(data), tcp_ok=True, tcp_listener=tcp_out is not None)
        if bigger is not None and tcp_out is not None:
            self.stats.tcp_upgrades += 1
            self.log.debug("%d-byte request to %s goes over TCP (RFC 3261 §18.1.1)", len(data), hop)
            hop, out = bigger, tcp_out
            via = splice.our_via(self.identity, out, hop, req, top_via)
            data = self._spliced(leg, out, hop, via, body)
        forwarded = hops.forwarded_view(req, via, uri=plan.new_uri, routes=plan.routes)
        now = self.clock()
        client, events = self.layer.start_client(forwarded, hop, hop.reliable, now, data=data)
        branch.txn = client
        self.calls.arm_timer_c(leg, now)
        self._branches[client] = leg
        self.stats.forwarded += 1
        self.dispatch(events)
        return client

    def _spliced(self, leg: Leg, out: Listener, hop: Hop, via: bytes, body: bytes | None) -> bytes:
        """The bytes of one attempt: the received request spliced for ``hop`` (§16.6)."""
        req, plan = leg.pending.request, leg.plan
        record_route = None
        if plan.in_listener is not None:
            record_route = splice.record_route(
                self.identity, self.secret, in_l=plan.in_listener, flow=plan.flow, out_l=out,
                hop=hop, req=req, target=plan.new_uri if plan.new_uri is not None else req.uri,
                issued=int(self.wall()), callee_flow=plan.callee_flow,
            )  # fmt: skip
        return splice.forwarded(
            req,
            via=via,
            stamped=plan.stamped,
            body=body,
            new_uri=plan.new_uri,
            routes=plan.routes,
            drop=splice.own_credentials(req, self.realm),
            record_route=record_route,
            path=plan.path(out, hop.ip) if plan.path is not None else None,
        )

    async def forward_ack(self, req: Request, flow: Flow, target: Target) -> None:
        """Stateless forwarding of an ACK for a 2xx along its Route set (§16.11)."""
        hop = await self.nexthops.first(target.hop)
        if target.own_port:
            hop = _own_port(hop)
        out = self.identity.listener_for(hop.transport, hop.ip)
        assert out is not None
        stamped = hops.stamp_top_via(req, flow)
        below = stamped if stamped is not None else req.values(b"via")[0]
        data = splice.forwarded(
            req,
            via=splice.our_via(self.identity, out, hop, req, below),
            stamped=stamped,
            body=self._media_body(req, flow, hop),
            routes=[bytes(r) for r in target.routes],
        )
        self.send(data, hop)
        self.stats.forwarded += 1

    def _forward_stray(self, resp: Response) -> None:
        """A response for no transaction of ours: forward it if its top Via is ours."""
        if len(resp.vias) < 2 or not hops.is_our_via(resp.via, self.identity.is_our_sent_by):
            self.stats.dropped += 1
            return
        nxt = resp.vias[1]
        try:
            transport = Transport(nxt.transport.decode("ascii").lower())
        except ValueError:
            self.stats.dropped += 1
            return
        ip = nxt.received or (nxt.host if not isinstance(nxt.host, str) else None)
        if ip is None:
            self.stats.dropped += 1
            return
        port = nxt.rport or nxt.port or transport.default_port
        self.send(Edit(resp).remove_top_via().to_bytes(), Hop(transport, ip, port))

    # -- responses ------------------------------------------------------------------------

    def _branch_response(self, client: ClientTransaction, resp: Response) -> None:
        self._upgraded.pop(client, None)  # the TCP connection works: no UDP fallback
        verdict = self.racer.response(client, resp.status)
        if verdict is None:
            self._response(client, resp)
            return
        for stopped in verdict.stop:
            self._branches.pop(stopped, None)
        if verdict.action is Action.FORWARD:
            verdict.leg.branch.txn = client
            self._response(client, resp)
        elif verdict.action is Action.CANCEL:
            self._cancel_client(client)
        elif verdict.action is Action.ACK_BYE:
            self.log.warning(
                "happy eyeballs: a losing attempt to %s answered 2xx too; ACK and BYE it",
                verdict.leg.branch.target,
            )
            self.originate(self.calls.unwanted(client.request, resp))

    def _response(self, client: ClientTransaction, resp: Response) -> None:
        leg = self._branches.get(client)
        if leg is None:
            return
        pending, branch = leg.pending, leg.branch
        status = resp.status
        if status < 200:
            if status == 100:
                return
            branch.state = BranchState.PROCEEDING
            if branch.cancel_wanted and not branch.cancelled:
                self._send_cancel(branch)
            self.calls.arm_timer_c(leg, self.clock())
            if pending.record_routed and pending.request.to.tag is None:
                self.calls.answered(pending.request, resp, self.clock())
            if not pending.ctx.final_forwarded:
                self.respond(pending.server, self._upstream(pending, client, resp), status)
            return
        self._complete(pending, branch, status, resp, resp.reason)

    def _branch_failed(self, client: ClientTransaction, status: int, reason: bytes) -> None:
        upgraded = self._upgraded.pop(client, None)
        if upgraded is not None and status == 503:
            # §18.1.1: the TCP connection for a large request failed: UDP after all.
            self.stats.tcp_upgrade_fallbacks += 1
            self.log.info("TCP to %s failed (%s); request sent over UDP", client.dest, reason)
            self._branches.pop(client, None)
            self.racer.terminated(client)
            self.launch(upgraded, upgrade=False)
            return
        failure = self.racer.failed(client)
        leg = self._branches.pop(client, None)
        if failure is None or failure.winner:
            if leg is not None:
                self._complete(leg.pending, leg.branch, status, None, reason)
            return
        if failure.retry is not None:
            self.launch(failure.retry)
        elif failure.exhausted:
            self._complete(failure.leg.pending, failure.leg.branch, status, None, reason)

    def branch_final(
        self, pending: Pending, branch: Branch, status: int, resp: Response | None
    ) -> bool:
        """Record ``branch``'s final response (``resp``: None when forwarded from raw
        bytes); True when it is the branch's first. A first final to a BYE ends the call."""
        first_final = branch.state is not BranchState.COMPLETED
        branch.state = BranchState.COMPLETED
        branch.final_status = status
        branch.final = resp
        self.calls.disarm_timer_c(branch)
        if first_final and pending.ctx.method == b"BYE":
            self.calls.bye_answered(pending.request, status)
        return first_final

    def _complete(
        self, pending: Pending, branch: Branch, status: int, resp: Response | None, reason: bytes
    ) -> None:
        first_final = self.branch_final(pending, branch, status, resp)
        ctx = pending.ctx
        if 200 <= status < 300 and resp is not None:
            # Every 2xx goes upstream (forked INVITEs may get several, §16.7 step 5).
            self._finish(pending)
            client = branch.txn
            assert isinstance(client, ClientTransaction)
            self.respond(pending.server, self._upstream(pending, client, resp), status)
            if first_final and ctx.method == b"INVITE":
                if pending.record_routed and pending.request.to.tag is None:
                    self.calls.confirmed(pending.request, resp, self.clock(), client.dest)
                self._cancel_pending(ctx)
            return
        if not first_final:
            return
        branch.reason = reason
        if status >= 600 and ctx.method == b"INVITE":
            self._cancel_pending(ctx)
        self._maybe_finish(pending)

    def _maybe_finish(self, pending: Pending) -> None:
        ctx = pending.ctx
        if ctx.final_forwarded or not ctx.branches or not ctx.all_completed():
            return
        self._finish(pending)
        status, data = best_response(ctx, self.local_request(pending.server))
        self.respond(pending.server, data, status)
        req = pending.request
        if status >= 300 and req.to.tag is None and pending.record_routed:
            self.calls.end_dialog(req.call_id)
        if status >= 300 and req.method == b"INVITE" and req.to.tag is None:
            self.calls.end_call(req.call_id, status)

    def timer_c_fired(self, leg: Leg) -> None:
        """Timer C of an INVITE branch fired (§16.6 step 11): CANCEL it, fail it with 408."""
        branch = leg.branch
        if branch.state is BranchState.PROCEEDING:
            self._send_cancel(branch)
        else:
            branch.cancel_wanted = True
        client = branch.txn
        if isinstance(client, ClientTransaction):
            self._branches.pop(client, None)
        self._complete(leg.pending, branch, 408, None, b"Request Timeout (Timer C)")

    # -- CANCEL ---------------------------------------------------------------------------

    def cancel(self, server: ServerTransaction) -> None:
        """CANCEL (§9.2, §16.10): 200 to the CANCEL, CANCEL every pending branch."""
        invite = self.layer.find_invite_for_cancel(server.request)
        if invite is None:
            self.reply(server, 481, "Call/Transaction Does Not Exist")
            return
        self.reply(server, 200)
        pending = self._pending.get(invite)
        if pending is None:
            return
        pending.ctx.cancelled = True
        self._cancel_pending(pending.ctx)

    def _cancel_pending(self, ctx: ResponseContext) -> None:
        for branch in ctx.pending():
            if branch.state is BranchState.PROCEEDING:
                self._send_cancel(branch)
            else:
                branch.cancel_wanted = True

    def _send_cancel(self, branch: Branch) -> None:
        branch.cancelled = True
        if isinstance(branch.txn, ClientTransaction):
            self._cancel_client(branch.txn)

    def _cancel_client(self, client: ClientTransaction) -> None:
        hop = client.dest
        assert isinstance(hop, Hop)
        cancel = make_cancel(client.request)
        _, events = self.layer.start_client(cancel, hop, hop.reliable, self.clock())
        self.dispatch(events)

    # -- requests of our own --------------------------------------------------------------

    def originate(self, requests: list[OwnRequest]) -> None:
        """Send requests call control wants sent (each resolved on its own)."""
        for own in requests:
            self.spawn(self._originate(own))

    async def _originate(self, own: OwnRequest) -> None:
        """Our own in-dialog ACK (stateless) or BYE (client transaction)."""
        try:
            routes = own.routes
            first = parse_name_addr(routes[0], "Route").uri if routes else parse_uri(own.target)
            if not isinstance(first, SipUri):
                return
            hop = await self.nexthops.first(first)
            out = self.identity.listener_for(hop.transport, hop.ip)
            assert out is not None
            request = splice.own_request(own, self.identity, out, hop)
            if own.method == b"ACK":
                self.send(serialize(request), hop)
                return
            _, events = self.layer.start_client(request, hop, hop.reliable, self.clock())
            self.stats.byes_sent += 1
            self.dispatch(events)
        except Rtc64Error as exc:
            self.log.warning("%s to %r not sent: %s", own.method.decode(), own.target, exc)

    # -- media ----------------------------------------------------------------------------

    def _media_body(self, req: Request, flow: Flow, hop: Hop) -> bytes | None:
        if self.media is None:
            return None
        return self.media.request_body(req, flow.remote[0], hop.ip)

    def _upstream(self, pending: Pending, client: ClientTransaction, resp: Response) -> bytes:
        """A response to send upstream: our Via removed, SDP rewritten if relayed."""
        edit = Edit(resp).remove_top_via()
        if self.media is not None:
            try:
                body = self.media.response_body(
                    pending.request, resp, ip_of(client.dest), ip_of(pending.server.dest)
                )
            except Rtc64Error as exc:
                self.log.warning("media: answer for %r not relayed: %s", resp.call_id, exc)
                body = None
            if body is not None:
                edit.set_body(body)
        return edit.to_bytes()
