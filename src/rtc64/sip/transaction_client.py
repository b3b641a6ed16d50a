# Client transactions (RFC 3261 §17.1; RFC 6026 §8.4-§8.5 for ACCEPTED and Timer M).
#
# Rules:
# - INVITE: CALLING -> PROCEEDING -> COMPLETED / ACCEPTED -> TERMINATED (§17.1.1.2,
#   Figure 5). Timer A retransmits the request (T1, doubling, unreliable only), Timer B
#   (64*T1) times out CALLING, Timer D (>= 32 s, zero on reliable) ends COMPLETED.
# - A non-2xx final is acknowledged by the transaction itself (§17.1.1.3): same branch,
#   Request-URI, Call-ID, From and CSeq number as the request, To of the response, CSeq
#   method ACK, the single top Via and the Route headers of the request. Retransmitted
#   finals re-send that ACK and are absorbed.
# - A 2xx ends the transaction (RFC 3261) or, with RFC 6026, moves it to ACCEPTED where
#   further 2xx are passed to the TU (which ACKs them) until Timer M (64*T1).
# - non-INVITE: TRYING -> PROCEEDING -> COMPLETED -> TERMINATED (§17.1.2.2, Figure 6).
#   Timer E retransmits (T1 doubling up to T2 in TRYING, every T2 in PROCEEDING,
#   unreliable only), Timer F (64*T1) times out, Timer K (T4, zero on reliable) ends
#   COMPLETED.
# - Matching (§17.1.3): top Via branch of the request + CSeq method; ``key`` holds both.
# - A transport error ends the transaction and is reported (§17.1.4).
"""Client transaction machines and the requests they build (ACK, CANCEL)."""

from __future__ import annotations

from rtc64.errors import LocalProtocolError
from rtc64.sip.message import Request, Response, build_request
from rtc64.sip.timers import Timer, TimerConfig
from rtc64.sip.transaction_base import (
    Absorbed,
    Action,
    ClientTimeout,
    Entry,
    Event,
    Input,
    Payload,
    ResponseReceived,
    Send,
    State,
    Table,
    Transaction,
    TransportFailed,
)
from rtc64.sip.uri import format_uri
from rtc64.sip.via import MAGIC_COOKIE, format_via

ClientKey = tuple[bytes, bytes]

_A = Action
_S = State
_I = Input


def invite_client_table(rfc6026: bool = True) -> Table:
    """RFC 3261 Figure 5; with ``rfc6026`` a 2xx leads to ACCEPTED (RFC 6026 Figure 5)."""
    after_2xx = _S.ACCEPTED if rfc6026 else _S.TERMINATED
    table: Table = {
        _S.CALLING: {
            Timer.TIMER_A: (_S.CALLING, _A.RETRANSMIT),
            Timer.TIMER_B: (_S.TERMINATED, _A.TIMEOUT),
            _I.RESPONSE_1XX: (_S.PROCEEDING, _A.PASS_UP),
            _I.RESPONSE_2XX: (after_2xx, _A.PASS_UP),
            _I.RESPONSE_FINAL: (_S.COMPLETED, _A.ACK_AND_PASS_UP),
            _I.TRANSPORT_ERROR: (_S.TERMINATED, _A.TRANSPORT_FAILED),
        },
        _S.PROCEEDING: {
            _I.RESPONSE_1XX: (_S.PROCEEDING, _A.PASS_UP),
            _I.RESPONSE_2XX: (after_2xx, _A.PASS_UP),
            _I.RESPONSE_FINAL: (_S.COMPLETED, _A.ACK_AND_PASS_UP),
            _I.TRANSPORT_ERROR: (_S.TERMINATED, _A.TRANSPORT_FAILED),
        },
        _S.COMPLETED: {
            Timer.TIMER_D: (_S.TERMINATED, _A.NONE),
            _I.RESPONSE_1XX: (_S.COMPLETED, _A.ABSORB),
            _I.RESPONSE_2XX: (_S.COMPLETED, _A.ABSORB),
            _I.RESPONSE_FINAL: (_S.COMPLETED, _A.RESEND),
            _I.TRANSPORT_ERROR: (_S.TERMINATED, _A.TRANSPORT_FAILED),
        },
        _S.TERMINATED: {},
    }
    if rfc6026:
        table[_S.ACCEPTED] = {
            Timer.TIMER_M: (_S.TERMINATED, _A.NONE),
            _I.RESPONSE_1XX: (_S.ACCEPTED, _A.ABSORB),
            _I.RESPONSE_2XX: (_S.ACCEPTED, _A.PASS_UP),
            _I.RESPONSE_FINAL: (_S.ACCEPTED, _A.ABSORB),
        }
    return table


NON_INVITE_CLIENT: Table = {
    _S.TRYING: {
        Timer.TIMER_E: (_S.TRYING, _A.RETRANSMIT),
        Timer.TIMER_F: (_S.TERMINATED, _A.TIMEOUT),
        _I.RESPONSE_1XX: (_S.PROCEEDING, _A.PASS_UP),
        _I.RESPONSE_2XX: (_S.COMPLETED, _A.PASS_UP),
        _I.RESPONSE_FINAL: (_S.COMPLETED, _A.PASS_UP),
        _I.TRANSPORT_ERROR: (_S.TERMINATED, _A.TRANSPORT_FAILED),
    },
    _S.PROCEEDING: {
        Timer.TIMER_E: (_S.PROCEEDING, _A.RETRANSMIT_T2),
        Timer.TIMER_F: (_S.TERMINATED, _A.TIMEOUT),
        _I.RESPONSE_1XX: (_S.PROCEEDING, _A.PASS_UP),
        _I.RESPONSE_2XX: (_S.COMPLETED, _A.PASS_UP),
        _I.RESPONSE_FINAL: (_S.COMPLETED, _A.PASS_UP),
        _I.TRANSPORT_ERROR: (_S.TERMINATED, _A.TRANSPORT_FAILED),
    },
    _S.COMPLETED: {
        Timer.TIMER_K: (_S.TERMINATED, _A.NONE),
        _I.RESPONSE_1XX: (_S.COMPLETED, _A.ABSORB),
        _I.RESPONSE_2XX: (_S.COMPLETED, _A.ABSORB),
        _I.RESPONSE_FINAL: (_S.COMPLETED, _A.ABSORB),
    },
    _S.TERMINATED: {},
}
"""RFC 3261 Figure 6."""

INVITE_CLIENT_ENTRY: Entry = {
    _S.CALLING: (Timer.TIMER_A, Timer.TIMER_B),
    _S.PROCEEDING: (None, None),
    _S.COMPLETED: (None, Timer.TIMER_D),
    _S.ACCEPTED: (None, Timer.TIMER_M),
    _S.TERMINATED: (None, None),
}
NON_INVITE_CLIENT_ENTRY: Entry = {
    _S.TRYING: (Timer.TIMER_E, Timer.TIMER_F),
    # PROCEEDING keeps E and F running (§17.1.2.2).
    _S.COMPLETED: (None, Timer.TIMER_K),
    _S.TERMINATED: (None, None),
}


def response_input(status: int) -> Input:
    """Classify a received status code."""
    if status < 200:
        return _I.RESPONSE_1XX
    if status < 300:
        return _I.RESPONSE_2XX
    return _I.RESPONSE_FINAL


def client_key(request: Request) -> ClientKey:
    """§17.1.3 key of a request we send; the branch must carry the magic cookie."""
    branch = request.vias[0].branch
    if branch is None or not branch.startswith(MAGIC_COOKIE):
        raise LocalProtocolError(f"client request needs an RFC 3261 branch, got {branch!r}")
    return branch, request.cseq.method


def response_key(response: Response) -> ClientKey | None:
    """§17.1.3 key of a received response, or ``None`` without a branch."""
    branch = response.vias[0].branch
    return None if branch is None else (branch, response.cseq.method)


class ClientTransaction(Transaction):
    """One client transaction: ``request`` as sent, ``response`` the final one received."""

    __slots__ = ("_ack", "key", "response")

    def __init__(
        self,
        request: Request,
        data: bytes,
        dest: object,
        reliable: bool,
        *,
        timers: TimerConfig,
        table: Table,
    ) -> None:
        invite = request.method == b"INVITE"
        if request.method == b"ACK":
            raise LocalProtocolError("ACK is sent without a client transaction (§17.1.1.3)")
        super().__init__(
            request,
            dest,
            reliable,
            timers=timers,
            table=table,
            entry=INVITE_CLIENT_ENTRY if invite else NON_INVITE_CLIENT_ENTRY,
            state=_S.CALLING if invite else _S.TRYING,
        )
        self.key = client_key(request)
        self.response: Response | None = None
        self._ack: Send | None = None
        self._out = Send(data, dest)

    @property
    def data(self) -> bytes:
        """The request bytes, as sent and retransmitted."""
        assert self._out is not None
        return self._out.data

    @property
    def ack(self) -> bytes | None:
        """The ACK this transaction generated for a non-2xx final response, if any."""
        return None if self._ack is None else self._ack.data

    def start(self, now: float, out: list[Event]) -> None:
        """Send the request and start the first state's timers."""
        self._enter(self.state, now)
        assert self._out is not None
        self._emit(self._out, out)

    def take_status(self, status: int, now: float, out: list[Event]) -> bool | None:
        """A 1xx or 2xx response known by its status alone (the proxy's raw path): True
        when the TU should see it, False when absorbed, None when this state wants the
        parsed response (nothing changed then). Timers must not be overdue."""
        if status >= 300:
            return None
        row = self._table[self.state].get(response_input(status))
        if row is None:
            return None
        state, action = row
        if action is _A.PASS_UP:
            seen = True
        elif action is _A.ABSORB:
            seen = False
        else:
            return None
        if state is not self.state:
            self._enter(state, now)
        self.advance(now, out)
        return seen

    def _act(
        self,
        action: Action,
        inp: Input | Timer,
        now: float,
        out: list[Event],
        payload: Payload,
    ) -> None:
        if action is _A.PASS_UP or action is _A.ACK_AND_PASS_UP:
            assert isinstance(payload, Response)
            if payload.status >= 200:
                self.response = payload
                if action is _A.ACK_AND_PASS_UP:
                    self._ack = Send(make_ack(self.request, payload), self.dest)
                    self._emit(self._ack, out)
            out.append(ResponseReceived(payload, self))
        elif action is _A.RESEND:
            if self._ack is not None:
                self._emit(self._ack, out)
            out.append(Absorbed(self))
        elif action is _A.ABSORB:
            out.append(Absorbed(self))
        elif action is _A.TIMEOUT:
            out.append(ClientTimeout(self))
        elif action is _A.TRANSPORT_FAILED:
            out.append(TransportFailed(self, payload if isinstance(payload, str) else ""))
        else:
            super()._act(action, inp, now, out, payload)


def _hop_headers(request: Request, method: bytes, to_value: bytes) -> list[tuple[bytes, bytes]]:
    """Header lines shared by ACK (§17.1.1.3) and CANCEL (§9.1)."""
    mf = request.max_forwards
    top = request.get(b"via")  # byte-exact when the first Via line holds one value
    headers = [
        (b"Via", top if top is not None and b"," not in top else format_via(request.vias[0])),
        (b"Max-Forwards", b"%d" % (70 if mf is None else mf)),
        (b"From", request.get(b"from") or b""),
        (b"To", to_value),
        (b"Call-ID", request.call_id),
        (b"CSeq", b"%d %s" % (request.cseq.seq, method)),
    ]
    headers += [(b"Route", r) for r in request.get_all(b"route")]
    return headers


def make_ack(request: Request, response: Response) -> bytes:
    """The ACK for a non-2xx final ``response`` to INVITE ``request`` (§17.1.1.3)."""
    parts = [b"ACK " + format_uri(request.uri) + b" SIP/2.0"]
    parts += [
        name + b": " + value
        for name, value in _hop_headers(request, b"ACK", response.get(b"to") or b"")
    ]
    parts.append(b"Content-Length: 0\r\n\r\n")
    return b"\r\n".join(parts)


def make_cancel(request: Request) -> Request:
    """A CANCEL for ``request`` (§9.1): same Request-URI, Call-ID, From, To, CSeq number,
    single top Via (so the same branch) and Route headers; CSeq method CANCEL."""
    if request.method == b"ACK":
        raise LocalProtocolError("an ACK cannot be cancelled")
    headers = _hop_headers(request, b"CANCEL", request.get(b"to") or b"")
    return build_request(b"CANCEL", request.uri, headers)
