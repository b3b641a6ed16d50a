"""Call and registration log lines with structured fields; SIP message tracing."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from ipaddress import IPv4Address, IPv6Address, ip_network

import pytest

from rtc64.gateway.calllog import (
    CallLog,
    RegistrationLog,
    log_expired,
    log_registration,
    printable,
)
from rtc64.gateway.location.bindings import Binding
from rtc64.gateway.trace import Tracer
from rtc64.logs import JsonFormatter
from rtc64.net.address import Family
from rtc64.net.endpoint import Flow, Transport
from rtc64.sip.framing import parse_datagram as parse_message

INVITE = (
    b"INVITE sip:bob@example.net SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP [2001:db8::1]:5062;branch=z9hG4bK1\r\n"
    b"From: <sip:alice@example.net>;tag=a\r\nTo: <sip:bob@example.net>\r\n"
    b"Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
)
OK = (
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP [2001:db8::1]:5062;branch=z9hG4bK1\r\n"
    b"From: <sip:alice@example.net>;tag=a\r\nTo: <sip:bob@example.net>;tag=b\r\n"
    b"Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
)


@pytest.fixture
def records() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger(f"test.calllog.{id(stream)}")
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG)
    log.propagate = False
    return log, stream


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_call_logs_setup_answer_and_end_as_json_fields(
    records: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = records
    now = [100.0]
    calls = CallLog(log, lambda: now[0], relayed=lambda cid: cid == b"c1")
    flow = Flow(
        Transport.UDP, (IPv6Address("2001:db8::9"), 5060), (IPv6Address("2001:db8::1"), 5062)
    )
    invite, ok = parse_message(INVITE), parse_message(OK)
    calls.setup(invite, flow)  # type: ignore[arg-type]
    calls.setup(invite, flow)  # type: ignore[arg-type]  # a retransmission: no second line
    now[0] = 102.0
    calls.answered(b"c1", ok.status, (Transport.TCP, IPv4Address("192.0.2.7"), 5060))  # type: ignore[arg-type]
    assert calls.families() == {"IPv4": 0, "IPv6": 1}
    now[0] = 112.5
    calls.ended(b"c1", "bye-caller", 200)
    calls.ended(b"c1", "bye-caller", 200)  # already over: nothing
    setup, answer, end = _lines(stream)
    assert setup["event"] == "call-setup" and setup["call_id"] == "c1"
    assert setup["from"] == "sip:alice@example.net" and setup["to"] == "sip:bob@example.net"
    assert setup["caller_family"] == "IPv6" and setup["source"] == "2001:db8::1:5062"
    assert answer["callee_family"] == "IPv4" and answer["callee_transport"] == "tcp"
    assert answer["relay"] is True
    assert end["reason"] == "bye-caller" and end["status"] == 200
    assert end["duration"] == 12.5 and end["talk"] == 10.5
    assert len(calls) == 0


def test_snapshot_lists_live_calls_with_each_sides_family_and_transport(
    records: tuple[logging.Logger, io.StringIO],
) -> None:
    log, _ = records
    now = [100.0]
    calls = CallLog(log, lambda: now[0], relayed=lambda cid: False)
    flow = Flow(
        Transport.TLS, (IPv6Address("2001:db8::9"), 5061), (IPv6Address("2001:db8::1"), 5062)
    )
    calls.setup(parse_message(INVITE), flow)  # type: ignore[arg-type]
    calls.setup(parse_message(INVITE.replace(b"c1", b"gone")), flow)  # type: ignore[arg-type]
    states = {b"c1": "early"}
    now[0] = 103.0
    (early,) = calls.snapshot(states.get)  # "gone": its dialog is over (expired, evicted)
    assert (early.call_id, early.state, early.age, early.talk) == (b"c1", "early", 3.0, None)
    assert early.caller.family is Family.INET6 and early.caller.transport == "tls"
    assert early.caller.address == (IPv6Address("2001:db8::1"), 5062)
    assert early.callee is None and early.relayed is False
    calls.answered(b"c1", parse_message(OK).status, (Transport.UDP, IPv4Address("192.0.2.7"), 5060))  # type: ignore[arg-type]
    states[b"c1"] = "confirmed"
    now[0] = 105.0
    (up,) = calls.snapshot(states.get)
    assert up.state == "confirmed" and up.talk == 2.0 and up.age == 5.0
    assert up.callee is not None and up.callee.family is Family.INET
    assert (up.callee.transport, up.callee.address) == ("udp", (IPv4Address("192.0.2.7"), 5060))
    assert (up.caller_uri, up.callee_uri) == ("sip:alice@example.net", "sip:bob@example.net")
    calls.ended(b"c1", "bye-callee", 200)
    assert calls.snapshot(states.get) == []


def test_registration_changes_new_refresh_removed_expired(
    records: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = records

    def binding(contact: bytes, expires: float) -> Binding:
        return Binding(
            aor="sip:alice@example.net", contact=contact, expires_at=expires, call_id=b"r",
            cseq=1, transport="udp", listener="udp:[::]:5060",
            received_ip=IPv6Address("2001:db8::1"), received_port=5062,
        )  # fmt: skip

    a, b = binding(b"sip:a@[2001:db8::1]:5062", 700.0), binding(b"sip:b@192.0.2.1", 700.0)
    log_registration(log, [], [a], 100.0)
    log_registration(log, [a], [a, b], 100.0)
    log_registration(log, [a, b], [b], 100.0)
    log_expired(log, [b])
    events = [(r["event"], r["contact"], r["level"]) for r in _lines(stream)]
    assert events == [
        ("register", "sip:a@[2001:db8::1]:5062", "info"),
        ("refresh", "sip:a@[2001:db8::1]:5062", "debug"),
        ("register", "sip:b@192.0.2.1", "info"),
        ("refresh", "sip:b@192.0.2.1", "debug"),
        ("unregister", "sip:a@[2001:db8::1]:5062", "info"),
        ("expired", "sip:b@192.0.2.1", "info"),
    ]
    first = _lines(stream)[0]
    assert first["family"] == "IPv6" and first["expires"] == 600 and first["aor"] == a.aor


def test_tracer_matches_networks_and_aors_only(
    records: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = records
    tracer = Tracer([ip_network("2001:db8:1::/64"), "sip:bob@example.net"], log)
    here = (IPv4Address("192.0.2.9"), 5060)
    other = Flow(Transport.UDP, here, (IPv4Address("198.51.100.1"), 5060))
    listed = Flow(Transport.UDP, here, (IPv6Address("2001:db8:1::5"), 5060))
    tracer.received(INVITE.replace(b"bob@", b"carol@"), other, 0.0)
    assert stream.getvalue() == ""
    tracer.received(INVITE.replace(b"bob@", b"carol@"), listed, 0.0)
    tracer.sent(INVITE.replace(b"<sip:bob@example.net>", b"<sip:BOB@Example.NET;x=1>"), other, 0.0)
    tracer.sent(INVITE.replace(b"bob@example.net", b"bob@example.net.evil"), other, 0.0)
    lines = _lines(stream)
    assert [line["direction"] for line in lines] == ["in", "out"]
    assert "INVITE sip:carol@example.net" in str(lines[0]["msg"])
    tracer.rules = []
    tracer.received(INVITE, listed, 0.0)
    assert len(_lines(stream)) == 2


def test_registration_log_reports_expiry_only_when_the_store_lost_the_contact(
    records: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = records

    def binding(contact: bytes, expires: float) -> Binding:
        return Binding(
            aor="sip:bob@example.net", contact=contact, expires_at=expires, call_id=b"r",
            cseq=1, transport="tcp", listener="tcp:[::]:5060",
            received_ip=IPv4Address("192.0.2.5"), received_port=40000,
        )  # fmt: skip

    class Store:
        def __init__(self) -> None:
            self.live: list[Binding] = []
            self.asked = 0

        async def lookup(self, aor: str, now: float) -> list[Binding]:
            self.asked += 1
            return [b for b in self.live if b.expires_at > now]

    regs, store = RegistrationLog(log), Store()
    gone, kept = binding(b"sip:b@192.0.2.5:40000", 200.0), binding(b"sip:c@192.0.2.6", 200.0)
    regs.changed([], [gone, kept], 100.0)
    assert asyncio.run(regs.sweep(store, 150.0)) == 0 and store.asked == 0  # nothing due
    store.live = [binding(b"sip:c@192.0.2.6", 900.0)]  # refreshed by another gateway
    assert asyncio.run(regs.sweep(store, 250.0)) == 1
    assert store.asked == 1  # one lookup per AOR
    expired = [r for r in _lines(stream) if r["event"] == "expired"]
    assert [r["contact"] for r in expired] == ["sip:b@192.0.2.5:40000"]
    assert expired[0]["transport"] == "tcp" and expired[0]["family"] == "IPv4"
    assert len(regs) == 1  # the refreshed one is still watched, with its new expiry
    assert asyncio.run(regs.sweep(store, 500.0)) == 0
    regs.changed([store.live[0]], [], 600.0)  # unregistered: no longer watched
    assert len(regs) == 0


def test_control_characters_from_peers_never_reach_the_log_raw(
    records: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = records
    tracer = Tracer([ip_network("192.0.2.0/24")], log)
    flow = Flow(Transport.UDP, (IPv4Address("192.0.2.9"), 5060), (IPv4Address("192.0.2.1"), 1))
    evil = INVITE.replace(b"Call-ID: c1", b"Call-ID: c1\x1b[2J\x07")
    tracer.received(evil, flow, 0.0)
    (line,) = _lines(stream)
    msg = str(line["msg"])
    assert "\x1b" not in msg and "\x07" not in msg and "\r" not in msg
    assert "\\x1b[2J\\x07" in msg and "\nCSeq: 1 INVITE" in msg
    assert printable("a\tb\nc\x9bd") == "a\tb\nc\\x9bd"


def test_without_info_lines_calls_are_still_remembered_and_forgotten(
    records: tuple[logging.Logger, io.StringIO],
) -> None:
    """At ``--log-level warning`` (the benchmark's) nothing is written, but the console's
    snapshot still shows the call with both sides, and its end still forgets it."""
    log, stream = records
    log.setLevel(logging.WARNING)
    now = [100.0]
    calls = CallLog(log, lambda: now[0], relayed=lambda cid: False)
    flow = Flow(
        Transport.UDP, (IPv6Address("2001:db8::9"), 5060), (IPv6Address("2001:db8::1"), 5062)
    )
    calls.setup(parse_message(INVITE), flow)  # type: ignore[arg-type]
    calls.answered(b"c1", 200, (Transport.UDP, IPv4Address("192.0.2.7"), 5060))
    now[0] = 104.0
    (up,) = calls.snapshot({b"c1": "confirmed"}.get)
    assert (up.caller_uri, up.callee_uri, up.age) == (
        "sip:alice@example.net",
        "sip:bob@example.net",
        4.0,
    )
    assert up.callee is not None and up.callee.address == (IPv4Address("192.0.2.7"), 5060)
    assert calls.families() == {"IPv4": 0, "IPv6": 1}
    calls.ended(b"c1", "bye-caller", 200)
    assert len(calls) == 0
    assert stream.getvalue() == ""


def test_below_info_a_call_is_written_only_when_looked_at(
    records: tuple[logging.Logger, io.StringIO],
) -> None:
    """Below info level set-up keeps what it received and writes no text (the per-call
    cost); the console's snapshot writes it then, the same text on every look."""
    log, stream = records
    log.setLevel(logging.WARNING)
    calls = CallLog(log, lambda: 1.0)
    flow = Flow(Transport.TCP, (IPv4Address("192.0.2.9"), 5060), (IPv4Address("192.0.2.1"), 9))
    calls.setup(parse_message(INVITE), flow)  # type: ignore[arg-type]
    (kept,) = calls._calls.values()
    assert kept.texts is None
    for _ in range(2):
        (up,) = calls.snapshot(lambda cid: "early")
        assert up.call_id == b"c1" and up.caller_uri == "sip:alice@example.net"
        assert up.caller.transport == "tcp" and up.caller.family is Family.INET
        assert kept.texts == ("c1", "sip:alice@example.net", "sip:bob@example.net")
    assert calls.families() == {"IPv4": 1, "IPv6": 0}
    assert stream.getvalue() == ""
