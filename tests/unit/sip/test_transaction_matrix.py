"""Every state/input pair of the four machines against an independent expectation table."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rtc64.errors import LocalProtocolError
from rtc64.sip.message import Request, make_response
from rtc64.sip.transaction import (
    ClientTransaction,
    Event,
    NewRequest,
    ServerTransaction,
    TransactionLayer,
)

from .txn_messages import kinds, request, response

DEST = "peer"
RR, SEND, ABS, TF, TERM = "ResponseReceived", "Send", "Absorbed", "TransportFailed", "Terminated"
Matrix = dict[str, dict[str, tuple[str, list[str]] | None]]

# state -> input -> (state after, event kinds); unreliable transport, RFC 6026 on.
INVITE_CLIENT: Matrix = {
    "CALLING": {
        "1xx": ("PROCEEDING", [RR]),
        "2xx": ("ACCEPTED", [RR]),
        "486": ("COMPLETED", [SEND, RR]),
        "error": ("TERMINATED", [TF, TERM]),
        "timer": ("CALLING", [SEND]),
    },
    "PROCEEDING": {
        "1xx": ("PROCEEDING", [RR]),
        "2xx": ("ACCEPTED", [RR]),
        "486": ("COMPLETED", [SEND, RR]),
        "error": ("TERMINATED", [TF, TERM]),
        "timer": ("PROCEEDING", []),
    },
    "COMPLETED": {
        "1xx": ("COMPLETED", [ABS]),
        "2xx": ("COMPLETED", [ABS]),
        "486": ("COMPLETED", [SEND, ABS]),
        "error": ("TERMINATED", [TF, TERM]),
        "timer": ("TERMINATED", [TERM]),
    },
    "ACCEPTED": {
        "1xx": ("ACCEPTED", [ABS]),
        "2xx": ("ACCEPTED", [RR]),
        "486": ("ACCEPTED", [ABS]),
        "error": ("ACCEPTED", []),
        "timer": ("TERMINATED", [TERM]),
    },
}
NON_INVITE_CLIENT: Matrix = {
    "TRYING": {
        "1xx": ("PROCEEDING", [RR]),
        "2xx": ("COMPLETED", [RR]),
        "486": ("COMPLETED", [RR]),
        "error": ("TERMINATED", [TF, TERM]),
        "timer": ("TRYING", [SEND]),
    },
    "PROCEEDING": {
        "1xx": ("PROCEEDING", [RR]),
        "2xx": ("COMPLETED", [RR]),
        "486": ("COMPLETED", [RR]),
        "error": ("TERMINATED", [TF, TERM]),
        "timer": ("PROCEEDING", [SEND]),
    },
    "COMPLETED": {
        "1xx": ("COMPLETED", [ABS]),
        "2xx": ("COMPLETED", [ABS]),
        "486": ("COMPLETED", [ABS]),
        "error": ("COMPLETED", []),
        "timer": ("TERMINATED", [TERM]),
    },
}
ERR = None  # the TU's response raises LocalProtocolError
INVITE_SERVER: Matrix = {
    "PROCEEDING": {
        "request": ("PROCEEDING", [SEND, ABS]),
        "ack": ("PROCEEDING", [ABS]),
        "tu1xx": ("PROCEEDING", [SEND]),
        "tu2xx": ("ACCEPTED", [SEND]),
        "tu486": ("COMPLETED", [SEND]),
        "error": ("TERMINATED", [TF, TERM]),
        "timer": ("PROCEEDING", []),
    },
    "COMPLETED": {
        "request": ("COMPLETED", [SEND, ABS]),
        "ack": ("CONFIRMED", [ABS]),
        "tu1xx": ERR,
        "tu2xx": ERR,
        "tu486": ERR,
        "error": ("TERMINATED", [TF, TERM]),
        "timer": ("COMPLETED", [SEND]),
    },
    "CONFIRMED": {
        "request": ("CONFIRMED", [ABS]),
        "ack": ("CONFIRMED", [ABS]),
        "tu1xx": ERR,
        "tu2xx": ERR,
        "tu486": ERR,
        "error": ("CONFIRMED", []),
        "timer": ("TERMINATED", [TERM]),
    },
    "ACCEPTED": {
        "request": ("ACCEPTED", [ABS]),
        "ack": ("ACCEPTED", ["AckReceived"]),
        "tu1xx": ERR,
        "tu2xx": ("ACCEPTED", [SEND]),
        "tu486": ERR,
        "error": ("ACCEPTED", []),
        "timer": ("TERMINATED", [TERM]),
    },
}
NON_INVITE_SERVER: Matrix = {
    "TRYING": {
        "request": ("TRYING", [ABS]),
        "ack": ("TRYING", ["AckReceived"]),  # an ACK never matches a non-INVITE
        "tu1xx": ("PROCEEDING", [SEND]),
        "tu2xx": ("COMPLETED", [SEND]),
        "tu486": ("COMPLETED", [SEND]),
        "error": ("TRYING", []),
        "timer": ("TRYING", []),
    },
    "PROCEEDING": {
        "request": ("PROCEEDING", [SEND, ABS]),
        "ack": ("PROCEEDING", ["AckReceived"]),
        "tu1xx": ("PROCEEDING", [SEND]),
        "tu2xx": ("COMPLETED", [SEND]),
        "tu486": ("COMPLETED", [SEND]),
        "error": ("TERMINATED", [TF, TERM]),
        "timer": ("PROCEEDING", []),
    },
    "COMPLETED": {
        "request": ("COMPLETED", [SEND, ABS]),
        "ack": ("COMPLETED", ["AckReceived"]),
        "tu1xx": ERR,
        "tu2xx": ERR,
        "tu486": ERR,
        "error": ("TERMINATED", [TF, TERM]),
        "timer": ("TERMINATED", [TERM]),
    },
}

STATUS = {"1xx": 180, "2xx": 200, "486": 486, "tu1xx": 180, "tu2xx": 200, "tu486": 486}
# how to reach each state from the start: responses (client) or TU statuses/ACK (server)
CLIENT_PATH = {
    "CALLING": [],
    "TRYING": [],
    "PROCEEDING": [180],
    "COMPLETED": [486],
    "ACCEPTED": [200],
}
SERVER_PATH: dict[str, list[int | str]] = {
    "PROCEEDING": [180],
    "TRYING": [],
    "COMPLETED": [486],
    "CONFIRMED": [486, "ack"],
    "ACCEPTED": [200],
}


def fire_next(layer: TransactionLayer) -> list[Event]:
    t = layer.get_timer()
    return [] if t is None else layer.handle_timer(t)


def _cases(table: Matrix, method: bytes) -> list[tuple[bytes, str, str]]:
    return [(method, s, i) for s, row in table.items() for i in row]


@pytest.mark.parametrize(
    ("method", "state", "inp"),
    _cases(INVITE_CLIENT, b"INVITE") + _cases(NON_INVITE_CLIENT, b"OPTIONS"),
)
def test_client_pair(method: bytes, state: str, inp: str) -> None:
    table = INVITE_CLIENT if method == b"INVITE" else NON_INVITE_CLIENT
    layer = TransactionLayer()
    req = request(method)
    txn, _ = layer.start_client(req, DEST, False, 0.0)
    for status in CLIENT_PATH[state]:
        layer.receive_response(response(req, status), 0.1)
    assert txn.state.name == state
    ev = _client_input(layer, txn, req, inp)
    assert (txn.state.name, kinds(ev)) == table[state][inp]


def _client_input(
    layer: TransactionLayer, txn: ClientTransaction, req: Request, inp: str
) -> list[Event]:
    if inp == "error":
        return layer.transport_error(txn, 0.2)
    if inp == "timer":
        return fire_next(layer)
    return layer.receive_response(response(req, STATUS[inp]), 0.2)


@pytest.mark.parametrize(
    ("method", "state", "inp"),
    _cases(INVITE_SERVER, b"INVITE") + _cases(NON_INVITE_SERVER, b"BYE"),
)
def test_server_pair(method: bytes, state: str, inp: str) -> None:
    table = INVITE_SERVER if method == b"INVITE" else NON_INVITE_SERVER
    layer = TransactionLayer()
    req = request(method)
    ev = layer.receive_request(req, DEST, False, 0.0)
    assert isinstance(ev[0], NewRequest)
    txn = ev[0].txn
    path = SERVER_PATH[state]
    if method != b"INVITE" and state == "PROCEEDING":
        path = [100]
    for step in path:
        if step == "ack":
            layer.receive_request(_ack(req), DEST, False, 0.1)
        else:
            assert isinstance(step, int)
            layer.send_response(txn, make_response(req, step, to_tag=b"tt"), 0.1)
    assert txn.state.name == state
    want = table[state][inp]
    act: Callable[[], list[Event]] = lambda: _server_input(layer, txn, req, inp)  # noqa: E731
    if want is ERR:
        with pytest.raises(LocalProtocolError):
            act()
        return
    ev = act()
    assert (txn.state.name, kinds(ev)) == want


def _ack(req: Request) -> Request:
    return request(b"ACK", branch=req.via.branch, to_tag=b"tt")


def _server_input(
    layer: TransactionLayer, txn: ServerTransaction, req: Request, inp: str
) -> list[Event]:
    if inp == "error":
        return layer.transport_error(txn, 0.2)
    if inp == "timer":
        return fire_next(layer)
    if inp == "request":
        return layer.receive_request(req, DEST, False, 0.2)
    if inp == "ack":
        return layer.receive_request(_ack(req), DEST, False, 0.2)
    return layer.send_response(txn, make_response(req, STATUS[inp], to_tag=b"tt"), 0.2)
