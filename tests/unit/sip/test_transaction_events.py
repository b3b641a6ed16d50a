"""Transaction events are values: equal by class and compared fields (``Send.txn`` and
``TransportFailed.reason`` are not compared), hashed consistently, shown field by field.
They are plain classes (not dataclasses) so that mypyc can compile the module."""

from __future__ import annotations

from rtc64.sip.transaction import TransactionLayer
from rtc64.sip.transaction_base import (
    Absorbed,
    NewRequest,
    Send,
    Terminated,
    TransportFailed,
)
from rtc64.sip.transaction_server import ServerTransaction
from tests.unit.sip.txn_messages import request


def a_server_txn() -> ServerTransaction:
    layer = TransactionLayer()
    events = layer.receive_request(request(), ("192.0.2.1", 5060), False, 0.0)
    (new,) = [e for e in events if isinstance(e, NewRequest)]
    return new.txn


def test_send_compares_data_and_dest_only() -> None:
    txn = a_server_txn()
    assert Send(b"x", "d", txn) == Send(b"x", "d")
    assert hash(Send(b"x", "d", txn)) == hash(Send(b"x", "d"))
    assert Send(b"x", "d") != Send(b"y", "d")
    assert Send(b"x", "d") != Send(b"x", "e")


def test_other_classes_with_the_same_fields_are_not_equal() -> None:
    txn = a_server_txn()
    assert Absorbed(txn) != Terminated(txn)
    assert Absorbed(txn) == Absorbed(txn)
    assert Send(b"x", "d") != (b"x", "d")
    assert len({Absorbed(txn), Absorbed(txn), Terminated(txn)}) == 2


def test_transport_failed_ignores_the_reason() -> None:
    txn = a_server_txn()
    assert TransportFailed(txn, "refused") == TransportFailed(txn)


def test_repr_shows_every_field() -> None:
    assert repr(Send(b"x", ("192.0.2.1", 5060))) == (
        "Send(data=b'x', dest=('192.0.2.1', 5060), txn=None)"
    )
    txn = a_server_txn()
    assert (
        repr(TransportFailed(txn, "refused")) == f"TransportFailed(txn={txn!r}, reason='refused')"
    )
