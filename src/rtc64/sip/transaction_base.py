# Shared model of the SIP transaction layer: states, inputs, actions, events and the
# table-driven machine every transaction runs (RFC 3261 §17, RFC 6026 §7-§8).
#
# Rules:
# - A machine is data: ``Table`` maps state -> input -> (next state, action) and ``Entry``
#   maps a state to the timers started on entering it (``None`` stops a timer; a state
#   missing from ``Entry`` keeps the running ones, as non-INVITE PROCEEDING does).
# - Each transaction has at most two running timers: a retransmit timer (A, E or G) and
#   an ending timer (B, D, F, H, I, J, K, L or M; every one of them leads to TERMINATED).
#   When both are due the ending timer wins, so nothing is sent at the moment of a timeout.
# - Timers are deadlines; ``advance(now)`` fires whatever is due. A zero duration (D, I, J,
#   K on reliable transports) is due at once, so the state it guards is left in the same
#   call. Retransmit intervals restart from the firing time.
# - Output is appended to a caller-owned list of events; transactions never call out.
#   The bytes to retransmit are wrapped in one ``Send`` kept for the transaction's life;
#   each emitted copy names its transaction (``Send.txn``) so the transport can report a
#   failure back through ``TransactionLayer.transport_error`` (§17.1.4, §17.2.4). The kept
#   copy does not, so a transaction never refers to itself (freed without the cyclic GC).
# - Once the final response is sent or received (COMPLETED, CONFIRMED, ACCEPTED) the
#   transaction only matches and absorbs retransmissions until its ending timer (up to
#   32 s): ``request`` is slimmed to what a response copies (§8.2.6: Via, From, To,
#   Call-ID, CSeq), without body or received bytes, so lingering transactions stay small.
"""Transaction states, inputs, events and the common machine runner."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final

from rtc64.sip.headers import build_index
from rtc64.sip.message import Request, Response
from rtc64.sip.timers import Timer, TimerConfig

if TYPE_CHECKING:
    from rtc64.sip.transaction_client import ClientTransaction
    from rtc64.sip.transaction_server import ServerTransaction


class State(enum.Enum):
    """Transaction states, named as in RFC 3261 §17 (and RFC 6026 for ACCEPTED)."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"

    __hash__ = object.__hash__  # members are singletons: no Python-level hash per look-up


class Input(enum.Enum):
    """What reaches a machine besides its timers."""

    RESPONSE_1XX = "1xx from transport"
    RESPONSE_2XX = "2xx from transport"
    RESPONSE_FINAL = "300-699 from transport"
    REQUEST = "request retransmission"
    ACK = "ACK"
    TU_1XX = "1xx from TU"
    TU_2XX = "2xx from TU"
    TU_FINAL = "300-699 from TU"
    TRANSPORT_ERROR = "transport error"

    __hash__ = object.__hash__  # members are singletons: no Python-level hash per look-up


class Action(enum.Enum):
    """What a transition does besides changing state."""

    NONE = enum.auto()
    ABSORB = enum.auto()  # report Absorbed, send nothing
    RESEND = enum.auto()  # re-send the reply (server: last response; client: the ACK)
    RETRANSMIT = enum.auto()  # timer A/E/G: send again, double the interval up to its cap
    RETRANSMIT_T2 = enum.auto()  # timer E in PROCEEDING (§17.1.2.2)
    PASS_UP = enum.auto()  # response to the TU
    ACK_AND_PASS_UP = enum.auto()  # §17.1.1.3
    SEND_RESPONSE = enum.auto()  # response from the TU to the transport
    ACK_TO_TU = enum.auto()  # RFC 6026 ACCEPTED
    TIMEOUT = enum.auto()  # B, F (client) or H (server)
    TRANSPORT_FAILED = enum.auto()  # §17.1.4, §17.2.4

    __hash__ = object.__hash__  # members are singletons: no Python-level hash per look-up


_FINISHED = frozenset((State.COMPLETED, State.CONFIRMED, State.ACCEPTED))
_RESPONSE_HEADERS = frozenset((b"via", b"from", b"to", b"call-id", b"cseq"))


def slim_request(request: Request) -> Request:
    """``request`` with only the header lines a response copies (§8.2.6), no body and no
    received bytes: what a finished transaction keeps (the same object if already so)."""
    headers = tuple(h for h in request.headers if h.key in _RESPONSE_HEADERS)
    if len(headers) == len(request.headers) and not request.body and request.wire is None:
        return request
    r = request
    return Request(
        r.method, r.uri, headers, b"", r.vias, r.call_id, r.cseq, r.from_, r.to,
        r.max_forwards, build_index(headers), None,
    )  # fmt: skip


Row = tuple[State, Action]
Payload = Response | bytes | str | tuple[Request, object] | None
"""What an input carries: a received response, a TU's response bytes, a transport error's
reason, an ACK and its source."""
Table = dict[State, dict[Input | Timer, Row]]
Entry = dict[State, tuple[Timer | None, Timer | None]]


# -- events ---------------------------------------------------------------------------------


class _Event:
    """Value semantics for the events below: equal when of the same class with equal
    ``_compared`` fields, hashable on them, ``repr`` of every field; never mutated.

    Plain classes rather than frozen dataclasses: they name ``ClientTransaction`` and
    ``ServerTransaction``, imported here only for type checking (a real import would be a
    cycle), and mypyc builds a dataclass's ``__annotations__`` from those classes when this
    module starts, before they exist. A plain class needs them only when an event is made.
    """

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _compared: ClassVar[tuple[str, ...]] = ()

    def _key(self) -> tuple[object, ...]:
        return tuple([getattr(self, name) for name in self._compared])

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Event)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._key()))

    def __repr__(self) -> str:
        inner = ", ".join([f"{name}={getattr(self, name)!r}" for name in self._fields])
        return f"{type(self).__name__}({inner})"


class Send(_Event):
    """Hand ``data`` to the transport for ``dest`` (the caller's opaque destination).

    ``txn`` is the transaction sending it: what the caller hands back to
    ``TransactionLayer.transport_error`` when the transport fails (not compared)."""

    __slots__ = ("data", "dest", "txn")
    _fields = ("data", "dest", "txn")
    _compared = ("data", "dest")

    def __init__(
        self, data: bytes, dest: object, txn: ClientTransaction | ServerTransaction | None = None
    ) -> None:
        self.data: Final = data
        self.dest: Final = dest
        self.txn: Final = txn


class NewRequest(_Event):
    """A request created a server transaction; the TU handles ``txn.request``."""

    __slots__ = ("txn",)
    _fields = ("txn",)
    _compared = ("txn",)

    def __init__(self, txn: ServerTransaction) -> None:
        self.txn: Final = txn


class AckReceived(_Event):
    """An ACK for the TU: for a 2xx, or matching no transaction (§17.2.3, RFC 6026 §8.7).

    ``txn`` is the INVITE server transaction in ACCEPTED it matched, if any."""

    __slots__ = ("dest", "request", "txn")
    _fields = ("request", "dest", "txn")
    _compared = ("request", "dest", "txn")

    def __init__(self, request: Request, dest: object, txn: ServerTransaction | None) -> None:
        self.request: Final = request
        self.dest: Final = dest
        self.txn: Final = txn


class ResponseReceived(_Event):
    """A response the TU must see (each provisional, the first final, 2xx in ACCEPTED)."""

    __slots__ = ("response", "txn")
    _fields = ("response", "txn")
    _compared = ("response", "txn")

    def __init__(self, response: Response, txn: ClientTransaction) -> None:
        self.response: Final = response
        self.txn: Final = txn


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response matching no client transaction (§18.1.2; a proxy forwards it, §16.7)."""

    response: Response


class Absorbed(_Event):
    """A retransmission (or an ACK for a non-2xx final) consumed by ``txn``."""

    __slots__ = ("txn",)
    _fields = ("txn",)
    _compared = ("txn",)

    def __init__(self, txn: ClientTransaction | ServerTransaction) -> None:
        self.txn: Final = txn


class ClientTimeout(_Event):
    """Timer B or F fired: no final response (the TU answers 408, §16.7 step 6)."""

    __slots__ = ("txn",)
    _fields = ("txn",)
    _compared = ("txn",)

    def __init__(self, txn: ClientTransaction) -> None:
        self.txn: Final = txn


class ServerTimeout(_Event):
    """Timer H fired: the ACK for a non-2xx final never came (§17.2.1)."""

    __slots__ = ("txn",)
    _fields = ("txn",)
    _compared = ("txn",)

    def __init__(self, txn: ServerTransaction) -> None:
        self.txn: Final = txn


class TransportFailed(_Event):
    """The transport reported a fatal error for ``txn`` (§17.1.4, §17.2.4); ``reason``
    says what failed (for the 503 a proxy answers, §16.7 step 5; not compared)."""

    __slots__ = ("reason", "txn")
    _fields = ("txn", "reason")
    _compared = ("txn",)

    def __init__(self, txn: ClientTransaction | ServerTransaction, reason: str = "") -> None:
        self.txn: Final = txn
        self.reason: Final = reason


class Terminated(_Event):
    """``txn`` reached TERMINATED and left the transaction layer."""

    __slots__ = ("txn",)
    _fields = ("txn",)
    _compared = ("txn",)

    def __init__(self, txn: ClientTransaction | ServerTransaction) -> None:
        self.txn: Final = txn


Event = (
    Send
    | NewRequest
    | AckReceived
    | ResponseReceived
    | StrayResponse
    | Absorbed
    | ClientTimeout
    | ServerTimeout
    | TransportFailed
    | Terminated
)


# -- the machine runner ---------------------------------------------------------------------


class Transaction:
    """Common part of client and server transactions: state, timers, retransmission.

    ``user`` is free for the TU (a proxy context, a response context...).
    """

    __slots__ = (
        "_end_at",
        "_end_timer",
        "_entry",
        "_hseq",
        "_out",
        "_rtx_at",
        "_rtx_interval",
        "_rtx_timer",
        "_table",
        "_timers",
        "_wake",
        "dest",
        "invite",
        "reliable",
        "request",
        "state",
        "user",
    )

    def __init__(
        self,
        request: Request,
        dest: object,
        reliable: bool,
        *,
        timers: TimerConfig,
        table: Table,
        entry: Entry,
        state: State,
    ) -> None:
        self.request = request
        self.dest = dest
        self.reliable = reliable
        self.invite = request.method == b"INVITE"
        self.user: object = None
        self.state = state
        self._timers = timers
        self._table = table
        self._entry = entry
        self._out: Send | None = None
        self._rtx_timer = Timer.TIMER_A
        self._rtx_at: float | None = None
        self._rtx_interval = 0.0
        self._end_timer = Timer.TIMER_B
        self._end_at: float | None = None
        self._hseq = 0  # sequence number of this transaction's live heap entry, 0 if none
        self._wake: float | None = None  # deadline of that entry

    def __repr__(self) -> str:
        r = self.request
        return f"<{type(self).__name__} {r.method.decode()} {r.call_id.decode()} {self.state.name}>"

    @property
    def method(self) -> bytes:
        return self.request.method

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    @property
    def deadline(self) -> float | None:
        """The earliest running timer's deadline, or ``None``."""
        a, b = self._rtx_at, self._end_at
        if a is None:
            return b
        if b is None or a < b:
            return a
        return b

    def timers(self) -> dict[Timer, float]:
        """Running timers and their deadlines (for tests and the console)."""
        out: dict[Timer, float] = {}
        if self._rtx_at is not None:
            out[self._rtx_timer] = self._rtx_at
        if self._end_at is not None:
            out[self._end_timer] = self._end_at
        return out

    def advance(self, now: float, out: list[Event]) -> None:
        """Fire every timer due at ``now``, ending timer first."""
        while True:
            end_at = self._end_at
            if end_at is not None and end_at <= now:
                timer = self._end_timer
                self._end_at = None
            else:
                rtx_at = self._rtx_at
                if rtx_at is None or rtx_at > now:
                    return
                timer = self._rtx_timer
                self._rtx_at = None
            self._step(timer, now, out, None)

    def handle(self, inp: Input, now: float, out: list[Event], payload: Payload = None) -> bool:
        """Run one input; False if the current state has no transition for it."""
        if not self._step(inp, now, out, payload):
            return False
        self.advance(now, out)
        return True

    def _step(self, inp: Input | Timer, now: float, out: list[Event], payload: Payload) -> bool:
        row = self._table[self.state].get(inp)
        if row is None:
            return False
        state, action = row
        if action is not Action.NONE:
            self._act(action, inp, now, out, payload)
        if state is not self.state:
            self._enter(state, now)
        return True

    def _enter(self, state: State, now: float) -> None:
        self.state = state
        if state in _FINISHED:
            self.request = slim_request(self.request)
        spec = self._entry.get(state)
        if spec is None:
            return
        rtx, end = spec
        cfg, reliable = self._timers, self.reliable
        d = None if rtx is None else cfg.duration(rtx, reliable)
        if d is None:
            self._rtx_at = None
        else:
            assert rtx is not None
            self._rtx_timer, self._rtx_interval, self._rtx_at = rtx, d, now + d
        d = None if end is None else cfg.duration(end, reliable)
        if d is None:
            self._end_at = None
        else:
            assert end is not None
            self._end_timer, self._end_at = end, now + d

    def _retransmit(self, interval: float, now: float, out: list[Event]) -> None:
        self._rtx_interval = interval
        self._rtx_at = now + interval
        if self._out is not None:
            self._emit(self._out, out)

    def _emit(self, send: Send, out: list[Event]) -> None:
        """Output a copy of the kept ``send`` that names this transaction."""
        out.append(Send(send.data, send.dest, self))  # type: ignore[arg-type]

    def _act(
        self,
        action: Action,
        inp: Input | Timer,
        now: float,
        out: list[Event],
        payload: Payload,
    ) -> None:
        """Retransmissions here; subclasses do the rest."""
        if action is Action.RETRANSMIT:
            assert isinstance(inp, Timer)
            iv = min(self._rtx_interval * 2, self._timers.cap(inp))
            self._retransmit(iv, now, out)
        elif action is Action.RETRANSMIT_T2:
            self._retransmit(float(self._timers.t2), now, out)
        else:
            raise AssertionError(f"{type(self).__name__} cannot {action}")
