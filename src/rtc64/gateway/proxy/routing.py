"""The routing step: the look-ups between the router's decisions, then the forwarder.

Rules (RFC 3261 §16.3-§16.6, §22; RFC 3261 §10.3 via ``register``):

- ``route`` runs once per new server transaction (CANCEL aside): the pure ``Router``
  decides; when it asks, this step authenticates (``Authenticator``: 407 for requests,
  401 for REGISTER, challenges counted), looks bindings up in the location store, or runs
  the registrar; then the forwarder replies or forwards. It holds no state of its own.
- A decision that fails (a malformed header found late, a DNS error surfacing as a
  ``RemoteProtocolError``) is answered with its status; anything unexpected with 500,
  logged, so one bad request never stops the proxy.
- ACKs for 2xx (``ack``) are forwarded statelessly along their Route set, or dropped and
  counted when the Route set is not ours or lacks the call's token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from rtc64.errors import RemoteProtocolError, Rtc64Error
from rtc64.gateway.auth import Authenticator
from rtc64.gateway.identity import Identity
from rtc64.gateway.proxy.branches import flow_of, listener_of
from rtc64.gateway.proxy.forwarder import Forwarder
from rtc64.gateway.proxy.router import (
    Authenticate,
    Decision,
    Forward,
    Lookup,
    Register,
    Reply,
    Router,
)
from rtc64.gateway.register import handle_register
from rtc64.gateway.registrar import RegistrarPolicy
from rtc64.gateway.stats import ProxyStats
from rtc64.gateway.store import LocationStore
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
        identity: Identity,
        auth: Authenticator,
        store: LocationStore,
        policy: RegistrarPolicy,
        wall: Callable[[], float],
        stats: ProxyStats,
        log: logging.Logger,
    ) -> None:
        self.router = router
        self.forwarder = forwarder
        self.identity = identity
        self.auth = auth
        self.store = store
        self.policy = policy
        self.wall = wall
        self.stats = stats
        self.log = log

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
        decision: Decision = self.router.route(req, trusted=self.auth.is_trusted(source))
        if isinstance(decision, Authenticate):
            verdict = await self.auth.check(req, source, self.wall(), proxy=True)
            if not verdict.ok:
                self.stats.auth_challenges += 1
                self.forwarder.reply(server, verdict.status, verdict.reason, verdict.headers)
                return
            decision = self.router.after_auth(decision)
        if isinstance(decision, Lookup):
            bindings = await self.store.lookup(decision.aor, self.wall())
            decision = self.router.bound(decision, bindings)
        if isinstance(decision, Forward):
            await self.forwarder.forward(server, flow, decision)
        elif isinstance(decision, Reply):
            self.forwarder.reply(server, decision.status, decision.reason, decision.headers)
        elif isinstance(decision, Register):
            await self._register(server, flow)
        else:  # pragma: no cover - every decision is acted on above
            raise AssertionError(decision)

    async def _register(self, server: ServerTransaction, flow: Flow) -> None:
        """A REGISTER for a local domain: authenticate (401), then the registrar."""
        req = server.request
        verdict = await self.auth.check(req, flow.remote[0], self.wall(), proxy=False)
        if not verdict.ok:
            self.stats.auth_challenges += 1
            self.forwarder.reply(server, verdict.status, verdict.reason, verdict.headers)
            return
        listener = listener_of(self.identity, flow)
        name = listener.name() if listener else f"{flow.transport.value}:?"
        resp = await handle_register(
            req, flow, listener=name, store=self.store, policy=self.policy, now=self.wall()
        )
        self.stats.registrations += resp.status == 200
        self.forwarder.respond(server, resp)

    async def ack(self, req: Request, flow: Flow) -> None:
        """An ACK for a 2xx (§16.11): along its Route set if we recorded it, else dropped."""
        try:
            target = self.router.ack(req)
            if target is None:
                self.stats.dropped += 1
                return
            await self.forwarder.forward_ack(req, flow, target)
        except Rtc64Error as exc:
            self.stats.dropped += 1
            self.log.debug("ACK not forwarded: %s", exc)
