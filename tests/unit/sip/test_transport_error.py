"""Transport errors reach their transaction (RFC 3261 §17.1.4, §17.2.4): every ``Send``
names the transaction it belongs to, and ``transport_error`` on that handle ends it at
once with ``TransportFailed`` carrying the reason (a proxy answers 503 from it, §16.7)."""

from __future__ import annotations

import gc

from rtc64.sip.message import make_response
from rtc64.sip.serializer import serialize
from rtc64.sip.transaction import (
    ClientTransaction,
    NewRequest,
    Send,
    ServerTransaction,
    State,
    Terminated,
    TransactionLayer,
    TransportFailed,
)

from .txn_messages import request, response, run_until

DEST = ("192.0.2.1", 5060)
SRC = ("198.51.100.7", 5060)
REFUSED = "tcp connection to 127.0.0.1:5999 failed: Connection refused"


def _sends(events: list[object]) -> list[Send]:
    return [e for e in events if isinstance(e, Send)]


def test_every_client_send_names_its_transaction() -> None:
    layer = TransactionLayer()
    req = request(b"INVITE")
    txn, events = layer.start_client(req, DEST, False, 0.0)
    assert [s.txn for s in _sends(events)] == [txn]
    retransmits = [e for _, e in run_until(layer, 2.0) if isinstance(e, Send)]
    assert retransmits and all(s.txn is txn for s in retransmits)
    # the ACK for a non-2xx final, and its re-sends, belong to the INVITE transaction too
    r486 = response(req, 486)
    ack = _sends(layer.receive_response(r486, 2.1))
    again = _sends(layer.receive_response(r486, 2.2))
    assert [s.txn for s in ack + again] == [txn, txn]


def test_every_server_send_names_its_transaction() -> None:
    layer = TransactionLayer()
    req = request(b"OPTIONS")
    (new,) = layer.receive_request(req, SRC, False, 0.0)
    assert isinstance(new, NewRequest)
    txn = new.txn
    sent = _sends(layer.send_response(txn, make_response(req, 200, to_tag=b"t"), 0.1))
    again = _sends(layer.receive_request(req, SRC, False, 0.2))
    assert [s.txn for s in sent + again] == [txn, txn]


def test_transport_error_terminates_the_client_transaction_with_its_reason() -> None:
    layer = TransactionLayer()
    txn, events = layer.start_client(request(b"INVITE"), DEST, True, 0.0)
    (send,) = _sends(events)
    handle = send.txn
    assert isinstance(handle, ClientTransaction)
    out = layer.transport_error(handle, 0.01, REFUSED)
    assert out == [TransportFailed(txn), Terminated(txn)]
    failed = out[0]
    assert isinstance(failed, TransportFailed) and failed.reason == REFUSED
    assert txn.state is State.TERMINATED
    assert layer.client_count == 0 and layer.get_timer() is None
    # no Timer B afterwards: nothing at 32 s (the old 408 path)
    assert run_until(layer, 40.0) == []
    # a late report for the same handle is ignored
    assert layer.transport_error(handle, 0.02, REFUSED) == []


def test_transport_error_for_a_non_invite_in_trying() -> None:
    layer = TransactionLayer()
    txn, _ = layer.start_client(request(b"OPTIONS"), DEST, False, 0.0)
    out = layer.transport_error(txn, 0.2, "no UDP listener of that family")
    assert [type(e) for e in out] == [TransportFailed, Terminated]
    assert layer.client_count == 0


def test_transport_error_terminates_the_server_transaction() -> None:
    layer = TransactionLayer()
    req = request(b"INVITE")
    (new,) = [e for e in layer.receive_request(req, SRC, True, 0.0) if isinstance(e, NewRequest)]
    txn = new.txn
    (send,) = _sends(layer.send_response(txn, make_response(req, 486, to_tag=b"t"), 0.1))
    assert isinstance(send.txn, ServerTransaction)
    out = layer.transport_error(send.txn, 0.2, "connection #3 closed")
    assert [type(e) for e in out] == [TransportFailed, Terminated]
    assert layer.server_count == 0


def test_report_for_a_transaction_that_already_ended_is_ignored() -> None:
    layer = TransactionLayer()
    req = request(b"OPTIONS")
    txn, _ = layer.start_client(req, DEST, True, 0.0)
    layer.receive_response(response(req, 200), 0.1)  # reliable: K = 0, terminated at once
    assert txn.terminated
    assert layer.transport_error(txn, 0.2, REFUSED) == []


def test_transactions_do_not_refer_to_themselves() -> None:
    """The kept ``Send`` has no handle: a finished transaction is freed by reference
    counting alone, without waiting for the cyclic collector (overload memory)."""
    layer = TransactionLayer()
    req = request(b"INVITE")
    txn, _ = layer.start_client(req, DEST, False, 0.0)
    layer.receive_response(response(req, 486), 0.1)  # keeps the request and its ACK
    seen: set[int] = set()
    todo: list[object] = list(gc.get_referents(txn))
    while todo:  # everything reachable from the transaction's own fields
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        assert obj is not txn
        todo.extend(gc.get_referents(obj))


def test_send_equality_ignores_the_handle() -> None:
    data = serialize(request(b"OPTIONS"))
    assert Send(data, DEST) == Send(data, DEST, None)
