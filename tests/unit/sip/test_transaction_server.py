"""Server transactions (RFC 3261 §17.2, RFC 6026 §8.6-§8.7) and request matching."""

from __future__ import annotations

import pytest

from rtc64.errors import LocalProtocolError
from rtc64.sip.message import Request, make_response
from rtc64.sip.serializer import serialize
from rtc64.sip.transaction import (
    Absorbed,
    AckReceived,
    NewRequest,
    Send,
    ServerTimeout,
    ServerTransaction,
    State,
    Terminated,
    Timer,
    TransactionLayer,
    TransportFailed,
)

from .txn_messages import kinds, new_txn, request, run_until, send_times, sends

SRC = ("198.51.100.7", 5060)


def receive(
    req: Request, *, reliable: bool = False, rfc6026: bool = True, now: float = 0.0
) -> tuple[TransactionLayer, ServerTransaction]:
    layer = TransactionLayer(rfc6026=rfc6026)
    ev = layer.receive_request(req, SRC, reliable, now)
    assert len(ev) == 1 and isinstance(ev[0], NewRequest)
    txn = ev[0].txn
    assert txn.request is req and txn.dest == SRC
    return layer, txn


def ack_for(invite: Request, *, to_tag: bytes = b"tt", branch: bytes | None = None) -> Request:
    """The ACK a UAC sends for a non-2xx (same branch) or a 2xx (``branch`` given)."""
    b = invite.via.branch if branch is None else branch
    return request(b"ACK", branch=b, to_tag=to_tag)


def reply(layer: TransactionLayer, txn: ServerTransaction, status: int, now: float) -> bytes:
    r = make_response(txn.request, status, to_tag=b"tt")
    ev = layer.send_response(txn, r, now)
    data = serialize(r)
    assert ev[0] == Send(data, SRC)
    return data


# -- INVITE server -------------------------------------------------------------------------


def test_invite_proceeding_absorbs_and_resends_provisional() -> None:
    inv = request()
    layer, txn = receive(inv)
    assert txn.state is State.PROCEEDING and txn.timers() == {}
    # retransmission before any response: absorbed, nothing to send
    assert layer.receive_request(inv, SRC, False, 0.1) == [Absorbed(txn)]
    r180 = reply(layer, txn, 180, 0.2)
    assert layer.receive_request(inv, SRC, False, 0.3) == [Send(r180, SRC), Absorbed(txn)]
    r183 = reply(layer, txn, 183, 0.4)
    assert sends(layer.receive_request(inv, SRC, False, 0.5)) == [r183]
    assert txn.last_response == r183 and txn.status == 183
    # ACK before any final is absorbed
    assert layer.receive_request(ack_for(inv), SRC, False, 0.6) == [Absorbed(txn)]
    assert layer.get_timer() is None


def test_invite_timer_g_and_h() -> None:
    inv = request()
    layer, txn = receive(inv)
    r486 = reply(layer, txn, 486, 1.0)
    assert txn.state is State.COMPLETED
    assert txn.timers() == {Timer.TIMER_G: 1.5, Timer.TIMER_H: 33.0}
    timed = run_until(layer, 100.0)
    # G: T1 doubling up to T2; H at 64*T1 after the final
    assert send_times(timed) == [1.5, 2.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5, 32.5]
    assert all(e.data == r486 for _, e in timed if isinstance(e, Send))
    assert [(t, type(e)) for t, e in timed if not isinstance(e, Send)] == [
        (33.0, ServerTimeout),
        (33.0, Terminated),
    ]
    assert len(layer) == 0


def test_invite_completed_retransmission_and_ack() -> None:
    inv = request()
    layer, txn = receive(inv)
    r404 = reply(layer, txn, 404, 0.0)
    assert layer.receive_request(inv, SRC, False, 0.2) == [Send(r404, SRC), Absorbed(txn)]
    assert layer.receive_request(ack_for(inv), SRC, False, 0.3) == [Absorbed(txn)]
    assert txn.state is State.CONFIRMED
    assert txn.timers() == {Timer.TIMER_I: 5.3}
    # CONFIRMED absorbs ACKs and INVITEs without sending
    assert layer.receive_request(ack_for(inv), SRC, False, 1.0) == [Absorbed(txn)]
    assert layer.receive_request(inv, SRC, False, 1.1) == [Absorbed(txn)]
    timed = run_until(layer, 100.0)
    assert [(t, type(e)) for t, e in timed] == [(5.3, Terminated)]


def test_invite_reliable() -> None:
    inv = request()
    layer, txn = receive(inv, reliable=True)
    reply(layer, txn, 500, 0.0)
    assert txn.timers() == {Timer.TIMER_H: 32.0}  # no Timer G
    ev = layer.receive_request(ack_for(inv), SRC, True, 1.0)
    assert ev == [Absorbed(txn), Terminated(txn)]  # Timer I is zero
    layer, txn = receive(inv, reliable=True)
    reply(layer, txn, 500, 0.0)
    assert kinds(layer.handle_timer(32.0)) == ["ServerTimeout", "Terminated"]


def test_invite_2xx_rfc6026_accepted() -> None:
    inv = request()
    layer, txn = receive(inv)
    r200 = reply(layer, txn, 200, 1.0)
    assert txn.state is State.ACCEPTED
    assert txn.timers() == {Timer.TIMER_L: 33.0}
    # retransmitted INVITE absorbed, nothing re-sent (the TU retransmits its 2xx)
    assert layer.receive_request(inv, SRC, False, 1.5) == [Absorbed(txn)]
    again = layer.send_response(txn, r200, 2.0)
    assert again == [Send(r200, SRC)]
    # an ACK matching the transaction goes up with it; the usual 2xx ACK has its own branch
    same = ack_for(inv)
    assert layer.receive_request(same, SRC, False, 2.1) == [AckReceived(same, SRC, txn)]
    e2e = ack_for(inv, branch=b"z9hG4bKe2e")
    assert layer.receive_request(e2e, SRC, False, 2.2) == [AckReceived(e2e, SRC, None)]
    with pytest.raises(LocalProtocolError):
        layer.send_response(txn, make_response(inv, 180), 2.3)
    with pytest.raises(LocalProtocolError):
        layer.send_response(txn, make_response(inv, 486), 2.3)
    assert layer.transport_error(txn, 2.4) == []
    timed = run_until(layer, 100.0)
    assert [(t, type(e)) for t, e in timed] == [(33.0, Terminated)]
    with pytest.raises(LocalProtocolError):
        layer.send_response(txn, r200, 40.0)


def test_invite_2xx_rfc3261_terminates() -> None:
    inv = request()
    layer, txn = receive(inv, rfc6026=False)
    r = make_response(inv, 200)
    assert layer.send_response(txn, r, 0.0) == [Send(serialize(r), SRC), Terminated(txn)]
    ack = ack_for(inv)
    assert layer.receive_request(ack, SRC, False, 0.1) == [AckReceived(ack, SRC, None)]
    # the RFC 3261 flaw RFC 6026 fixes: a retransmitted INVITE is new again
    ev = layer.receive_request(inv, SRC, False, 0.2)
    assert kinds(ev) == ["NewRequest"]
    assert new_txn(ev[0]) is not txn


def test_invite_tu_errors() -> None:
    inv = request()
    layer, txn = receive(inv)
    reply(layer, txn, 486, 0.0)
    for status in (180, 200, 486):
        with pytest.raises(LocalProtocolError):
            layer.send_response(txn, make_response(inv, status), 0.1)
    with pytest.raises(LocalProtocolError):
        layer.send_response(txn, b"garbage", 0.1)
    with pytest.raises(LocalProtocolError):
        layer.send_response(txn, b"SIP/2.0 999 Nope\r\n\r\n", 0.1)
    layer.receive_request(ack_for(inv), SRC, False, 0.2)
    with pytest.raises(LocalProtocolError):
        layer.send_response(txn, make_response(inv, 486), 0.3)


@pytest.mark.parametrize("state", ["PROCEEDING", "COMPLETED"])
def test_invite_transport_error(state: str) -> None:
    layer, txn = receive(request())
    if state == "COMPLETED":
        reply(layer, txn, 603, 0.0)
    assert layer.transport_error(txn, 0.5) == [TransportFailed(txn), Terminated(txn)]
    assert len(layer) == 0 and layer.get_timer() is None


def test_invite_confirmed_ignores_transport_error() -> None:
    inv = request()
    layer, txn = receive(inv)
    reply(layer, txn, 603, 0.0)
    layer.receive_request(ack_for(inv), SRC, False, 0.1)
    assert layer.transport_error(txn, 0.5) == []


def test_auto_trying() -> None:
    inv = request()
    layer = TransactionLayer(auto_trying=True)
    ev = layer.receive_request(inv, SRC, False, 0.0)
    assert kinds(ev) == ["NewRequest", "Send"]
    (trying,) = sends(ev)
    assert trying.startswith(b"SIP/2.0 100 Trying\r\n")
    txn = new_txn(ev[0])
    assert txn.status == 100
    assert sends(layer.receive_request(inv, SRC, False, 0.1)) == [trying]
    # only INVITE gets an automatic 100
    assert kinds(layer.receive_request(request(b"OPTIONS"), SRC, False, 0.2)) == ["NewRequest"]


# -- non-INVITE server ---------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 403])
def test_non_invite_trying_proceeding_completed(status: int) -> None:
    reg = request(b"REGISTER", uri=b"sip:registrar.biloxi.com")
    layer, txn = receive(reg)
    assert txn.state.name == "TRYING"
    assert layer.receive_request(reg, SRC, False, 0.1) == [Absorbed(txn)]  # nothing sent yet
    r100 = reply(layer, txn, 100, 0.2)
    assert txn.state.name == "PROCEEDING"
    assert layer.receive_request(reg, SRC, False, 0.3) == [Send(r100, SRC), Absorbed(txn)]
    final = reply(layer, txn, status, 0.4)
    assert txn.state is State.COMPLETED
    assert txn.timers() == {Timer.TIMER_J: 32.4}
    assert layer.receive_request(reg, SRC, False, 1.0) == [Send(final, SRC), Absorbed(txn)]
    for st in (100, 200, 500):
        with pytest.raises(LocalProtocolError):
            layer.send_response(txn, make_response(reg, st), 1.0)
    timed = run_until(layer, 100.0)
    assert [(t, type(e)) for t, e in timed] == [(32.4, Terminated)]
    # after Timer J the same request is a new transaction
    assert kinds(layer.receive_request(reg, SRC, False, 40.0)) == ["NewRequest"]


def test_non_invite_trying_to_completed_with_bytes() -> None:
    opt = request(b"OPTIONS")
    layer, txn = receive(opt)
    data = serialize(make_response(opt, 200))
    assert layer.send_response(txn, data, 0.0) == [Send(data, SRC)]
    assert txn.state is State.COMPLETED and txn.status == 200


def test_non_invite_reliable_timer_j_zero() -> None:
    opt = request(b"OPTIONS")
    layer, txn = receive(opt, reliable=True)
    data = serialize(make_response(opt, 200))
    assert layer.send_response(txn, data, 0.0) == [Send(data, SRC), Terminated(txn)]
    assert len(layer) == 0


@pytest.mark.parametrize("state", ["TRYING", "PROCEEDING", "COMPLETED"])
def test_non_invite_transport_error(state: str) -> None:
    opt = request(b"OPTIONS")
    layer, txn = receive(opt)
    if state != "TRYING":
        reply(layer, txn, 100 if state == "PROCEEDING" else 200, 0.0)
    ev = layer.transport_error(txn, 0.5)
    # nothing was sent in TRYING, so there is no transport error to have there (Figure 8)
    assert ev == ([] if state == "TRYING" else [TransportFailed(txn), Terminated(txn)])


# -- matching (§17.2.3) ----------------------------------------------------------------------


def test_rfc3261_matching_uses_branch_sent_by_and_method() -> None:
    inv = request()
    layer, txn = receive(inv)
    # same branch, other sent-by: another transaction
    other = request(sent_by=b"pc34.atlanta.com")
    assert kinds(layer.receive_request(other, SRC, False, 0.1)) == ["NewRequest"]
    # other branch: another transaction
    assert kinds(layer.receive_request(request(branch=b"z9hG4bKzz"), SRC, False, 0.1)) == [
        "NewRequest"
    ]
    # CANCEL with the INVITE's branch is a transaction of its own...
    cancel = request(b"CANCEL")
    ev = layer.receive_request(cancel, SRC, False, 0.2)
    assert kinds(ev) == ["NewRequest"]
    ctxn = new_txn(ev[0])
    assert ctxn is not txn and ctxn.method == b"CANCEL"
    # ...and finds the INVITE it cancels (§9.2)
    assert layer.find_invite_for_cancel(cancel) is txn
    assert layer.find_invite_for_cancel(request(b"CANCEL", branch=b"z9hG4bKnone")) is None
    assert layer.server_count == 4
    assert layer.find_server(inv) is txn
    assert layer.find_server(ack_for(inv)) is txn


def test_sent_by_port_and_host_case() -> None:
    layer, txn = receive(request(sent_by=b"PC33.Atlanta.COM"))
    assert layer.find_server(request(sent_by=b"pc33.atlanta.com")) is txn
    assert layer.find_server(request(sent_by=b"pc33.atlanta.com:5060")) is None


def test_ack_for_unknown_transaction_goes_to_tu() -> None:
    layer = TransactionLayer()
    ack = request(b"ACK")
    assert layer.receive_request(ack, SRC, False, 0.0) == [AckReceived(ack, SRC, None)]
    assert len(layer) == 0


def test_rfc2543_matching() -> None:
    inv = request(branch=None)
    layer, txn = receive(inv)
    assert kinds(layer.receive_request(request(branch=None), SRC, False, 0.1)) == ["Absorbed"]
    # differing CSeq, Call-ID or From tag: another transaction
    for other in (
        request(branch=None, cseq=2),
        request(branch=None, call_id=b"other@x"),
        request(branch=None, from_tag=b"ft2"),
        request(branch=b"1234"),  # a branch without the cookie is part of the top Via
    ):
        assert kinds(layer.receive_request(other, SRC, False, 0.1)) == ["NewRequest"]
    # CANCEL: same Request-URI, tags, Call-ID, CSeq number and top Via
    cancel = request(b"CANCEL", branch=None)
    assert layer.find_invite_for_cancel(cancel) is txn
    r = make_response(inv, 486, to_tag=b"srvtag")
    layer.send_response(txn, r, 0.2)
    assert txn.to_tag == b"srvtag"
    # the ACK must carry the To tag of the response sent
    wrong = request(b"ACK", branch=None, to_tag=b"nope")
    assert layer.receive_request(wrong, SRC, False, 0.3) == [AckReceived(wrong, SRC, None)]
    ack = request(b"ACK", branch=None, to_tag=b"srvtag")
    assert layer.receive_request(ack, SRC, False, 0.4) == [Absorbed(txn)]
    assert txn.state is State.CONFIRMED
    run_until(layer, 100.0)
    assert layer.find_invite_for_cancel(cancel) is None
    assert txn not in set(layer.transactions())
    assert len(layer) == 4  # the other four still wait for their TU
    assert txn.ack_key not in layer._ack2543


def test_rfc2543_to_tag_from_bytes() -> None:
    inv = request(branch=b"oldstyle")
    layer, txn = receive(inv)
    layer.send_response(txn, serialize(make_response(inv, 404, to_tag=b"bt")), 0.0)
    assert txn.to_tag == b"bt"
    ack = request(b"ACK", branch=b"oldstyle", to_tag=b"bt")
    assert layer.receive_request(ack, SRC, False, 0.1) == [Absorbed(txn)]


def test_overdue_timer_before_matching() -> None:
    reg = request(b"REGISTER")
    layer, txn = receive(reg)
    reply(layer, txn, 200, 0.0)
    # Timer J (32 s) is overdue: the transaction ends, the request starts a new one
    ev = layer.receive_request(reg, SRC, False, 50.0)
    assert kinds(ev) == ["Terminated", "NewRequest"]
    assert ev[0] == Terminated(txn)


# -- memory of finished transactions --------------------------------------------------------


@pytest.mark.parametrize("method", [b"INVITE", b"BYE"])
@pytest.mark.parametrize("status", [200, 486])
def test_a_finished_transaction_keeps_only_what_a_response_copies(
    method: bytes, status: int
) -> None:
    req = request(method)
    layer, txn = receive(req)
    reply(layer, txn, status, 0.0)
    assert txn.state is not State.TERMINATED
    kept = txn.request
    assert [h.key for h in kept.headers] == [
        h.key for h in req.headers if h.key in (b"via", b"from", b"to", b"call-id", b"cseq")
    ]
    assert kept.wire is None and kept.body == b""
    assert (kept.method, kept.call_id, kept.cseq) == (req.method, req.call_id, req.cseq)
    # a late reply from the TU still builds and is refused as before (no crash)
    late = make_response(kept, 500)
    if status >= 300 or method != b"INVITE":
        with pytest.raises(LocalProtocolError):
            layer.send_response(txn, late, 1.0)
    # retransmissions still match and are absorbed with the last response re-sent
    ev = layer.receive_request(req, SRC, False, 1.0)
    assert isinstance(ev[-1], Absorbed)
