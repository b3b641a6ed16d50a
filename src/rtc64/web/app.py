# The aiohttp application inside ``rtc64 serve``: console (static files), REST API,
# server-sent events of the calls, Prometheus /metrics.
#
# Rules:
# - Every request passes ``_guard``: public paths (the console's files, /api/session,
#   /api/login, /api/openapi.json) need nothing; /api/turn-credentials needs the TURN
#   token or full access; everything else full access (API token, admin session, or an
#   open loopback console). No credential: 401; the wrong one: 403. State-changing methods
#   with a session or on an open console need the CSRF header (403 without). An open
#   console answers only Host headers naming loopback (DNS rebinding).
# - Responses carry no-store, nosniff, frame-deny and a same-origin CSP; errors are JSON
#   ``{"error": ...}``, never a traceback.
# - A sampler (1 s) sums relay totals, measures the loop's lateness and keeps the overview
#   history; SSE clients are bounded in number.
"""The web application and its runner."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from ipaddress import ip_address
from typing import Any

from aiohttp import web

from rtc64.errors import ConfigError, RemoteProtocolError
from rtc64.gateway.location.bindings import canonical_aor
from rtc64.gateway.media import MediaBridge
from rtc64.gateway.stats import ProxyView
from rtc64.net.address import format_hostport
from rtc64.relay.stats import CallStats
from rtc64.turnserver.credentials import rest_credentials
from rtc64.web import auth, openapi
from rtc64.web.auth import Access, Guard
from rtc64.web.merge import (
    add_latest,
    allocations_of,
    merge_lists,
    merge_metrics,
    reporting,
)
from rtc64.web.metrics import RelayTotals, Scrape, render
from rtc64.web.probes import BusyError, ProbeError, ProbeRuns, check_request
from rtc64.web.tunnel import tunnel_view
from rtc64.web.views import (
    Json,
    Sources,
    Status,
    TurnRest,
    all_calls_view,
    block_view,
    live_calls,
    registrations_by_family,
    registrations_view,
    status_view,
    turn_view,
)

PUBLIC = frozenset({"/api/session", "/api/login", "/api/openapi.json"})
TURN_PATHS = frozenset({"/api/turn-credentials"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_EVENT_CLIENTS = 32
HISTORY = 600  # samples kept for the overview chart (one per second: ten minutes)
MAX_TTL = 86400
SAMPLE_INTERVAL = 1.0
SSE_HEARTBEAT = 15.0
MAX_BODY = 16 * 1024
USERNAME = re.compile(r"[!-9;-~]{1,128}")  # printable ASCII but ':' (the REST separator)

GUARD: web.AppKey[Guard] = web.AppKey("guard", Guard)
STATE: web.AppKey[State] = web.AppKey("state")


@dataclass(frozen=True, slots=True)
class WebSettings:
    host: str
    port: int
    tls: ssl.SSLContext | None
    session_lifetime: float


class RecentErrors(logging.Handler):
    """The last warnings and errors of the gateway's loggers, for the overview page."""

    def __init__(self, size: int = 50) -> None:
        super().__init__(logging.WARNING)
        self.records: deque[Json] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.records.append(
                {
                    "time": record.created,
                    "level": record.levelname.lower(),
                    "logger": record.name,
                    "message": record.getMessage()[:500],
                }
            )


class State:
    """What the app keeps between requests: the sampler's totals and history, the
    recent errors, the number of event-stream clients."""

    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self.totals = RelayTotals()
        self.history: deque[Json] = deque(maxlen=HISTORY)
        self.errors = RecentErrors()
        self.lag = 0.0
        self.event_clients = 0
        self.probes = None if sources.probe is None else ProbeRuns(sources.probe, sources.wall)

    def sample(self) -> None:
        src = self.sources
        calls = live_calls(src.relay)
        self.totals.update(calls)
        relay_packets = sum(t.packets for t in self.totals.totals.values())
        relay_bytes = sum(t.octets for t in self.totals.totals.values())
        turn_bytes = 0
        if src.turn is not None:
            turn_bytes = sum(t.to_peer_bytes + t.from_peer_bytes for t in src.turn.stats().traffic)
        sip = 0
        if src.proxy is not None:
            sip = sum(src.proxy.traffic.requests.values())
        self.history.append(
            {
                "time": src.wall(),
                "calls": len(calls) if src.proxy is None else _call_count(src.proxy, calls),
                "relay_packets": relay_packets,
                "relay_bytes": relay_bytes,
                "turn_bytes": turn_bytes,
                "sip_requests": sip,
            }
        )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + SAMPLE_INTERVAL
            await asyncio.sleep(SAMPLE_INTERVAL)
            late = max(0.0, loop.time() - due)
            self.lag = 0.7 * self.lag + 0.3 * late
            try:
                self.sample()
                if self.sources.peers is not None and self.history:  # SIP workers
                    others = await self.sources.peers.fetch("/api/history")
                    self.history[-1] = add_latest(self.history[-1], others)
            except Exception:
                logging.getLogger("rtc64.web").exception("web sampler failed")


def _call_count(proxy: ProxyView, sessions: list[CallStats]) -> int:
    """Calls through the proxy plus relay sessions no proxy call owns."""
    calls = {c.call_id for c in proxy.calls_in_progress()}
    return len(calls) + len({MediaBridge.call_of(s.call_id) for s in sessions} - calls)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _json(body: Json, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, indent=None))


@web.middleware
async def _headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400:
            response = _error(exc.status, exc.reason)
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
        else:
            raise
    h = response.headers
    h.setdefault("Cache-Control", "no-store")
    h["X-Content-Type-Options"] = "nosniff"
    h["X-Frame-Options"] = "DENY"
    h["Referrer-Policy"] = "no-referrer"
    h.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    )
    return response


@web.middleware
async def _guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    guard = request.app[GUARD]
    if guard.open and not auth.loopback_host(request.host):
        return _error(403, "this console answers only loopback host names")
    path = request.path
    if not (path.startswith("/api/") or path == "/metrics") or path in PUBLIC:
        return await handler(request)
    bearer = guard.bearer(request.headers.get("Authorization"))
    if bearer is Access.TURN:
        if path in TURN_PATHS:
            return await handler(request)
        return _error(403, "this token may only get TURN credentials")
    if bearer is Access.FULL:
        return await handler(request)
    if "Authorization" in request.headers:
        return _error(401, "invalid token")
    session = guard.session(request.cookies.get(auth.SESSION_COOKIE), time.time())
    if session is None and not guard.open:
        return _error(401, "authentication required")
    expected = guard.open_csrf if session is None else session.csrf
    if request.method not in SAFE_METHODS and not auth.csrf_ok(
        expected, request.headers.get(auth.CSRF_HEADER)
    ):
        return _error(403, f"missing or wrong {auth.CSRF_HEADER} header")
    return await handler(request)


def _source(request: web.Request) -> Any:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    try:
        return ip_address(peer[0].split("%", 1)[0]) if peer else ip_address("::")
    except ValueError:
        return ip_address("::")


async def _body(request: web.Request) -> Json:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(reason="expected application/json")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    try:
        body = json.loads(await request.content.read(MAX_BODY + 1))
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(reason="invalid JSON body") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(reason="expected a JSON object")
    return body


# --- handlers -----------------------------------------------------------------------------


async def session(request: web.Request) -> web.Response:
    guard = request.app[GUARD]
    s = guard.session(request.cookies.get(auth.SESSION_COOKIE), time.time())
    if s is not None:
        return _json({"authenticated": True, "open": False, "csrf": s.csrf})
    if guard.open:
        return _json({"authenticated": True, "open": True, "csrf": guard.open_csrf})
    return _json({"authenticated": False, "open": False, "csrf": None})


async def login(request: web.Request) -> web.Response:
    guard = request.app[GUARD]
    body = await _body(request)
    user, password = body.get("user"), body.get("password")
    if not isinstance(user, str) or not isinstance(password, str):
        return _error(400, "expected {user, password} strings")
    now = time.time()
    source = _source(request)
    if guard.throttled(source, now):
        return _error(429, "too many failed logins; wait a minute")
    sid = await asyncio.get_running_loop().run_in_executor(
        None, guard.login, user, password, source, now
    )
    if sid is None:
        return _error(401, "wrong user or password")
    s = guard.sessions[sid]
    response = _json({"authenticated": True, "open": False, "csrf": s.csrf})
    response.set_cookie(
        auth.SESSION_COOKIE,
        sid,
        max_age=int(guard.lifetime),
        httponly=True,
        secure=request.secure,
        samesite="Strict",
        path="/",
    )
    return response


async def logout(request: web.Request) -> web.Response:
    request.app[GUARD].logout(request.cookies.get(auth.SESSION_COOKIE))
    response = _json({"authenticated": False, "open": False, "csrf": None})
    response.del_cookie(auth.SESSION_COOKIE, path="/")
    return response


async def registrations(request: web.Request) -> web.Response:
    src = request.app[STATE].sources
    aor = request.query.get("aor")
    if aor is not None:
        try:
            aor = canonical_aor(aor)
        except RemoteProtocolError:
            return _error(400, "aor: expected a SIP URI such as sip:alice@example.net")
    if src.registrations is None:
        return _json({"aors": []})
    now = src.wall()
    bindings = await src.registrations.all_bindings(now)
    return _json(registrations_view(bindings, now, src.keepalive, aor))


async def calls(request: web.Request) -> web.Response:
    src = request.app[STATE].sources
    own = all_calls_view(src.proxy, src.relay, src.clock())
    if src.peers is None:
        return _json(own)
    return _json(merge_lists(own, await src.peers.fetch("/api/calls"), "calls"))


async def turn(request: web.Request) -> web.Response:
    src = request.app[STATE].sources
    if src.turn is None and src.peers is not None:  # SIP workers: TURN runs elsewhere
        for body in await src.peers.fetch("/api/turn"):
            with contextlib.suppress(ValueError):
                found = json.loads(body)
                if isinstance(found, dict) and found.get("enabled"):
                    return _json(found)
    return _json(turn_view(src.turn))


async def tunnel(request: web.Request) -> web.Response:
    return _json(tunnel_view(request.app[STATE].sources.tunnel))


async def status(request: web.Request) -> web.Response:
    src = request.app[STATE].sources
    return _json(status_view(src.status, src.wall()))


async def overview(request: web.Request) -> web.Response:
    state = request.app[STATE]
    src = state.sources
    now = src.wall()
    bindings = [] if src.registrations is None else await src.registrations.all_bindings(now)
    by_families: dict[str, int] = {}
    calls = all_calls_view(src.proxy, src.relay, src.clock())
    if src.peers is not None:  # SIP workers: every worker's calls
        calls = merge_lists(calls, await src.peers.fetch("/api/calls"), "calls")
    for call in calls["calls"]:
        key = "→".join(call["families"])
        by_families[key] = by_families.get(key, 0) + 1
    allocations = 0 if src.turn is None else len(src.turn.allocations())
    if src.peers is not None and src.turn is None:  # SIP workers: TURN in the supervisor
        allocations = allocations_of(await src.peers.fetch("/api/turn"))
    return _json(
        {
            "registrations": {
                "aors": len({b.aor for b in bindings}),
                "contacts": len(bindings),
                "by_family": registrations_by_family(bindings),
            },
            "calls": {"total": sum(by_families.values()), "by_families": by_families},
            "turn_allocations": allocations,
            "errors": list(state.errors.records)[::-1],
        }
    )


async def history(request: web.Request) -> web.Response:
    return _json({"samples": list(request.app[STATE].history)})


async def blocks(request: web.Request) -> web.Response:
    src = request.app[STATE].sources
    found = [] if src.blocks is None else src.blocks.blocked(src.wall())
    return _json({"blocks": [block_view(b) for b in found]})


async def unblock(request: web.Request) -> web.Response:
    src = request.app[STATE].sources
    body = await _body(request)
    target = body.get("target")
    if not isinstance(target, str) or not target or len(target) > 256:
        return _error(400, "expected {target}: an address, a prefix or a user name")
    lifted = 0 if src.blocks is None else src.blocks.unblock(target, src.wall())
    logging.getLogger("rtc64.web").info("unblock %s: %d block(s) lifted", target, lifted)
    return _json({"target": target, "lifted": lifted})


async def turn_credentials(request: web.Request) -> web.Response:
    rest = request.app[STATE].sources.turn_rest
    if rest is None:
        return _error(404, "no TURN REST secret configured (turn.secrets)")
    user = request.query.get("username", "")
    if not USERNAME.fullmatch(user):
        return _error(400, "username: 1..128 printable ASCII characters, no ':' or space")
    try:
        ttl = int(request.query.get("ttl", str(MAX_TTL)))
    except ValueError:
        return _error(400, f"ttl: seconds, 1..{MAX_TTL}")
    if not 1 <= ttl <= MAX_TTL:
        return _error(400, f"ttl: seconds, 1..{MAX_TTL}")
    cred = rest_credentials(rest.secret, user, ttl, time.time())
    return _json(
        {"username": cred.username, "password": cred.password, "ttl": ttl, "uris": list(rest.uris)}
    )


async def reload(request: web.Request) -> web.Response:
    src = request.app[STATE].sources
    if src.reload is None or not src.reload():
        return _error(501, "this gateway cannot reload its configuration (no SIGHUP handler)")
    return _json({"reloading": True}, status=202)


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    src = state.sources
    now = src.wall()
    bindings = [] if src.registrations is None else await src.registrations.all_bindings(now)
    found = live_calls(src.relay)
    state.totals.update(found)
    body = render(Scrape(src, bindings, found, state.totals, state.lag, now))
    if src.peers is not None:  # SIP workers: the whole gateway (web.peers)
        others = await src.peers.fetch("/metrics")
        body = merge_metrics([body, *others]) + reporting(1 + src.peers.answered)
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``calls`` with the calls view whenever it changes."""
    state = request.app[STATE]
    if state.event_clients >= MAX_EVENT_CLIENTS:
        return _error(503, "too many event streams")
    state.event_clients += 1
    try:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        last, quiet = "", 0.0
        while True:
            src = state.sources
            view = all_calls_view(src.proxy, src.relay, src.clock())
            if src.peers is not None:  # SIP workers: every worker's calls
                view = merge_lists(view, await src.peers.fetch("/api/calls"), "calls")
            body = json.dumps(view["calls"])
            if body != last:
                await response.write(f"event: calls\ndata: {body}\n\n".encode())
                last, quiet = body, 0.0
            elif quiet >= SSE_HEARTBEAT:
                await response.write(b": keepalive\n\n")
                quiet = 0.0
            await asyncio.sleep(SAMPLE_INTERVAL)
            quiet += SAMPLE_INTERVAL
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        state.event_clients -= 1
    return response


def _probes(request: web.Request) -> ProbeRuns:
    runs = request.app[STATE].probes
    if runs is None:
        raise web.HTTPNotImplemented(reason="this gateway runs no probes")
    return runs


async def probe_start(request: web.Request) -> web.Response:
    runs = _probes(request)
    try:
        targets, families = check_request(await _body(request))
        run = runs.start(targets, families)
    except BusyError as exc:
        return _error(409, str(exc))
    except ProbeError as exc:
        return _error(400, str(exc))
    return _json(run.summary(), status=202)


async def probe_list(request: web.Request) -> web.Response:
    runs = _probes(request)
    return _json({"runs": [r.summary() for r in reversed(runs.runs.values())]})


async def probe_get(request: web.Request) -> web.Response:
    run = _probes(request).runs.get(request.match_info["id"])
    if run is None:
        return _error(404, "no such probe run")
    report = None if run.result is None else run.result.report
    return _json({**run.summary(), "report": report})


async def probe_html(request: web.Request) -> web.Response:
    run = _probes(request).runs.get(request.match_info["id"])
    if run is None:
        return _error(404, "no such probe run")
    if run.result is None:
        return _error(409, f"the run is {run.status}")
    response = web.Response(text=run.result.html, content_type="text/html")
    # the report is one self-contained page: its own inline style, nothing fetched
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"
    )
    return response


async def openapi_document(request: web.Request) -> web.Response:
    return _json(openapi.document())


def _static(name: str) -> bytes:
    return resources.files("rtc64.web").joinpath("static", name).read_bytes()


STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


async def page(request: web.Request) -> web.Response:
    return web.Response(body=_static("index.html"), content_type="text/html", charset="utf-8")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or name.startswith(".") or suffix not in STATIC_TYPES:
        raise web.HTTPNotFound()
    try:
        body = _static(name)
    except (FileNotFoundError, IsADirectoryError):
        raise web.HTTPNotFound() from None
    return web.Response(body=body, content_type=STATIC_TYPES[suffix], charset="utf-8")


def build_app(sources: Sources, guard: Guard) -> web.Application:
    """The application (no socket): tests drive it with aiohttp's test client."""
    app = web.Application(middlewares=[_headers, _guard], client_max_size=MAX_BODY)
    app[GUARD] = guard
    app[STATE] = State(sources)
    r = app.router
    r.add_get("/", page)
    r.add_get("/static/{name}", static)
    r.add_get("/api/openapi.json", openapi_document)
    r.add_get("/api/session", session)
    r.add_post("/api/login", login)
    r.add_post("/api/logout", logout)
    r.add_get("/api/overview", overview)
    r.add_get("/api/history", history)
    r.add_get("/api/registrations", registrations)
    r.add_get("/api/calls", calls)
    r.add_get("/api/events", events)
    r.add_get("/api/turn", turn)
    r.add_get("/api/tunnel", tunnel)
    r.add_get("/api/status", status)
    r.add_get("/api/blocks", blocks)
    r.add_post("/api/blocks/unblock", unblock)
    r.add_get("/api/turn-credentials", turn_credentials)
    r.add_post("/api/reload", reload)
    r.add_post("/api/probes", probe_start)
    r.add_get("/api/probes", probe_list)
    r.add_get("/api/probes/{id}", probe_get)
    r.add_get("/api/probes/{id}/html", probe_html)
    r.add_get("/metrics", metrics)
    return app


class RunningWeb:
    """The app on its socket, its sampler and its error log handler; ``stop`` ends them."""

    def __init__(self, app: web.Application, runner: web.AppRunner, task: asyncio.Task[None]):
        self.app = app
        self.runner = runner
        self.task = task

    def refresh(self, status: Status, turn_rest: TurnRest | None) -> None:
        """A reload changed the facts on the status page (listeners, relay addresses,
        configuration) or TURN's URIs."""
        state = self.app[STATE]
        state.sources = dataclasses.replace(state.sources, status=status, turn_rest=turn_rest)

    @property
    def port(self) -> int:
        for address in self.runner.addresses:
            return int(address[1])
        return 0

    async def stop(self) -> None:
        state = self.app[STATE]
        logging.getLogger("rtc64").removeHandler(state.errors)
        if state.probes is not None:
            await state.probes.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.runner.cleanup()


async def start_web(settings: WebSettings, sources: Sources, guard: Guard) -> RunningWeb:
    """Bind and serve; ``ConfigError`` (from ``auth.check_listen``) before binding when a
    non-loopback address has no credential."""
    auth.check_listen(ip_address(settings.host), credentials=not guard.open)
    app = build_app(sources, guard)
    state = app[STATE]
    logging.getLogger("rtc64").addHandler(state.errors)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, ssl_context=settings.tls)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        logging.getLogger("rtc64").removeHandler(state.errors)
        where = format_hostport(ip_address(settings.host), settings.port)
        raise ConfigError("web.listen", where, f"an address to bind ({exc})") from None
    task = asyncio.get_running_loop().create_task(state.run())
    return RunningWeb(app, runner, task)
