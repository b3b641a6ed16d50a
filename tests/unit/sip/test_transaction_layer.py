"""The transaction manager: heap with lazy deletion, scale, and random input sequences."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtc64.errors import LocalProtocolError
from rtc64.sip.message import Request, make_response
from rtc64.sip.transaction import (
    AckReceived,
    ClientTransaction,
    Event,
    NewRequest,
    ResponseReceived,
    Send,
    ServerTransaction,
    State,
    StrayResponse,
    Terminated,
    TimerConfig,
    TransactionLayer,
)

from .txn_messages import request, response, run_until

T = TimerConfig()
HORIZON = 64 * T.t1 + T.t4


def brute_min(layer: TransactionLayer) -> float | None:
    deadlines = [d for t in layer.transactions() if (d := t.deadline) is not None]
    return min(deadlines, default=None)


def test_many_transactions_and_lazy_deletion() -> None:
    layer = TransactionLayer()
    reqs = [request(b"OPTIONS", branch=b"z9hG4bK%d" % i) for i in range(3000)]
    for i, r in enumerate(reqs):
        layer.start_client(r, i, False, 0.0)
    assert len(layer) == 3000 and layer.get_timer() == 0.5
    for r in reqs:
        ev = layer.receive_response(response(r, 200), 0.1)
        assert isinstance(ev[0], ResponseReceived)
        assert len(layer._heap) <= 2 * layer._live + 64
    assert layer.get_timer() == pytest.approx(5.1)  # Timer K; the stale E entries are gone
    assert layer.handle_timer(5.0) == []
    ev = layer.handle_timer(5.1)
    assert len(ev) == 3000 and all(isinstance(e, Terminated) for e in ev)
    assert len(layer) == 0 and layer.get_timer() is None


def test_get_timer_matches_brute_force() -> None:
    layer = TransactionLayer()
    now = 0.0
    reqs: list[Request] = []
    for i in range(300):
        now += 0.01
        method = (b"INVITE", b"BYE")[i % 2]
        r = request(method, branch=b"z9hG4bK%d" % i)
        reqs.append(r)
        layer.start_client(r, i, i % 3 == 0, now)
        if i % 5 == 0:
            layer.receive_response(response(reqs[i // 2], (180, 486, 200)[i % 3]), now)
        assert layer.get_timer() == brute_min(layer)
    while (t := layer.get_timer()) is not None:
        assert t == brute_min(layer)
        layer.handle_timer(t)
    # only INVITEs that got a provisional are left: they wait for a final (or the TU's CANCEL)
    assert len(layer) > 0
    assert all(t.invite and t.state is State.PROCEEDING for t in layer.transactions())


# -- random sequences ----------------------------------------------------------------------


@dataclass
class World:
    """What the test expects, checked against every event the layer reports."""

    layer: TransactionLayer
    now: float = 0.0
    clients: list[tuple[ClientTransaction, Request]] = field(default_factory=list)
    servers: list[tuple[ServerTransaction, Request, bool]] = field(default_factory=list)
    dead: set[object] = field(default_factory=set)
    terminated: set[int] = field(default_factory=set)
    finals: dict[int, int] = field(default_factory=dict)
    everyone: list[ClientTransaction | ServerTransaction] = field(default_factory=list)
    created: int = 0

    def check(self, events: list[Event]) -> None:
        for e in events:
            if isinstance(e, Send):
                assert e.dest not in self.dead, "send after TERMINATED"
            elif isinstance(e, Terminated):
                assert id(e.txn) not in self.terminated, "terminated twice"
                assert e.txn.state is State.TERMINATED
                self.terminated.add(id(e.txn))
                self.dead.add(e.txn.dest)
            elif isinstance(e, ResponseReceived) and e.response.status >= 300:
                n = self.finals.get(id(e.txn), 0) + 1
                assert n == 1, "non-2xx final passed up twice"
                self.finals[id(e.txn)] = n
            elif isinstance(e, NewRequest):
                self.created += 1
        live = [t for t in self.everyone if id(t) not in self.terminated]
        assert all(t.state is not State.TERMINATED for t in live)
        assert len(self.layer) == len(live)
        assert self.layer.get_timer() == brute_min(self.layer)
        assert len(self.layer._heap) <= 2 * self.layer._live + 64


def _allowed(txn: ServerTransaction, status: int) -> bool:
    s = txn.state
    if txn.invite:
        if s is State.PROCEEDING:
            return True
        return s is State.ACCEPTED and 200 <= status < 300
    return s in (State.TRYING, State.PROCEEDING)


STEPS = st.sampled_from(
    ["client", "server", "response", "retransmit", "ack", "tu", "error", "tick", "jump"]
)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_random_sequences(data: st.DataObject) -> None:
    w = World(TransactionLayer(rfc6026=data.draw(st.booleans(), "rfc6026")))
    layer = w.layer
    n = 0
    for _ in range(data.draw(st.integers(0, 60), "steps")):
        step = data.draw(STEPS)
        if step == "client":
            n += 1
            r = request(
                data.draw(st.sampled_from([b"INVITE", b"OPTIONS"])), branch=b"z9hG4bKc%d" % n
            )
            ctxn, ev = layer.start_client(r, ("c", n), data.draw(st.booleans()), w.now)
            w.clients.append((ctxn, r))
            w.everyone.append(ctxn)
            w.check(ev)
        elif step == "server":
            n += 1
            rfc3261 = data.draw(st.booleans())
            r = request(
                data.draw(st.sampled_from([b"INVITE", b"BYE"])),
                branch=b"z9hG4bKs%d" % n if rfc3261 else None,
                call_id=b"call%d" % n,
            )
            reliable = data.draw(st.booleans())
            ev = layer.receive_request(r, ("s", n), reliable, w.now)
            assert isinstance(ev[0], NewRequest)
            w.servers.append((ev[0].txn, r, reliable))
            w.everyone.append(ev[0].txn)
            w.check(ev)
        elif step == "response" and w.clients:
            ctxn, r = data.draw(st.sampled_from(w.clients))
            status = data.draw(st.sampled_from([100, 180, 200, 486, 503]))
            ev = layer.receive_response(response(r, status), w.now)
            if id(ctxn) in w.terminated:
                assert isinstance(ev[-1], StrayResponse)
            w.check(ev)
        elif step in ("retransmit", "ack") and w.servers:
            i = data.draw(st.integers(0, len(w.servers) - 1))
            txn, r, reliable = w.servers[i]
            if step == "ack":
                r = request(b"ACK", branch=r.via.branch, call_id=r.call_id, to_tag=b"tt")
            n += 1  # a fresh source: a new transaction must not reuse a dead one's
            ev = layer.receive_request(r, ("r", n), reliable, w.now)
            if step == "retransmit" and id(txn) in w.terminated:
                assert isinstance(ev[-1], NewRequest)
                w.servers[i] = (ev[-1].txn, r, reliable)  # the same request, a new transaction
                w.everyone.append(ev[-1].txn)
            if step == "ack" and not txn.invite:
                assert isinstance(ev[-1], AckReceived)
            w.check(ev)
        elif step == "tu" and w.servers:
            txn = data.draw(
                st.sampled_from([t for t in w.everyone if isinstance(t, ServerTransaction)])
            )
            r = txn.request
            status = data.draw(st.sampled_from([100, 180, 200, 486]))
            ok = id(txn) not in w.terminated and _allowed(txn, status)
            resp = make_response(r, status, to_tag=b"tt")
            if ok:
                w.check(layer.send_response(txn, resp, w.now))
            else:
                with pytest.raises(LocalProtocolError):
                    layer.send_response(txn, resp, w.now)
        elif step == "error" and (w.clients or w.servers):
            txn2 = data.draw(st.sampled_from(w.everyone))
            w.check(layer.transport_error(txn2, w.now))
        elif step == "tick":
            w.now += data.draw(st.floats(0.0, 10.0))
            w.check(layer.handle_timer(w.now))
        elif step == "jump":
            t = layer.get_timer()
            if t is not None:
                w.now = max(w.now, t)
                w.check(layer.handle_timer(w.now))

    # Drain: the TU answers every pending server transaction and every INVITE that got a
    # provisional gets a final; then, once 64*T1 + T4 have passed, everything has ended.
    for txn, r, _ in w.servers:
        if txn.state in (State.TRYING, State.PROCEEDING):
            status = data.draw(st.sampled_from([200, 486]))
            w.check(layer.send_response(txn, make_response(r, status, to_tag=b"tt"), w.now))
    for ctxn, r in w.clients:
        if ctxn.state is State.PROCEEDING and ctxn.invite:
            w.check(layer.receive_response(response(r, 486), w.now))
    end = w.now + HORIZON
    timed = run_until(layer, end)
    w.check([e for _, e in timed])
    assert len(layer) == 0
    assert layer.get_timer() is None
    assert w.terminated == {id(t) for t in w.everyone}


def test_serves_branch_while_a_server_transaction_lives() -> None:
    """The raw look under overload (``sip.peek``) never refuses a request whose branch a
    live server transaction has: it may be a retransmission."""
    layer = TransactionLayer()
    req = request(b"OPTIONS", branch=b"z9hG4bKlive")
    layer.receive_request(req, "from", False, 0.0)
    assert layer.serves_branch(b"z9hG4bKlive") and not layer.serves_branch(b"z9hG4bKother")
    txn = layer.find_server(req)
    assert txn is not None
    layer.send_response(txn, make_response(req, 200), 0.0)
    events = run_until(layer, HORIZON)
    assert any(isinstance(e, Terminated) for _, e in events)
    assert not layer.serves_branch(b"z9hG4bKlive") and layer.server_count == 0
    old = request(b"OPTIONS", branch=b"1234")  # RFC 2543: keyed without a branch
    layer.receive_request(old, "from", False, 1.0)
    assert layer.server_count == 1 and not layer._branches


def test_receive_status_runs_1xx_and_2xx_like_receive_response_and_nothing_else() -> None:
    """The proxy's raw reply path: same states as ``receive_response``; None (nothing
    changed) for a non-2xx final, an overdue timer or a transaction that has left."""
    layer = TransactionLayer()
    invite = request(b"INVITE", branch=b"z9hG4bKraw")
    txn, _ = layer.start_client(invite, "dest", False, 0.0)
    assert layer.client_for(b"z9hG4bKraw", b"INVITE") is txn
    assert layer.client_for(b"z9hG4bKraw", b"BYE") is None
    assert layer.receive_status(txn, 486, 0.1) is None and txn.state is State.CALLING
    assert layer.receive_status(txn, 180, 0.6) is None  # Timer A overdue: parse path
    assert txn.state is State.CALLING
    assert layer.receive_status(txn, 180, 0.1) == (True, [])
    assert txn.state is State.PROCEEDING
    seen, _ = layer.receive_status(txn, 200, 0.2) or (None, [])
    assert seen is True and txn.state is State.ACCEPTED  # RFC 6026
    assert layer.receive_status(txn, 200, 0.3) == (True, [])  # a 2xx retransmission
    assert layer.receive_status(txn, 183, 0.4) == (False, [])  # absorbed
    ev = layer.handle_timer(0.2 + 64 * T.t1)  # Timer M
    assert [type(e) for e in ev] == [Terminated]
    assert layer.receive_status(txn, 200, 40.0) is None  # gone: a stray for the full path
    bye = request(b"BYE", branch=b"z9hG4bKbye")
    other, _ = layer.start_client(bye, "dest", True, 0.0)
    ran = layer.receive_status(other, 200, 0.1)
    assert ran is not None and ran[0] is True
    assert [type(e) for e in ran[1]] == [Terminated]  # reliable: Timer K is zero
