# Server transactions (RFC 3261 §17.2; RFC 6026 §7.1, §8.5-§8.7 for ACCEPTED and Timer L).
#
# Rules:
# - INVITE: PROCEEDING -> COMPLETED -> CONFIRMED -> TERMINATED, or PROCEEDING -> ACCEPTED
#   -> TERMINATED for a 2xx (§17.2.1, Figure 7; RFC 6026 Figure 7). Without RFC 6026 a
#   2xx ends the transaction at once, as RFC 3261 says.
#   Timer G re-sends a non-2xx final (T1 doubling up to T2, unreliable only), Timer H
#   (64*T1) gives up waiting for the ACK and reports it, Timer I (T4, zero on reliable)
#   absorbs ACK retransmissions in CONFIRMED, Timer L (64*T1) absorbs INVITE
#   retransmissions in ACCEPTED, where ACKs go to the TU and the TU's 2xx retransmissions
#   are sent.
# - non-INVITE: TRYING -> PROCEEDING -> COMPLETED -> TERMINATED (§17.2.2, Figure 8);
#   Timer J (64*T1, zero on reliable) ends COMPLETED.
# - A retransmitted request is absorbed and the last response re-sent (none in TRYING,
#   CONFIRMED and ACCEPTED).
# - Matching (§17.2.3): a top Via branch starting with the magic cookie gives the key
#   (branch, sent-by host, sent-by port, method) with ACK looking up INVITE; CANCEL keeps
#   its own method. Other branches use the RFC 2543 key (Request-URI, To tag, From tag,
#   Call-ID, CSeq, top Via); an RFC 2543 ACK matches the INVITE on Request-URI, From tag,
#   Call-ID, CSeq number and top Via and the To tag of the final response sent.
# - A response from the TU in a state that takes none raises ``LocalProtocolError``.
"""Server transaction machines and request matching keys."""

from __future__ import annotations

from collections.abc import Hashable

from rtc64.errors import LocalProtocolError
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Request, Response
from rtc64.sip.timers import Timer, TimerConfig
from rtc64.sip.transaction_base import (
    Absorbed,
    AckReceived,
    Action,
    Entry,
    Event,
    Input,
    Payload,
    Send,
    ServerTimeout,
    State,
    Table,
    Transaction,
    TransportFailed,
)
from rtc64.sip.via import MAGIC_COOKIE

ServerKey = tuple[Hashable, ...]

_A = Action
_S = State
_I = Input


def invite_server_table(rfc6026: bool = True) -> Table:
    """RFC 3261 Figure 7; with ``rfc6026`` a 2xx leads to ACCEPTED (RFC 6026 Figure 7)."""
    table: Table = {
        _S.PROCEEDING: {
            _I.REQUEST: (_S.PROCEEDING, _A.RESEND),
            _I.ACK: (_S.PROCEEDING, _A.ABSORB),
            _I.TU_1XX: (_S.PROCEEDING, _A.SEND_RESPONSE),
            _I.TU_2XX: (_S.ACCEPTED if rfc6026 else _S.TERMINATED, _A.SEND_RESPONSE),
            _I.TU_FINAL: (_S.COMPLETED, _A.SEND_RESPONSE),
            _I.TRANSPORT_ERROR: (_S.TERMINATED, _A.TRANSPORT_FAILED),
        },
        _S.COMPLETED: {
            Timer.TIMER_G: (_S.COMPLETED, _A.RETRANSMIT),
            Timer.TIMER_H: (_S.TERMINATED, _A.TIMEOUT),
            _I.REQUEST: (_S.COMPLETED, _A.RESEND),
            _I.ACK: (_S.CONFIRMED, _A.ABSORB),
            _I.TRANSPORT_ERROR: (_S.TERMINATED, _A.TRANSPORT_FAILED),
        },
        _S.CONFIRMED: {
            Timer.TIMER_I: (_S.TERMINATED, _A.NONE),
            _I.REQUEST: (_S.CONFIRMED, _A.ABSORB),
            _I.ACK: (_S.CONFIRMED, _A.ABSORB),
        },
        _S.TERMINATED: {},
    }
    if rfc6026:
        table[_S.ACCEPTED] = {
            Timer.TIMER_L: (_S.TERMINATED, _A.NONE),
            _I.REQUEST: (_S.ACCEPTED, _A.ABSORB),
            _I.ACK: (_S.ACCEPTED, _A.ACK_TO_TU),
            _I.TU_2XX: (_S.ACCEPTED, _A.SEND_RESPONSE),
        }
    return table


NON_INVITE_SERVER: Table = {
    _S.TRYING: {
        _I.REQUEST: (_S.TRYING, _A.ABSORB),
        _I.TU_1XX: (_S.PROCEEDING, _A.SEND_RESPONSE),
        _I.TU_2XX: (_S.COMPLETED, _A.SEND_RESPONSE),
        _I.TU_FINAL: (_S.COMPLETED, _A.SEND_RESPONSE),
    },
    _S.PROCEEDING: {
        _I.REQUEST: (_S.PROCEEDING, _A.RESEND),
        _I.TU_1XX: (_S.PROCEEDING, _A.SEND_RESPONSE),
        _I.TU_2XX: (_S.COMPLETED, _A.SEND_RESPONSE),
        _I.TU_FINAL: (_S.COMPLETED, _A.SEND_RESPONSE),
        _I.TRANSPORT_ERROR: (_S.TERMINATED, _A.TRANSPORT_FAILED),
    },
    _S.COMPLETED: {
        Timer.TIMER_J: (_S.TERMINATED, _A.NONE),
        _I.REQUEST: (_S.COMPLETED, _A.RESEND),
        _I.TRANSPORT_ERROR: (_S.TERMINATED, _A.TRANSPORT_FAILED),
    },
    _S.TERMINATED: {},
}
"""RFC 3261 Figure 8."""

INVITE_SERVER_ENTRY: Entry = {
    _S.PROCEEDING: (None, None),
    _S.COMPLETED: (Timer.TIMER_G, Timer.TIMER_H),
    _S.CONFIRMED: (None, Timer.TIMER_I),
    _S.ACCEPTED: (None, Timer.TIMER_L),
    _S.TERMINATED: (None, None),
}
NON_INVITE_SERVER_ENTRY: Entry = {
    _S.TRYING: (None, None),
    _S.PROCEEDING: (None, None),
    _S.COMPLETED: (None, Timer.TIMER_J),
    _S.TERMINATED: (None, None),
}


def tu_input(status: int) -> Input:
    """Classify a status code the TU sends."""
    if not 100 <= status <= 699:
        raise LocalProtocolError(f"status {status} out of range 100..699")
    if status < 200:
        return _I.TU_1XX
    if status < 300:
        return _I.TU_2XX
    return _I.TU_FINAL


def is_rfc3261(request: Request) -> bool:
    """True if the top Via branch carries the magic cookie (§17.2.3)."""
    b = request.vias[0].branch
    return b is not None and b.startswith(MAGIC_COOKIE)


def server_key(request: Request, method: bytes | None = None) -> ServerKey:
    """§17.2.3 key of ``request`` as if its method were ``method`` (default: its own).

    ACK and CANCEL callers pass ``b"INVITE"`` to find the INVITE transaction (the RFC 2543
    ACK uses ``rfc2543_ack_key`` instead)."""
    via = request.vias[0]
    m = request.method if method is None else method
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return (branch, via.host, via.port, m)
    cseq = request.cseq
    return (request.uri, request.to.tag, request.from_.tag, request.call_id, cseq.seq, m, via)


def rfc2543_ack_key(request: Request) -> ServerKey:
    """RFC 2543 ACK matching without the To tag (compared with the response's afterwards)."""
    return (request.uri, request.from_.tag, request.call_id, request.cseq.seq, request.vias[0])


class ServerTransaction(Transaction):
    """One server transaction: ``request`` as received, ``status`` the last one sent."""

    __slots__ = ("ack_key", "key", "status", "to_tag")

    def __init__(
        self,
        request: Request,
        dest: object,
        reliable: bool,
        now: float,
        *,
        timers: TimerConfig,
        table: Table,
    ) -> None:
        invite = request.method == b"INVITE"
        if request.method == b"ACK":
            raise LocalProtocolError("an ACK never creates a server transaction (§17.2.3)")
        super().__init__(
            request,
            dest,
            reliable,
            timers=timers,
            table=table,
            entry=INVITE_SERVER_ENTRY if invite else NON_INVITE_SERVER_ENTRY,
            state=_S.PROCEEDING if invite else _S.TRYING,
        )
        self.key = server_key(request)
        self.ack_key = None if not invite or is_rfc3261(request) else rfc2543_ack_key(request)
        self.status = 0
        self.to_tag: bytes | None = None
        self._enter(self.state, now)

    @property
    def last_response(self) -> bytes | None:
        """The bytes of the last response sent (what retransmissions re-send)."""
        return None if self._out is None else self._out.data

    def respond(self, status: int, data: bytes, now: float, out: list[Event]) -> bool:
        """Pass a response from the TU; False if the state takes no such response."""
        if not self.handle(tu_input(status), now, out, data):
            return False
        self.status = status
        return True

    def _act(
        self,
        action: Action,
        inp: Input | Timer,
        now: float,
        out: list[Event],
        payload: Payload,
    ) -> None:
        if action is _A.SEND_RESPONSE:
            assert isinstance(payload, bytes)
            self._out = Send(payload, self.dest)
            self._emit(self._out, out)
        elif action is _A.RESEND:
            if self._out is not None:
                self._emit(self._out, out)
            out.append(Absorbed(self))
        elif action is _A.ABSORB:
            out.append(Absorbed(self))
        elif action is _A.ACK_TO_TU:
            assert isinstance(payload, tuple)
            out.append(AckReceived(payload[0], payload[1], self))
        elif action is _A.TIMEOUT:
            out.append(ServerTimeout(self))
        elif action is _A.TRANSPORT_FAILED:
            out.append(TransportFailed(self, payload if isinstance(payload, str) else ""))
        else:
            super()._act(action, inp, now, out, payload)


def to_tag_of(response: Response | bytes) -> bytes | None:
    """The To tag of a response we send (parsed only when given bytes)."""
    if isinstance(response, Response):
        return response.to.tag
    msg = parse_datagram(response)
    return msg.to.tag
