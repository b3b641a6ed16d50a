"""Whatever a client or peer sends, the core answers or drops; nothing escapes."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtc64.net.endpoint import Transport
from rtc64.stun import channeldata
from rtc64.stun.attributes import CHANNEL_NUMBER, REQUESTED_TRANSPORT, XOR_PEER_ADDRESS
from rtc64.stun.message import Class, Method, decode
from rtc64.turn.events import ToClient
from tests.unit.turn.helpers import PEER4, RELAY4, Client, Harness

BASE = Harness()
SAMPLES = [
    Client(BASE, BASE.flow()).raw(Method.ALLOCATE, REQUESTED_TRANSPORT(17)),
    Client(BASE, BASE.flow()).raw(
        Method.CHANNEL_BIND, CHANNEL_NUMBER(0x4000), XOR_PEER_ADDRESS(PEER4)
    ),
    Client(BASE, BASE.flow()).raw(Method.CREATE_PERMISSION, XOR_PEER_ADDRESS(PEER4)),
    Client(BASE, BASE.flow()).raw(Method.BINDING, signed=False),
    channeldata.pack(0x4000, b"payload"),
]


def ready() -> tuple[Harness, Client]:
    h = Harness()
    c = Client(h, h.flow(transport=Transport.TCP, connection=1))
    c.send(Method.ALLOCATE, REQUESTED_TRANSPORT(17))
    c.send(Method.CHANNEL_BIND, CHANNEL_NUMBER(0x4000), XOR_PEER_ADDRESS(PEER4))
    return h, c


def check_outputs(h: Harness) -> None:
    for event in h.server.events():
        if isinstance(event, ToClient) and event.data[0] >> 6 == 0:
            msg = decode(event.data)
            assert msg.cls in (Class.SUCCESS, Class.ERROR, Class.INDICATION)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    h, c = ready()
    h.server.receive_client(data, c.flow, h.now)
    h.server.receive_peer((RELAY4, 50000), data, PEER4, h.now)
    check_outputs(h)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(SAMPLES),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
    st.integers(0, 400),
)
def test_mutated_requests(sample: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    h, c = ready()
    data = bytearray(sample)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    h.server.receive_client(bytes(data[: max(cut, 1)]), c.flow, h.now)
    h.server.receive_client(bytes(data), c.flow, h.now)
    check_outputs(h)
    h.server.handle_timer(h.now + 4000)
    check_outputs(h)
