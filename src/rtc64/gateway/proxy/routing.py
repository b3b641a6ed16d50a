"""The routing step: the look-ups between the router's decisions, then the forwarder.

Rules (RFC 3261 §16.3-§16.6, §22; RFC 3261 §10.3 via ``register``):

- ``route`` runs once per new server transaction (CANCEL aside): the pure ``Router``
  decides; when it asks, this step admits in-dialog requests (trusted source, a live
  dialog in call control, or valid credentials; else 403, counted), authenticates
  (``Authenticator``: 407 for requests, 401 for REGISTER, challenges counted), looks
  bindings up in the location store, or runs the registrar; then the forwarder replies
  or forwards. It holds no state of its own.
- A decision that fails (a malformed header found late, a DNS error surfacing as a
  ``RemoteProtocolError``) is answered with its status; anything unexpected with 500,
  logged, so one bad request never stops the proxy.
- A REGISTER for the registrar is answered without a server transaction (``register``),
  as Kamailio's registrar and ``www_challenge`` over ``sl`` do: nothing lingers for
  Timer J. Without credentials from an untrusted source it gets 401 (403 while its
  source is blocked) at once (``challenge``): a retransmission gets another 401 with a
  fresh nonce (any of them verifies). Otherwise it is authenticated and applied in a
  task that answers when the binding is stored; a retransmission of one already applied
  is recognised by the registrar (same Call-ID and CSeq as the stored binding, see
  ``location.registrar``) and answered with the same 200, before authentication (its
  nonce count was used once). The To tag of every stateless answer is a hash of the
  request (RFC 3261 §8.2.7: the same for a retransmission). REGISTERs in upstream mode,
  in a dialog, or for a domain not served here keep the stateful path.
- ACKs for 2xx (``ack``) are forwarded statelessly along their Route set, or dropped and
  counted when the Route set is not ours, lacks the call's token, or (from an untrusted
  source) belongs to no live dialog; an ACK never carries credentials.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

from rtc64.errors import RemoteProtocolError, Rtc64Error
from rtc64.gateway.auth import Authenticator
from rtc64.gateway.calllog import RegistrationLog
from rtc64.gateway.identity import Identity
from rtc64.gateway.location.register import (
    AorTurns,
    RecentBranches,
    RegisterReply,
    aor_refusal,
    find_bindings,
    register_reply,
)
from rtc64.gateway.location.registrar import RegistrarPolicy
from rtc64.gateway.location.store import LocationStore
from rtc64.gateway.proxy import hops
from rtc64.gateway.proxy.branches import Spawn, flow_of, listener_of
from rtc64.gateway.proxy.calls import CallControl
from rtc64.gateway.proxy.forwarder import Forwarder
from rtc64.gateway.proxy.router import (
    Admit,
    Authenticate,
    Decision,
    Forward,
    Lookup,
    Register,
    Reply,
    Router,
)
from rtc64.gateway.stats import ProxyStats
from rtc64.net.endpoint import Flow
from rtc64.sip.message import Request
from rtc64.sip.transaction_server import ServerTransaction


class Routing:
    """Drives one request from the router's first decision to the forwarder."""

    def __init__(
        self,
        *,
        router: Router,
        forwarder: Forwarder,
        calls: CallControl,
        identity: Identity,
        auth: Authenticator,
        store: LocationStore,
        policy: RegistrarPolicy,
        clock: Callable[[], float],
        wall: Callable[[], float],
        stats: ProxyStats,
        log: logging.Logger,
        spawn: Spawn,
    ) -> None:
        self.router = router
        self.forwarder = forwarder
        self.calls = calls
        self.identity = identity
        self.auth = auth
        self.store = store
        self.policy = policy
        self.clock = clock
        self.wall = wall
        self.stats = stats
        self.log = log
        self.spawn = spawn
        self.turns = AorTurns()  # REGISTERs of one AOR wait for each other
        self.recent = RecentBranches()  # REGISTERs taken lately: retransmissions to absorb
        self.registrations = RegistrationLog(log.getChild("registrar"))  # a line per change

    async def route(self, server: ServerTransaction) -> None:
        """Route the request of ``server``; every failure ends in a response."""
        try:
            await self._route(server)
        except RemoteProtocolError as exc:
            if not server.terminated:
                self.forwarder.reply(server, exc.status, exc.reason)
        except Exception:
            self.log.exception("proxy: error routing %s", server.request.method.decode())
            if not server.terminated:
                self.forwarder.reply(server, 500, "Server Internal Error")

    async def _route(self, server: ServerTransaction) -> None:
        req = server.request
        flow = flow_of(server.dest)
        source = flow.remote[0]
        trusted = self.auth.is_trusted(source)
        decision: Decision = self.router.route(req, trusted=trusted)
        if isinstance(decision, Admit):
            why = await self._admit(req, flow, decision, trusted)
            if why is not None:
                self.forwarder.reply(server, 403, why)
                return
            own = self.calls.in_dialog(req, self.clock())  # CSeqs, targets; a BYE frees media
            decision = self.router.in_dialog(decision, flow, own_port=own)
        if isinstance(decision, Authenticate):
            if not trusted:  # a trusted source passes unasked (``Authenticator.precheck``)
                verdict = await self.auth.check(req, source, self.wall(), proxy=True)
                if not verdict.ok:
                    self.stats.auth_challenges += 1
                    self.forwarder.reply(server, verdict.status, verdict.reason, verdict.headers)
                    return
            decision = self.router.after_auth(decision)
        if isinstance(decision, Lookup):
            bindings = await find_bindings(self.store, decision.keys, self.wall())
            decision = self.router.bound(decision, bindings)
        if isinstance(decision, Forward):
            await self.forwarder.forward(server, flow, decision)
        elif isinstance(decision, Reply):
            self.forwarder.reply(server, decision.status, decision.reason, decision.headers)
        elif isinstance(decision, Register):
            await self._register(server, flow)
        else:  # pragma: no cover - every decision is acted on above
            raise AssertionError(decision)

    def register(self, req: Request, flow: Flow, hop: hops.Hop) -> bool:
        """Take a REGISTER for the registrar without a server transaction (see the rules):
        challenged at once, or applied by a task that answers when the binding is stored.
        False when it takes the stateful path: upstream mode, in a dialog, not for the
        registrar (the router answers or forwards it)."""
        if req.method != b"REGISTER" or req.to.tag is not None or self.router.upstream:
            return False
        trusted = self.auth.is_trusted(flow.remote[0])
        if not isinstance(self.router.route(req, trusted=trusted), Register):
            return False
        if not trusted:
            challenge = self.challenge(req, flow)  # 401 without credentials, 403 if blocked
            if challenge is not None:
                self.stats.errors_sent += 1
                self.forwarder.send(challenge, hop)
                return True
        branch = req.via.branch
        if branch is not None:
            self.recent.add(branch)
        self.spawn(self._register_stateless(req, flow, hop, trusted))
        return True

    def challenge(self, req: Request, flow: Flow) -> bytes | None:
        """The stateless answer to a REGISTER from a source that is blocked (403) or
        that sent no credentials (401), or None when credentials decide (or the source
        is trusted): the source's block is checked before anything is read."""
        source = flow.remote[0]
        verdict = self.auth.precheck(req, source, self.wall(), proxy=False)
        if verdict is None or verdict.ok:
            return None
        self.stats.auth_challenges += 1
        self.stats.stateless_replies += 1
        reason = verdict.reason.encode("utf-8", "replace")
        reply = RegisterReply(verdict.status, reason, verdict.headers)
        return reply.wire(req, self.stateless_tag(req), hops.stamp_top_via(req, flow))

    def stateless_tag(self, req: Request) -> bytes:
        """A To tag that is the same for every retransmission of ``req`` (RFC 3261 §8.2.7,
        §19.3) and tells nothing about our secret: keyed BLAKE2b over the top Via's
        branch, the Call-ID, the From tag and the CSeq."""
        mac = hashlib.blake2b(digest_size=8, key=self.router.secret[:64], person=b"rtc64 to-tag")
        for part in (req.via.branch or b"", req.call_id, req.from_.tag or b""):
            mac.update(b"%d:" % len(part))
            mac.update(part)
        mac.update(b"%d" % req.cseq.seq)
        return mac.hexdigest().encode("ascii")

    async def _register(self, server: ServerTransaction, flow: Flow) -> None:
        """A REGISTER for a local domain through its server transaction (a REGISTER
        ``register`` did not take: none the router sends to the registrar today)."""
        req = server.request
        trusted = self.auth.is_trusted(flow.remote[0])
        reply = await self._registrar(req, flow, trusted)
        self.forwarder.respond(server, reply.response(hops.with_stamped_via(req, flow)))

    async def _register_stateless(
        self, req: Request, flow: Flow, hop: hops.Hop, trusted: bool
    ) -> None:
        """The registrar's answer to ``req``, sent without a transaction; every failure
        ends in a response (as ``route``)."""
        try:
            reply = await self._registrar(req, flow, trusted)
        except RemoteProtocolError as exc:
            reply = RegisterReply(exc.status, exc.reason.encode("utf-8", "replace"))
        except Exception:
            self.log.exception("proxy: error handling a REGISTER")
            reply = RegisterReply(500, b"Server Internal Error")
        if reply.status >= 300:
            self.stats.errors_sent += 1
        self.stats.stateless_replies += 1
        data = reply.wire(req, self.stateless_tag(req), hops.stamp_top_via(req, flow))
        self.forwarder.send(data, hop)

    async def _registrar(self, req: Request, flow: Flow, trusted: bool) -> RegisterReply:
        """A REGISTER for a local domain: authenticate (401), check the AOR is the user's
        (403 otherwise, ``register.aor_refusal``), then the registrar; a recognised
        retransmission is answered before authentication (``register_reply``). The
        caller writes the answer with the top Via stamped (RFC 3581 §4)."""
        source = flow.remote[0]

        async def authorize() -> RegisterReply | None:
            verdict = await self.auth.check(req, source, self.wall(), proxy=False)
            if not verdict.ok:
                self.stats.auth_challenges += 1
                reason = verdict.reason.encode("utf-8", "replace")
                return RegisterReply(verdict.status, reason, verdict.headers)
            refusal = aor_refusal(req, verdict.user, verdict.aors, self.identity.is_local_uri)
            if refusal is None:
                return None
            # A REGISTER whose AOR is not the authenticated user's (hijack attempt).
            self.stats.registrations_forbidden += 1
            self.log.warning("registrar: REGISTER from %s refused: %s", flow, refusal)
            return RegisterReply(403, refusal.encode("utf-8", "replace"))

        listener = listener_of(self.identity, flow)
        name = listener.name() if listener else f"{flow.transport.value}:?"
        resp = await register_reply(
            req,
            flow,
            listener=name,
            store=self.store,
            policy=self.policy,
            now=self.wall(),
            keys=self.identity.aor_keys(req.to.uri),
            gruu_secret=self.router.secret,
            on_change=lambda old, new: self.registrations.changed(old, new, self.wall()),
            authorize=None if trusted else authorize,
            turns=self.turns,
        )
        self.stats.registrations += resp.status == 200
        if resp.status == 503:
            self.stats.registrations_too_many += 1
            self.log.warning("registrar: REGISTER from %s refused: too many contacts", flow)
        elif resp.status == 439:
            self.stats.registrations_first_hop += 1
        return resp

    async def _admit(self, req: Request, flow: Flow, admit: Admit, trusted: bool) -> str | None:
        """None when an in-dialog request with our signed Route may be relayed: from a
        trusted source, as part of a live dialog, or (not ACK) with valid credentials."""
        if trusted:
            return None
        routed = (r.uri for r in admit.routes)
        why = self.calls.admit(
            req, admit.uri, routed, admit.issued, wall=self.wall(), now=self.clock()
        )
        if why is None:
            return None
        if req.method != b"ACK" and req.has(b"proxy-authorization"):
            verdict = await self.auth.check(req, flow.remote[0], self.wall(), proxy=True)
            if verdict.ok:
                return None
        self.stats.in_dialog_refused += 1
        method = req.method.decode("ascii", "replace")
        self.log.info("in-dialog %s for %r from %s refused: %s", method, req.call_id, flow, why)
        return why

    async def ack(self, req: Request, flow: Flow) -> None:
        """An ACK for a 2xx (§16.11): along its Route set if we recorded it, else dropped."""
        try:
            signed = self.router.ack(req)
            trusted = self.auth.is_trusted(flow.remote[0])
            why = (
                signed if isinstance(signed, str) else await self._admit(req, flow, signed, trusted)
            )
            if why is not None or isinstance(signed, str):
                self.stats.dropped += 1
                self.log.info("ACK for %r from %s dropped: %s", req.call_id, flow, why)
                return
            own = self.calls.in_dialog(req, self.clock())
            decision = self.router.in_dialog(signed, flow, own_port=own)
            if isinstance(decision, Reply):
                raise RemoteProtocolError(decision.reason or "", decision.status)
            assert isinstance(decision, Forward)
            await self.forwarder.forward_ack(req, flow, decision.targets[0])
        except Rtc64Error as exc:
            self.stats.dropped += 1
            self.log.debug("ACK not forwarded: %s", exc)
