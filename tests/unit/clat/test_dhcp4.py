"""The DHCPv4 option 108 probe: codec (checked against scapy's), RFC 8925 behaviour, fuzzing."""

from __future__ import annotations

import contextlib
import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP

from rtc64.clat import dhcp4
from rtc64.clat.dhcp4 import (
    MIN_V6ONLY_WAIT,
    REPROBE,
    REPROBE_SILENT,
    Dhcp4Probe,
    DhcpError,
    Ipv4Offered,
    State,
    V6Only,
    parse,
)

MAC = bytes.fromhex("02aabbccddee")
XID = 0x12345678
SERVER = "10.99.0.1"


def offer(
    *options: tuple[str, object] | str,
    xid: int = XID,
    mac: bytes = MAC,
    op: int = 2,
    kind: int | str = "offer",
) -> bytes:
    """An OFFER built by scapy (an independent encoder)."""
    opts: list[tuple[str, object] | str] = [("message-type", kind), ("server_id", SERVER)]
    opts += [*options, "end"]
    pkt = BOOTP(op=op, xid=xid, chaddr=mac + bytes(10), yiaddr="10.99.0.100") / DHCP(options=opts)
    return bytes(pkt)


def probe() -> Dhcp4Probe:
    xids = iter([XID, XID + 1, XID + 2, XID + 3])
    return Dhcp4Probe(MAC, lambda: next(xids))


def test_discover_asks_for_option_108_with_the_broadcast_flag() -> None:
    data = dhcp4.discover(XID, MAC)
    assert len(data) >= 300
    pkt = BOOTP(data)
    assert pkt.op == 1 and pkt.xid == XID and pkt.flags == 0x8000 and pkt.chaddr[:6] == MAC
    opts = dict(o for o in pkt[DHCP].options if isinstance(o, tuple))
    assert opts["message-type"] == 1
    assert 108 in opts["param_req_list"] and 1 in opts["param_req_list"]
    with pytest.raises(ValueError, match="6 octets"):
        dhcp4.discover(XID, b"\x01\x02")


def test_offer_fields_and_option_108_are_read() -> None:
    reply = parse(offer(("ipv6-only-preferred", 1800)))
    assert reply.op == 2 and reply.xid == XID and reply.chaddr == MAC
    assert reply.message_type == 2 and reply.server == IPv4Address(SERVER)
    assert reply.yiaddr == IPv4Address("10.99.0.100") and reply.v6only_wait == 1800
    assert parse(offer()).v6only_wait is None


def test_option_108_of_another_length_is_ignored() -> None:
    raw = offer(("ipv6-only-preferred", 1800))
    bad = raw.replace(bytes((108, 4)) + (1800).to_bytes(4, "big"), bytes((108, 2, 7, 8, 0, 0)))
    assert parse(bad).v6only_wait is None  # treated as absent: IPv4 offered


def test_split_options_are_concatenated_and_overload_is_honoured() -> None:
    # RFC 3396: option 108 split in two; RFC 2132 §9.3: server id carried in `file`
    data = bytearray(dhcp4.discover(XID, MAC)[:240])
    data[0] = 2
    file_options = bytes((54, 4, 10, 99, 0, 1, 255))
    data[108 : 108 + len(file_options)] = file_options
    data += bytes((53, 1, 2, 52, 1, 1, 108, 2, 0, 0, 108, 2, 0x07, 0x08, 255))
    reply = parse(bytes(data))
    assert reply.v6only_wait == 0x0708 and reply.server == IPv4Address(SERVER)
    bad = bytes(data).replace(bytes((52, 1, 1)), bytes((52, 1, 9)))  # not 1..3
    with pytest.raises(DhcpError, match="overload"):
        parse(bad)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "shorter than 240"),
        (bytes(239), "shorter than 240"),
        (bytes(240), "magic cookie"),
        (bytes(236) + dhcp4.MAGIC_COOKIE + bytes((108, 4, 0)), "runs past"),
        (bytes(236) + dhcp4.MAGIC_COOKIE + bytes((108,)), "runs past"),
    ],
)
def test_malformed_messages_raise_one_error(data: bytes, message: str) -> None:
    if len(data) >= 240 and message != "magic cookie":
        data = bytearray(data)
        data[1], data[2] = 1, 6  # Ethernet
        data = bytes(data)
    with pytest.raises(DhcpError, match=message):
        parse(data)


def test_an_offer_with_108_means_no_lease_and_a_new_discover_after_the_wait() -> None:
    p = probe()
    first = p.start(0)
    assert BOOTP(first).xid == XID and p.get_timer() == 4.0
    event = p.receive(offer(("ipv6-only-preferred", 1800)), 1)
    assert event == V6Only(1800.0, IPv4Address(SERVER)) and p.state is State.V6ONLY_WAIT
    assert p.get_timer() == 1801 and p.handle_timer(1800) is None
    again = p.handle_timer(1801)  # the wait is over: configuration restarts (RFC 8925 §3.2)
    assert again is not None and BOOTP(again).xid == XID + 1 and p.state is State.SELECTING
    # no REQUEST is ever produced: every message the probe makes is a DISCOVER
    assert dict(o for o in BOOTP(again)[DHCP].options if isinstance(o, tuple))["message-type"] == 1
    assert "option 108" in p.describe() and "1800" in p.describe()


def test_a_short_v6only_wait_is_raised_to_the_minimum() -> None:
    p = probe()
    p.start(0)
    assert p.receive(offer(("ipv6-only-preferred", 5)), 0) == V6Only(
        MIN_V6ONLY_WAIT, IPv4Address(SERVER)
    )


def test_an_offer_without_108_reports_ipv4_and_a_later_108_offer_wins() -> None:
    p = probe()
    p.start(0)
    assert p.receive(offer(), 1) == Ipv4Offered(IPv4Address("10.99.0.100"), IPv4Address(SERVER))
    assert p.state is State.IPV4_OFFERED and p.get_timer() == 1 + REPROBE
    assert p.receive(offer(), 1.5) is None  # a second such offer adds nothing
    assert isinstance(p.receive(offer(("ipv6-only-preferred", 900)), 2), V6Only)
    assert p.receive(offer(), 2.5) is None  # option 108 decided this exchange
    assert "not taken" not in p.describe() and p.state is State.V6ONLY_WAIT


def test_foreign_and_unexpected_replies_are_dropped_and_counted() -> None:
    p = probe()
    p.start(0)
    assert p.receive(offer(xid=XID + 9), 0) is None  # another client's exchange
    assert p.receive(offer(mac=bytes(6)), 0) is None  # another hardware address
    assert p.receive(offer(op=1), 0) is None  # a request, not a reply
    assert p.receive(offer(kind="ack"), 0) is None  # not an OFFER
    assert p.receive(b"garbage", 0) is None
    assert p.dropped == 5 and p.state is State.SELECTING


def test_retransmission_backs_off_then_no_server_then_reprobe() -> None:
    p = probe()
    p.start(0)
    sent = [0.0]
    now = 0.0
    while p.state is State.SELECTING:
        deadline = p.get_timer()
        assert deadline is not None
        now = deadline
        if p.handle_timer(now) is not None:
            sent.append(now)
    assert sent == [0, 4, 12, 28, 60] and now == 124 and p.state is State.NO_SERVER
    assert p.describe() == "no DHCPv4 server answered"
    assert p.get_timer() == now + REPROBE_SILENT
    assert p.handle_timer(now + REPROBE_SILENT) is not None and p.state is State.SELECTING


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_raise_only_the_documented_error(data: bytes) -> None:
    with contextlib.suppress(DhcpError):
        parse(data)
    p = probe()
    p.start(0)
    event = p.receive(data, 0)  # never raises: dropped and counted, or an event
    assert event is None or isinstance(event, V6Only | Ipv4Offered)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_fuzz_mutated_offers_never_escape(data: st.DataObject) -> None:
    raw = bytearray(offer(("ipv6-only-preferred", 1800)))
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    p = probe()
    p.start(0)
    for sample in (bytes(raw), bytes(raw[:cut])):
        try:
            reply = parse(sample)
        except DhcpError:
            continue
        assert len(reply.chaddr) == 6 and 0 <= reply.xid < 2**32
        p.receive(sample, 0)
    assert p.state in (State.SELECTING, State.V6ONLY_WAIT, State.IPV4_OFFERED)


def test_header_layout_is_rfc2131() -> None:
    assert dhcp4.FIXED.size == 236
    assert struct.unpack_from("!I", dhcp4.discover(XID, MAC), 4)[0] == XID


def test_the_discover_travels_in_ipv4_udp_from_68_to_67_that_scapy_accepts() -> None:
    payload = dhcp4.discover(XID, MAC)
    raw = dhcp4.encapsulate(payload)
    pkt = IP(raw)
    assert (pkt.src, pkt.dst, pkt[UDP].sport, pkt[UDP].dport) == (
        "0.0.0.0",
        "255.255.255.255",
        68,
        67,
    )
    assert bytes(pkt[UDP].payload) == payload
    del pkt.chksum, pkt.len, pkt[UDP].chksum, pkt[UDP].len  # scapy computes them afresh
    assert bytes(pkt) == raw


def server_packet(payload: bytes, **kw: object) -> bytes:
    fields: dict[str, object] = {"src": SERVER, "dst": "255.255.255.255"}
    fields.update(kw)
    return bytes(IP(**fields) / UDP(sport=67, dport=68) / payload)  # type: ignore[arg-type]


def test_a_server_datagram_is_unwrapped_and_anything_else_refused() -> None:
    body = offer(("ipv6-only-preferred", 1800))
    assert dhcp4.decapsulate(server_packet(body)) == body
    no_checksum = bytearray(server_packet(body))
    no_checksum[26:28] = b"\0\0"  # UDP checksum 0: "none" (RFC 768)
    assert dhcp4.decapsulate(bytes(no_checksum)) == body
    bad = bytearray(server_packet(body))
    bad[-1] ^= 0xFF
    with pytest.raises(DhcpError, match="UDP checksum"):
        dhcp4.decapsulate(bytes(bad))
    with pytest.raises(DhcpError, match="whole UDP"):
        dhcp4.decapsulate(server_packet(body, flags="MF"))
    with pytest.raises(DhcpError, match="53 -> 68 is not"):
        dhcp4.decapsulate(bytes(IP(dst="255.255.255.255") / UDP(sport=53, dport=68) / body))
    with pytest.raises(DhcpError, match="too short"):
        dhcp4.decapsulate(b"\x45")


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_fuzz_mutated_datagrams_raise_only_the_documented_error(data: st.DataObject) -> None:
    raw = bytearray(server_packet(offer(("ipv6-only-preferred", 1800))))
    for _ in range(data.draw(st.integers(1, 6))):
        raw[data.draw(st.integers(0, 40))] = data.draw(st.integers(0, 255))
    for sample in (bytes(raw), bytes(raw[: data.draw(st.integers(0, len(raw)))])):
        with contextlib.suppress(DhcpError):
            dhcp4.decapsulate(sample)
