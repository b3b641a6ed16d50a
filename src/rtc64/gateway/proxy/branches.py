"""What the forwarder keeps per request and per branch, and the protocols around it.

- ``Sender`` is what the proxy needs of the transport layer; ``Spawn`` starts a coroutine.
- ``Pending`` is a proxied request: its server transaction, its response context and
  whether we Record-Routed it. ``Plan`` is what every copy of the request on one branch
  shares (only the hop differs between happy-eyeballs attempts); ``Leg`` ties a branch
  to its request and plan (what racing and Timer C hand back to the forwarder).
- ``OwnRequest`` is a request the gateway sends on its own (ACK and BYE for an unwanted
  2xx, BYEs on a media timeout): call control builds it, the forwarder sends it.
- ``CallHooks`` and ``Racer`` are what the forwarder asks of call control and racing.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rtc64.gateway.identity import Identity, Listener
from rtc64.gateway.proxy.forking import Branch, ResponseContext
from rtc64.gateway.proxy.hops import Hop
from rtc64.net.address import IPAddress, family_of
from rtc64.net.endpoint import Flow, Transport
from rtc64.net.eyeballs import Action, Race
from rtc64.sip.message import Request, Response
from rtc64.sip.nameaddr import NameAddr
from rtc64.sip.transaction_client import ClientTransaction
from rtc64.sip.transaction_server import ServerTransaction
from rtc64.sip.uri import SipUri, parse_uri


class Sender(Protocol):
    def send(
        self,
        data: bytes,
        transport: Transport,
        address: IPAddress,
        port: int,
        *,
        flow: Flow | None = None,
        server_name: str | None = None,
        handle: object = None,
        own_port: bool = False,
    ) -> bool: ...

    def has_connection(self, transport: Transport, address: IPAddress, port: int) -> bool:
        """Whether an open connection of ``transport`` to ``(address, port)`` exists."""
        ...

    async def connect_race(
        self,
        transport: Transport,
        targets: Sequence[Hop],
        *,
        attempt_delay: float | None,
        server_name: str | None = None,
    ) -> tuple[Hop, Race[Hop] | None]: ...


Spawn = Callable[[Coroutine[Any, Any, None]], None]


@dataclass(slots=True, init=False)
class Pending:
    """A proxied request: its server transaction and response context."""

    server: ServerTransaction
    request: Request
    ctx: ResponseContext
    record_routed: bool = False

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(
        self,
        server: ServerTransaction,
        request: Request,
        ctx: ResponseContext,
        record_routed: bool = False,
    ) -> None:
        self.server = server
        self.request = request
        self.ctx = ctx
        self.record_routed = record_routed


@dataclass(frozen=True, slots=True, init=False)
class Plan:
    """What every copy of a request on one branch shares (only the hop differs)."""

    flow: Flow
    in_listener: Listener | None  # set when we Record-Route
    stamped: bytes | None  # the caller's Via with received/rport
    new_uri: SipUri | None
    routes: tuple[bytes, ...] | None  # None: the Route lines stay as received
    path: Callable[[Listener, IPAddress], bytes] | None
    tcp_ok: bool = False  # the target names no transport: a large request may use TCP
    callee_flow: bool = False  # the hop is a registered UA's own flow (``Target.flow``)

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(  # noqa: PLR0917 (the fields, positionally, as before)
        self,
        flow: Flow,
        in_listener: Listener | None,
        stamped: bytes | None,
        new_uri: SipUri | None,
        routes: tuple[bytes, ...] | None,
        path: Callable[[Listener, IPAddress], bytes] | None,
        tcp_ok: bool = False,
        callee_flow: bool = False,
    ) -> None:
        object.__setattr__(self, "flow", flow)
        object.__setattr__(self, "in_listener", in_listener)
        object.__setattr__(self, "stamped", stamped)
        object.__setattr__(self, "new_uri", new_uri)
        object.__setattr__(self, "routes", routes)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "tcp_ok", tcp_ok)
        object.__setattr__(self, "callee_flow", callee_flow)


@dataclass(frozen=True, slots=True, init=False)
class Leg:
    """One branch of a proxied request, with what its attempts share."""

    pending: Pending
    branch: Branch
    plan: Plan

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(self, pending: Pending, branch: Branch, plan: Plan) -> None:
        object.__setattr__(self, "pending", pending)
        object.__setattr__(self, "branch", branch)
        object.__setattr__(self, "plan", plan)


@dataclass(frozen=True, slots=True, init=False)
class OwnRequest:
    """A request of our own inside a dialog: ACK (stateless) or BYE (client transaction)."""

    method: bytes
    target: bytes  # Request-URI
    routes: tuple[bytes, ...]  # Route set, first entry first
    lines: tuple[tuple[bytes, bytes], ...]  # header lines (Via is the sender's to add)

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(
        self,
        method: bytes,
        target: bytes,
        routes: tuple[bytes, ...],
        lines: tuple[tuple[bytes, bytes], ...],
    ) -> None:
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "routes", routes)
        object.__setattr__(self, "lines", lines)


class CallHooks(Protocol):
    """What the forwarder tells call control (``calls.CallControl``)."""

    def arm_timer_c(self, leg: Leg, now: float) -> None: ...

    def disarm_timer_c(self, branch: Branch) -> None: ...

    def begin(
        self, req: Request, now: float, flow: Flow | None = None, *, own_port: bool = False
    ) -> None: ...

    def answered(self, req: Request, resp: Response, now: float) -> None: ...

    def confirmed(self, invite: Request, ok: Response, now: float, hop: object = None) -> None: ...

    def learnt(
        self, req: Request, status: int, *, to: NameAddr, to_value: bytes,
        contact: NameAddr | None, record_routes: list[NameAddr], now: float, hop: object = None,
    ) -> None: ...  # fmt: skip

    def bye_answered(self, bye: Request, status: int) -> None: ...

    def end_dialog(self, call_id: bytes) -> None: ...

    def end_call(self, call_id: bytes, status: int | None = None) -> None: ...

    def unwanted(self, request: Request, resp: Response) -> list[OwnRequest]: ...


@dataclass(frozen=True, slots=True, init=False)
class Launch:
    """Send ``leg`` to ``hop``: attempt ``index`` of the racer's ``race`` (None: no race)."""

    leg: Leg
    hop: Hop
    race: Race[Hop] | None = None
    index: int = 0

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(self, leg: Leg, hop: Hop, race: Race[Hop] | None = None, index: int = 0) -> None:
        object.__setattr__(self, "leg", leg)
        object.__setattr__(self, "hop", hop)
        object.__setattr__(self, "race", race)
        object.__setattr__(self, "index", index)


@dataclass(frozen=True, slots=True, init=False)
class RaceVerdict:
    """What to do with a response to one attempt of a race (``net.eyeballs.Action``)."""

    action: Action
    leg: Leg
    stop: tuple[ClientTransaction, ...] = ()  # losing attempts the forwarder forgets

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(self, action: Action, leg: Leg, stop: tuple[ClientTransaction, ...] = ()) -> None:
        object.__setattr__(self, "action", action)
        object.__setattr__(self, "leg", leg)
        object.__setattr__(self, "stop", stop)


@dataclass(frozen=True, slots=True, init=False)
class RaceFailure:
    """An attempt of a race failed: the winner's failure is the branch's (``winner``), an
    exhausted race fails the branch, else ``retry`` is the next attempt (or None: wait)."""

    leg: Leg
    winner: bool = False
    exhausted: bool = False
    retry: Launch | None = None

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(
        self, leg: Leg, winner: bool = False, exhausted: bool = False, retry: Launch | None = None
    ) -> None:
        object.__setattr__(self, "leg", leg)
        object.__setattr__(self, "winner", winner)
        object.__setattr__(self, "exhausted", exhausted)
        object.__setattr__(self, "retry", retry)


class Racer(Protocol):
    """What the forwarder asks of happy-eyeballs racing (``racing.Racing``)."""

    async def start(self, leg: Leg, candidates: list[Hop], key: str) -> Launch: ...

    def launched(self, launch: Launch, client: ClientTransaction | None) -> None: ...

    def racing(self, client: ClientTransaction) -> bool: ...

    def response(self, client: ClientTransaction, status: int) -> RaceVerdict | None: ...

    def failed(self, client: ClientTransaction) -> RaceFailure | None: ...

    def terminated(self, client: ClientTransaction) -> None: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> list[Launch]: ...


def flow_of(dest: object) -> Flow:
    assert isinstance(dest, Hop) and dest.flow is not None
    return dest.flow


def received_uri(route: SipUri) -> SipUri | None:
    """The flow a Path entry of ours recorded (``received=`` param), as a URI."""
    value = route.param(b"received")
    if not value:
        return None
    text = value.replace(b"%3B", b";").replace(b"%3b", b";").replace(b"%3D", b"=")
    uri = parse_uri(text.replace(b"%3d", b"="), "Path received")
    return uri if isinstance(uri, SipUri) else None


def ip_of(dest: object) -> IPAddress:
    """The address of a ``Hop`` destination."""
    assert isinstance(dest, Hop)
    return dest.ip


def listener_of(identity: Identity, flow: Flow) -> Listener | None:
    """The listener a flow arrived on."""
    ip, port = flow.local
    for lst in identity.listeners:
        if lst.transport is not flow.transport or lst.port != port:
            continue
        if lst.spec.address == ip or (lst.wildcard and family_of(ip) == lst.family):
            return lst
    return None
