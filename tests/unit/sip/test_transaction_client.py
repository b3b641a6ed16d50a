"""Client transactions (RFC 3261 §17.1, RFC 6026 §8.4): every state/input pair, fake clock."""

from __future__ import annotations

import pytest

from rtc64.errors import LocalProtocolError
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Request
from rtc64.sip.serializer import serialize
from rtc64.sip.transaction import (
    Absorbed,
    ClientTimeout,
    ClientTransaction,
    ResponseReceived,
    Send,
    State,
    StrayResponse,
    Terminated,
    Timer,
    TimerConfig,
    TransactionLayer,
    TransportFailed,
    make_ack,
    make_cancel,
)

from .txn_messages import BRANCH, kinds, request, response, run_until, send_times, sends

DEST = ("192.0.2.1", 5060)


def start(
    method: bytes = b"INVITE", *, reliable: bool = False, rfc6026: bool = True, **kw: object
) -> tuple[TransactionLayer, ClientTransaction, Request]:
    layer = TransactionLayer(rfc6026=rfc6026)
    req = request(method, **kw)  # type: ignore[arg-type]
    txn, events = layer.start_client(req, DEST, reliable, 0.0)
    assert events == [Send(serialize(req), DEST)]
    return layer, txn, req


# -- INVITE client: CALLING ----------------------------------------------------------------


def test_invite_timer_a_doubles_and_timer_b_times_out() -> None:
    layer, txn, _ = start()
    assert txn.state is State.CALLING
    assert txn.timers() == {Timer.TIMER_A: 0.5, Timer.TIMER_B: 32.0}
    timed = run_until(layer, 100.0)
    # A: 0.5, 1, 2, 4, 8, 16 (no T2 cap for INVITE); B at 64*T1 = 32 wins over A at 63.5.
    assert send_times(timed) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(e.data == txn.data for _, e in timed if isinstance(e, Send))
    assert [(t, type(e)) for t, e in timed if not isinstance(e, Send)] == [
        (32.0, ClientTimeout),
        (32.0, Terminated),
    ]
    assert txn.terminated
    assert len(layer) == 0
    assert layer.get_timer() is None


def test_invite_reliable_has_no_timer_a() -> None:
    layer, txn, _ = start(reliable=True)
    assert txn.timers() == {Timer.TIMER_B: 32.0}
    timed = run_until(layer, 100.0)
    assert kinds([e for _, e in timed]) == ["ClientTimeout", "Terminated"]
    assert timed[0][0] == 32.0


def test_invite_custom_timers() -> None:
    layer = TransactionLayer(TimerConfig(t1=0.1, t2=1.0, t4=1.0, timer_d=1.0))
    layer.start_client(request(), DEST, False, 10.0)
    timed = run_until(layer, 100.0)
    assert send_times(timed) == pytest.approx([10.1, 10.3, 10.7, 11.5, 13.1, 16.3])
    assert timed[-1][0] == pytest.approx(16.4)  # 64 * 0.1


def test_invite_calling_1xx_goes_proceeding_and_stops_timers() -> None:
    layer, txn, req = start()
    r180 = response(req, 180)
    ev = layer.receive_response(r180, 0.2)
    assert ev == [ResponseReceived(r180, txn)]
    assert txn.state is State.PROCEEDING
    assert txn.timers() == {}
    assert layer.get_timer() is None
    # every further provisional goes up again (§17.1.1.2)
    assert layer.receive_response(r180, 0.3) == [ResponseReceived(r180, txn)]
    assert run_until(layer, 1000.0) == []
    assert txn.state is State.PROCEEDING


@pytest.mark.parametrize("proceeding", [False, True])
@pytest.mark.parametrize("reliable", [False, True])
def test_invite_non2xx_final_sends_ack(proceeding: bool, reliable: bool) -> None:
    layer, txn, req = start(reliable=reliable, routes=(b"<sip:p1.example.com;lr>",))
    if proceeding:
        layer.receive_response(response(req, 100), 0.1)
    r486 = response(req, 486)
    ev = layer.receive_response(r486, 0.2)
    ack = make_ack(req, r486)
    assert ev[:2] == [Send(ack, DEST), ResponseReceived(r486, txn)]
    assert txn.ack == ack
    assert txn.response is r486
    if reliable:  # Timer D is zero: terminated at once
        assert ev[2:] == [Terminated(txn)]
        assert len(layer) == 0
        return
    assert len(ev) == 2
    assert txn.state is State.COMPLETED
    assert txn.timers() == {Timer.TIMER_D: 32.2}
    # retransmitted final: ACK again, absorbed, TU not told
    assert layer.receive_response(r486, 1.0) == [Send(ack, DEST), Absorbed(txn)]
    # 1xx and 2xx in COMPLETED are absorbed
    assert layer.receive_response(response(req, 180), 1.1) == [Absorbed(txn)]
    assert layer.receive_response(response(req, 200), 1.2) == [Absorbed(txn)]
    timed = run_until(layer, 100.0)
    assert [(t, type(e)) for t, e in timed] == [(32.2, Terminated)]


def test_ack_headers() -> None:
    req = request(
        routes=(b"<sip:p1.example.com;lr>", b"<sip:p2.example.com;lr>"),
        extra_vias=(b"SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKother",),
    )
    r = response(req, 404, to_tag=b"xyz")
    ack = parse_datagram(make_ack(req, r))
    assert isinstance(ack, Request)
    assert ack.method == b"ACK"
    assert ack.uri == req.uri
    assert ack.vias == (req.via,)  # single Via, equal to the request's top one
    assert ack.via.branch == BRANCH
    assert ack.call_id == req.call_id
    assert ack.from_ == req.from_
    assert ack.to.tag == b"xyz"
    assert ack.to.uri == req.to.uri
    assert (ack.cseq.seq, ack.cseq.method) == (req.cseq.seq, b"ACK")
    assert ack.get_all(b"route") == req.get_all(b"route")
    assert ack.max_forwards == 69
    assert ack.body == b""
    assert ack.get(b"contact") is None


@pytest.mark.parametrize("proceeding", [False, True])
def test_invite_2xx_rfc6026_accepted(proceeding: bool) -> None:
    layer, txn, req = start()
    if proceeding:
        layer.receive_response(response(req, 183), 0.1)
    r200 = response(req, 200)
    assert layer.receive_response(r200, 0.3) == [ResponseReceived(r200, txn)]
    assert txn.state is State.ACCEPTED
    assert txn.ack is None  # the TU acknowledges a 2xx
    assert txn.timers() == {Timer.TIMER_M: 32.3}
    # 2xx retransmissions (or 2xx from other forks) still go to the TU
    other = response(req, 200, to_tag=b"fork2")
    assert layer.receive_response(other, 2.0) == [ResponseReceived(other, txn)]
    assert layer.receive_response(response(req, 180), 2.1) == [Absorbed(txn)]
    assert layer.receive_response(response(req, 486), 2.2) == [Absorbed(txn)]
    assert layer.transport_error(txn, 2.3) == []
    timed = run_until(layer, 100.0)
    assert [(t, type(e)) for t, e in timed] == [(32.3, Terminated)]
    # after Timer M a 2xx is a stray (forwarded statelessly by a proxy)
    assert layer.receive_response(r200, 40.0) == [StrayResponse(r200)]


def test_invite_2xx_rfc3261_terminates() -> None:
    layer, txn, req = start(rfc6026=False)
    r200 = response(req, 200)
    assert layer.receive_response(r200, 0.3) == [ResponseReceived(r200, txn), Terminated(txn)]
    assert layer.receive_response(r200, 1.5) == [StrayResponse(r200)]
    assert len(layer) == 0


@pytest.mark.parametrize("state", ["CALLING", "PROCEEDING", "COMPLETED"])
def test_invite_transport_error(state: str) -> None:
    layer, txn, req = start()
    if state != "CALLING":
        layer.receive_response(response(req, 180), 0.1)
    if state == "COMPLETED":
        layer.receive_response(response(req, 503), 0.2)
    assert txn.state.name == state
    assert layer.transport_error(txn, 1.0) == [TransportFailed(txn), Terminated(txn)]
    assert layer.transport_error(txn, 1.1) == []
    assert len(layer) == 0 and layer.get_timer() is None


# -- non-INVITE client ---------------------------------------------------------------------


def test_non_invite_timer_e_caps_at_t2_and_timer_f() -> None:
    layer, txn, _ = start(b"OPTIONS")
    assert txn.state is State.TRYING
    assert txn.timers() == {Timer.TIMER_E: 0.5, Timer.TIMER_F: 32.0}
    timed = run_until(layer, 100.0)
    assert send_times(timed) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert [(t, type(e)) for t, e in timed if not isinstance(e, Send)] == [
        (32.0, ClientTimeout),
        (32.0, Terminated),
    ]


def test_non_invite_proceeding_retransmits_every_t2() -> None:
    layer, txn, req = start(b"REGISTER")
    assert sends(layer.handle_timer(0.5)) == [txn.data]  # next E at 1.5
    r100 = response(req, 100)
    assert layer.receive_response(r100, 1.0) == [ResponseReceived(r100, txn)]
    assert txn.state is State.PROCEEDING
    assert txn.timers() == {Timer.TIMER_E: 1.5, Timer.TIMER_F: 32.0}  # kept running
    timed = run_until(layer, 100.0)
    assert send_times(timed) == [1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5]
    assert kinds([e for _, e in timed if not isinstance(e, Send)]) == [
        "ClientTimeout",
        "Terminated",
    ]


@pytest.mark.parametrize("status", [200, 404])
@pytest.mark.parametrize("proceeding", [False, True])
def test_non_invite_final_timer_k(status: int, proceeding: bool) -> None:
    layer, txn, req = start(b"BYE")
    if proceeding:
        layer.receive_response(response(req, 100), 0.1)
        assert layer.receive_response(response(req, 100), 0.2)[0].__class__ is ResponseReceived
    final = response(req, status)
    assert layer.receive_response(final, 0.4) == [ResponseReceived(final, txn)]
    assert txn.state is State.COMPLETED
    assert txn.timers() == {Timer.TIMER_K: 5.4}
    for st in (100, 200, 404):
        assert layer.receive_response(response(req, st), 1.0) == [Absorbed(txn)]
    assert layer.transport_error(txn, 1.0) == []
    timed = run_until(layer, 100.0)
    assert [(t, type(e)) for t, e in timed] == [(5.4, Terminated)]


def test_non_invite_reliable() -> None:
    layer, txn, req = start(b"MESSAGE", reliable=True)
    assert txn.timers() == {Timer.TIMER_F: 32.0}
    final = response(req, 202)
    assert layer.receive_response(final, 1.0) == [ResponseReceived(final, txn), Terminated(txn)]
    layer, txn, _ = start(b"MESSAGE", reliable=True)
    assert kinds(layer.handle_timer(32.0)) == ["ClientTimeout", "Terminated"]


@pytest.mark.parametrize("proceeding", [False, True])
def test_non_invite_transport_error(proceeding: bool) -> None:
    layer, txn, req = start(b"OPTIONS")
    if proceeding:
        layer.receive_response(response(req, 100), 0.1)
    assert layer.transport_error(txn, 1.0) == [TransportFailed(txn), Terminated(txn)]


# -- matching (§17.1.3) and errors ---------------------------------------------------------


def test_response_matching() -> None:
    layer, invite, req = start()
    cancel_req = make_cancel(req)
    cancel, _ = layer.start_client(cancel_req, DEST, False, 0.1)
    assert invite.key == (BRANCH, b"INVITE") and cancel.key == (BRANCH, b"CANCEL")
    # the 200 to CANCEL matches the CANCEL transaction, the 487 the INVITE one
    ok = response(cancel_req, 200)
    assert layer.receive_response(ok, 0.3) == [ResponseReceived(ok, cancel)]
    r487 = response(req, 487)
    assert layer.receive_response(r487, 0.4)[1] == ResponseReceived(r487, invite)
    # another branch, or no branch at all: stray
    other = response(request(branch=b"z9hG4bKnope"), 200)
    assert layer.receive_response(other, 0.5) == [StrayResponse(other)]
    bare = response(request(branch=None), 200)
    assert layer.receive_response(bare, 0.5) == [StrayResponse(bare)]
    assert layer.find_client(r487) is invite
    assert layer.find_client(bare) is None


def test_overdue_timer_fires_before_matching() -> None:
    layer, txn, req = start(reliable=True)
    r180 = response(req, 180)
    # nobody called handle_timer at 32: Timer B ends the transaction first
    assert layer.receive_response(r180, 40.0) == [
        ClientTimeout(txn),
        Terminated(txn),
        StrayResponse(r180),
    ]


def test_overdue_retransmission_fires_before_the_response() -> None:
    layer, txn, req = start(b"OPTIONS")
    final = response(req, 200)
    # E was due at 0.5 and nobody fired it: it goes out before the response is processed
    assert layer.receive_response(final, 0.7) == [
        Send(txn.data, DEST),
        ResponseReceived(final, txn),
    ]


def test_start_client_errors() -> None:
    layer = TransactionLayer()
    with pytest.raises(LocalProtocolError):
        layer.start_client(request(b"ACK"), DEST, False, 0.0)
    with pytest.raises(LocalProtocolError):
        layer.start_client(request(branch=b"1234"), DEST, False, 0.0)
    with pytest.raises(LocalProtocolError):
        layer.start_client(request(branch=None), DEST, False, 0.0)
    layer.start_client(request(), DEST, False, 0.0)
    with pytest.raises(LocalProtocolError):
        layer.start_client(request(), DEST, False, 0.0)
    with pytest.raises(LocalProtocolError):
        make_cancel(request(b"ACK"))
    with pytest.raises(LocalProtocolError):
        TimerConfig(t1=0)
    with pytest.raises(LocalProtocolError):
        TimerConfig(t1=5, t2=4)


def test_start_client_keeps_given_bytes() -> None:
    layer = TransactionLayer()
    req = request(b"OPTIONS")
    data = serialize(req).replace(b"Max-Forwards: 69", b"Max-Forwards: 68")
    txn, ev = layer.start_client(req, DEST, False, 0.0, data)
    assert ev == [Send(data, DEST)]
    assert sends(layer.handle_timer(0.5)) == [data]
    assert txn.data is data


def test_make_cancel() -> None:
    req = request(
        routes=(b"<sip:p1.example.com;lr>",), extra_vias=(b"SIP/2.0/TCP h;branch=z9hG4bKx",)
    )
    c = make_cancel(req)
    assert c.method == b"CANCEL"
    assert c.uri == req.uri
    assert c.vias == (req.via,)
    assert (c.call_id, c.from_, c.to) == (req.call_id, req.from_, req.to)
    assert (c.cseq.seq, c.cseq.method) == (req.cseq.seq, b"CANCEL")
    assert c.get_all(b"route") == req.get_all(b"route")


def test_ack_with_comma_joined_vias_keeps_only_the_top_one() -> None:
    req = request(sent_by=b"pc33.atlanta.com;branch=z9hG4bKtop, SIP/2.0/UDP h2")
    assert len(req.vias) == 2
    ack = parse_datagram(make_ack(req, response(req, 480)))
    assert isinstance(ack, Request)
    assert ack.vias == (req.via,)
    assert ack.via.branch == b"z9hG4bKtop"
